// A thread-safe table of local scores LocalScore(j, Pa_j), keyed by (node j, parent bitset).
//
// A DAG GFlowNet revisits the same (node, parent set) pairs over and over: every rollout step
// asks for one delta score, i.e. two local scores, and nearby graphs share most of their
// families (DAG-GFlowNet keeps an LRU of local scores for the same reason, Deleu et al. 2022,
// dag_gflownet/utils/cache.py). Threads of one parallel_for look scores up concurrently, so the
// table is split into shards, each a hash map behind its own reader-writer lock: lookups of
// different shards never meet, and lookups of the same shard share the lock. Scores are
// computed outside any lock; when two threads miss on the same key both compute the same value
// (the score is a pure function of the key) and the second insert is a no-op.
//
// Memory is bounded: a shard that reaches its share of `capacity` is emptied before the next
// insert (counted in `evictions`). Emptying is cheap, and the entries a training run needs drift
// with the policy anyway, so the recent ones are recomputed once and the stale ones go.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

namespace gfn {
namespace causal {

struct CacheStats {
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t entries = 0;
  uint64_t evictions = 0;  // shards emptied because they were full
};

// W 64-bit words of parent bits: W = 1 for d <= 64, W = 4 (up to 256 nodes) otherwise.
template <int W>
struct FamilyKey {
  uint64_t words[W];
  int32_t node;
  bool operator==(const FamilyKey& o) const {
    if (node != o.node) return false;
    for (int w = 0; w < W; ++w)
      if (words[w] != o.words[w]) return false;
    return true;
  }
  uint64_t hash() const {
    // splitmix64 finaliser over the words: parent sets differing in one bit land far apart.
    uint64_t h = 0x9E3779B97F4A7C15ULL * (static_cast<uint64_t>(node) + 1);
    for (int w = 0; w < W; ++w) {
      uint64_t z = h ^ words[w];
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
      h = z ^ (z >> 31);
    }
    return h;
  }
};

template <int W>
class LocalScoreCache {
 public:
  using Key = FamilyKey<W>;

  // capacity: most entries kept (0: no bound). n_shards is rounded up to a power of two.
  LocalScoreCache(int n_shards, uint64_t capacity) {
    int s = 1;
    while (s < n_shards) s <<= 1;
    n_shards_ = s;
    shift_ = 64;
    for (int v = s; v > 1; v >>= 1) --shift_;
    shard_capacity_ = capacity == 0 ? 0 : (capacity + static_cast<uint64_t>(s) - 1) / static_cast<uint64_t>(s);
    shards_.reset(new Shard[static_cast<size_t>(s)]);
  }

  // Returns true and writes *value when the key is present.
  bool find(const Key& k, uint64_t h, double* value) const {
    Shard& sh = shard(h);
    bool found;
    {
      std::shared_lock<std::shared_mutex> lock(sh.mu);
      auto it = sh.map.find(KeyH{k, h});
      found = it != sh.map.end();
      if (found) *value = it->second;
    }
    (found ? sh.hits : sh.misses).fetch_add(1, std::memory_order_relaxed);
    return found;
  }

  void insert(const Key& k, uint64_t h, double value) {
    Shard& sh = shard(h);
    std::unique_lock<std::shared_mutex> lock(sh.mu);
    if (shard_capacity_ && sh.map.size() >= shard_capacity_) {
      sh.map.clear();
      sh.evictions.fetch_add(1, std::memory_order_relaxed);
    }
    sh.map.emplace(KeyH{k, h}, value);
  }

  CacheStats stats() const {
    CacheStats st;
    for (int i = 0; i < n_shards_; ++i) {
      Shard& sh = shards_[static_cast<size_t>(i)];
      st.hits += sh.hits.load(std::memory_order_relaxed);
      st.misses += sh.misses.load(std::memory_order_relaxed);
      st.evictions += sh.evictions.load(std::memory_order_relaxed);
      std::shared_lock<std::shared_mutex> lock(sh.mu);
      st.entries += sh.map.size();
    }
    return st;
  }

  void clear() {
    for (int i = 0; i < n_shards_; ++i) {
      Shard& sh = shards_[static_cast<size_t>(i)];
      std::unique_lock<std::shared_mutex> lock(sh.mu);
      sh.map.clear();
      sh.hits.store(0, std::memory_order_relaxed);
      sh.misses.store(0, std::memory_order_relaxed);
      sh.evictions.store(0, std::memory_order_relaxed);
    }
  }

 private:
  // The hash travels with the key so the map does not recompute it.
  struct KeyH {
    Key key;
    uint64_t h;
    bool operator==(const KeyH& o) const { return h == o.h && key == o.key; }
  };
  struct HashOf {
    size_t operator()(const KeyH& k) const { return static_cast<size_t>(k.h); }
  };
  // One cache line per shard's hot fields, so counters of different shards do not false-share.
  struct alignas(64) Shard {
    mutable std::shared_mutex mu;
    std::unordered_map<KeyH, double, HashOf> map;
    mutable std::atomic<uint64_t> hits{0}, misses{0}, evictions{0};
  };
  // The top bits choose the shard; the map buckets use the low bits, so the two stay independent.
  Shard& shard(uint64_t h) const { return shards_[static_cast<size_t>(shift_ >= 64 ? 0 : h >> shift_)]; }

  std::unique_ptr<Shard[]> shards_;
  int n_shards_ = 1;
  int shift_ = 64;
  uint64_t shard_capacity_ = 0;
};

}  // namespace causal
}  // namespace gfn

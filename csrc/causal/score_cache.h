// A thread-safe table of local scores LocalScore(j, Pa_j), keyed by (node j, parent bitset).
//
// A DAG GFlowNet revisits the same (node, parent set) pairs over and over: every rollout step
// asks for one delta score, i.e. two local scores, and nearby graphs share most of their
// families (DAG-GFlowNet keeps an LRU of local scores for the same reason, Deleu et al. 2022,
// dag_gflownet/utils/cache.py). A small family costs only ~50 ns to score, so a lookup must be
// cheaper than that to be worth having: a hash map behind a reader-writer lock is not (measured
// ~65 ns per hit with std::unordered_map + std::shared_mutex, bench/causal_scores.py).
//
// Design: the table is split into shards by the top bits of the key's hash. Each shard is an
// open-addressing table (linear probing, load <= 1/2) guarded by a seqlock:
//  - readers never write shared memory and never wait: they read the shard's version, probe with
//    relaxed atomic loads, and re-read the version; if a writer was active (odd version) or
//    finished in between (version changed), the lookup counts as a miss and the caller computes
//    the score itself (the score is a pure function of the key, so that is always correct);
//  - writers (inserts after a miss) take the shard's mutex, make the version odd, write, and make
//    it even again. A full table doubles; the old slot array is retired, not freed, until the
//    cache is destroyed, because a reader may still be probing it (retired memory is at most the
//    size of the live tables).
// Memory is bounded: a shard that reaches its share of `capacity` is emptied in place before the
// next insert (counted in `evictions`); the entries a training run needs drift with the policy,
// so the recent ones are recomputed once and the stale ones go.
// Hit/miss counters are striped per thread so that counting does not bounce one cache line
// between cores.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

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
    int s = 1, bits = 0;
    while (s < n_shards) s <<= 1, ++bits;
    n_shards_ = s;
    shard_bits_ = bits;
    shard_capacity_ = capacity == 0 ? 0 : (capacity + static_cast<uint64_t>(s) - 1) / static_cast<uint64_t>(s);
    shards_.reset(new Shard[static_cast<size_t>(s)]);
    for (int i = 0; i < s; ++i) shards_[static_cast<size_t>(i)].init(kInitialSlots);
  }
  LocalScoreCache(const LocalScoreCache&) = delete;
  LocalScoreCache& operator=(const LocalScoreCache&) = delete;

  // True (and *value) when the key is present and no writer interfered. Never blocks.
  bool find(const Key& k, uint64_t h, double* value) const {
    const Shard& sh = shard(h);
    bool found = false;
    const uint64_t v1 = sh.version.load(std::memory_order_acquire);
    if (!(v1 & 1)) {
      const Table* t = sh.table.load(std::memory_order_acquire);
      const uint64_t mask = t->mask;
      const uint32_t tag = static_cast<uint32_t>(k.node) + 1;
      double v = 0;
      for (uint64_t i = (h & mask), probes = 0; probes <= mask; i = (i + 1) & mask, ++probes) {
        const Slot& s = t->slots[i];
        const uint32_t n = s.node.load(std::memory_order_relaxed);
        if (n == 0) break;
        if (n != tag) continue;
        bool eq = true;
        for (int w = 0; w < W && eq; ++w) eq = s.words[w].load(std::memory_order_relaxed) == k.words[w];
        if (eq) {
          v = s.value.load(std::memory_order_relaxed);
          found = true;
          break;
        }
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if (sh.version.load(std::memory_order_relaxed) != v1) found = false;
      if (found) *value = v;
    }
    Counter& c = counter();
    (found ? c.hits : c.misses).fetch_add(1, std::memory_order_relaxed);
    return found;
  }

  void insert(const Key& k, uint64_t h, double value) {
    Shard& sh = shard(h);
    std::lock_guard<std::mutex> lock(sh.mu);
    begin_write(sh);
    Table* t = sh.table.load(std::memory_order_relaxed);
    if (shard_capacity_ && sh.size >= shard_capacity_) {
      clear_table(t);
      sh.size = 0;
      sh.evictions.fetch_add(1, std::memory_order_relaxed);
    }
    if (put(t, k, h, value)) ++sh.size;
    if (2 * sh.size > t->mask + 1) grow(sh);
    end_write(sh);
  }

  CacheStats stats() const {
    CacheStats st;
    for (int i = 0; i < kStripes; ++i) {
      st.hits += counters_[i].hits.load(std::memory_order_relaxed);
      st.misses += counters_[i].misses.load(std::memory_order_relaxed);
    }
    for (int i = 0; i < n_shards_; ++i) {
      Shard& sh = shards_[static_cast<size_t>(i)];
      std::lock_guard<std::mutex> lock(sh.mu);
      st.entries += sh.size;
      st.evictions += sh.evictions.load(std::memory_order_relaxed);
    }
    return st;
  }

  // Empties every shard and zeroes the counters. Safe while other threads look up (they see a
  // changed version and miss).
  void clear() {
    for (int i = 0; i < n_shards_; ++i) {
      Shard& sh = shards_[static_cast<size_t>(i)];
      std::lock_guard<std::mutex> lock(sh.mu);
      begin_write(sh);
      clear_table(sh.table.load(std::memory_order_relaxed));
      sh.size = 0;
      sh.evictions.store(0, std::memory_order_relaxed);
      end_write(sh);
    }
    for (int i = 0; i < kStripes; ++i) {
      counters_[i].hits.store(0, std::memory_order_relaxed);
      counters_[i].misses.store(0, std::memory_order_relaxed);
    }
  }

 private:
  static constexpr uint64_t kInitialSlots = 64;
  static constexpr int kStripes = 64;

  // node == 0: empty; otherwise node id + 1. Fields are atomics so that racing readers are
  // well-defined; the seqlock tells them whether what they read is consistent.
  struct Slot {
    std::atomic<uint64_t> words[W];
    std::atomic<uint32_t> node;
    std::atomic<double> value;
  };
  struct Table {
    uint64_t mask;  // slots - 1
    std::unique_ptr<Slot[]> slots;
    explicit Table(uint64_t n) : mask(n - 1), slots(new Slot[n]) {
      for (uint64_t i = 0; i < n; ++i) slots[i].node.store(0, std::memory_order_relaxed);
    }
  };
  struct alignas(64) Shard {
    std::atomic<uint64_t> version{0};
    std::atomic<Table*> table{nullptr};
    std::mutex mu;
    uint64_t size = 0;
    std::atomic<uint64_t> evictions{0};
    std::vector<std::unique_ptr<Table>> tables;  // the live one last; earlier ones retired
    void init(uint64_t n) {
      tables.emplace_back(new Table(n));
      table.store(tables.back().get(), std::memory_order_release);
    }
  };
  struct alignas(64) Counter {
    std::atomic<uint64_t> hits{0}, misses{0};
  };

  static void begin_write(Shard& sh) {
    sh.version.store(sh.version.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
  }
  static void end_write(Shard& sh) {
    sh.version.store(sh.version.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  static void clear_table(Table* t) {
    for (uint64_t i = 0; i <= t->mask; ++i) t->slots[i].node.store(0, std::memory_order_relaxed);
  }
  // Returns true when a new slot was filled (false: the key was already there).
  static bool put(Table* t, const Key& k, uint64_t h, double value) {
    const uint32_t tag = static_cast<uint32_t>(k.node) + 1;
    for (uint64_t i = h & t->mask;; i = (i + 1) & t->mask) {
      Slot& s = t->slots[i];
      const uint32_t n = s.node.load(std::memory_order_relaxed);
      if (n == 0) {
        for (int w = 0; w < W; ++w) s.words[w].store(k.words[w], std::memory_order_relaxed);
        s.value.store(value, std::memory_order_relaxed);
        s.node.store(tag, std::memory_order_relaxed);
        return true;
      }
      if (n != tag) continue;
      bool eq = true;
      for (int w = 0; w < W && eq; ++w) eq = s.words[w].load(std::memory_order_relaxed) == k.words[w];
      if (eq) return false;
    }
  }
  void grow(Shard& sh) {
    Table* old = sh.table.load(std::memory_order_relaxed);
    std::unique_ptr<Table> t(new Table(2 * (old->mask + 1)));
    for (uint64_t i = 0; i <= old->mask; ++i) {
      const Slot& s = old->slots[i];
      const uint32_t n = s.node.load(std::memory_order_relaxed);
      if (n == 0) continue;
      Key k;
      for (int w = 0; w < W; ++w) k.words[w] = s.words[w].load(std::memory_order_relaxed);
      k.node = static_cast<int32_t>(n - 1);
      put(t.get(), k, k.hash(), s.value.load(std::memory_order_relaxed));
    }
    sh.tables.push_back(std::move(t));
    sh.table.store(sh.tables.back().get(), std::memory_order_release);
  }
  // The low bits pick the slot, the top bits the shard, so the two stay independent.
  Shard& shard(uint64_t h) const {
    return shards_[static_cast<size_t>(shard_bits_ ? h >> (64 - shard_bits_) : 0)];
  }
  Counter& counter() const {
    static std::atomic<int> next{0};
    thread_local int stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
    return counters_[stripe];
  }

  std::unique_ptr<Shard[]> shards_;
  mutable Counter counters_[kStripes];
  int n_shards_ = 1;
  int shard_bits_ = 0;
  uint64_t shard_capacity_ = 0;
};

}  // namespace causal
}  // namespace gfn

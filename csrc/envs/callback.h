// An environment whose methods are C callbacks (numba cfuncs compiled from single-state Python
// functions; see gfncore/envs/numba_env.py). The compiled rollout, parent-enumeration, backward
// and query kernels call them through function pointers, in parallel and with the GIL released,
// exactly like the methods of a C++ environment struct. Host-only: a function pointer cannot be
// called on a GPU.
//
// Every callback returns a status (0: ok). A callback that fails (the user's code raised, e.g. an
// index out of bounds under numba's boundscheck) makes the environment record which method
// failed; the binding raises CallbackError after the kernel, and the Python layer re-runs that
// method in Python on the offending states to show the user's own exception.
#pragma once
#include <atomic>
#include <type_traits>
#include <cstdint>
#include <vector>

#include "common/macros.h"
#include "envs/params.h"

namespace gfn {

struct CallbackFns {
  using InitFn = int (*)(int32_t*);
  using MaskFn = int (*)(const int32_t*, uint8_t*);
  using StepFn = int (*)(const int32_t*, int64_t, int32_t*);
  using EncodeFn = int (*)(const int32_t*, float*);
  using RewardFn = int (*)(const int32_t*, double*);
  using ValidFn = int (*)(const int32_t*, uint8_t*);
  InitFn initial = nullptr;
  MaskFn forward_mask = nullptr;
  StepFn step = nullptr;
  MaskFn backward_mask = nullptr;
  StepFn backward_step = nullptr;
  EncodeFn encode = nullptr;
  RewardFn log_reward = nullptr;  // optional: the reward may live in Python instead
  ValidFn valid = nullptr;        // optional: every row is a state when absent
};

// Which callback failed first (0: none), shared by every copy of the struct a kernel makes.
enum CallbackMethod : int {
  kCbNone = 0, kCbInitial, kCbForwardMask, kCbStep, kCbBackwardMask, kCbBackwardStep, kCbEncode, kCbLogReward,
  kCbValid
};
const char* callback_method_name(int m);

struct CallbackEnv {
  static constexpr const char* kName = "callback";
  static constexpr bool kCuda = false;
  // Bounds that keep per-row scratch and index arithmetic small.
  static constexpr int64_t kMaxWidth = int64_t{1} << 24;

  int D = 0, A = 0, F = 0, P = 0, L = 0;
  CallbackFns fn;
  const int32_t* s0 = nullptr;          // the initial state, computed once at construction
  std::atomic<int>* failed = nullptr;   // first failing method (owned by the handle)

  // Built by the handle from the numba route's capsules (envs/handle.cpp), never from a dict.
  static void declare(ParamDecl&) {}
  static CallbackEnv make(const Params& p) { p.fail("build callback environments through gfncore.envs.NumbaEnv"); }

  int n_actions() const { return A; }
  int n_backward_actions() const { return A - 1; }
  int state_dim() const { return D; }
  int feature_dim() const { return F; }
  int max_parents() const { return P; }
  int max_length() const { return L; }
  bool is_stop(int64_t a) const { return a == A - 1; }

  void fail(int method) const {
    int expected = kCbNone;
    failed->compare_exchange_strong(expected, method, std::memory_order_relaxed);
  }
  void initial(int32_t* s) const {
    for (int d = 0; d < D; ++d) s[d] = s0[d];
  }
  bool valid(const int32_t* s) const {
    if (!fn.valid) return true;
    uint8_t ok = 0;
    if (fn.valid(s, &ok) != 0) {
      fail(kCbValid);
      return false;
    }
    return ok != 0;
  }
  static uint8_t* scratch(size_t n) {
    thread_local std::vector<uint8_t> buf;
    if (buf.size() < n) buf.resize(n);
    return buf.data();
  }
  void forward_mask(const int32_t* s, bool* m) const {
    uint8_t* u = scratch(static_cast<size_t>(A));
    for (int a = 0; a < A; ++a) u[a] = 0;
    if (fn.forward_mask(s, u) != 0) {
      fail(kCbForwardMask);
      for (int a = 0; a < A; ++a) m[a] = false;
      return;
    }
    for (int a = 0; a < A; ++a) m[a] = u[a] != 0;  // any nonzero byte is true; m holds only 0/1
  }
  bool legal(const int32_t* s, int64_t a) const {
    if (a < 0 || a >= A) return false;
    uint8_t* u = scratch(static_cast<size_t>(A));
    for (int k = 0; k < A; ++k) u[k] = 0;
    if (fn.forward_mask(s, u) != 0) {
      fail(kCbForwardMask);
      return false;
    }
    return u[a] != 0;
  }
  void step(const int32_t* s, int64_t a, int32_t* out) const {
    if (fn.step(s, a, out) != 0) fail(kCbStep);
  }
  void backward_mask(const int32_t* s, bool* m) const {
    const int nb = A - 1;
    uint8_t* u = scratch(static_cast<size_t>(nb) + 1);
    for (int b = 0; b < nb; ++b) u[b] = 0;
    if (fn.backward_mask(s, u) != 0) {
      fail(kCbBackwardMask);
      for (int b = 0; b < nb; ++b) m[b] = false;
      return;
    }
    for (int b = 0; b < nb; ++b) m[b] = u[b] != 0;
  }
  bool backward_legal(const int32_t* s, int64_t b) const {
    const int nb = A - 1;
    if (b < 0 || b >= nb) return false;
    uint8_t* u = scratch(static_cast<size_t>(nb) + 1);
    for (int k = 0; k < nb; ++k) u[k] = 0;
    if (fn.backward_mask(s, u) != 0) {
      fail(kCbBackwardMask);
      return false;
    }
    return u[b] != 0;
  }
  int n_parents(const int32_t* s) const {
    const int nb = A - 1;
    uint8_t* u = scratch(static_cast<size_t>(nb) + 1);
    for (int k = 0; k < nb; ++k) u[k] = 0;
    if (fn.backward_mask(s, u) != 0) {
      fail(kCbBackwardMask);
      return 0;
    }
    int c = 0;
    for (int k = 0; k < nb; ++k) c += u[k] != 0;
    return c;
  }
  void backward_step(const int32_t* s, int64_t b, int32_t* out) const {
    if (fn.backward_step(s, b, out) != 0) fail(kCbBackwardStep);
  }
  int64_t forward_action_of(int64_t b) const { return b; }
  int64_t backward_action_of(int64_t a) const { return a; }
  bool is_initial(const int32_t* s) const {
    for (int d = 0; d < D; ++d)
      if (s[d] != s0[d]) return false;
    return true;
  }
  template <typename T>
  void encode(const int32_t* s, T* f) const {
    static_assert(std::is_same<T, float>::value, "callback environments encode to float32");
    if (fn.encode(s, f) != 0) fail(kCbEncode);
  }
  double log_reward(const int32_t* s) const {
    double v = 0.0;
    if (!fn.log_reward || fn.log_reward(s, &v) != 0) {
      fail(kCbLogReward);
      return 0.0;
    }
    return v;
  }
};

}  // namespace gfn

// Validation shared by the bindings of the balance objectives over packed, aligned rows:
// every per-row float array has T elements and the dtype of log_pf, offsets is [B + 1] int64.
// (The offsets' values are checked by each kernel's rows through offsets_ok.)
#pragma once
#include "common/tensor_arg.h"

namespace gfn {

// A 1-D float array of n elements with ref's dtype and device.
inline void check_float_array(const TensorArg& t, const TensorArg& ref, int64_t n, const char* what) {
  check_same_dtype(t, ref);
  check_dim(t, 1);
  check_size(t, 0, n, what);
  check_same_device(ref, t);
}

// Returns B, the number of trajectories.
inline int64_t check_offsets_arg(const TensorArg& off, const TensorArg& ref, int64_t T) {
  check_dtype(off, DType::kInt64);
  check_dim(off, 1);
  GFN_CHECK(off.size(0) >= 1, "offsets must have B + 1 >= 1 elements, got shape ", off.shape_str());
  check_same_device(ref, off);
  const int64_t B = off.size(0) - 1;
  if (B == 0) {
    GFN_CHECK(T == 0, "offsets describes no trajectory but ", ref.name, " has ", T, " rows");
    // No trajectory row runs to check the one value (offsets_ok): check it here, where it is
    // readable. (On a GPU an empty batch's offsets[0] goes unread; nothing indexes with it.)
    if (!off.cuda)
      GFN_CHECK(off.data<int64_t>()[0] == 0, "offsets must start at 0, increase strictly (every trajectory has at least "
                "its stop row) and end at T; got [", off.data<int64_t>()[0], "] for no trajectory");
  }
  return B;
}

// log_pf and log_pb, the two [T] float arrays of every objective; returns T.
inline int64_t check_transitions(const TensorArg& pf, const TensorArg& pb) {
  check_cuda_built(pf);
  check_float(pf);
  check_dim(pf, 1);
  const int64_t T = pf.size(0);
  check_float_array(pb, pf, T, "one row per transition, like log_pf");
  return T;
}

struct PackedSizes {
  int64_t T, B;
};

// The inputs of every trajectory-level objective: log_pf [T], log_pb [T], offsets [B + 1],
// log_reward [B].
inline PackedSizes check_packed(const TensorArg& pf, const TensorArg& pb, const TensorArg& off, const TensorArg& lr) {
  const int64_t T = check_transitions(pf, pb);
  const int64_t B = check_offsets_arg(off, pf, T);
  check_float_array(lr, pf, B, "one log-reward per trajectory (len(offsets) - 1)");
  return {T, B};
}

// An output or gradient buffer the Python layer allocated: right dtype, device and size.
inline void check_buffer(const TensorArg& t, const TensorArg& ref, int64_t n) {
  check_same_dtype(t, ref);
  check_same_device(ref, t);
  GFN_CHECK(t.numel == n, t.name, " must have ", n, " elements, got shape ", t.shape_str());
}

// CPU launch threshold: fork threads only when the total row work pays for it.
inline int64_t cpu_grain(int64_t n_items, int64_t total_work) { return total_work >= (1 << 15) ? 0 : n_items; }

}  // namespace gfn

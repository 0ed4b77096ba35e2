// The forward of a ReLU MLP policy (Linear, ReLU, ..., Linear, ReLU, Linear head) over row-major
// float32 rows, for the recording rollout that runs every step in one call (no Python between
// steps). torch-free: the weights are plain pointers; the products go through the sgemm_ of the
// BLAS that torch already loaded into the process (found at run time with dlsym, never linked), so
// each step computes exactly what torch's addmm computes for the same rows (same routine, same
// arguments, same thread settings) and the samples are bit-identical to the per-step path.
#pragma once
#include <cstdint>
#include <vector>

namespace gfn {

// Fortran BLAS sgemm: C = alpha op(A) op(B) + beta C, column-major.
using SgemmFn = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                         const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                         const float* beta, float* c, const int* ldc);

// The process's sgemm_ (torch's BLAS), or null where none is loaded.
SgemmFn process_sgemm();

struct MlpLayer {
  const float* weight;  // [out, in], row-major (a torch Linear's weight)
  const float* bias;    // [out]
  int in, out;
};

// layers: the trunk's Linear layers (each followed by ReLU), then the head (no ReLU).
struct MlpForward {
  std::vector<MlpLayer> layers;
  SgemmFn sgemm = nullptr;

  int n_trunk() const { return static_cast<int>(layers.size()) - 1; }

  // x [m, in] -> logits [m, out of the head]. hidden[l] (l < n_trunk) receives layer l's output
  // after its ReLU, [m, out_l] row-major: the caller's activation rows or a scratch buffer.
  void forward(const float* x, int64_t m, float* const* hidden, float* logits) const;
};

}  // namespace gfn

#include "ops/mlp_rollout.h"

#include <dlfcn.h>

#include <algorithm>
#include <climits>

namespace gfn {

SgemmFn process_sgemm() {
  static const SgemmFn fn = [] {
    // torch's CPU library exports the BLAS it was built with; it is loaded before gfncore._C
    // (DESIGN: import torch first). RTLD_NOLOAD: find it, never load a library of our own.
    for (const char* lib : {"libtorch_cpu.so", "libtorch_cpu.dylib"}) {
      if (void* h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD)) {
        if (void* s = dlsym(h, "sgemm_")) return reinterpret_cast<SgemmFn>(s);
      }
    }
    return reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "sgemm_"));
  }();
  return fn;
}

// One Linear layer on m rows, as torch's addmm(bias, x, W^T) computes it: the bias copied into
// every output row, then C += X W^T with beta = 1. Row-major [m, out] is column-major [out, m]:
// C^T = W X^T, W read transposed from its row-major [out, in] (lda = in), X^T as is (ldb = in).
static void linear(SgemmFn sgemm, const MlpLayer& L, const float* x, int64_t m, float* y) {
  for (int64_t i = 0; i < m; ++i) std::copy(L.bias, L.bias + L.out, y + i * L.out);
  const float one = 1.0f;
  const char t = 't', n = 'n';
  // BLAS takes int sizes: larger batches go in slices of rows
  const int64_t kMax = INT_MAX / std::max(L.in, L.out);
  for (int64_t r = 0; r < m; r += kMax) {
    const int rows = static_cast<int>(std::min<int64_t>(kMax, m - r));
    sgemm(&t, &n, &L.out, &rows, &L.in, &one, L.weight, &L.in, x + r * L.in, &L.in, &one, y + r * L.out, &L.out);
  }
}

void MlpForward::forward(const float* x, int64_t m, float* const* hidden, float* logits) const {
  if (m == 0) return;
  const float* h = x;
  const int nt = n_trunk();
  for (int l = 0; l < nt; ++l) {
    float* y = hidden[l];
    linear(sgemm, layers[static_cast<size_t>(l)], h, m, y);
    const int64_t k = m * layers[static_cast<size_t>(l)].out;
    for (int64_t i = 0; i < k; ++i) y[i] = y[i] < 0.0f ? 0.0f : y[i];  // as torch.relu: NaN stays NaN
    h = y;
  }
  linear(sgemm, layers.back(), h, m, logits);
}

}  // namespace gfn

#include "envs/envs.h"

namespace gfn {

HyperGrid HyperGrid::from_spec(const EnvSpec& s) {
  HyperGrid e;
  GFN_CHECK(s.kind == kKind, "HyperGrid: wrong environment kind ", s.kind);
  GFN_CHECK(s.ints[0] >= 1, "HyperGrid: ndim must be >= 1, got ", s.ints[0]);
  GFN_CHECK(s.ints[1] >= 2, "HyperGrid: height must be >= 2, got ", s.ints[1]);
  GFN_CHECK(s.ints[0] * s.ints[1] <= (1 << 20), "HyperGrid: ndim * height is too large");
  e.ndim = static_cast<int>(s.ints[0]);
  e.height = static_cast<int>(s.ints[1]);
  e.R0 = s.floats[0];
  e.R1 = s.floats[1];
  e.R2 = s.floats[2];
  GFN_CHECK(e.R0 > 0, "HyperGrid: R0 must be > 0 so that every object has a finite log-reward, got ", e.R0);
  GFN_CHECK(e.R1 >= 0 && e.R2 >= 0, "HyperGrid: R1 and R2 must be >= 0, got ", e.R1, " and ", e.R2);
  return e;
}

}  // namespace gfn

namespace gfn {

Ising Ising::from_spec(const EnvSpec& s) {
  Ising e;
  GFN_CHECK(s.kind == kKind, "Ising: wrong environment kind ", s.kind);
  GFN_CHECK(s.ints[0] >= 1 && s.ints[0] <= kMaxSide, "Ising: n must be in [1, ", kMaxSide, "], got ", s.ints[0]);
  e.n = static_cast<int>(s.ints[0]);
  e.J = s.floats[0];
  e.h = s.floats[1];
  e.beta = s.floats[2];
  GFN_CHECK(std::isfinite(e.J), "Ising: J must be finite, got ", e.J);
  GFN_CHECK(std::isfinite(e.h), "Ising: h must be finite, got ", e.h);
  GFN_CHECK(std::isfinite(e.beta) && e.beta >= 0.0, "Ising: beta (inverse temperature) must be finite and >= 0, got ", e.beta);
  // The largest |log R| is beta * (2 |J| + |h|) * n^2: it must be a finite float64.
  GFN_CHECK(std::isfinite(e.beta * (2.0 * std::fabs(e.J) + std::fabs(e.h)) * e.sites()),
            "Ising: beta * (2|J| + |h|) * n^2 overflows; log-rewards would not be finite");
  return e;
}

}  // namespace gfn

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

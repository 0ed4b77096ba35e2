// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/subtb.h"

GFN_INSTANTIATE_ROWS(gfn::SubTBRow<float, false>)
GFN_INSTANTIATE_ROWS(gfn::SubTBRow<float, true>)
GFN_INSTANTIATE_ROWS(gfn::SubTBRow<double, false>)
GFN_INSTANTIATE_ROWS(gfn::SubTBRow<double, true>)

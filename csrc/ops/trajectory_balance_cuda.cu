// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/trajectory_balance.h"

GFN_INSTANTIATE_ROWS(gfn::TBRow<float, false>)
GFN_INSTANTIATE_ROWS(gfn::TBRow<float, true>)
GFN_INSTANTIATE_ROWS(gfn::TBRow<double, false>)
GFN_INSTANTIATE_ROWS(gfn::TBRow<double, true>)

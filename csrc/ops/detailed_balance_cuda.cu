// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/detailed_balance.h"

GFN_INSTANTIATE_ROWS(gfn::DBRow<float, false>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<float, true>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<double, false>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<double, true>)

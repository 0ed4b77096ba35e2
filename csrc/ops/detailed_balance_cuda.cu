// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/detailed_balance.h"

GFN_INSTANTIATE_ROWS(gfn::DBRow<float, false, false>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<float, true, false>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<double, false, false>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<double, true, false>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<float, false, true>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<float, true, true>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<double, false, true>)
GFN_INSTANTIATE_ROWS(gfn::DBRow<double, true, true>)

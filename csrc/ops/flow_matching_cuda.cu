// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/flow_matching.h"

GFN_INSTANTIATE_ROWS(gfn::FMRow<float, false>)
GFN_INSTANTIATE_ROWS(gfn::FMRow<float, true>)
GFN_INSTANTIATE_ROWS(gfn::FMRow<double, false>)
GFN_INSTANTIATE_ROWS(gfn::FMRow<double, true>)

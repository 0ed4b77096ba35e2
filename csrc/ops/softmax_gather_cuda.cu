// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/softmax_gather.h"

GFN_INSTANTIATE_ROWS(gfn::GatherRow<float, false>)
GFN_INSTANTIATE_ROWS(gfn::GatherRow<float, true>)
GFN_INSTANTIATE_ROWS(gfn::GatherRow<double, false>)
GFN_INSTANTIATE_ROWS(gfn::GatherRow<double, true>)

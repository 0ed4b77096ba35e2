// The same GFN_HD functors as the CPU launcher, for every environment, run by the grid-stride
// kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "envs/all.h"
#include "ops/parents.h"

#define GFN_INSTANTIATE(E) GFN_INSTANTIATE_ROWS(gfn::ParentsRow<gfn::E>)
GFN_HANDLE_ENVS(GFN_INSTANTIATE)

// The same GFN_HD functors as the CPU launcher, run by the grid-stride kernel of common/launch_cuda.cuh.
#include "common/launch_cuda.cuh"
#include "ops/modified_db.h"

GFN_INSTANTIATE_ROWS(gfn::MDBRow<float, false>)
GFN_INSTANTIATE_ROWS(gfn::MDBRow<float, true>)
GFN_INSTANTIATE_ROWS(gfn::MDBRow<double, false>)
GFN_INSTANTIATE_ROWS(gfn::MDBRow<double, true>)

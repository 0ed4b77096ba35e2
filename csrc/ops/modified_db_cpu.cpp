#include "common/launch.h"
#include "common/registry.h"
#include "ops/modified_db.h"
#include "ops/packed_args.h"

namespace gfn {

// Forward when grad_out is None (writes out [T]); backward otherwise (writes the four grads).
static void modified_detailed_balance(py::handle log_pf_o, py::handle log_pb_o, py::handle log_pf_stop_o,
                                      py::handle log_reward_state_o, py::handle offsets_o, py::handle out_o,
                                      py::handle grad_out_o, py::handle grad_pf_o, py::handle grad_pb_o,
                                      py::handle grad_pf_stop_o, py::handle grad_reward_state_o, intptr_t stream) {
  TensorArg pf = tensor_arg(log_pf_o, "log_pf"), pb = tensor_arg(log_pb_o, "log_pb"),
            ps = tensor_arg(log_pf_stop_o, "log_pf_stop"), lr = tensor_arg(log_reward_state_o, "log_reward_state"),
            off = tensor_arg(offsets_o, "offsets");
  check_cuda_built(pf);
  check_float(pf);
  check_dim(pf, 1);
  const int64_t T = pf.size(0);
  check_float_array(pb, pf, T, "one row per transition, like log_pf");
  check_float_array(ps, pf, T, "log P_F(stop | s_t) per row, like log_pf");
  check_float_array(lr, pf, T, "log R(s_t) per row, like log_pf");
  const int64_t B = check_offsets_arg(off, pf, T);
  const bool backward = !grad_out_o.is_none();
  auto run = [&](auto tag) {
    using scalar_t = decltype(tag);
    MDBParams<scalar_t> p{};
    p.log_pf = pf.data<scalar_t>();
    p.log_pb = pb.data<scalar_t>();
    p.log_pf_stop = ps.data<scalar_t>();
    p.log_reward_state = lr.data<scalar_t>();
    p.offsets = off.data<int64_t>();
    p.B = B;
    p.T = T;
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, pf, T);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gpf = tensor_arg(grad_pf_o, "grad_log_pf"),
                gpb = tensor_arg(grad_pb_o, "grad_log_pb"), gs = tensor_arg(grad_pf_stop_o, "grad_log_pf_stop"),
                gr = tensor_arg(grad_reward_state_o, "grad_log_reward_state");
      for (const TensorArg* t : {&g, &gpf, &gpb, &gs, &gr}) check_buffer(*t, pf, T);
      p.grad_out = g.data<scalar_t>();
      p.grad_pf = gpf.data<scalar_t>();
      p.grad_pb = gpb.data<scalar_t>();
      p.grad_pf_stop = gs.data<scalar_t>();
      p.grad_reward_state = gr.data<scalar_t>();
    }
    const int64_t grain = cpu_grain(B, T);
    raise_kernel_error(backward ? launch_rows(MDBRow<scalar_t, true>{p, ErrorSink{nullptr}}, B, grain, pf, stream)
                                : launch_rows(MDBRow<scalar_t, false>{p, ErrorSink{nullptr}}, B, grain, pf, stream),
                       "modified_detailed_balance", "trajectory");
  };
  if (pf.dtype == DType::kFloat32) run(float{});
  else run(double{});
}

GFN_BINDINGS(bind_modified_detailed_balance) {
  m.def("modified_detailed_balance", &modified_detailed_balance, py::arg("log_pf"), py::arg("log_pb"),
        py::arg("log_pf_stop"), py::arg("log_reward_state"), py::arg("offsets"), py::arg("out"), py::arg("grad_out"),
        py::arg("grad_log_pf"), py::arg("grad_log_pb"), py::arg("grad_log_pf_stop"), py::arg("grad_log_reward_state"),
        py::arg("stream") = 0);
}

}  // namespace gfn

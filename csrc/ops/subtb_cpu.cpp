#include <cmath>

#include "common/launch.h"
#include "common/registry.h"
#include "common/static_switch.h"
#include "ops/packed_args.h"
#include "ops/subtb.h"

namespace gfn {

// Forward when grad_out is None (writes out [B]); backward otherwise (writes the four grads,
// using `work`, a float64 buffer of T + B elements, as per-node scratch).
static void subtrajectory_balance(py::handle log_pf_o, py::handle log_pb_o, py::handle log_flow_o,
                                  py::handle offsets_o, py::handle log_reward_o, double lam, py::handle out_o,
                                  py::handle grad_out_o, py::handle grad_pf_o, py::handle grad_pb_o,
                                  py::handle grad_flow_o, py::handle grad_reward_o, py::handle work_o, intptr_t stream) {
  GFN_CHECK(std::isfinite(lam) && lam > 0.0, "lam must be a finite number > 0, got ", lam);
  TensorArg pf = tensor_arg(log_pf_o, "log_pf"), pb = tensor_arg(log_pb_o, "log_pb"),
            lf = tensor_arg(log_flow_o, "log_flow"), off = tensor_arg(offsets_o, "offsets"),
            lr = tensor_arg(log_reward_o, "log_reward");
  const PackedSizes sizes = check_packed(pf, pb, off, lr);
  const int64_t T = sizes.T, B = sizes.B;
  check_float_array(lf, pf, T, "one flow per row, like log_pf");
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(pf.dtype, scalar_t, [&] {
    SubTBParams<scalar_t> p{};
    p.log_pf = pf.data<scalar_t>();
    p.log_pb = pb.data<scalar_t>();
    p.log_flow = lf.data<scalar_t>();
    p.offsets = off.data<int64_t>();
    p.log_reward = lr.data<scalar_t>();
    p.B = B;
    p.T = T;
    p.rho = lam <= 1.0 ? lam : 1.0;
    p.eps = lam <= 1.0 ? 1.0 : 1.0 / lam;
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, pf, B);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gpf = tensor_arg(grad_pf_o, "grad_log_pf"),
                gpb = tensor_arg(grad_pb_o, "grad_log_pb"), gf = tensor_arg(grad_flow_o, "grad_log_flow"),
                gr = tensor_arg(grad_reward_o, "grad_log_reward"), w = tensor_arg(work_o, "work");
      check_buffer(g, pf, B);
      check_buffer(gpf, pf, T);
      check_buffer(gpb, pf, T);
      check_buffer(gf, pf, T);
      check_buffer(gr, pf, B);
      check_dtype(w, DType::kFloat64);
      check_same_device(pf, w);
      GFN_CHECK(w.numel == T + B, "work must have T + B elements, got shape ", w.shape_str());
      p.grad_out = g.data<scalar_t>();
      p.grad_pf = gpf.data<scalar_t>();
      p.grad_pb = gpb.data<scalar_t>();
      p.grad_flow = gf.data<scalar_t>();
      p.grad_reward = gr.data<scalar_t>();
      p.work = w.data<double>();
    }
    const int64_t grain = cpu_grain(B, T);
    GFN_BOOL_SWITCH(backward, kBackward, [&] {
      raise_kernel_error(launch_rows(SubTBRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, B, grain, pf, stream),
                         "subtrajectory_balance", "trajectory");
    });
  });
}

GFN_BINDINGS(bind_subtrajectory_balance) {
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "subtrajectory_balance_forward",
      [](py::handle log_pf, py::handle log_pb, py::handle log_flow, py::handle offsets, py::handle log_reward, double lam, py::handle out, intptr_t stream) {
        subtrajectory_balance(log_pf, log_pb, log_flow, offsets, log_reward, lam, out, py::none(), py::none(), py::none(), py::none(), py::none(), py::none(), stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("log_flow"), py::arg("offsets"), py::arg("log_reward"), py::arg("lam"), py::arg("out"), py::arg("stream") = 0);
  m.def(
      "subtrajectory_balance_backward",
      [](py::handle log_pf, py::handle log_pb, py::handle log_flow, py::handle offsets, py::handle log_reward, double lam, py::handle grad_out, py::handle grad_log_pf, py::handle grad_log_pb, py::handle grad_log_flow, py::handle grad_log_reward, py::handle work, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "subtrajectory_balance_backward: grad_out must be a torch.Tensor, got None");
        subtrajectory_balance(log_pf, log_pb, log_flow, offsets, log_reward, lam, py::none(), grad_out, grad_log_pf, grad_log_pb, grad_log_flow, grad_log_reward, work, stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("log_flow"), py::arg("offsets"), py::arg("log_reward"), py::arg("lam"), py::arg("grad_out"), py::arg("grad_log_pf"), py::arg("grad_log_pb"), py::arg("grad_log_flow"), py::arg("grad_log_reward"), py::arg("work"), py::arg("stream") = 0);
}

}  // namespace gfn

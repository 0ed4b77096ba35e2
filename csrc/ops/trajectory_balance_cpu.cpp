#include "common/launch.h"
#include "common/registry.h"
#include "common/static_switch.h"
#include "common/tensor_arg.h"
#include "ops/packed_args.h"
#include "ops/trajectory_balance.h"

namespace gfn {

// Forward when grad_out is None (writes out [B]); backward otherwise (writes the four grads).
static void trajectory_balance(py::handle log_pf_o, py::handle log_pb_o, py::handle offsets_o, py::handle log_reward_o,
                               py::handle log_z_o, py::handle out_o, py::handle grad_out_o, py::handle grad_pf_o,
                               py::handle grad_pb_o, py::handle grad_reward_o, py::handle grad_z_o, intptr_t stream) {
  TensorArg pf = tensor_arg(log_pf_o, "log_pf"), pb = tensor_arg(log_pb_o, "log_pb"), off = tensor_arg(offsets_o, "offsets"),
            lr = tensor_arg(log_reward_o, "log_reward"), lz = tensor_arg(log_z_o, "log_z");
  const PackedSizes sizes = check_packed(pf, pb, off, lr);
  const int64_t T = sizes.T, B = sizes.B;
  check_same_dtype(lz, pf);
  GFN_CHECK(lz.dim() == 0 || (lz.dim() == 1 && lz.size(0) == B), "log_z must be a scalar or have shape [B] = [", B,
            "], got ", lz.shape_str());
  check_same_device(pf, lz);
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(pf.dtype, scalar_t, [&] {
    TBParams<scalar_t> p{};
    p.log_pf = pf.data<scalar_t>();
    p.log_pb = pb.data<scalar_t>();
    p.offsets = off.data<int64_t>();
    p.log_reward = lr.data<scalar_t>();
    p.log_z = lz.data<scalar_t>();
    p.z_stride = lz.dim() == 0 ? 0 : 1;
    p.B = B;
    p.T = T;
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, pf, B);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gpf = tensor_arg(grad_pf_o, "grad_log_pf"),
                gpb = tensor_arg(grad_pb_o, "grad_log_pb"), gr = tensor_arg(grad_reward_o, "grad_log_reward"),
                gz = tensor_arg(grad_z_o, "grad_log_z");
      for (const TensorArg* t : {&g, &gr, &gz}) check_buffer(*t, pf, B);
      for (const TensorArg* t : {&gpf, &gpb}) check_buffer(*t, pf, T);
      p.grad_out = g.data<scalar_t>();
      p.grad_pf = gpf.data<scalar_t>();
      p.grad_pb = gpb.data<scalar_t>();
      p.grad_reward = gr.data<scalar_t>();
      p.grad_z = gz.data<scalar_t>();
    }
    GFN_BOOL_SWITCH(backward, kBackward, [&] {
      raise_kernel_error(launch_rows(TBRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, B, 512, pf, stream),
                         "trajectory_balance", "trajectory");
    });
  });
}

GFN_BINDINGS(bind_trajectory_balance) {
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "trajectory_balance_forward",
      [](py::handle log_pf, py::handle log_pb, py::handle offsets, py::handle log_reward, py::handle log_z, py::handle out, intptr_t stream) {
        trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z, out, py::none(), py::none(), py::none(), py::none(), py::none(), stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("offsets"), py::arg("log_reward"), py::arg("log_z"), py::arg("out"), py::arg("stream") = 0);
  m.def(
      "trajectory_balance_backward",
      [](py::handle log_pf, py::handle log_pb, py::handle offsets, py::handle log_reward, py::handle log_z, py::handle grad_out, py::handle grad_log_pf, py::handle grad_log_pb, py::handle grad_log_reward, py::handle grad_log_z, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "trajectory_balance_backward: grad_out must be a torch.Tensor, got None");
        trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z, py::none(), grad_out, grad_log_pf, grad_log_pb, grad_log_reward, grad_log_z, stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("offsets"), py::arg("log_reward"), py::arg("log_z"), py::arg("grad_out"), py::arg("grad_log_pf"), py::arg("grad_log_pb"), py::arg("grad_log_reward"), py::arg("grad_log_z"), py::arg("stream") = 0);
}

}  // namespace gfn

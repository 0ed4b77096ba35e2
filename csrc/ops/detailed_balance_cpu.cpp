#include "common/launch.h"
#include "common/registry.h"
#include "common/static_switch.h"
#include "ops/detailed_balance.h"
#include "ops/packed_args.h"

namespace gfn {

// Both objectives run DBRow; kModified picks the flow F_t and the stop-row rule (see the header).
template <typename scalar_t, bool kModified>
static void launch_db(const DBParams<scalar_t>& p, const TensorArg& pf, bool backward, intptr_t stream,
                      const char* op) {
  const int64_t grain = cpu_grain(p.B, p.T);
  GFN_BOOL_SWITCH(backward, kBackward, [&] {
    raise_kernel_error(launch_rows(DBRow<scalar_t, kBackward, kModified>{p, ErrorSink{nullptr}}, p.B, grain, pf, stream),
                       op, "trajectory");
  });
}

template <typename scalar_t>
static DBParams<scalar_t> db_params(const TensorArg& pf, const TensorArg& pb, const TensorArg& flow,
                                    const TensorArg* flow_sub, const TensorArg& off, int64_t B, int64_t T) {
  DBParams<scalar_t> p{};
  p.log_pf = pf.data<scalar_t>();
  p.log_pb = pb.data<scalar_t>();
  p.log_flow = flow.data<scalar_t>();
  p.log_flow_sub = flow_sub ? flow_sub->data<scalar_t>() : nullptr;
  p.offsets = off.data<int64_t>();
  p.B = B;
  p.T = T;
  return p;
}

// Forward when grad_out is None (writes out [T]); backward otherwise (writes the four grads).
static void detailed_balance(py::handle log_pf_o, py::handle log_pb_o, py::handle log_flow_o, py::handle offsets_o,
                             py::handle log_reward_o, py::handle out_o, py::handle grad_out_o, py::handle grad_pf_o,
                             py::handle grad_pb_o, py::handle grad_flow_o, py::handle grad_reward_o, intptr_t stream) {
  TensorArg pf = tensor_arg(log_pf_o, "log_pf"), pb = tensor_arg(log_pb_o, "log_pb"),
            lf = tensor_arg(log_flow_o, "log_flow"), off = tensor_arg(offsets_o, "offsets"),
            lr = tensor_arg(log_reward_o, "log_reward");
  const PackedSizes sizes = check_packed(pf, pb, off, lr);
  const int64_t T = sizes.T, B = sizes.B;
  check_float_array(lf, pf, T, "one flow per row, like log_pf");
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(pf.dtype, scalar_t, [&] {
    DBParams<scalar_t> p = db_params<scalar_t>(pf, pb, lf, nullptr, off, B, T);
    p.log_reward = lr.data<scalar_t>();
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, pf, T);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gpf = tensor_arg(grad_pf_o, "grad_log_pf"),
                gpb = tensor_arg(grad_pb_o, "grad_log_pb"), gf = tensor_arg(grad_flow_o, "grad_log_flow"),
                gr = tensor_arg(grad_reward_o, "grad_log_reward");
      for (const TensorArg* t : {&g, &gpf, &gpb, &gf}) check_buffer(*t, pf, T);
      check_buffer(gr, pf, B);
      p.grad_out = g.data<scalar_t>();
      p.grad_pf = gpf.data<scalar_t>();
      p.grad_pb = gpb.data<scalar_t>();
      p.grad_flow = gf.data<scalar_t>();
      p.grad_reward = gr.data<scalar_t>();
    }
    launch_db<scalar_t, false>(p, pf, backward, stream, "detailed_balance");
  });
}

// Forward when grad_out is None (writes out [T]); backward otherwise (writes the four grads).
static void modified_detailed_balance(py::handle log_pf_o, py::handle log_pb_o, py::handle log_pf_stop_o,
                                      py::handle log_reward_state_o, py::handle offsets_o, py::handle out_o,
                                      py::handle grad_out_o, py::handle grad_pf_o, py::handle grad_pb_o,
                                      py::handle grad_pf_stop_o, py::handle grad_reward_state_o, intptr_t stream) {
  TensorArg pf = tensor_arg(log_pf_o, "log_pf"), pb = tensor_arg(log_pb_o, "log_pb"),
            ps = tensor_arg(log_pf_stop_o, "log_pf_stop"), lr = tensor_arg(log_reward_state_o, "log_reward_state"),
            off = tensor_arg(offsets_o, "offsets");
  const int64_t T = check_transitions(pf, pb);
  check_float_array(ps, pf, T, "log P_F(stop | s_t) per row, like log_pf");
  check_float_array(lr, pf, T, "log R(s_t) per row, like log_pf");
  const int64_t B = check_offsets_arg(off, pf, T);
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(pf.dtype, scalar_t, [&] {
    DBParams<scalar_t> p = db_params<scalar_t>(pf, pb, lr, &ps, off, B, T);
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
      p.grad_flow = gr.data<scalar_t>();      // d/d log R(s_t) = d/dF_t
      p.grad_flow_sub = gs.data<scalar_t>();  // d/d log P_F(stop | s_t) = -d/dF_t
    }
    launch_db<scalar_t, true>(p, pf, backward, stream, "modified_detailed_balance");
  });
}

GFN_BINDINGS(bind_detailed_balance) {
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "detailed_balance_forward",
      [](py::handle log_pf, py::handle log_pb, py::handle log_flow, py::handle offsets, py::handle log_reward, py::handle out, intptr_t stream) {
        detailed_balance(log_pf, log_pb, log_flow, offsets, log_reward, out, py::none(), py::none(), py::none(), py::none(), py::none(), stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("log_flow"), py::arg("offsets"), py::arg("log_reward"), py::arg("out"), py::arg("stream") = 0);
  m.def(
      "detailed_balance_backward",
      [](py::handle log_pf, py::handle log_pb, py::handle log_flow, py::handle offsets, py::handle log_reward, py::handle grad_out, py::handle grad_log_pf, py::handle grad_log_pb, py::handle grad_log_flow, py::handle grad_log_reward, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "detailed_balance_backward: grad_out must be a torch.Tensor, got None");
        detailed_balance(log_pf, log_pb, log_flow, offsets, log_reward, py::none(), grad_out, grad_log_pf, grad_log_pb, grad_log_flow, grad_log_reward, stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("log_flow"), py::arg("offsets"), py::arg("log_reward"), py::arg("grad_out"), py::arg("grad_log_pf"), py::arg("grad_log_pb"), py::arg("grad_log_flow"), py::arg("grad_log_reward"), py::arg("stream") = 0);
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "modified_detailed_balance_forward",
      [](py::handle log_pf, py::handle log_pb, py::handle log_pf_stop, py::handle log_reward_state, py::handle offsets, py::handle out, intptr_t stream) {
        modified_detailed_balance(log_pf, log_pb, log_pf_stop, log_reward_state, offsets, out, py::none(), py::none(), py::none(), py::none(), py::none(), stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("log_pf_stop"), py::arg("log_reward_state"), py::arg("offsets"), py::arg("out"), py::arg("stream") = 0);
  m.def(
      "modified_detailed_balance_backward",
      [](py::handle log_pf, py::handle log_pb, py::handle log_pf_stop, py::handle log_reward_state, py::handle offsets, py::handle grad_out, py::handle grad_log_pf, py::handle grad_log_pb, py::handle grad_log_pf_stop, py::handle grad_log_reward_state, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "modified_detailed_balance_backward: grad_out must be a torch.Tensor, got None");
        modified_detailed_balance(log_pf, log_pb, log_pf_stop, log_reward_state, offsets, py::none(), grad_out, grad_log_pf, grad_log_pb, grad_log_pf_stop, grad_log_reward_state, stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("log_pf_stop"), py::arg("log_reward_state"), py::arg("offsets"), py::arg("grad_out"), py::arg("grad_log_pf"), py::arg("grad_log_pb"), py::arg("grad_log_pf_stop"), py::arg("grad_log_reward_state"), py::arg("stream") = 0);
}

}  // namespace gfn

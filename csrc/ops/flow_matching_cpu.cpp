#include "common/launch.h"
#include "common/registry.h"
#include "common/static_switch.h"
#include "common/tensor_arg.h"
#include "ops/flow_matching.h"
#include "ops/packed_args.h"  // check_buffer

namespace gfn {

static void raise_fm_error(unsigned long long packed, int64_t P) {
  if (packed == kNoError) return;
  const int64_t row = static_cast<int64_t>(packed >> 8);
  const int code = static_cast<int>(packed & 0xff);
  if (code == kBadInCount)
    throw ValueError(str("flow_matching: state ", row, ": in_count must be in [0, P] = [0, ", P, "]"));
  if (code == kNoOutEdge)
    throw ValueError(str("flow_matching: state ", row, ": out_mask allows no out-edge (every state needs one, "
                         "a terminal state its stop edge)"));
  raise_kernel_error(packed, "flow_matching", "state");
}

// Forward when grad_out is None (writes out [N]); backward otherwise (writes grad_log_in [N, P]
// and grad_log_out [N, A]).
static void flow_matching(py::handle log_in_o, py::handle in_count_o, py::handle log_out_o, py::handle out_mask_o,
                          py::handle out_o, py::handle grad_out_o, py::handle grad_in_o, py::handle grad_log_out_o,
                          intptr_t stream) {
  TensorArg li = tensor_arg(log_in_o, "log_in"), ic = tensor_arg(in_count_o, "in_count"),
            lo = tensor_arg(log_out_o, "log_out"), om = tensor_arg(out_mask_o, "out_mask");
  check_cuda_built(li);
  check_float(li);
  check_dim(li, 2);
  const int64_t N = li.size(0), P = li.size(1);
  check_dtype(ic, DType::kInt64);
  check_dim(ic, 1);
  check_size(ic, 0, N, "one parent count per state, rows of log_in");
  check_same_dtype(lo, li);
  check_dim(lo, 2);
  check_size(lo, 0, N, "one row per state, like log_in");
  const int64_t A = lo.size(1);
  check_dtype(om, DType::kBool);
  check_dim(om, 2);
  check_size(om, 0, N, "rows of log_out");
  check_size(om, 1, A, "columns of log_out");
  for (const TensorArg* t : {&ic, &lo, &om}) check_same_device(li, *t);
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(li.dtype, scalar_t, [&] {
    FMParams<scalar_t> p{li.data<scalar_t>(), ic.data<int64_t>(), lo.data<scalar_t>(), om.data<uint8_t>(), N, P, A,
                         nullptr, nullptr, nullptr, nullptr};
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, li, N);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gi = tensor_arg(grad_in_o, "grad_log_in"),
                go = tensor_arg(grad_log_out_o, "grad_log_out");
      check_buffer(g, li, N);
      check_buffer(gi, li, N * P);
      check_buffer(go, li, N * A);
      p.grad_out = g.data<scalar_t>();
      p.grad_in = gi.data<scalar_t>();
      p.grad_log_out = go.data<scalar_t>();
    }
    const int64_t grain = N * (P + A) >= (1 << 15) ? 0 : N;
    GFN_BOOL_SWITCH(backward, kBackward, [&] {
      raise_fm_error(launch_rows(FMRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, N, grain, li, stream), P);
    });
  });
}

GFN_BINDINGS(bind_flow_matching) {
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "flow_matching_forward",
      [](py::handle log_in, py::handle in_count, py::handle log_out, py::handle out_mask, py::handle out, intptr_t stream) {
        flow_matching(log_in, in_count, log_out, out_mask, out, py::none(), py::none(), py::none(), stream);
      },
      py::arg("log_in"), py::arg("in_count"), py::arg("log_out"), py::arg("out_mask"), py::arg("out"), py::arg("stream") = 0);
  m.def(
      "flow_matching_backward",
      [](py::handle log_in, py::handle in_count, py::handle log_out, py::handle out_mask, py::handle grad_out, py::handle grad_log_in, py::handle grad_log_out, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "flow_matching_backward: grad_out must be a torch.Tensor, got None");
        flow_matching(log_in, in_count, log_out, out_mask, py::none(), grad_out, grad_log_in, grad_log_out, stream);
      },
      py::arg("log_in"), py::arg("in_count"), py::arg("log_out"), py::arg("out_mask"), py::arg("grad_out"), py::arg("grad_log_in"), py::arg("grad_log_out"), py::arg("stream") = 0);
}

}  // namespace gfn

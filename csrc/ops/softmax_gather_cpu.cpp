#include "common/launch.h"
#include "common/registry.h"
#include "common/static_switch.h"
#include "common/tensor_arg.h"
#include "ops/packed_args.h"  // check_buffer
#include "ops/softmax_gather.h"

namespace gfn {

// Forward when grad_out is None (writes out [N]); backward otherwise (writes grad_logits [N, A]).
static void masked_log_softmax_gather(py::handle logits_o, py::handle mask_o, py::handle actions_o, py::handle out_o,
                                      py::handle grad_out_o, py::handle grad_logits_o, intptr_t stream) {
  TensorArg logits = tensor_arg(logits_o, "logits"), mask = tensor_arg(mask_o, "mask"),
            actions = tensor_arg(actions_o, "actions");
  check_cuda_built(logits);
  check_float(logits);
  check_dim(logits, 2);
  const int64_t N = logits.size(0), A = logits.size(1);
  check_dtype(mask, DType::kBool);
  check_dim(mask, 2);
  check_size(mask, 0, N, "rows of logits");
  check_size(mask, 1, A, "columns of logits");
  check_dtype(actions, DType::kInt64);
  check_dim(actions, 1);
  check_size(actions, 0, N, "rows of logits");
  check_same_device(logits, mask);
  check_same_device(logits, actions);
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(logits.dtype, scalar_t, [&] {
    GatherParams<scalar_t> p{logits.data<scalar_t>(), mask.data<uint8_t>(), actions.data<int64_t>(), A, nullptr, nullptr,
                             nullptr};
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, logits, N);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gl = tensor_arg(grad_logits_o, "grad_logits");
      check_buffer(g, logits, N);
      check_buffer(gl, logits, N * A);
      p.grad_out = g.data<scalar_t>();
      p.grad_logits = gl.data<scalar_t>();
    }
    GFN_BOOL_SWITCH(backward, kBackward, [&] {
      raise_kernel_error(launch_rows(GatherRow<scalar_t, kBackward>{p, ErrorSink{nullptr}}, N, 1024, logits, stream),
                         "masked_log_softmax_gather", "row");
    });
  });
}

GFN_BINDINGS(bind_softmax_gather) {
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "masked_log_softmax_gather_forward",
      [](py::handle logits, py::handle mask, py::handle actions, py::handle out, intptr_t stream) {
        masked_log_softmax_gather(logits, mask, actions, out, py::none(), py::none(), stream);
      },
      py::arg("logits"), py::arg("mask"), py::arg("actions"), py::arg("out"), py::arg("stream") = 0);
  m.def(
      "masked_log_softmax_gather_backward",
      [](py::handle logits, py::handle mask, py::handle actions, py::handle grad_out, py::handle grad_logits, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "masked_log_softmax_gather_backward: grad_out must be a torch.Tensor, got None");
        masked_log_softmax_gather(logits, mask, actions, py::none(), grad_out, grad_logits, stream);
      },
      py::arg("logits"), py::arg("mask"), py::arg("actions"), py::arg("grad_out"), py::arg("grad_logits"), py::arg("stream") = 0);
}

}  // namespace gfn

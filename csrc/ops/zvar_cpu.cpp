#include "common/launch.h"
#include "common/registry.h"
#include "common/static_switch.h"
#include "ops/packed_args.h"
#include "ops/zvar.h"

namespace gfn {

// Forward when grad_out is None (writes out [B]); backward otherwise (writes the three grads).
// `work` is a float64 buffer of B + 2 elements (per-trajectory zeta, the mean, the reduction).
static void log_partition_variance(py::handle log_pf_o, py::handle log_pb_o, py::handle offsets_o,
                                   py::handle log_reward_o, py::handle out_o, py::handle grad_out_o,
                                   py::handle grad_pf_o, py::handle grad_pb_o, py::handle grad_reward_o,
                                   py::handle work_o, intptr_t stream) {
  TensorArg pf = tensor_arg(log_pf_o, "log_pf"), pb = tensor_arg(log_pb_o, "log_pb"),
            off = tensor_arg(offsets_o, "offsets"), lr = tensor_arg(log_reward_o, "log_reward"),
            w = tensor_arg(work_o, "work");
  const PackedSizes sizes = check_packed(pf, pb, off, lr);
  const int64_t T = sizes.T, B = sizes.B;
  check_dtype(w, DType::kFloat64);
  check_same_device(pf, w);
  GFN_CHECK(w.numel == B + 2, "work must have B + 2 elements, got shape ", w.shape_str());
  if (B == 0) return;
  const bool backward = !grad_out_o.is_none();
  GFN_FLOAT_SWITCH(pf.dtype, scalar_t, [&] {
    ZVarParams<scalar_t> p{};
    p.log_pf = pf.data<scalar_t>();
    p.log_pb = pb.data<scalar_t>();
    p.offsets = off.data<int64_t>();
    p.log_reward = lr.data<scalar_t>();
    p.B = B;
    p.T = T;
    p.work = w.data<double>();
    if (!backward) {
      TensorArg out = tensor_arg(out_o, "out");
      check_buffer(out, pf, B);
      p.out = out.data<scalar_t>();
    } else {
      TensorArg g = tensor_arg(grad_out_o, "grad_out"), gpf = tensor_arg(grad_pf_o, "grad_log_pf"),
                gpb = tensor_arg(grad_pb_o, "grad_log_pb"), gr = tensor_arg(grad_reward_o, "grad_log_reward");
      check_buffer(g, pf, B);
      check_buffer(gpf, pf, T);
      check_buffer(gpb, pf, T);
      check_buffer(gr, pf, B);
      p.grad_out = g.data<scalar_t>();
      p.grad_pf = gpf.data<scalar_t>();
      p.grad_pb = gpb.data<scalar_t>();
      p.grad_reward = gr.data<scalar_t>();
    }
    const unsigned long long e = GFN_BOOL_SWITCH(backward, kBackward, [&] {
      if (pf.cuda) {
#if GFN_WITH_CUDA
        return zvar_cuda<scalar_t, kBackward>(p, reinterpret_cast<void*>(stream), pf.device_index);
#else
        check_cuda_built(pf);
        return kNoError;
#endif
      }
      py::gil_scoped_release nogil;
      const int64_t grain = cpu_grain(B, T);
      unsigned long long err = run_rows_cpu(B, grain, ZVarRow<scalar_t, 0, kBackward>{p, ErrorSink{nullptr}});
      if (err != kNoError) return err;
      run_rows_cpu(1, 1, ZVarRow<scalar_t, 1, kBackward>{p, ErrorSink{nullptr}});
      return run_rows_cpu(B, grain, ZVarRow<scalar_t, 2, kBackward>{p, ErrorSink{nullptr}});
    });
    raise_kernel_error(e, "log_partition_variance", "trajectory");
  });
}

GFN_BINDINGS(bind_log_partition_variance) {
  // Forward and backward are separate entry points (each takes only its own buffers).
  m.def(
      "log_partition_variance_forward",
      [](py::handle log_pf, py::handle log_pb, py::handle offsets, py::handle log_reward, py::handle out, py::handle work, intptr_t stream) {
        log_partition_variance(log_pf, log_pb, offsets, log_reward, out, py::none(), py::none(), py::none(), py::none(), work, stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("offsets"), py::arg("log_reward"), py::arg("out"), py::arg("work"), py::arg("stream") = 0);
  m.def(
      "log_partition_variance_backward",
      [](py::handle log_pf, py::handle log_pb, py::handle offsets, py::handle log_reward, py::handle grad_out, py::handle grad_log_pf, py::handle grad_log_pb, py::handle grad_log_reward, py::handle work, intptr_t stream) {
        GFN_CHECK_TYPE(!grad_out.is_none(), "log_partition_variance_backward: grad_out must be a torch.Tensor, got None");
        log_partition_variance(log_pf, log_pb, offsets, log_reward, py::none(), grad_out, grad_log_pf, grad_log_pb, grad_log_reward, work, stream);
      },
      py::arg("log_pf"), py::arg("log_pb"), py::arg("offsets"), py::arg("log_reward"), py::arg("grad_out"), py::arg("grad_log_pf"), py::arg("grad_log_pb"), py::arg("grad_log_reward"), py::arg("work"), py::arg("stream") = 0);
}

}  // namespace gfn

// Runtime flags as compile-time constants (after mamba's static_switch.h): the binding picks a
// kernel instantiation once, and the row functor's hot loop has no branch on the option.
//
//   GFN_BOOL_SWITCH(backward, kBackward, [&] { launch(Row<scalar_t, kBackward>{...}); });
//   GFN_FLOAT_SWITCH(pf.dtype, scalar_t, [&] { ... scalar_t ... });
//
// The lambda's return value is returned; both branches must return the same type.
#pragma once

#define GFN_BOOL_SWITCH(COND, CONST_NAME, ...) \
  [&] {                                        \
    if (COND) {                                \
      constexpr bool CONST_NAME = true;        \
      return __VA_ARGS__();                    \
    } else {                                   \
      constexpr bool CONST_NAME = false;       \
      return __VA_ARGS__();                    \
    }                                          \
  }()

// DTYPE is a gfn::DType the binding has already checked to be float32 or float64
// (check_float); float64 is taken for anything that is not float32.
#define GFN_FLOAT_SWITCH(DTYPE, TYPE_NAME, ...)       \
  [&] {                                               \
    if ((DTYPE) == ::gfn::DType::kFloat32) {          \
      using TYPE_NAME = float;                        \
      return __VA_ARGS__();                           \
    } else {                                          \
      using TYPE_NAME = double;                       \
      return __VA_ARGS__();                           \
    }                                                 \
  }()

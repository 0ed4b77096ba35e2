// Every compiled environment, and the dispatch from a runtime EnvSpec to its struct type.
// Adding an environment: include its header and add one case below.
#pragma once
#include "common/check.h"
#include "envs/hypergrid.h"
#include "envs/ising.h"
#include "envs/spec.h"

// X-macro of every environment struct: CUDA files instantiate their launchers from it.
#define GFN_FOR_EACH_ENV(X) X(::gfn::HyperGrid) X(::gfn::Ising)

#define GFN_DISPATCH_ENV(spec, ENV, ...)                                   \
  [&] {                                                                     \
    switch ((spec).kind) {                                                  \
      case ::gfn::HyperGrid::kKind: {                                       \
        using ENV = ::gfn::HyperGrid;                                       \
        return __VA_ARGS__();                                               \
      }                                                                     \
      case ::gfn::Ising::kKind: {                                           \
        using ENV = ::gfn::Ising;                                           \
        return __VA_ARGS__();                                               \
      }                                                                     \
      default:                                                              \
        throw ::gfn::ValueError(::gfn::str("unknown environment kind ", (spec).kind)); \
    }                                                                       \
  }()

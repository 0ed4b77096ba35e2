// The registry of compiled environments: one line each in GFN_ENVS. Every dispatch (the
// std::variant the handle holds, _C.Env(name, params), _C.env_kinds(), the CUDA launcher
// instantiations) is generated from this list. Adding an environment: write its header in
// csrc/envs/ (a struct with GFN_HD methods, kName, kCuda, declare(), make(); hypergrid.h is the
// model, envs/concept.h lists every member and names a missing one), include it here and add
// X(Name) to the list.
#pragma once
#include <variant>

#include "envs/assignment.h"
#include "envs/bit_sequence.h"
#include "envs/callback.h"
#include "envs/concept.h"
#include "envs/dag.h"
#include "envs/hypergrid.h"
#include "envs/ising.h"
#include "envs/set_addition.h"

#define GFN_ENVS(X) X(HyperGrid) X(Ising) X(BitSequence) X(SetAddition) X(Assignment) X(DAG)

// What a handle may hold: the registry, plus the numba route's callback environment (built by
// _C.callback_env from compiled callbacks, never by name, so it is not in the registry).
#define GFN_HANDLE_ENVS(X) GFN_ENVS(X) X(CallbackEnv)

GFN_HANDLE_ENVS(GFN_CHECK_ENV)

namespace gfn {

#define GFN_ENV_ALTERNATIVE(E) , E
// monostate first: a default-constructed handle holds no environment (never handed to a kernel).
using AnyEnv = std::variant<std::monostate GFN_HANDLE_ENVS(GFN_ENV_ALTERNATIVE)>;
#undef GFN_ENV_ALTERNATIVE

}  // namespace gfn

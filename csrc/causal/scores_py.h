// The compiled score behind a Python score object, for other bindings (the DAG environment):
// they co-own it, so it lives as long as the longest holder.
#pragma once
#include <pybind11/pybind11.h>

#include <memory>

#include "causal/scores.h"

namespace gfn {
namespace causal {

// obj: a gfncore._C.CausalScore or a gfncore.causal.CausalScore (its `_c`). Raises TypeError otherwise.
std::shared_ptr<const CausalScore> causal_score_from_python(pybind11::handle obj);

}  // namespace causal
}  // namespace gfn

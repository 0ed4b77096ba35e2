// Environment parameters, declared once. Each environment lists its parameters in
// `static void declare(ParamDecl&)` (name, type, default, bounds, help) and builds itself from
// validated values in `static Env make(const Params&)`. The binding (envs/handle.cpp) parses a
// Python dict against the declaration: integers must be exact Python ints and are range-checked
// before they are narrowed, floats must be finite (or satisfy the declared bounds), tensors have
// their dtype, rank and device checked and are pinned for the environment's lifetime. Python and
// the CLI read the same declaration through _C.env_kinds(), so no limit is restated in Python.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/tensor_view.h"

namespace gfn {

enum class ParamType : int { kInt = 0, kFloat = 1, kBool = 2, kTensor = 3 };

struct ParamInfo {
  std::string name, help;
  ParamType type = ParamType::kInt;
  int64_t int_default = 0, int_lo = 0, int_hi = 0;
  double float_default = 0.0, float_lo = -std::numeric_limits<double>::infinity(),
         float_hi = std::numeric_limits<double>::infinity();
  bool lo_open = false;  // a float bound that excludes lo (e.g. R0 > 0)
  bool bool_default = false;
  DType dtype = DType::kOther;  // tensors: required dtype,
  int rank = -1;                // rank (-1: any),
  bool optional = false;        // and whether it may be omitted
};

class ParamDecl {
 public:
  ParamDecl& integer(const char* name, int64_t def, int64_t lo, int64_t hi, const char* help) {
    ParamInfo p;
    p.name = name, p.help = help, p.type = ParamType::kInt;
    p.int_default = def, p.int_lo = lo, p.int_hi = hi;
    items_.push_back(p);
    return *this;
  }
  // Finite values in [lo, hi] ((lo, hi] with lo_open).
  ParamDecl& real(const char* name, double def, double lo, double hi, const char* help, bool lo_open = false) {
    ParamInfo p;
    p.name = name, p.help = help, p.type = ParamType::kFloat;
    p.float_default = def, p.float_lo = lo, p.float_hi = hi, p.lo_open = lo_open;
    items_.push_back(p);
    return *this;
  }
  ParamDecl& flag(const char* name, bool def, const char* help) {
    ParamInfo p;
    p.name = name, p.help = help, p.type = ParamType::kBool, p.bool_default = def;
    items_.push_back(p);
    return *this;
  }
  // A CPU tensor parameter (a data matrix, a reward table), read by pointer.
  ParamDecl& tensor(const char* name, DType dtype, int rank, const char* help, bool optional = false) {
    ParamInfo p;
    p.name = name, p.help = help, p.type = ParamType::kTensor;
    p.dtype = dtype, p.rank = rank, p.optional = optional;
    items_.push_back(p);
    return *this;
  }
  const std::vector<ParamInfo>& items() const { return items_; }

 private:
  std::vector<ParamInfo> items_;
};

// Validated parameter values, looked up by name. Every declared parameter is present (defaults
// filled in), except optional tensors that were not given.
class Params {
 public:
  explicit Params(std::string env) : env_(std::move(env)) {}

  int64_t integer(const std::string& name) const { return find(name, ParamType::kInt).i; }
  // The declared bounds of an int parameter keep it in int range; checked once more here.
  int as_int(const std::string& name) const {
    const int64_t v = integer(name);
    GFN_CHECK(v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max(), env_, ": ", name,
              " = ", v, " does not fit in a C int");
    return static_cast<int>(v);
  }
  double real(const std::string& name) const { return find(name, ParamType::kFloat).f; }
  bool flag(const std::string& name) const { return find(name, ParamType::kBool).i != 0; }
  // Null when an optional tensor was not given.
  const TensorArg* tensor(const std::string& name) const {
    const Value& v = find(name, ParamType::kTensor);
    return v.present ? &v.t : nullptr;
  }
  // Cross-parameter checks in make() raise through here, so every message names the environment.
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    throw ValueError(str(env_, ": ", args...));
  }
  // Keeps an object (a score cache, a derived table) alive as long as the environment.
  void own(std::shared_ptr<void> p) const { owned_.push_back(std::move(p)); }
  const std::string& env() const { return env_; }

  // -- filled by the parser --
  struct Value {
    std::string name;
    ParamType type;
    int64_t i = 0;
    double f = 0.0;
    TensorArg t;
    bool present = true;
  };
  void set(Value v) { values_.push_back(std::move(v)); }
  std::vector<std::shared_ptr<void>>& owned() const { return owned_; }

 private:
  const Value& find(const std::string& name, ParamType type) const {
    for (const Value& v : values_)
      if (v.name == name) {
        if (v.type != type) throw ValueError(str(env_, ": parameter ", name, " read with the wrong type"));
        return v;
      }
    throw ValueError(str(env_, ": no parameter named ", name));
  }
  std::string env_;
  std::vector<Value> values_;
  mutable std::vector<std::shared_ptr<void>> owned_;
};

}  // namespace gfn

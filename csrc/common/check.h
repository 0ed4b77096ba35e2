// Named checks that raise Python exceptions (through pybind11's translation of std exceptions).
// Never exit() or abort(): the process belongs to the user.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace gfn {

// pybind11 maps std::invalid_argument to ValueError; TypeError is registered in bindings.cpp.
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
inline void cat(std::ostringstream&) {}
template <typename T, typename... Rest>
void cat(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  cat(os, rest...);
}
}  // namespace detail

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::cat(os, args...);
  return os.str();
}

}  // namespace gfn

#define GFN_CHECK(cond, ...)                                  \
  do {                                                        \
    if (!(cond)) throw ::gfn::ValueError(::gfn::str(__VA_ARGS__)); \
  } while (0)

#define GFN_CHECK_TYPE(cond, ...)                             \
  do {                                                        \
    if (!(cond)) throw ::gfn::TypeError(::gfn::str(__VA_ARGS__)); \
  } while (0)

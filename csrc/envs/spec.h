// An environment crosses the Python boundary as a kind plus a few numbers; each env struct
// rebuilds itself from them (and validates them) on the host.
#pragma once
#include <cstdint>

namespace gfn {

struct EnvSpec {
  static constexpr int kMaxParams = 8;
  int kind = 0;
  int64_t ints[kMaxParams] = {0};
  double floats[kMaxParams] = {0};
};

}  // namespace gfn

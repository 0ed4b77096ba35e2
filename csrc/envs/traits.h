// Optional parts of the environment struct concept, detected at compile time.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

namespace gfn {

// Whether an environment computes the reward difference along a move itself,
// log_reward_delta(s, a) = log R(step(s, a)) - log R(s), cheaper than two full rewards (a modular
// reward: a DAG's score changes in one family per edge). Modified DB uses it when present
// (the env query kLogRewardDelta; Env.log_reward_delta in Python).
template <class Env, class = void>
struct HasLogRewardDelta : std::false_type {};
template <class Env>
struct HasLogRewardDelta<Env, std::void_t<decltype(std::declval<const Env&>().log_reward_delta(
                                  static_cast<const int32_t*>(nullptr), int64_t{0}))>> : std::true_type {};

}  // namespace gfn

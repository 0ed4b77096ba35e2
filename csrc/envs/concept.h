// The C++ environment contract, checked: every member the compiled templates (rollout, parents,
// backward rollout, queries, the handle) call on an environment struct, one readable
// static_assert each. A struct missing one fails to build with one line naming it, e.g.
//   error: static assertion failed: gfncore environment struct: missing `int n_backward_actions() const`
// instead of a wall of template errors: the registry (envs/all.h) checks every listed struct with
// GFN_CHECK_ENV, and the dispatch (envs/handle.h, envs/handle.cpp) never instantiates an op for a
// struct that fails the check. The list is the one in gfncore/envs/contract.py (CPP_MEMBERS), in
// the same order; tests/test_contract.py holds the two equal and compiles a struct missing a member.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

#include "envs/params.h"

namespace gfn {
namespace env_concept {

// has_<member><E>: whether E answers the member with the signature the templates use.
#define GFN_ENV_MEMBER(member, expr)                                             \
  template <class E, class = void>                                              \
  struct has_##member : std::false_type {};                                     \
  template <class E>                                                            \
  struct has_##member<E, std::void_t<decltype(expr)>> : std::true_type {};

#define GFN_E std::declval<const E&>()
#define GFN_S static_cast<const int32_t*>(nullptr)
#define GFN_W static_cast<int32_t*>(nullptr)
#define GFN_A int64_t{0}
GFN_ENV_MEMBER(kName, static_cast<const char*>(E::kName))
GFN_ENV_MEMBER(kCuda, static_cast<bool>(E::kCuda))
GFN_ENV_MEMBER(declare, E::declare(std::declval<ParamDecl&>()))
GFN_ENV_MEMBER(make, static_cast<E>(E::make(std::declval<const Params&>())))
GFN_ENV_MEMBER(n_actions, static_cast<int64_t>(GFN_E.n_actions()))
GFN_ENV_MEMBER(n_backward_actions, static_cast<int64_t>(GFN_E.n_backward_actions()))
GFN_ENV_MEMBER(state_dim, static_cast<int64_t>(GFN_E.state_dim()))
GFN_ENV_MEMBER(feature_dim, static_cast<int64_t>(GFN_E.feature_dim()))
GFN_ENV_MEMBER(max_parents, static_cast<int64_t>(GFN_E.max_parents()))
GFN_ENV_MEMBER(max_length, static_cast<int64_t>(GFN_E.max_length()))
GFN_ENV_MEMBER(is_stop, static_cast<bool>(GFN_E.is_stop(GFN_A)))
GFN_ENV_MEMBER(initial, GFN_E.initial(GFN_W))
GFN_ENV_MEMBER(valid, static_cast<bool>(GFN_E.valid(GFN_S)))
GFN_ENV_MEMBER(legal, static_cast<bool>(GFN_E.legal(GFN_S, GFN_A)))
GFN_ENV_MEMBER(forward_mask, GFN_E.forward_mask(GFN_S, static_cast<bool*>(nullptr)))
GFN_ENV_MEMBER(step, GFN_E.step(GFN_S, GFN_A, GFN_W))
GFN_ENV_MEMBER(backward_legal, static_cast<bool>(GFN_E.backward_legal(GFN_S, GFN_A)))
GFN_ENV_MEMBER(backward_mask, GFN_E.backward_mask(GFN_S, static_cast<bool*>(nullptr)))
GFN_ENV_MEMBER(n_parents, static_cast<int64_t>(GFN_E.n_parents(GFN_S)))
GFN_ENV_MEMBER(backward_step, GFN_E.backward_step(GFN_S, GFN_A, GFN_W))
GFN_ENV_MEMBER(forward_action_of, static_cast<int64_t>(GFN_E.forward_action_of(GFN_A)))
GFN_ENV_MEMBER(backward_action_of, static_cast<int64_t>(GFN_E.backward_action_of(GFN_A)))
GFN_ENV_MEMBER(is_initial, static_cast<bool>(GFN_E.is_initial(GFN_S)))
GFN_ENV_MEMBER(encode, GFN_E.encode(GFN_S, static_cast<float*>(nullptr)))
GFN_ENV_MEMBER(log_reward, static_cast<double>(GFN_E.log_reward(GFN_S)))
#undef GFN_E
#undef GFN_S
#undef GFN_W
#undef GFN_A
#undef GFN_ENV_MEMBER

// X(member, what it must be): the list, in gfncore/envs/contract.py's order.
#define GFN_ENV_MEMBERS(X)                                                                 \
  X(kName, "static constexpr const char* kName")                                           \
  X(kCuda, "static constexpr bool kCuda")                                                  \
  X(declare, "static void declare(ParamDecl&)")                                            \
  X(make, "static E make(const Params&)")                                                  \
  X(n_actions, "int n_actions() const")                                                    \
  X(n_backward_actions, "int n_backward_actions() const")                                  \
  X(state_dim, "int state_dim() const")                                                    \
  X(feature_dim, "int feature_dim() const")                                                \
  X(max_parents, "int max_parents() const")                                                \
  X(max_length, "int max_length() const")                                                  \
  X(is_stop, "bool is_stop(int64_t a) const")                                              \
  X(initial, "void initial(int32_t* s) const")                                             \
  X(valid, "bool valid(const int32_t* s) const")                                           \
  X(legal, "bool legal(const int32_t* s, int64_t a) const")                                \
  X(forward_mask, "void forward_mask(const int32_t* s, bool* m) const")                    \
  X(step, "void step(const int32_t* s, int64_t a, int32_t* out) const")                    \
  X(backward_legal, "bool backward_legal(const int32_t* s, int64_t b) const")              \
  X(backward_mask, "void backward_mask(const int32_t* s, bool* m) const")                  \
  X(n_parents, "int n_parents(const int32_t* s) const")                                    \
  X(backward_step, "void backward_step(const int32_t* s, int64_t b, int32_t* out) const")  \
  X(forward_action_of, "int64_t forward_action_of(int64_t b) const")                       \
  X(backward_action_of, "int64_t backward_action_of(int64_t a) const")                     \
  X(is_initial, "bool is_initial(const int32_t* s) const")                                 \
  X(encode, "template <typename F> void encode(const int32_t* s, F* f) const")             \
  X(log_reward, "double log_reward(const int32_t* s) const")

}  // namespace env_concept

// Whether E is a complete environment struct (the dispatch instantiates ops only for those).
#define GFN_ENV_HAS(member, what) &&env_concept::has_##member<E>::value
template <class E>
struct IsGfnEnv : std::bool_constant<true GFN_ENV_MEMBERS(GFN_ENV_HAS)> {};
#undef GFN_ENV_HAS

// One static_assert per member, each naming what is missing.
#define GFN_ENV_ASSERT(member, what) \
  static_assert(env_concept::has_##member<E>::value, "gfncore environment struct: missing `" what "`");
template <class E>
struct CheckGfnEnv {
  GFN_ENV_MEMBERS(GFN_ENV_ASSERT)
  static constexpr bool value = true;
};
#undef GFN_ENV_ASSERT

}  // namespace gfn

// At namespace scope, after the struct: GFN_CHECK_ENV(HyperGrid) (a name inside namespace gfn).
#define GFN_CHECK_ENV(E) static_assert(::gfn::CheckGfnEnv<::gfn::E>::value, "");

"""The environment contract, declared once.

Every route writes the same methods under the same names: batched torch methods (PythonEnv),
single-state numba functions compiled to C callbacks (NumbaEnv), or the members of a C++ struct
(csrc/envs/). From the declarations below come the PythonEnv method list, the NumbaEnv
signatures, arity checks and diagnostics, check_env's list of batched methods, the constructor
arguments both base classes share, and the README's tables (``python -m gfncore.envs.contract``
prints them; tests/test_contract.py checks the README and the C++ concept check, csrc/envs/concept.h,
against them)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One method of the contract, in the two routes written in Python.

    batched: the PythonEnv method's arguments after self, and what it returns (shapes in
    symbols: N states, D = state_dim, A = n_actions, F = feature_dim). single: the numba
    function's parameters (``p`` is the frozen parameter tuple; an array parameter carries its
    length, ``mask[A]``) and what it does.
    c_signature: the C signature of the callback the compiled kernels call (also the capsule's
    name, checked in C++). cpp: the C++ struct members that answer it."""

    name: str
    required: bool
    default: str            # what an environment that omits it gets ("" when required)
    batched_args: str
    returns: str
    single_args: tuple[str, ...]
    single_does: str
    c_signature: str
    cpp: str


# C element types of the callback parameters, and their numba spelling.
_NUMBA_TYPES = {"int32_t *": "int32p", "const int32_t *": "int32p", "uint8_t *": "uint8p", "float *": "float32p",
                "double *": "float64p", "int64_t": "int64"}

METHODS: tuple[Method, ...] = (
    Method("initial_state", True, "", "", "int [D]: s0",
           ("p", "s[D]"), "write s0 into s (int32 [D])",
           "gfncore.initial_state: int (int32_t *)", "initial(s)"),
    Method("forward_mask", True, "", "states", "bool [N, A]: legal actions, the last one stop",
           ("p", "s[D]", "mask[A]"), "write legality into mask (uint8 [A])",
           "gfncore.mask: int (const int32_t *, uint8_t *)", "forward_mask(s, m), legal(s, a)"),
    Method("step", True, "", "states, actions", "int [N, D]: the children (actions are never stop)",
           ("p", "s[D]", "a", "out[D]"), "write the child into out (a is never stop)",
           "gfncore.step: int (const int32_t *, int64_t, int32_t *)", "step(s, a, out)"),
    Method("backward_mask", True, "", "states", "bool [N, A-1]: the actions that lead INTO each state",
           ("p", "s[D]", "mask[A-1]"), "write into mask (uint8 [A-1]) the actions that lead INTO s",
           "gfncore.mask: int (const int32_t *, uint8_t *)",
           "backward_mask(s, m), backward_legal(s, b), n_parents(s)"),
    Method("backward_step", True, "", "states, actions", "int [N, D]: the parents reached by undoing each action",
           ("p", "s[D]", "b", "out[D]"), "write the parent reached by undoing b into out",
           "gfncore.step: int (const int32_t *, int64_t, int32_t *)", "backward_step(s, b, out)"),
    Method("encode", False, "the state as float32 (feature_dim = state_dim)", "states", "float [N, F]: policy features",
           ("p", "s[D]", "f[F]"), "write the features into f (float32 [F])",
           "gfncore.encode: int (const int32_t *, float *)", "encode(s, f)"),
    Method("log_reward", True, "", "x", "float [N]: log R(x) of finished objects (x, context if conditional)",
           ("p", "x[D]"), "return log R(x) (or give the constructor log_reward=fn, batched)",
           "gfncore.log_reward: int (const int32_t *, double *)", "log_reward(s)"),
    Method("valid", False, "every row is a state", "states", "bool [N]: whether each row is a state",
           ("p", "s[D]"), "return whether s is a state",
           "gfncore.valid: int (const int32_t *, uint8_t *)", "valid(s)"),
)
BY_NAME = {m.name: m for m in METHODS}

# What the C++ route needs beyond those methods: every member the compiled templates call, in
# the order csrc/envs/concept.h checks them (tests/test_contract.py holds the two lists equal).
CPP_MEMBERS: tuple[tuple[str, str], ...] = (
    ("kName", "static constexpr const char* kName: the registry name (gfncore train <kName>)"),
    ("kCuda", "static constexpr bool kCuda: whether the struct also runs on CUDA"),
    ("declare", "static void declare(ParamDecl&): its parameters (name, type, default, bounds, help)"),
    ("make", "static E make(const Params&): build and cross-check"),
    ("n_actions", "int n_actions(): A, the last action being stop"),
    ("n_backward_actions", "int n_backward_actions(): A - 1 (backward action b undoes forward action b)"),
    ("state_dim", "int state_dim(): D"),
    ("feature_dim", "int feature_dim(): F"),
    ("max_parents", "int max_parents(): most parents of any state"),
    ("max_length", "int max_length(): most rows of a trajectory (moves plus the stop row)"),
    ("is_stop", "bool is_stop(int64_t a)"),
    ("initial", "void initial(int32_t* s): write s0"),
    ("valid", "bool valid(const int32_t* s)"),
    ("legal", "bool legal(const int32_t* s, int64_t a): one entry of forward_mask"),
    ("forward_mask", "void forward_mask(const int32_t* s, bool* m)"),
    ("step", "void step(const int32_t* s, int64_t a, int32_t* out)"),
    ("backward_legal", "bool backward_legal(const int32_t* s, int64_t b): one entry of backward_mask"),
    ("backward_mask", "void backward_mask(const int32_t* s, bool* m)"),
    ("n_parents", "int n_parents(const int32_t* s)"),
    ("backward_step", "void backward_step(const int32_t* s, int64_t b, int32_t* out)"),
    ("forward_action_of", "int64_t forward_action_of(int64_t b): the forward action backward action b undoes"),
    ("backward_action_of", "int64_t backward_action_of(int64_t a): the backward action that undoes a"),
    ("is_initial", "bool is_initial(const int32_t* s)"),
    ("encode", "template <typename F> void encode(const int32_t* s, F* f)"),
    ("log_reward", "double log_reward(const int32_t* s)"),
)

# The batched methods every environment answers (check_env calls each), whatever its route:
# {name: whether gfncore.envs.Env has a working default}. The routes implement the others (a
# PythonEnv from the methods above, a compiled or numba environment in the core).
BATCHED = {"initial_states": False, "forward_mask": False, "step": False, "backward_mask": False,
           "backward_step": False, "n_parents": True, "is_initial": True, "encode": False, "log_reward": False,
           "forward_action": True, "backward_action": True}


# -- the constructor arguments PythonEnv and NumbaEnv share -----------------------------------------
@dataclass(frozen=True)
class Dimension:
    name: str
    minimum: int
    required: bool
    default: str


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("state_dim", 1, True, ""),
    Dimension("n_actions", 2, True, ""),
    Dimension("feature_dim", 0, False, "the width of encode's output (state_dim where encode is not written)"),
    Dimension("max_length", 1, False, "unbounded: a runaway rollout is not stopped early"),
    Dimension("max_parents", 0, False, "n_backward_actions = n_actions - 1, the bound every environment meets "
                                        "(one parent per backward action); give a smaller one to shrink ops.parents"),
    Dimension("context_dim", 0, False, "0 (unconditional)"),
)


def check_dimensions(owner: str, **values) -> dict:
    """The shared constructor arguments, validated: ValueError naming the first bad one."""
    for d in DIMENSIONS:
        v = values.get(d.name)
        if v is None and not d.required:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < d.minimum:
            extra = "" if d.required else " or None"
            raise ValueError(f"{owner}: {d.name} must be an int >= {d.minimum}{extra}, got {v!r}")
    return values


def single_names(m: Method) -> tuple[str, ...]:
    """The numba function's parameter names (``mask[A]`` -> ``mask``)."""
    return tuple(a.split("[")[0] for a in m.single_args)


def single_lengths(m: Method, D: int, A: int, F: int) -> dict:
    """{parameter: array length} of m's array parameters, for dimensions D, A, F."""
    sizes = {"D": D, "A": A, "A-1": A - 1, "F": F}
    return {a.split("[")[0]: sizes[a.split("[")[1].rstrip("]")] for a in m.single_args if "[" in a}


def numba_types(m: Method) -> tuple[str, tuple[str, ...]]:
    """(return, parameters) of m's callback in numba's spelling, from its C signature."""
    params = m.c_signature.split("(", 1)[1].rstrip(")")
    return "int32", tuple(_NUMBA_TYPES[p.strip()] for p in params.split(","))


# -- the README's tables ------------------------------------------------------------------------------
def markdown_methods() -> str:
    """The methods table of the README's "Bring your own environment" section."""
    rows = ["| method | Python: `def m(self, ...)` returns | numba: `def m(p, ...)` does | C++ members | "
            "required |", "|---|---|---|---|---|"]
    for m in METHODS:
        req = "yes" if m.required else f"no: {m.default}"
        rows.append(f"| `{m.name}` | `({m.batched_args})` → {m.returns} | `({', '.join(single_names(m))})`: "
                    f"{m.single_does} | `{m.cpp}` | {req} |")
    return "\n".join(rows)


def markdown_cpp() -> str:
    """The list of every member a C++ environment struct needs."""
    return "\n".join(f"- `{name}`: {what}" for name, what in CPP_MEMBERS)


def markdown_dimensions() -> str:
    return "\n".join(f"- `{d.name}`" + (" (required)" if d.required else f" (optional; default: {d.default})")
                     for d in DIMENSIONS)


if __name__ == "__main__":
    print(markdown_methods(), markdown_dimensions(), markdown_cpp(), sep="\n\n")

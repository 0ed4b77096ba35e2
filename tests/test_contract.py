"""The environment contract is declared once (gfncore/envs/contract.py): the routes, check_env,
the C++ concept check and the README follow that declaration, and a C++ struct missing a
member fails to build with one line naming it."""
from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import gfncore as gfn
from gfncore.envs import contract
from gfncore.envs import numba_env, python_env

ROOT = Path(gfn.__file__).resolve().parent.parent
CSRC = ROOT / "csrc"


def _readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- contract:{name} -->\n(.*?)\n<!-- /contract:{name} -->", text, re.S)
    assert m, f"README.md has no contract:{name} block"
    return m.group(1)


@pytest.mark.skipif(not (ROOT / "README.md").exists(), reason="not a source checkout")
@pytest.mark.parametrize("name, render", [("methods", contract.markdown_methods), ("cpp", contract.markdown_cpp),
                                          ("dimensions", contract.markdown_dimensions)])
def test_readme_tables_are_the_declaration(name, render):
    assert _readme_block(name) == render(), "regenerate with: python -m gfncore.envs.contract"


@pytest.mark.skipif(not CSRC.exists(), reason="not a source checkout")
def test_cpp_concept_checks_the_declared_members_in_order():
    text = (CSRC / "envs" / "concept.h").read_text()
    block = text[text.index("#define GFN_ENV_MEMBERS(X)"):]
    block = block[:block.index("\n\n")]
    checked = re.findall(r"X\((\w+), ", block)
    assert checked == [name for name, _ in contract.CPP_MEMBERS]
    # every registered struct (and the numba route's callback struct) is checked
    assert "GFN_HANDLE_ENVS(GFN_CHECK_ENV)" in (CSRC / "envs" / "all.h").read_text()


def test_routes_follow_the_declaration():
    names = [m.name for m in contract.METHODS]
    assert list(python_env._CONTRACT) == names and set(python_env._WRAPPERS) == set(names)
    assert list(numba_env._METHODS) == names
    # the C signatures the numba route names its capsules with are the ones the core checks
    assert {m.name: m.c_signature for m in contract.METHODS} == dict(gfn._C.CALLBACK_SIGNATURES)


def test_both_base_classes_take_the_same_arguments():
    shared = [d.name for d in contract.DIMENSIONS]

    def params(cls):
        ps = inspect.signature(cls.__init__).parameters
        return {n: (p.kind, p.default) for n, p in ps.items() if n in shared}

    py, nb = params(gfn.envs.PythonEnv), params(gfn.envs.NumbaEnv)
    assert set(py) == set(shared) and py == nb
    for d in contract.DIMENSIONS:
        assert (py[d.name][1] is inspect.Parameter.empty) == d.required


class Chain(gfn.envs.PythonEnv):
    def __init__(self, N: int = 4):
        super().__init__(1, 2, max_length=N + 1)
        self.N = N

    def initial_state(self):
        return torch.zeros(1, dtype=torch.int32)

    def forward_mask(self, s):
        return torch.cat([s < self.N, torch.ones_like(s, dtype=torch.bool)], 1)

    def step(self, s, a):
        return s + 1

    def backward_mask(self, s):
        return s > 0

    def backward_step(self, s, a):
        return s - 1

    def log_reward(self, x):
        return x[:, 0].to(torch.float64)


class NumbaChain(gfn.envs.NumbaEnv):
    """The same chain, without encode: the default encoding, as PythonEnv's."""

    def __init__(self, N: int = 4):
        super().__init__(1, 2, max_length=N + 1, params=(N,))
        self.N = N

    @staticmethod
    def initial_state(p, s):
        s[0] = 0

    @staticmethod
    def forward_mask(p, s, mask):
        mask[0] = s[0] < p[0]
        mask[1] = True

    @staticmethod
    def step(p, s, a, out):
        out[0] = s[0] + 1

    @staticmethod
    def backward_mask(p, s, mask):
        mask[0] = s[0] > 0

    @staticmethod
    def backward_step(p, s, b, out):
        out[0] = s[0] - 1

    @staticmethod
    def log_reward(p, x):
        return float(x[0])


def test_defaults_agree_across_routes():
    py, nb = Chain(), NumbaChain()
    for env in (py, nb):
        gfn.envs.check_env(env)
        assert env.feature_dim == 1 and env.max_parents == env.n_backward_actions == 1
        assert env.config() == {"N": 4}  # derived from the constructor
    s = py.all_states()
    assert torch.equal(py.encode(s), nb.encode(s))
    again = gfn.envs.from_config(nb.to_config(), cls=NumbaChain)
    assert type(again) is NumbaChain and again.N == 4


def test_numba_feature_dim_needed_only_with_encode():
    class WithEncode(NumbaChain):
        def __init__(self):
            gfn.envs.NumbaEnv.__init__(self, 1, 2, max_length=5, params=(4,))

        @staticmethod
        def encode(p, s, f):
            f[0] = s[0]

    with pytest.raises(TypeError, match="pass feature_dim"):
        WithEncode()


def test_config_that_cannot_be_derived_says_what_to_do():
    class Renamed(Chain):
        def __init__(self, length: int = 4):
            super().__init__(length)

    with pytest.raises(NotImplementedError, match="length"):
        Renamed().config()


def test_check_env_names_an_unimplemented_method():
    class NoStep(gfn.envs.PythonEnv):
        def __init__(self):
            super().__init__(1, 2)

        def initial_state(self):
            return torch.zeros(1, dtype=torch.int32)

    with pytest.raises(gfn.envs.EnvCheckError, match="forward_mask: is not implemented"):
        gfn.envs.check_env(NoStep())


# ---------------------------------------------------------------------------------------------
# C++: a header missing a member fails with one readable line naming it.
def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


def _compile(tmp_path: Path, header: str, name: str) -> subprocess.CompletedProcess:
    (tmp_path / "my_env.h").write_text(header)
    (tmp_path / "check.cpp").write_text(f'#include "envs/concept.h"\n#include "my_env.h"\nGFN_CHECK_ENV({name})\n')
    return subprocess.run([_compiler(), "-std=c++17", "-fsyntax-only", f"-I{CSRC}", f"-I{tmp_path}",
                           str(tmp_path / "check.cpp")], capture_output=True, text=True, timeout=120)


def _without(src: str, member: str) -> str:
    """src with the definition of member (from its line to its closing brace) removed."""
    lines = src.splitlines()
    starts = [i for i, ln in enumerate(lines) if re.search(rf"\b{member}\(", ln) and "GFN_HD" in ln]
    assert len(starts) == 1
    end, depth = starts[0], 0
    while True:
        depth += lines[end].count("{") - lines[end].count("}")
        if depth == 0:
            break
        end += 1
    return "\n".join(lines[:starts[0]] + lines[end + 1:])


@pytest.mark.skipif(not CSRC.exists(), reason="not a source checkout")
@pytest.mark.skipif(_compiler() is None, reason="no C++ compiler")
def test_cpp_complete_header_passes_the_check(tmp_path):
    ok = _compile(tmp_path, (CSRC / "envs" / "hypergrid.h").read_text().replace("HyperGrid", "MyEnv"), "MyEnv")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.skipif(not CSRC.exists(), reason="not a source checkout")
@pytest.mark.skipif(_compiler() is None, reason="no C++ compiler")
@pytest.mark.parametrize("member", ["n_backward_actions", "is_stop", "forward_action_of", "backward_action_of",
                                    "is_initial"])
def test_cpp_header_missing_a_member_fails_with_one_line(tmp_path, member):
    src = (CSRC / "envs" / "hypergrid.h").read_text().replace("HyperGrid", "MyEnv")
    bad = _compile(tmp_path, _without(src, member), "MyEnv")
    errors = [ln for ln in bad.stderr.splitlines() if "error" in ln]
    assert bad.returncode != 0 and len(errors) == 1, bad.stderr
    assert f"gfncore environment struct: missing `" in errors[0] and f" {member}(" in errors[0]

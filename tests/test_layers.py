"""The package's imports follow the layers of DESIGN.md: face > apps > train > learn > envs > ops > core.

Every import statement of every module is read with ast, the ones inside functions too (a
function-level import that dodges a cycle at load time is still an arrow), and the test fails on
an arrow to a higher layer, on an import cycle between modules, and on a direct call into the
compiled core (_C) outside ops/ where a Python entry point exists for it."""
from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "gfncore"
LAYERS = ("core", "ops", "envs", "learn", "train", "apps", "face")
APPS = ("bayes", "causal", "design", "amortize", "conditional")
# modules outside the packages that name their layer; the rest follow their folder (below)
MODULE_LAYER = {
    "gfncore._C": "core",
    # thin Python over the compiled core, importing nothing above it: thread count, build info,
    # and the dataclass options every configuration uses
    "gfncore.runtime": "ops", "gfncore.config": "ops", "gfncore.limits": "ops",
    # CSV data files as the applications read them (imports nothing of gfncore)
    "gfncore.datafiles": "apps",
    "gfncore.trajectories": "learn", "gfncore.sampler": "learn", "gfncore.backward": "learn",
    "gfncore.losses": "learn", "gfncore.metrics": "learn", "gfncore.nn": "learn", "gfncore.replay": "learn",
    "gfncore.plotting": "learn", "gfncore.onpolicy": "learn",
    "gfncore.checkpoint": "train", "gfncore.distributed": "train", "gfncore.runfolder": "train",
    "gfncore": "face", "gfncore.__main__": "face",
}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer(mod: str) -> str:
    if mod in MODULE_LAYER:
        return MODULE_LAYER[mod]
    parts = mod.split(".")
    top = parts[1]
    if top in APPS:  # an application's command line is face; the rest of it is apps
        return "face" if ("cli" in parts[2:] or parts[-1] == "__main__") else "apps"
    return {"ops": "ops", "envs": "envs", "train": "train", "cli": "face"}[top]


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
MODULES["gfncore._C"] = None  # the compiled extension


def resolve(mod: str, is_pkg: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def known(name: str) -> str | None:
    """The longest prefix of a dotted name that is a module of the package."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def imports(mod: str, source: str | None = None, is_pkg: bool | None = None) -> list[tuple[str, int]]:
    """(imported module, line) for every import in mod, wherever it sits (module level, inside
    functions, under `if TYPE_CHECKING`)."""
    path = MODULES.get(mod)
    if source is None:
        source, is_pkg = path.read_text(), path.name == "__init__.py"
    tree = ast.parse(source, str(path or mod))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                m = known(a.name)
                if m:
                    out.append((m, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = resolve(mod, is_pkg, node.level, node.module)
            if not base.startswith("gfncore"):
                continue
            for a in node.names:  # `from . import envs` imports the module gfncore.envs
                sub = f"{base}.{a.name}"
                m = sub if sub in MODULES else known(base)
                if m and m != mod:
                    out.append((m, node.lineno))
    return out


GRAPH = {m: imports(m) for m in MODULES if MODULES[m] is not None}


def test_every_module_has_a_layer():
    for m in MODULES:
        assert layer(m) in LAYERS, m


def upward(graph: dict) -> list[str]:
    return [f"{m}:{line} ({layer(m)}) imports {t} ({layer(t)})" for m, edges in graph.items() for t, line in edges
            if LAYERS.index(layer(t)) > LAYERS.index(layer(m))]


def test_no_arrow_to_a_higher_layer():
    bad = upward(GRAPH)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w, _ in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    found = cycles(GRAPH)
    detail = []
    for comp in found:
        edges = sorted({f"  {m} -> {t} (line {line})" for m in comp for t, line in GRAPH[m] if t in comp})
        detail.append(" <-> ".join(comp) + "\n" + "\n".join(edges))
    assert not found, "import cycles:\n" + "\n".join(detail)


def _c_calls(path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    return {(n.attr, n.lineno) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "_C"}


def test_no_direct_core_call_where_an_entry_point_exists():
    """What ops/ (or gfncore.runtime: threads, build info) calls in _C, no other module calls."""
    from gfncore import _C

    def data(a: str) -> bool:  # constants and exception types are read, not called: anyone may name them
        obj = getattr(_C, a, None)
        return a.isupper() or (isinstance(obj, type) and issubclass(obj, BaseException))

    inside = {m for m in MODULES if m.startswith("gfncore.ops") or m == "gfncore.runtime"}
    wrapped = {a for m in inside if MODULES[m] is not None for a, _ in _c_calls(MODULES[m]) if not data(a)}
    assert {"set_num_threads", "build_info"} <= wrapped
    bad = [f"{p.relative_to(ROOT.parent)}:{line}: _C.{a}" for m, p in MODULES.items()
           if p is not None and m not in inside for a, line in _c_calls(p) if a in wrapped]
    assert not bad, "direct calls into _C where an op or gfncore.set_num_threads exists:\n" + "\n".join(bad)


def test_the_checks_can_fail():
    """The walk reads function-level and relative imports, and the checks catch an upward arrow
    and a cycle (on a made-up graph: the real one has none)."""
    src = "from ..causal import enumerate\ndef f():\n    from .. import _C\n    import gfncore.cli.common\n"
    got = {t for t, _ in imports("gfncore.envs.dag", src, False)}
    assert got == {"gfncore.causal.enumerate", "gfncore._C", "gfncore.cli.common"}
    g = {"gfncore.envs.dag": [("gfncore.causal.enumerate", 1)], "gfncore.causal.enumerate": [("gfncore.envs.dag", 3)]}
    assert upward(g) == ["gfncore.envs.dag:1 (envs) imports gfncore.causal.enumerate (apps)"]
    assert cycles(g) == [["gfncore.causal.enumerate", "gfncore.envs.dag"]]

"""CI: run every command and snippet of README.md, in order, as a new user would after the quick
start: from the repository root, in one folder, with the steps reduced (GFN_README_STEPS, default 3)
so that the whole README takes a few minutes. Fails on the first non-zero exit.

Commands come from the ```bash blocks, snippets from the ```python blocks.
Not run here: `pip install` lines (the quick start, which CI runs on its own), the development
commands (the test suite, builds, the sanitizer, CI itself) and multi-machine torchrun lines (HOST).
The reductions are the edits listed in REDUCE below, applied to the line as written, nothing else.

    python .ci/readme_lines.py [README.md] [--list]
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time

STEPS = int(os.environ.get("GFN_README_STEPS", "3"))

SKIP = (re.compile(r"^pip "), re.compile(r"^(python -m )?pytest"), re.compile(r"^scripts/"),
        re.compile(r"^bash \.ci/"), re.compile(r"^GFN_FUZZ_PROFILE="), re.compile(r"HOST:"))
SKIP_SNIPPET = ('kind="my_env"',)  # a template: its C++ header does not exist

# (pattern, replacement) on a command; --steps is set or appended for every training command
REDUCE = [
    (r"--budget [0-9.]+", "--budget 2"),                                  # gfncore design: two rounds
    (r"--samples [0-9]+", "--samples 200"),
    (r"--compare-contexts ([0-9]+)", rf"--compare-contexts \1 --compare-max-steps {STEPS}"),
]
TRAINS = re.compile(r"(^|\s)(-m gfncore|gfncore) (train|causal|bayes|design)\b")
SNIPPET_REDUCE = [
    (r"\bsteps=[0-9_]+", f"steps={STEPS}"),
    (r"\.fit\([0-9_]+(?=[,)])", f".fit({STEPS}"),
    (r"fit_posterior\(cd\)", f"fit_posterior(cd, steps={STEPS})"),
]


def blocks(text: str):
    """(language, body) of every fenced block, in order."""
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        yield m.group(1), m.group(2)


def commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comment-only lines dropped."""
    out, cur = [], ""
    for line in body.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        cur += line.rstrip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        out.append(re.sub(r"\s+", " ", cur).strip())
        cur = ""
    return out


def reduce_command(cmd: str) -> str:
    code = cmd.split(" #", 1)[0].rstrip()  # the line's own comment stays out
    for pat, rep in REDUCE:
        code = re.sub(pat, rep, code)
    if TRAINS.search(code):
        steps = 2 * STEPS if "--resume" in code else STEPS  # a resume continues past the first run's steps
        if "--steps" in code:
            code = re.sub(r"--steps [0-9]+", f"--steps {steps}", code)
        else:
            code += f" --steps {steps}"
        if " design " in f" {code} ":
            code += f" --update-steps {STEPS} --outer 16 --inner 16"
        if "--conditional" in code:  # its evaluation curve and sample checks, at a few points
            code = re.sub(r" --eval-samples [0-9]+", "", code) + " --curve-points 3 --eval-samples 64"
    return code


def reduce_snippet(body: str) -> str:
    for pat, rep in SNIPPET_REDUCE:
        body = re.sub(pat, rep, body)
    return body


def free_names(code: str) -> set[str]:
    """Names the block reads at its top level without defining or importing them."""
    import ast
    import builtins

    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - defined


def plan(readme: str) -> list[tuple[str, str]]:
    """(kind, what to run) for the whole README, in order."""
    items, prev = [], ""
    for lang, body in blocks(open(readme).read()):
        if lang in ("bash", "sh"):
            for cmd in commands(body):
                if not any(p.search(cmd) for p in SKIP):
                    items.append(("command", reduce_command(cmd)))
        elif lang == "python" and not any(s in body for s in SKIP_SNIPPET):
            # a block that uses names it does not define continues the last self-contained block
            # before it (the NumbaChain block uses its `gfn`, the hooks block its `trainer`)
            code = reduce_snippet(body)
            if free_names(code):
                code = prev + "\n" + code
            else:
                prev = code
            items.append(("snippet", code))
    return items


def main(argv: list[str]) -> int:
    readme = next((a for a in argv if not a.startswith("--")), "README.md")
    items = plan(readme)
    if "--list" in argv:
        for kind, what in items:
            print(f"[{kind}] {what if kind == 'command' else what.strip().splitlines()[-1][:70] + ' ...'}")
        return 0
    total = time.time()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    for i, (kind, what) in enumerate(items, 1):
        start = time.time()
        if kind == "command":
            label, run = what, ["bash", "-c", what]
        else:
            f = tempfile.NamedTemporaryFile("w", suffix=".py", delete=False)
            f.write(what)
            f.close()
            label, run = f"python snippet ending: {what.strip().splitlines()[-1][:70]}", [sys.executable, f.name]
        r = subprocess.run(run, env=env, capture_output=True, text=True)
        print(f"[{i}/{len(items)}] {time.time() - start:5.1f} s  {label}", flush=True)
        if r.returncode != 0:
            print((r.stdout + r.stderr)[-4000:])
            print(f"README line FAILED (exit {r.returncode}): {label}")
            return 1
    print(f"README: {len(items)} commands and snippets ran in {time.time() - total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

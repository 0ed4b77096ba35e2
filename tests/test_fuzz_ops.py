"""Fuzz suite: hypothesis draws adversarial inputs for every public op (dtypes and ranks, empty and
huge sizes, non-contiguous and stride-0 tensors, bad offsets, illegal actions, NaN and inf,
all-masked rows, meta and mixed devices), for every method of every built-in environment (states
of the wrong dtype, rank, width, device or range, int64 values that would wrap, illegal or
out-of-range actions), for the Sampler (bad n, seeds, temperatures, epsilons, first ids, NaN or
wrong-width logits) and for the Trainer (bad batch sizes, learning rates, losses, replay
fractions, NaN policies); see tests/fuzz_targets.py. Each case must end in a correct result (for
the API targets: one that obeys the environment contract) or a clear exception.

Cases run in a worker process, so a crash (a segfault, a sanitizer abort) is a failed example
with its reproducer, not a dead test session. Profiles (GFN_FUZZ_PROFILE): "ci" (default: fixed
examples, bounded time) and "long" (many more, random each run) for local hunting:

    GFN_FUZZ_PROFILE=long python -m pytest tests/test_fuzz_ops.py -s

Outcome counts by kind print at the end of the module.
"""
from __future__ import annotations

import collections
import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import gfncore
from fuzz_targets import TARGETS

settings.register_profile("ci", max_examples=int(os.environ.get("GFN_FUZZ_EXAMPLES", 150)), derandomize=True,
                          deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("long", max_examples=3000, derandomize=False, deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILE = settings.get_profile(os.environ.get("GFN_FUZZ_PROFILE", "ci"))

WORKER = Path(__file__).with_name("fuzz_targets.py")
CASE_TIMEOUT_S = float(os.environ.get("GFN_FUZZ_CASE_TIMEOUT", 120))
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
OK_KINDS = {"correct", "error"}

# Findings in code this suite does not own, each matched exactly (target, outcome kind, detail)
# and counted as "known" instead of failing; delete an entry when its fix lands.
# Findings outside the ops that a run may meet: (target regex, outcome kind, detail regex, why).
# Delete an entry when it is fixed; none is open.
KNOWN: list[tuple[str, str, str, str]] = []
KNOWN_SEEN: dict[str, dict] = {}


def _known(target: str, out: dict) -> str | None:
    import re

    for t, kind, detail, why in KNOWN:
        if re.fullmatch(t, target) and out["kind"] == kind and re.search(detail, out.get("detail", "")):
            return why
    return None


class Worker:
    """One fuzz worker process: cases in, outcomes out; restarted after it dies."""

    def __init__(self, quiet: bool = False):
        self.proc = None
        self.quiet = quiet  # drop the worker's stderr (a sanitizer's report goes there otherwise)

    def start(self):
        env = dict(os.environ, GFN_FUZZ_ROOT=str(Path(gfncore.__file__).resolve().parents[1]))
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL if self.quiet else None, env=env, text=True, bufsize=1)
        hello = self._read(300)
        if hello != {"ready": True}:
            raise RuntimeError(f"fuzz worker did not start: {hello}")

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return {"kind": "hang", "detail": f"no answer within {timeout:.0f} s"}
        line = self.proc.stdout.readline()
        if not line:  # the worker died: a crash, a sanitizer abort, an exit()
            rc = self.proc.wait()
            how = f"killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
            return {"kind": "crash", "detail": f"worker {how}"}
        return json.loads(line)

    def run(self, case: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        out = self._read(CASE_TIMEOUT_S)
        if out["kind"] in ("crash", "hang"):
            self.proc = None
        return out

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def worker(request):
    w = Worker()
    yield w
    w.close()
    total = collections.Counter()
    lines = [f"fuzz outcomes (profile {os.environ.get('GFN_FUZZ_PROFILE', 'ci')}), per target:"]
    for target, c in sorted(COUNTS.items()):
        total.update(c)
        lines.append(f"  {target:32s} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())))
    lines.append("  total: " + " ".join(f"{k}={v}" for k, v in sorted(total.items())))
    for why, case in KNOWN_SEEN.items():
        lines.append(f"  known (not fixed here): {why}\n    e.g. python tests/fuzz_targets.py --replay '{json.dumps(case)}'")
    # With capture suspended: the counts show whatever the capture mode.
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + "\n".join(lines), flush=True)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz(target, worker):
    @settings(PROFILE)
    @given(TARGETS[target].strategy())
    def check(case):
        out = worker.run(case)
        why = _known(target, out) if out["kind"] not in OK_KINDS else None
        COUNTS[target]["known" if why else out["kind"]] += 1
        if why:
            KNOWN_SEEN.setdefault(why, case)
        elif out["kind"] not in OK_KINDS:
            replay = f"python tests/fuzz_targets.py --replay '{json.dumps(case)}'"
            raise AssertionError(f"{out['kind']}: {out.get('detail')}\n  notes: {out.get('notes')}\n  reproduce: {replay}")

    check()


def test_worker_survives_a_crash_and_reports_it(worker, tmp_path):
    # The harness itself: a worker that dies on a signal is reported as a crash, and the next
    # case gets a fresh worker.
    bad = Worker(quiet=True)
    bad.start()
    bad.proc.stdin.write("not json\n")  # the worker raises on it and exits with a traceback
    bad.proc.stdin.flush()
    out = bad._read(60)
    assert out["kind"] == "crash" and "exited with code" in out["detail"]
    segv = Worker(quiet=True)
    segv.start()
    os.kill(segv.proc.pid, signal.SIGSEGV)
    out = segv._read(60)
    # Under AddressSanitizer the SIGSEGV becomes a report and an abort (signal 6).
    assert out["kind"] == "crash" and out["detail"] in ("worker killed by signal 11", "worker killed by signal 6")

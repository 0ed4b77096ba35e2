"""Benchmarks run at one torch / kernel thread by default (GFN_BENCH_THREADS to change), the same
for every pipeline, so the ratios compare like with like."""
from __future__ import annotations

import os
import sys

import pytest
import torch

# `pytest bench/` from the repository root: make `bench` importable as a package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gfncore  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def bench_threads():
    n = int(os.environ.get("GFN_BENCH_THREADS", "1"))
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    gfncore._C.set_num_threads(n)
    yield n
    torch.set_num_threads(old)
    gfncore._C.set_num_threads(0)

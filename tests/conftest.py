"""Shared fixtures and helpers for the compiled-core tests."""
from __future__ import annotations

import math

import pytest
import torch

import gfncore

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def cpu_and_cuda():
    """Devices to cross every op with: the CPU always, CUDA where a GPU exists (skipped otherwise)."""
    return ["cpu", pytest.param("cuda", marks=requires_cuda)]


@pytest.fixture
def kernel_threads():
    """Restores the kernel and torch thread counts a test changes."""
    t = torch.get_num_threads()
    yield
    gfncore._C.set_num_threads(0)  # 0: back to the OpenMP default
    torch.set_num_threads(t)


def random_mask(n: int, A: int, gen: torch.Generator, p: float = 0.6) -> torch.Tensor:
    """Random bool mask [n, A] with at least one legal action per row."""
    m = torch.rand(n, A, generator=gen) < p
    if n:
        forced = torch.randint(0, A, (n,), generator=gen)
        m[torch.arange(n), forced] = True
    return m


def random_legal_actions(mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One legal action per row of mask, uniformly."""
    if mask.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64)
    w = mask.double()
    return torch.multinomial(w, 1, generator=gen).squeeze(-1)


def packed_offsets(lengths: list[int]) -> torch.Tensor:
    off = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    if lengths:
        off[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    return off


def float32_error_ok(kernel32: torch.Tensor, torch32: torch.Tensor, ref64: torch.Tensor, floor: float = 1e-6) -> tuple[bool, float, float]:
    """STYLE.md #10: the float32 kernel's max error against a float64 reference may be at most about
    twice that of the same computation in plain PyTorch float32 (plus a tiny absolute floor)."""
    if ref64.numel() == 0:
        return True, 0.0, 0.0
    k = float((kernel32.double() - ref64).abs().max())
    t = float((torch32.double() - ref64).abs().max())
    return k <= 2 * t + floor, k, t


def brute_force_log_z(env) -> float:
    """log sum_x R(x) over every grid point, enumerated here independently of the library."""
    import itertools

    pts = list(itertools.product(range(env.height), repeat=env.ndim))
    total = 0.0
    for x in pts:
        total += hypergrid_reward(x, env.height, env.R0, env.R1, env.R2)
    return math.log(total)


def hypergrid_reward(x, H: int, R0: float, R1: float, R2: float) -> float:
    """The HyperGrid reward of Bengio et al. (2021), written out in plain Python with exact
    rational region tests (floats put x = 4(H-1)/5 in the ring but not its mirror (H-1)/5)."""
    from fractions import Fraction

    ax = [abs(Fraction(v, H - 1) - Fraction(1, 2)) for v in x]
    outer = all(Fraction(1, 4) < a for a in ax)
    ring = all(Fraction(3, 10) < a < Fraction(2, 5) for a in ax)
    return R0 + R1 * outer + R2 * ring

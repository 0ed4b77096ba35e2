"""Data-parallel training on torch.distributed (launched with torchrun: gloo on CPUs, NCCL on
GPUs, c10d rendezvous across machines). gfncore adds no launcher and no communication code of
its own: this module holds the few rules that make N processes train exactly like one.

- Each rank samples its share of the global batch B: rank r gets trajectories
  [first_id_r, first_id_r + n_r) of the batch, drawing Philox subsequences by those global ids, so
  the union over ranks is exactly the batch one process would draw with the same seed. When B does
  not divide by the world size W, the first B % W ranks take one trajectory more.
- Every objective normalises by GLOBAL counts (trajectories, rows, moves) obtained with one
  all-reduce of a few integers (``reduce``), and the gradients of the per-rank partial sums are
  summed across ranks: the update equals the single-process update up to float reduction order.
- Rank 0 broadcasts the initial parameters, and every rank checks at start-up that all ranks run
  the same configuration.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os

import torch

DEFAULT_TIMEOUT_S = 300


@dataclasses.dataclass(frozen=True)
class Topology:
    """Where this process sits: global rank and world size, rank and size on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _dist():
    import torch.distributed as dist

    return dist


def active() -> bool:
    """Whether a torch.distributed process group is initialised (by us or by the caller)."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def topology() -> Topology:
    """This process's place in the initialised process group (a single process if there is none)."""
    if not active():
        return Topology()
    dist = _dist()
    world = dist.get_world_size()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank() % max(local_world, 1)))
    return Topology(dist.get_rank(), world, local_rank, local_world)


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher setting the env:// variables)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Topology:
    """Initialise the process group from the environment torchrun sets (env:// rendezvous), unless
    one exists already. Backend: NCCL when this rank has a GPU, else gloo. A collective that waits
    longer than timeout_s (a rank died) raises instead of hanging."""
    dist = _dist()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; distributed training needs it")
    if not active() and not launched_by_torchrun():
        raise RuntimeError("distributed training needs an initialised torch.distributed process group or a launch by "
                           "torchrun (which sets RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): e.g. "
                           "torchrun --nproc_per_node 2 -m gfncore train hypergrid")
    if not active():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        kw = {}
        if backend == "nccl":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            kw["device_id"] = torch.device("cuda", local)
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kw)
    return topology()


def shard(batch_size: int, topo: Topology) -> tuple[int, int]:
    """(first trajectory id, number of trajectories) of this rank's share of a global batch: the
    first batch_size % world_size ranks take one trajectory more."""
    W, r = topo.world_size, topo.rank
    base, extra = divmod(int(batch_size), W)
    n = base + (1 if r < extra else 0)
    first = r * base + min(r, extra)
    return first, n


def default_threads(topo: Topology) -> int:
    """CPU threads per rank so that the ranks on one machine do not oversubscribe its cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(topo.local_world_size, 1))


class Reducer:
    """Sums small tensors (counts, statistics) over ranks; the identity for a single process.
    Objectives call it to normalise by global counts."""

    def __init__(self, topo: Topology, device: torch.device | None = None):
        self.topo = topo
        self.device = device

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.topo.world_size == 1:
            return t
        dist = _dist()
        buf = t.detach().to(self.device or t.device, torch.float64).clone()
        _collective(lambda: dist.all_reduce(buf), self.topo, "all_reduce of loss statistics")
        return buf.to(t.device)


def sync_gradients(params: list[torch.nn.Parameter], topo: Topology, extra: torch.Tensor | None = None):
    """Sums the parameters' gradients (and `extra`, e.g. the loss value) over ranks, in one
    flattened all-reduce. A parameter that has a gradient on some rank gets one everywhere (zero
    where its rank had none); one that has none on every rank keeps None, as in one process, so
    Adam skips it the same way."""
    if topo.world_size == 1:
        return extra
    dist = _dist()
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
    _collective(lambda: dist.all_reduce(has), topo, "all_reduce of gradient presence")
    live = [p for p, h in zip(params, has.tolist()) if h]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in live]
    parts = [g.reshape(-1) for g in grads]
    if extra is not None:
        parts.append(extra.detach().reshape(-1).to(grads[0].dtype if grads else torch.float32))
    flat = torch.cat(parts) if parts else torch.zeros(0)
    _collective(lambda: dist.all_reduce(flat), topo, "all_reduce of gradients")
    i = 0
    for p, g in zip(live, grads):
        k = g.numel()
        if p.grad is None:
            p.grad = flat[i:i + k].view_as(p).clone()
        else:
            p.grad.copy_(flat[i:i + k].view_as(p))
        i += k
    return flat[i:] if extra is not None else None


def gather_objects(obj, topo: Topology, what: str) -> list:
    """Every rank's obj (picklable), in rank order, on every rank."""
    if topo.world_size == 1:
        return [obj]
    dist = _dist()
    everyone: list = [None] * topo.world_size
    _collective(lambda: dist.all_gather_object(everyone, obj), topo, what)
    return everyone


def broadcast_parameters(module: torch.nn.Module, topo: Topology) -> None:
    """Every rank starts from rank 0's parameters (and buffers)."""
    if topo.world_size == 1:
        return
    dist = _dist()
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            _collective(lambda t=t: dist.broadcast(t.data, src=0), topo, "broadcast of the initial parameters")


def fingerprint(obj) -> str:
    """A short hash of a JSON-able description (config, shapes)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same_config(description: dict, topo: Topology) -> None:
    """Raises on every rank if the ranks do not all run the same configuration (caught at start-up
    rather than as silently different models)."""
    if topo.world_size == 1:
        return
    dist = _dist()
    mine = fingerprint(description)
    everyone: list = [None] * topo.world_size
    _collective(lambda: dist.all_gather_object(everyone, (mine, description)), topo, "start-up configuration check")
    differ = [r for r, (fp, _) in enumerate(everyone) if fp != everyone[0][0]]
    if differ:
        ref = everyone[0][1]
        other = everyone[differ[0]][1]
        keys = sorted(k for k in set(ref) | set(other) if ref.get(k) != other.get(k))
        raise RuntimeError(f"ranks disagree on their configuration: rank {differ[0]} differs from rank 0 in "
                           f"{', '.join(keys) or 'its fingerprint'} (e.g. {keys[0] if keys else ''}: "
                           f"{other.get(keys[0]) if keys else ''} vs {ref.get(keys[0]) if keys else ''}); start every "
                           f"rank with the same arguments")


def _collective(fn, topo: Topology, what: str):
    try:
        return fn()
    except Exception as e:  # gloo/NCCL report a dead peer as various RuntimeErrors
        raise RuntimeError(f"rank {topo.rank}/{topo.world_size}: {what} failed ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''}). Another rank probably died or hung; this "
                           f"rank stops too.") from e

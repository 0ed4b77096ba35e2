"""One rank of the data-parallel tests (tests/test_distributed.py): trains a small sampler and
writes what it ended with. Launched with the env:// variables torchrun would set."""
from __future__ import annotations

import json
import os
import sys

import torch

import gfncore as gfn


def make(loss: str, batch: int, lr: float = 3e-3, seed: int = 0):
    torch.manual_seed(seed)
    env = gfn.envs.HyperGrid(2, 6)
    policy = gfn.nn.MLPPolicy(env, hidden=32, layers=2, flow=loss in ("db", "subtb"))
    return env, policy, dict(loss=loss, batch_size=batch, lr=lr, seed=seed)


def main() -> None:
    spec = json.loads(sys.argv[1])
    out = spec["out"]
    torch.set_num_threads(1)
    gfn._C.set_num_threads(1)
    gfn.distributed.init(timeout_s=spec.get("timeout", 60))
    rank = gfn.distributed.topology().rank
    results = {}
    for run in spec["runs"]:
        lr = run.get("lr_rank1", run.get("lr", 3e-3)) if rank == 1 else run.get("lr", 3e-3)
        env, policy, kw = make(run["loss"], run["batch"], lr=lr)
        trainer = gfn.Trainer(env, policy, **kw)
        for step in range(run["steps"]):
            if run.get("die_at") is not None and rank == 1 and step == run["die_at"]:
                os._exit(3)  # a rank that dies without a word
            trainer.train_step()
        if rank == 0:
            results[run["name"]] = {k: v.tolist() for k, v in policy.state_dict().items()}
            if run.get("l1"):
                results[run["name"] + ":l1"] = trainer.evaluate()["l1"]
    if rank == 0:
        with open(out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()

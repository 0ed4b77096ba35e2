"""The DAG environment written again as plain batched PyTorch (a PythonEnv): the tests' oracle for
the compiled struct (csrc/envs/dag.h) and the baseline of bench/causal_env.py. Same state rows,
actions, masks, encoding and reward; whole-batch tensor algebra instead of bit tricks."""
from __future__ import annotations

import torch

from ..envs.dag import pack_bits, transitive_closure, unpack_bits
from ..envs.python_env import PythonEnv


class PyDAG(PythonEnv):
    """DAGs on d nodes built one edge at a time (gfncore.envs.DAG) in batched torch.

    ``score``: an object with ``log_score(adj [B, d, d]) -> [B]`` and, for cached reward
    differences, ``delta_score_from_parents(targets, parents, sources)`` (a
    gfncore.causal.CausalScore); None gives the uniform reward. ``max_parents`` caps in-degrees.
    ``check=False`` skips validating every row and action on every call (the benchmark baseline;
    the checks cost more than the steps themselves).
    """

    def __init__(self, num_nodes: int, score=None, max_parents: int | None = None, check: bool = True):
        d = int(num_nodes)
        self.d, self.W = d, (d + 31) // 32
        self.cap = d - 1 if max_parents is None or max_parents < 0 else min(int(max_parents), d - 1)
        edges = sum(min(k, self.cap) for k in range(d))
        super().__init__(state_dim=2 * d * self.W, n_actions=d * d + 1, feature_dim=2 * d * d + 1, max_length=edges + 1,
                         max_parents=edges, name="py_dag")
        self.score, self.check = score, bool(check)
        self._eye = torch.eye(d, dtype=torch.bool)
        self._log_r0 = self._log_reward(torch.zeros(1, d, d, dtype=torch.bool))

    def config(self) -> dict:
        return {"num_nodes": self.d, "score": self.score, "max_parents": self.cap, "check": self.check}

    # -- rows <-> (adjacency, closure) ------------------------------------------------------------
    def unpack(self, s: torch.Tensor):
        """(adj [N, i, j], reach [N, u, v]) of state rows."""
        d, W = self.d, self.W
        parents = unpack_bits(s[:, : d * W].reshape(-1, d, W), d)
        reach = unpack_bits(s[:, d * W:].reshape(-1, d, W), d)
        return parents.transpose(1, 2), reach

    def pack(self, adj: torch.Tensor, reach: torch.Tensor) -> torch.Tensor:
        return torch.cat([pack_bits(adj.transpose(1, 2)).flatten(1), pack_bits(reach).flatten(1)], 1)

    def valid(self, s):
        adj, reach = self.unpack(s)
        ok = (self.pack(adj, reach) == s).all(-1)  # no bits beyond d
        ok &= ~(adj & self._eye).flatten(1).any(-1)
        ok &= (adj.sum(1) <= self.cap).all(-1)
        ok &= (transitive_closure(adj) == reach).flatten(1).all(-1)
        ok &= ~(reach & self._eye).flatten(1).any(-1)
        return ok

    def _check(self, s):
        if self.check and s.numel() and not bool(self.valid(s).all()):
            raise ValueError("states holds a row that is not a DAG state")

    # -- the environment ------------------------------------------------------------------------------
    def initial_state(self):
        return torch.zeros(self.state_dim, dtype=torch.int32)

    def _edge_mask(self, adj, reach):
        # i -> j is legal iff absent, i != j, j does not reach i, and j is below the cap
        full = adj.sum(1) >= self.cap  # [N, j]
        return ~adj & ~reach.transpose(1, 2) & ~self._eye & ~full.unsqueeze(1)

    def forward_mask(self, s):
        self._check(s)
        adj, reach = self.unpack(s)
        stop = torch.ones(s.shape[0], 1, dtype=torch.bool)
        return torch.cat([self._edge_mask(adj, reach).flatten(1), stop], 1)

    def step(self, s, a):
        if self.check:
            legal = self.forward_mask(s).gather(1, a.unsqueeze(1)).squeeze(1)
            if not bool(legal.all()):
                raise ValueError("actions holds an edge that is present, a self-loop or closes a cycle")
        adj, reach = self.unpack(s)
        n = torch.arange(s.shape[0])
        i, j = a // self.d, a % self.d
        adj = adj.clone()
        adj[n, i, j] = True
        # every u that reaches i (or is i) now reaches j and everything j reaches
        upstream = reach[n, :, i] | (torch.arange(self.d) == i.unsqueeze(1))  # [N, u]
        gained = reach[n, j] | (torch.arange(self.d) == j.unsqueeze(1))       # [N, v]
        reach = reach | (upstream.unsqueeze(2) & gained.unsqueeze(1))
        return self.pack(adj, reach)

    def backward_mask(self, s):
        self._check(s)
        adj, _ = self.unpack(s)
        return adj.flatten(1)

    def backward_step(self, s, a):
        if self.check and a.numel() and not bool(self.backward_mask(s).gather(1, a.unsqueeze(1)).all()):
            raise ValueError("actions holds an edge that is not in the graph")
        adj, _ = self.unpack(s)
        adj = adj.clone()
        adj[torch.arange(s.shape[0]), a // self.d, a % self.d] = False
        return self.pack(adj, transitive_closure(adj))

    def encode(self, s):
        self._check(s)
        adj, reach = self.unpack(s)
        r = self._log_reward(adj) - self._log_r0
        return torch.cat([adj.flatten(1).float(), self._edge_mask(adj, reach).flatten(1).float(),
                          r.to(torch.float32).unsqueeze(1)], 1)

    def _log_reward(self, adj):
        if self.score is None:
            return torch.zeros(adj.shape[0], dtype=torch.float64)
        return self.score.log_score(adj).to(torch.float64)

    def log_reward(self, x):
        self._check(x)
        adj, _ = self.unpack(x)
        return self._log_reward(adj)

    def log_reward_delta(self, states, actions, context=None):
        """Cached local-score differences along each move (0 for stop), from the score's
        delta_score_from_parents; None when the score has none."""
        if self.score is None or not hasattr(self.score, "delta_score_from_parents"):
            return None
        s = self._states(states)
        a = self._actions(actions, s.shape[0])
        out = torch.zeros(s.shape[0], dtype=torch.float64)
        move = a != self.stop_action
        if bool(move.any()):
            adj, _ = self.unpack(s[move])
            i, j = a[move] // self.d, a[move] % self.d
            parents = adj[torch.arange(i.shape[0]), :, j]  # Pa(j) before the edge
            out[move] = self.score.delta_score_from_parents(j, parents, i)
        return out

"""check_env: a conformance check of any environment (compiled, numba or Python) against the
contract every sampler and objective relies on, with messages that name the method and the first
bad state (as gymnasium's env_checker does for its environments)."""
from __future__ import annotations

import math

import torch

from . import contract
from .base import Env, context_rows


class EnvCheckError(AssertionError):
    """An environment broke the contract; the message names the method and the first bad state."""


def _fail(env: Env, method: str, msg: str):
    raise EnvCheckError(f"check_env({env.name}): {method}: {msg}")


def _reachable(env: Env, max_states: int, seed: int) -> torch.Tensor:
    """All states if there are at most max_states of them, else a breadth-first sample of them."""
    gen = torch.Generator().manual_seed(seed)
    frontier = env.initial_states(1)
    seen = {tuple(frontier[0].tolist())}
    rows = [frontier]
    depth = 0
    while frontier.shape[0] and len(seen) < max_states:
        depth += 1
        limit = env.max_length if env.max_length is not None else 100_000
        if depth > limit:
            _fail(env, "step", f"a path from s0 is longer than max_length = {limit}: the state graph has a cycle or "
                               f"max_length is too small")
        mask = env.forward_mask(frontier)[:, : env.stop_action]
        r, a = mask.nonzero(as_tuple=True)
        if r.numel() == 0:
            break
        if r.numel() > 4 * max_states:  # sample edges to keep the check bounded
            keep = torch.randperm(r.numel(), generator=gen)[: 4 * max_states]
            r, a = r[keep], a[keep]
        children = torch.unique(env.step(frontier[r], a), dim=0)
        new = [c for c in children.tolist() if tuple(c) not in seen]
        seen.update(map(tuple, new))
        frontier = torch.tensor(new, dtype=torch.int32).reshape(-1, env.state_dim)
        rows.append(frontier)
    return torch.cat(rows)


def check_env(env: Env, *, max_states: int = 20_000, seed: int = 0, context: torch.Tensor | None = None) -> dict:
    """Checks env against the environment contract and returns a summary of what it checked.

    - shapes and dtypes of every method on a batch of states reachable from s0;
    - s0 has no parents; every reachable state has a legal action;
    - every legal forward move s -> s' is marked in backward_mask(s') (as backward_action(a)),
      backward_step(s', b) returns s, and step never returns its input (no 1-cycles);
    - n_parents(s) is the number of marked backward actions, and every marked backward action
      leads to a state whose forward move leads back;
    - no cycle: on an enumerable instance (at most max_states states), the state graph is a DAG
      (every state is reached in a bounded number of steps from s0);
    - log_reward of the finished objects is finite or -inf (never NaN or +inf), and encode is
      finite with feature_dim columns.

    Raises EnvCheckError naming the method and the first bad state.
    """
    if not isinstance(env, Env):
        raise TypeError(f"check_env expects a gfncore environment, got {type(env).__name__}")
    for method, has_default in contract.BATCHED.items():  # the contract's batched methods (each called below)
        impl = getattr(type(env), method, None)
        if not callable(impl) or (not has_default and impl is getattr(Env, method)):
            _fail(env, method, "is not implemented (the contract: gfncore.envs.contract, the README's table)")
    A, D, nb = env.n_actions, env.state_dim, env.n_backward_actions
    s0 = env.initial_states(1)
    if s0.shape != (1, D) or s0.dtype != torch.int32:
        _fail(env, "initial_states", f"must return int32 [1, {D}], got {s0.dtype} {list(s0.shape)}")
    if not bool(env.is_initial(s0).all()):
        _fail(env, "is_initial", f"s0 = {s0[0].tolist()} is not reported as initial")
    S = _reachable(env, max_states, seed)
    n = S.shape[0]
    fm, bm = env.forward_mask(S), env.backward_mask(S)
    if fm.shape != (n, A) or fm.dtype != torch.bool:
        _fail(env, "forward_mask", f"must return bool [{n}, {A}], got {fm.dtype} {list(fm.shape)}")
    if bm.shape != (n, nb) or bm.dtype != torch.bool:
        _fail(env, "backward_mask", f"must return bool [{n}, {nb}], got {bm.dtype} {list(bm.shape)}")
    if not bool(fm.any(-1).all()):
        i = int((~fm.any(-1)).nonzero()[0, 0])
        _fail(env, "forward_mask", f"state {S[i].tolist()} has no legal action")
    init = env.is_initial(S)
    if bool(bm[init].any()):
        _fail(env, "backward_mask", f"s0 = {s0[0].tolist()} has parents")
    if bool((~bm[~init].any(-1)).any()):
        i = int(((~init) & ~bm.any(-1)).nonzero()[0, 0])
        _fail(env, "backward_mask", f"state {S[i].tolist()} is reachable from s0 but has no parent")
    npar = env.n_parents(S)
    if not torch.equal(npar, bm.sum(-1).to(torch.int64)):
        i = int((npar != bm.sum(-1)).nonzero()[0, 0])
        _fail(env, "n_parents", f"state {S[i].tolist()}: n_parents = {int(npar[i])} but backward_mask marks "
                                f"{int(bm[i].sum())}")
    if env.max_parents is not None and n and int(npar.max()) > env.max_parents:
        i = int(npar.argmax())
        _fail(env, "max_parents", f"state {S[i].tolist()} has {int(npar[i])} parents > max_parents = {env.max_parents}")
    # forward moves: marked backward, undone by backward_step
    r, a = fm[:, : env.stop_action].nonzero(as_tuple=True)
    moves = 0
    if r.numel():
        parents = S[r]
        child = _step_unmutated(env, parents, a)
        if child.shape != (r.numel(), D) or child.dtype != torch.int32:
            _fail(env, "step", f"must return int32 [{r.numel()}, {D}], got {child.dtype} {list(child.shape)}")
        _no_cycle(env, S, r, child)
        same = (child == S[r]).all(-1)
        if bool(same.any()):
            i = int(same.nonzero()[0, 0])
            _fail(env, "step", f"action {int(a[i])} at state {S[r[i]].tolist()} returns the same state (a cycle)")
        b = env.backward_action(a)
        marked = env.backward_mask(child).gather(1, b.unsqueeze(1)).squeeze(1)
        if not bool(marked.all()):
            i = int((~marked).nonzero()[0, 0])
            _fail(env, "backward_mask", f"the move {S[r[i]].tolist()} --{int(a[i])}--> {child[i].tolist()} is not marked "
                                        f"in backward_mask of the child (backward action {int(b[i])})")
        back = env.backward_step(child, b)
        undone = (back == S[r]).all(-1)
        if not bool(undone.all()):
            i = int((~undone).nonzero()[0, 0])
            _fail(env, "backward_step", f"does not invert step: {S[r[i]].tolist()} --{int(a[i])}--> {child[i].tolist()} "
                                        f"but backward_step(child, {int(b[i])}) = {back[i].tolist()}")
        moves = r.numel()
    # backward moves: every marked parent leads back
    r, b = bm.nonzero(as_tuple=True)
    if r.numel():
        par = env.backward_step(S[r], b)
        fa = env.forward_action(b)
        legal = env.forward_mask(par).gather(1, fa.unsqueeze(1)).squeeze(1)
        if not bool(legal.all()):
            i = int((~legal).nonzero()[0, 0])
            _fail(env, "forward_mask", f"parent {par[i].tolist()} of {S[r[i]].tolist()} (backward action {int(b[i])}) "
                                       f"cannot take forward action {int(fa[i])}")
        fwd = env.step(par, fa)
        ok = (fwd == S[r]).all(-1)
        if not bool(ok.all()):
            i = int((~ok).nonzero()[0, 0])
            _fail(env, "step", f"does not invert backward_step: parent {par[i].tolist()} --{int(fa[i])}--> "
                               f"{fwd[i].tolist()}, expected {S[r[i]].tolist()}")
    # features and rewards
    f = env.encode(S)
    if f.shape != (n, env.feature_dim) or f.dtype != torch.float32:
        _fail(env, "encode", f"must return float32 [{n}, {env.feature_dim}], got {f.dtype} {list(f.shape)}")
    if not bool(torch.isfinite(f).all()):
        i = int((~torch.isfinite(f)).any(-1).nonzero()[0, 0])
        _fail(env, "encode", f"state {S[i].tolist()} has non-finite features")
    x = S[fm[:, env.stop_action]]
    if x.shape[0] == 0:
        _fail(env, "forward_mask", "no reachable state may stop: there are no finished objects")
    c = None
    if env.context_dim:
        if context is None:
            context = torch.zeros(1, env.context_dim, dtype=torch.float64)
        c = context_rows(context, x.shape[0])
    lr = env.reward(x, c)
    if lr.shape != (x.shape[0],) or lr.dtype != torch.float64:
        _fail(env, "log_reward", f"must return float64 [{x.shape[0]}], got {lr.dtype} {list(lr.shape)}")
    bad = torch.isnan(lr) | (lr == math.inf)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        _fail(env, "log_reward", f"object {x[i].tolist()} has log R = {float(lr[i])}")
    complete = n < max_states
    if complete:
        _same_terminal_states(env, x)
    return {"states": n, "moves": moves, "objects": int(x.shape[0]), "complete": complete,
            "max_parents_seen": int(npar.max()) if n else 0}


def _step_unmutated(env: Env, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """env.step on a copy, failing when it changed its input in place (a Python step that writes
    into `states` corrupts the parent rows a sampler keeps: it used to surface as a "cycle")."""
    before = states.clone()
    child = env.step(states, actions)
    if isinstance(child, torch.Tensor) and not torch.equal(states, before):
        i = int((states != before).any(-1).nonzero()[0, 0])
        _fail(env, "step", f"modifies its input in place: state {before[i].tolist()} became {states[i].tolist()} "
                           f"(return a new tensor, e.g. s = s.clone() first)")
    return child


def _no_cycle(env: Env, S: torch.Tensor, r: torch.Tensor, child: torch.Tensor) -> None:
    """The forward moves among the enumerated states form a DAG: Kahn's algorithm over the whole
    reachable graph, so a cycle away from s0 (0 -> 1 <-> 2) is found, not only a step that returns
    its input."""
    index = {tuple(s): i for i, s in enumerate(S.tolist())}
    n = S.shape[0]
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for p, c in zip(r.tolist(), child.tolist()):
        j = index.get(tuple(c))
        if j is not None:
            succ[p].append(j)
            indeg[j] += 1
    queue = [i for i in range(n) if indeg[i] == 0]
    done = 0
    while queue:
        i = queue.pop()
        done += 1
        for j in succ[i]:
            indeg[j] -= 1
            if indeg[j] == 0:
                queue.append(j)
    if done == n:
        return
    # walk inside the remaining subgraph until a state repeats: that loop is the cycle to report
    left = {i for i in range(n) if indeg[i] > 0}
    i, path, seen = next(iter(left)), [], {}
    while i not in seen:
        seen[i] = len(path)
        path.append(i)
        i = next(j for j in succ[i] if j in left)
    loop = path[seen[i]:] + [i]
    states = " -> ".join(str(S[k].tolist()) for k in loop[:6]) + (" -> ..." if len(loop) > 6 else "")
    _fail(env, "step", f"the state graph has a cycle: {states} (states must form a DAG: every step builds more)")


def _same_terminal_states(env: Env, x: torch.Tensor) -> None:
    """all_terminal_states() (where the environment has it) holds exactly the finished objects the
    enumeration found: evaluate(), exact L1 and true log Z are computed over it."""
    try:
        allx = env.all_terminal_states()
    except (NotImplementedError, ValueError, MemoryError, OverflowError):
        return
    if allx is None:
        return
    allx = torch.as_tensor(allx)
    if allx.dim() != 2 or allx.shape[1] != env.state_dim:
        _fail(env, "all_terminal_states", f"must return [N, {env.state_dim}] states, got {list(allx.shape)}")
    mine, theirs = {tuple(v) for v in x.tolist()}, [tuple(v) for v in allx.tolist()]
    if len(set(theirs)) != len(theirs):
        dup = next(v for v in theirs if theirs.count(v) > 1)
        _fail(env, "all_terminal_states", f"lists {list(dup)} more than once")
    extra = [v for v in theirs if v not in mine]
    if extra:
        _fail(env, "all_terminal_states", f"lists {list(extra[0])}, which no trajectory from s0 finishes at "
                                          f"({len(extra)} such states)")
    missing = mine - set(theirs)
    if missing:
        _fail(env, "all_terminal_states", f"misses {list(next(iter(missing)))}, a finished object reachable from s0 "
                                          f"({len(missing)} missing)")


def check_trajectories(env: Env, traj, length_cap: int | None = None) -> None:
    """The cheap contract check the Sampler runs on the first batches of a Python or numba
    environment: along every sampled trajectory, each action was legal, each step is undone by
    backward_step and marked in the child's backward_mask, step leaves its input as it was, no
    state repeats, features are finite and no trajectory is longer than the cap. Raises
    EnvCheckError naming the method and the state, as check_env does."""
    states, actions = traj.states.cpu(), traj.actions.cpu()
    offsets = traj.offsets.cpu().tolist()
    T = states.shape[0]
    if T == 0:
        return
    cap = length_cap or env.max_length
    lengths = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    if cap is not None and lengths and max(lengths) > cap:
        i = max(range(len(lengths)), key=lengths.__getitem__)
        _fail(env, "step", f"a trajectory has {lengths[i]} rows, more than max_length = {cap}; it reached "
                           f"{states[offsets[i + 1] - 1].tolist()}")
    f = traj.features
    if f is not None and f.numel() and not bool(torch.isfinite(f).all()):
        t = int((~torch.isfinite(f.cpu())).any(-1).nonzero()[0, 0])
        _fail(env, "encode", f"state {states[t].tolist()} has non-finite features (NaN or inf): the policy would "
                             f"report NaN logits")
    fm = env.forward_mask(states)
    legal = fm.cpu().gather(1, actions.unsqueeze(1)).squeeze(1)
    if not bool(legal.all()):
        t = int((~legal).nonzero()[0, 0])
        _fail(env, "forward_mask", f"action {int(actions[t])} was taken at state {states[t].tolist()} but "
                                   f"forward_mask does not allow it there now (masks must depend only on the state)")
    is_stop = actions == env.stop_action
    move = (~is_stop).nonzero(as_tuple=True)[0]
    if move.numel():
        parent, a, child = states[move], actions[move], states[move + 1]
        stepped = _step_unmutated(env, parent.clone(), a)
        wrong = ~(stepped.cpu() == child).all(-1)
        if bool(wrong.any()):
            k = int(wrong.nonzero()[0, 0])
            _fail(env, "step", f"is not deterministic: {parent[k].tolist()} --{int(a[k])}--> {child[k].tolist()} in "
                               f"the rollout, {stepped[k].tolist()} now")
        b = env.backward_action(a)
        marked = env.backward_mask(child).cpu().gather(1, b.cpu().unsqueeze(1)).squeeze(1)
        if not bool(marked.all()):
            k = int((~marked).nonzero()[0, 0])
            _fail(env, "backward_mask", f"the move {parent[k].tolist()} --{int(a[k])}--> {child[k].tolist()} is not "
                                        f"marked in backward_mask of the child (backward action {int(b[k])})")
        back = env.backward_step(child, b).cpu()
        undone = (back == parent).all(-1)
        if not bool(undone.all()):
            k = int((~undone).nonzero()[0, 0])
            _fail(env, "backward_step", f"does not invert step: {parent[k].tolist()} --{int(a[k])}--> "
                                        f"{child[k].tolist()} but backward_step(child, {int(b[k])}) = {back[k].tolist()}")
    # no state twice in one trajectory (a cycle the masks allowed)
    for i in range(len(offsets) - 1):
        lo, hi = offsets[i], offsets[i + 1]
        if hi - lo > 1:
            rows = states[lo:hi]
            if torch.unique(rows, dim=0).shape[0] != hi - lo:
                seen = {}
                for t, row in enumerate(rows.tolist()):
                    if tuple(row) in seen:
                        _fail(env, "step", f"a trajectory visits {row} twice (steps {seen[tuple(row)]} and {t}): the "
                                           f"state graph has a cycle")
                    seen[tuple(row)] = t

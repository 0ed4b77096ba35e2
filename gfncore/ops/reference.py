"""Plain-PyTorch twins of every compiled op: short, obviously right, used by the tests and as
the fallback on a device that has no compiled kernel. Each one mirrors the math in csrc/ops/*.h."""
from __future__ import annotations

import math

import torch

_M32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Philox4x32-10 on int64 tensors (values kept in [0, 2^32)), identical to csrc/common/philox.h.
def _mulhilo(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ah, al = a >> 16, a & 0xFFFF
    bh, bl = b >> 16, b & 0xFFFF
    mid = ah * bl + al * bh
    low = al * bl + ((mid & 0xFFFF) << 16)
    lo = low & _M32
    hi = (ah * bh + (mid >> 16) + (low >> 32)) & _M32
    return hi, lo


def philox(seed: int, subsequence: torch.Tensor, offset: int) -> torch.Tensor:
    """Four uint32 words (as int64) per subsequence: Philox4x32-10 keyed by seed, counter
    (offset_lo, offset_hi, subsequence_lo, subsequence_hi)."""
    sub = subsequence.to(torch.int64)
    c0 = torch.full_like(sub, offset & _M32)
    c1 = torch.full_like(sub, (offset >> 32) & _M32)
    c2 = sub & _M32
    c3 = (sub >> 32) & _M32
    k0, k1 = seed & _M32, (seed >> 32) & _M32
    for _ in range(10):
        hi0, lo0 = _mulhilo(0xD2511F53, c0)
        hi1, lo1 = _mulhilo(0xCD9E8D57, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + 0x9E3779B9) & _M32
        k1 = (k1 + 0xBB67AE85) & _M32
    return torch.stack([c0, c1, c2, c3], dim=-1)


def uniform53(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a >> 5) * 67108864 + (b >> 6)).to(torch.float64) * (1.0 / 9007199254740992.0)


# ---------------------------------------------------------------------------------------------
# Ops (csrc/ops/*.h).
def sample_actions(mask: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor | None, seed: int, offset: int,
                   temperature: float, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampling rule of csrc/ops/rollout.h (sample_action) in torch, with the kernel's Philox
    draws: (actions [n], log_prob [n]) from the tempered, epsilon-mixed masked softmax."""
    if not (0.0 < temperature < math.inf):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if not (0.0 <= epsilon <= 1.0):
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    n, A = logits.shape
    mask = mask != 0
    z = logits.to(torch.float64) / temperature
    if bool(torch.isnan(z).masked_fill(~mask, False).any()):
        raise ValueError("sample_actions: logits contain NaN at a legal action")
    k = mask.sum(-1)
    if bool((k == 0).any()):
        raise ValueError("sample_actions: mask allows no action")
    zm = z.masked_fill(~mask, -math.inf)
    zmax = zm.max(-1, keepdim=True).values if n else zm.new_zeros(0, 1)
    if bool((~torch.isfinite(zmax)).any()):
        raise ValueError("sample_actions: logits of every legal action are -inf/inf")
    e = torch.exp(zm - zmax)
    cum = torch.cumsum(e, -1)
    total = cum[:, -1:]
    sub = ids if ids is not None else torch.arange(n, device=logits.device)
    r = philox(seed, sub.cpu(), offset).to(logits.device)
    u0, u1 = uniform53(r[:, 0], r[:, 3]), uniform53(r[:, 1], r[:, 2])
    # softmax branch: first legal a with target < cumsum; fallback the last legal action
    target = (u1.unsqueeze(-1) * total)
    hit = (target < cum) & mask
    last_legal = (mask * torch.arange(A, device=mask.device)).argmax(-1)
    a_soft = torch.where(hit.any(-1), hit.to(torch.int8).argmax(-1), last_legal)
    # explore branch: the floor(u1 * k)-th legal action
    j = torch.clamp((u1 * k).floor().to(torch.int64), max=k - 1)
    rank = torch.cumsum(mask.to(torch.int64), -1) - 1
    a_unif = ((rank == j.unsqueeze(-1)) & mask).to(torch.int8).argmax(-1)
    explore = (u0 < epsilon) if epsilon > 0 else torch.zeros_like(u0, dtype=torch.bool)
    actions = torch.where(explore, a_unif, a_soft).to(torch.int64)
    lp = zm.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - zmax.squeeze(-1) - torch.log(total.squeeze(-1))
    if epsilon > 0:
        # k in float64: epsilon / (an int64 tensor) would be computed in torch's default float32
        lp = torch.log((1 - epsilon) * torch.exp(lp) + epsilon / k.to(torch.float64))
    return actions, lp.to(logits.dtype)


def rollout_step(env, states: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor, ids: torch.Tensor | None,
                 seed: int, offset: int, temperature: float, epsilon: float):
    """sample_actions, then the environment's own batched methods (any gfncore environment, e.g.
    a PythonEnv twin of a compiled one). Returns (actions, log_prob, next_states, next_mask,
    features, done)."""
    if states.numel() and hasattr(env, "valid") and not bool(env.valid(states).all()):
        raise ValueError("rollout_step: states holds a row that is not in the environment's state space")
    actions, lp = sample_actions(mask, logits, ids, seed, offset, temperature, epsilon)
    A = logits.shape[1]
    done = actions == A - 1
    move = (~done).nonzero(as_tuple=True)[0]
    next_states = states.clone()
    if move.numel():
        next_states[move] = env.step(states[move], actions[move]).to(states.dtype)
    next_mask = env.forward_mask(next_states) & ~done.unsqueeze(-1)
    features = env.encode(next_states)
    return actions, lp, next_states.to(torch.int32), next_mask, features, done


def masked_log_softmax_gather(logits: torch.Tensor, mask: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log softmax(logits restricted to mask)[actions], per row."""
    if actions.numel():
        if bool(((actions < 0) | (actions >= logits.shape[-1])).any()):
            raise ValueError("masked_log_softmax_gather: actions holds an action that is out of range")
        if not bool(mask.gather(-1, actions.unsqueeze(-1)).all()):
            raise ValueError("masked_log_softmax_gather: actions holds an action that is masked out")
    if bool(torch.isnan(logits).masked_fill(~mask, False).any()):
        raise ValueError("masked_log_softmax_gather: logits contain NaN at a legal action")
    lp = torch.log_softmax(logits.masked_fill(~mask, -math.inf), dim=-1)
    return lp.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def masked_log_softmax_gather_backward(grad: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor,
                                      actions: torch.Tensor) -> torch.Tensor:
    """d/d logits of sum_n grad[n] * masked_log_softmax_gather(...)[n]: grad * (onehot(a) - softmax), 0 where masked.

    Written out rather than through autograd: inside a custom op's kernel the dispatcher has
    autograd switched off, so torch.enable_grad() there builds no graph."""
    masked_log_softmax_gather(logits, mask, actions)  # same validation as the forward
    p = torch.softmax(logits.masked_fill(~mask, -math.inf), dim=-1)
    onehot = torch.nn.functional.one_hot(actions, logits.shape[-1]).to(logits.dtype)
    return (grad.unsqueeze(-1) * (onehot - p)).masked_fill(~mask, 0.0)


def segment_sum(values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Sum of values over each trajectory's rows [offsets[i], offsets[i+1])."""
    lengths = offsets[1:] - offsets[:-1]
    idx = torch.repeat_interleave(torch.arange(len(lengths), device=values.device), lengths)
    return torch.zeros(len(lengths), dtype=values.dtype, device=values.device).index_add(0, idx, values)


def check_offsets(offsets: torch.Tensor, T: int) -> None:
    if offsets.dim() != 1 or offsets.numel() < 1:
        raise ValueError("offsets must be a 1-D tensor with B + 1 >= 1 elements")
    ok = int(offsets[0]) == 0 and int(offsets[-1]) == T and bool((offsets[1:] > offsets[:-1]).all())
    if not ok:
        raise ValueError("offsets must start at 0, increase strictly and end at T")


def move_log_pb(log_pb: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """log_pb with every stop row's entry replaced by 0: the stop row's log P_B is 0 by definition
    (x has no successor), so every objective ignores what is stored there (zero gradient)."""
    return torch.where(_stop_rows(offsets, log_pb.shape[0]), torch.zeros_like(log_pb), log_pb)


def trajectory_balance(log_pf, log_pb, offsets, log_reward, log_z) -> torch.Tensor:
    """(log Z + sum log P_F - log R - sum log P_B)^2 per trajectory (log P_B over the moves)."""
    check_offsets(offsets, log_pf.shape[0])
    r = log_z + segment_sum(log_pf - move_log_pb(log_pb, offsets), offsets) - log_reward
    return r * r


def trajectory_balance_backward(grad, log_pf, log_pb, offsets, log_reward, log_z):
    """Gradients of sum_i grad[i] * trajectory_balance(...)[i] with respect to (log_pf, log_pb,
    log_reward, log_z), written out (see masked_log_softmax_gather_backward for why not autograd)."""
    check_offsets(offsets, log_pf.shape[0])
    r = log_z + segment_sum(log_pf - move_log_pb(log_pb, offsets), offsets) - log_reward
    g = 2 * r * grad
    lengths = offsets[1:] - offsets[:-1]
    g_rows = torch.repeat_interleave(g, lengths)
    g_pb = torch.where(_stop_rows(offsets, log_pb.shape[0]), torch.zeros_like(g_rows), -g_rows)
    g_z = g.sum() if log_z.dim() == 0 else g
    return g_rows, g_pb, -g, g_z.to(log_z.dtype)


# ---------------------------------------------------------------------------------------------
# Parents and backward sampling (csrc/ops/parents.h, csrc/ops/backward_rollout.h).
def parents(env, states: torch.Tensor, max_parents: int):
    """Every parent of each state, compacted in increasing backward-action order:
    (parent_states [n, P, D] 0-padded, parent_actions [n, P] forward actions, -1-padded, counts [n])."""
    n, D = states.shape
    bmask = env.backward_mask(states)
    counts = bmask.sum(-1).to(torch.int64)
    if n and int(counts.max()) > max_parents:
        raise ValueError("parents: an index is out of range (more parents than max_parents)")
    rows, b = bmask.nonzero(as_tuple=True)  # row-major: increasing b within a row
    slot = (torch.cumsum(bmask.to(torch.int64), -1) - 1)[rows, b]
    out_states = torch.zeros(n, max_parents, D, dtype=torch.int32, device=states.device)
    out_actions = torch.full((n, max_parents), -1, dtype=torch.int64, device=states.device)
    if rows.numel():
        out_states[rows, slot] = env.backward_step(states[rows], b).to(torch.int32)
        out_actions[rows, slot] = env.forward_action(b)
    return out_states, out_actions, counts


def backward_rollout_step(env, states, logits, ids, seed: int, offset: int, temperature: float, epsilon: float):
    """One backward step from each state (none of them s0): b ~ masked softmax of backward logits
    (Philox draws as the kernel), then the parent. Returns
    (actions, log_pb, forward_actions, parents, done)."""
    if states.numel() and hasattr(env, "valid") and not bool(env.valid(states).all()):
        raise ValueError("backward_rollout_step: states holds a row that is not in the environment's state space")
    b, lp = sample_actions(env.backward_mask(states), logits, ids, seed, offset, temperature, epsilon)
    par = env.backward_step(states, b).to(torch.int32)
    return b, lp, env.forward_action(b), par, env.is_initial(par)


# ---------------------------------------------------------------------------------------------
# Balance objectives beyond TB (csrc/ops/{detailed_balance,modified_db,subtb,flow_matching,zvar}.h).
def _stop_rows(offsets: torch.Tensor, T: int) -> torch.Tensor:
    is_stop = torch.zeros(T, dtype=torch.bool, device=offsets.device)
    is_stop[offsets[1:] - 1] = True
    return is_stop


def _row_trajectory(offsets: torch.Tensor) -> torch.Tensor:
    lengths = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(len(lengths), device=offsets.device), lengths)


def detailed_balance(log_pf, log_pb, log_flow, offsets, log_reward) -> torch.Tensor:
    """Per-row (log F(s_t) + log P_F - log F(s_{t+1}) - log P_B)^2; on stop rows the target is
    log R(x) instead of log F(s_{t+1}) + log P_B (the stop row's log P_B is 0 by definition)."""
    T = log_pf.shape[0]
    check_offsets(offsets, T)
    is_stop = _stop_rows(offsets, T)
    next_flow = torch.roll(log_flow, -1)
    target = torch.where(is_stop, log_reward[_row_trajectory(offsets)], next_flow + log_pb)
    r = log_flow + log_pf - target
    return r * r


def modified_detailed_balance(log_pf, log_pb, log_pf_stop, log_reward_state, offsets) -> torch.Tensor:
    """Per-row modified DB residual squared (Deleu et al. 2022); 0 on stop rows."""
    T = log_pf.shape[0]
    check_offsets(offsets, T)
    is_stop = _stop_rows(offsets, T)
    nxt = lambda v: torch.roll(v, -1)  # noqa: E731
    r = nxt(log_reward_state) + log_pb + log_pf_stop - log_reward_state - log_pf - nxt(log_pf_stop)
    r = torch.where(is_stop, torch.zeros_like(r), r)
    return r * r


def subtrajectory_balance(log_pf, log_pb, log_flow, offsets, log_reward, lam: float) -> torch.Tensor:
    """SubTB(lambda) per trajectory: every sub-trajectory j -> k (0 <= j < k <= L) with residual
    log F_j + sum_{t=j}^{k-1} (log P_F - log P_B) - log F_k and weight lam^(k-j), averaged with
    those weights. Materialises the [B, L+1, L+1] residuals (the fused op does not)."""
    if not (math.isfinite(lam) and lam > 0):
        raise ValueError(f"lam must be a finite number > 0, got {lam}")
    T = log_pf.shape[0]
    check_offsets(offsets, T)
    B = offsets.shape[0] - 1
    if B == 0:
        return log_pf.new_zeros(0)
    lengths = offsets[1:] - offsets[:-1]
    n = int(lengths.max()) + 1  # nodes per (padded) trajectory
    traj = _row_trajectory(offsets)
    pos = torch.arange(T, device=log_pf.device) - offsets[:-1][traj]
    flows = log_pf.new_zeros(B, n).index_put((traj, pos), log_flow)
    flows = flows.index_put((torch.arange(B, device=log_pf.device), lengths), log_reward)
    steps = log_pf.new_zeros(B, n).index_put((traj, pos + 1), log_pf - move_log_pb(log_pb, offsets))
    prefix = torch.cumsum(steps, 1)  # prefix[:, k] = sum_{t<k} (log P_F - log P_B)
    r = flows[:, :, None] + prefix[:, None, :] - prefix[:, :, None] - flows[:, None, :]  # [B, j, k]
    k = torch.arange(n, device=log_pf.device)
    span = (k[None, :] - k[:, None]).to(log_pf.dtype)
    valid = (k[None, :, None] < k[None, None, :]) & (k[None, None, :] <= lengths[:, None, None])
    w = torch.where(valid, torch.pow(torch.tensor(lam, dtype=log_pf.dtype), span), torch.zeros((), dtype=log_pf.dtype))
    return (w * r * r).sum((1, 2)) / w.sum((1, 2))


def flow_matching(log_in, in_count, log_out, out_mask) -> torch.Tensor:
    """Per state (logsumexp of its in-flows - logsumexp of its legal out-flows)^2; 0 for a state
    with no parents (in_count == 0)."""
    N, P = log_in.shape
    if in_count.numel() and bool(((in_count < 0) | (in_count > P)).any()):
        raise ValueError(f"flow_matching: in_count must be in [0, P] = [0, {P}]")
    if N and not bool(out_mask.any(-1).all()):
        raise ValueError("flow_matching: out_mask allows no out-edge")
    in_mask = torch.arange(P, device=log_in.device) < in_count[:, None]
    no_parent = in_count == 0
    # A parentless row gets finite dummy in-flows so its (discarded) log-sum-exp has no NaN gradient.
    z_in = torch.where(in_mask, log_in, torch.full_like(log_in, -math.inf))
    z_in = torch.where(no_parent[:, None], torch.zeros_like(log_in), z_in)
    z_out = torch.where(out_mask, log_out, torch.full_like(log_out, -math.inf))
    r = torch.logsumexp(z_in, 1) - torch.logsumexp(z_out, 1)
    r = torch.where(no_parent, torch.zeros_like(r), r)
    return r * r


def log_partition_variance(log_pf, log_pb, offsets, log_reward) -> torch.Tensor:
    """ZVar: (zeta_i - mean zeta)^2 with zeta_i = log R(x_i) + sum log P_B - sum log P_F (log P_B
    over the moves)."""
    check_offsets(offsets, log_pf.shape[0])
    zeta = log_reward + segment_sum(move_log_pb(log_pb, offsets) - log_pf, offsets)
    if zeta.numel() == 0:
        return zeta
    d = zeta - zeta.mean()
    return d * d

"""Training objectives over packed trajectories. Each recomputes the log-probabilities with one
batched forward of the policy over every packed state, then calls a fused op."""
from __future__ import annotations

import sys

import torch

from . import onpolicy, ops
from .ops.reference import segment_sum
from .envs.base import Env, context_rows
from .nn import PolicyOutput
from .sampler import policy_logits
from .trajectories import Trajectories


def uniform_log_pb(env: Env, traj: Trajectories, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """log P_B(s_t | s_{t+1}) = -log #parents(s_{t+1}) on move rows, 0 on stop rows."""
    return traj.uniform_log_pb(env, dtype)


def policy_output(policy, features: torch.Tensor, context: torch.Tensor | None) -> PolicyOutput:
    """The policy's output on packed rows, conditioned on each row's context where there is one."""
    return policy(features) if context is None else policy(features, context)


def log_z_of(policy, traj: Trajectories, dtype: torch.dtype) -> torch.Tensor:
    """log Z for the batch: the learned scalar, or log Z(c_i) per trajectory [B] for a conditional
    policy."""
    if traj.context is None:
        return policy.log_z.to(dtype)
    return policy.log_z_of(traj.context).to(dtype)


def learned_log_pb(env: Env, traj: Trajectories, pb_logits: torch.Tensor) -> torch.Tensor:
    """log P_B(s_t | s_{t+1}) from backward logits at s_{t+1}, masked by its parents; 0 on stop rows."""
    move = (~traj.is_stop).nonzero(as_tuple=True)[0]
    nxt = move + 1
    bmask = env.backward_mask(traj.states[nxt])
    lp = ops.masked_log_softmax_gather(pb_logits[nxt], bmask, env.backward_action(traj.actions[move]))
    return torch.zeros(traj.T, dtype=pb_logits.dtype, device=pb_logits.device).index_put((move,), lp)


def _forward(env: Env, policy, traj: Trajectories):
    """One batched policy forward over the packed states: (output, forward mask, log_pb)."""
    feats = traj.features if traj.features is not None else env.encode(traj.states)
    mask = traj.mask if traj.mask is not None else env.forward_mask(traj.states)
    # on-policy batches differentiate through the rollout's own forwards where it kept them
    out = onpolicy.replayed_output(policy, traj)
    if out is None:
        out = policy_output(policy, feats, traj.row_context())
    if out.pb_logits is None:
        log_pb = uniform_log_pb(env, traj, out.pf_logits.dtype)
    else:
        log_pb = learned_log_pb(env, traj, out.pb_logits)
    return out, mask, log_pb


def log_probs(env: Env, policy, traj: Trajectories) -> tuple[torch.Tensor, torch.Tensor, PolicyOutput]:
    """(log_pf [T], log_pb [T], policy output) from one batched forward over the packed states."""
    out, mask, log_pb = _forward(env, policy, traj)
    log_pf = ops.masked_log_softmax_gather(out.pf_logits, mask, traj.actions)
    return log_pf, log_pb, out


def trajectory_balance_loss(env: Env, policy, traj: Trajectories) -> torch.Tensor:
    """Trajectory balance (Malkin et al. 2022): mean over the batch of
    (log Z + sum log P_F - log R(x) - sum log P_B)^2."""
    out, mask, log_pb = _forward(env, policy, traj)
    logits = out.pf_logits
    log_z = log_z_of(policy, traj, logits.dtype)
    log_reward = traj.log_reward.to(logits.dtype)
    return ops.trajectory_balance_from_logits(logits, mask, traj.actions, log_pb, traj.offsets, log_reward, log_z,
                                              reduction="mean")


# ---------------------------------------------------------------------------------------------
# Objectives with options and a log Z estimate, as the Trainer uses them.

def _importance_weights(traj: Trajectories, log_pf: torch.Tensor) -> torch.Tensor | None:
    """Self-normalised per-trajectory weights P_F(tau) / P_behaviour(tau) (detached), for
    exploratory (tempered / epsilon-mixed) samples whose behaviour log-probs were recorded."""
    if traj.log_prob is None:
        return None
    lw = segment_sum((log_pf.detach() - traj.log_prob.to(log_pf.dtype)), traj.offsets)
    w = torch.softmax(lw, 0) * traj.n
    return w


def _weighted_mean(per_traj: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    return per_traj.mean() if w is None else (per_traj * w).mean()


def _global_counts(reduce, *counts) -> list[float]:
    """Counts (trajectories, rows, ...) summed over ranks: the normalisers of a data-parallel loss.
    The identity without `reduce` (one process)."""
    c = torch.tensor([float(x) for x in counts], dtype=torch.float64)
    if reduce is not None:
        c = reduce(c)
    return [max(float(x), 1.0) for x in c]


class Objective:
    """A GFlowNet training objective: a scalar loss over a batch of packed trajectories, and the
    estimate of log Z it implies. With importance_weights=True, per-trajectory terms are weighted
    by P_F(tau)/P_behaviour(tau) (self-normalised over the batch); without (the default), the
    objective is used off-policy as is, which every balance objective allows since its fixed
    point does not depend on the sampling distribution (only its full support matters)."""

    name = "objective"
    needs_flow = False
    # whether the loss's policy output is that of the packed rows alone (then an on-policy batch
    # may differentiate through the rollout's own forwards: gfncore.onpolicy)
    rollout_forward = True

    def __init__(self, importance_weights: bool = False):
        self.importance_weights = bool(importance_weights)

    def check_policy(self, policy) -> None:
        if self.needs_flow and not getattr(policy, "has_flow", False):
            raise ValueError(f"loss {self.name!r} needs a state flow log F(s): build the policy with "
                             f"MLPPolicy(env, flow=True)")

    def weights(self, traj: Trajectories, log_pf: torch.Tensor) -> torch.Tensor | None:
        return _importance_weights(traj, log_pf) if self.importance_weights else None

    def __call__(self, env: Env, policy, traj: Trajectories, reduce=None) -> torch.Tensor:
        """The loss of a batch. With `reduce` (data-parallel training: sums a tensor over ranks),
        the loss is this rank's share of the global loss: its terms over the GLOBAL counts, so the
        gradients summed over ranks are those of one process on the whole batch."""
        raise NotImplementedError

    @torch.no_grad()
    def log_z(self, env: Env, policy, context: torch.Tensor | None = None) -> float:
        """The objective's estimate of log Z (of log Z(c) for a context c [C] or [1, C])."""
        if context is None:
            return float(policy.log_z.detach())
        return float(policy.log_z_of(_one_context(context, policy)).squeeze())


def _one_context(context, policy) -> torch.Tensor:
    dev = next(policy.parameters()).device
    return context_rows(context, 1, torch.get_default_dtype(), dev)


def _s0_output(env: Env, policy, context: torch.Tensor | None = None) -> PolicyOutput:
    dev = next(policy.parameters()).device
    f = env.encode(env.initial_states(1)).to(dev)
    return policy_output(policy, f, None if context is None else _one_context(context, policy))


class TrajectoryBalance(Objective):
    """TB (Malkin et al. 2022): (log Z + Σ log P_F - log R(x) - Σ log P_B)^2 per trajectory."""

    name = "tb"

    def __call__(self, env, policy, traj, reduce=None):
        if not self.importance_weights:
            loss = trajectory_balance_loss(env, policy, traj)  # the fused single-node fast path
            if reduce is None:
                return loss
            (B,) = _global_counts(reduce, traj.n)
            return loss * (traj.n / B)
        log_pf, log_pb, _ = log_probs(env, policy, traj)
        log_z = log_z_of(policy, traj, log_pf.dtype)
        per = ops.trajectory_balance(log_pf, log_pb, traj.offsets, traj.log_reward.to(log_pf.dtype), log_z)
        return _weighted_mean(per, self.weights(traj, log_pf))


class DetailedBalance(Objective):
    """DB (Bengio et al. 2023): F(s) P_F(s'|s) = F(s') P_B(s|s') on every move, and
    F(x) P_F(stop|x) = R(x) on every stop row; log Z = log F(s0)."""

    name = "db"
    needs_flow = True

    def __call__(self, env, policy, traj, reduce=None):
        log_pf, log_pb, out = log_probs(env, policy, traj)
        rows = ops.detailed_balance(log_pf, log_pb, out.log_flow.to(log_pf.dtype), traj.offsets,
                                    traj.log_reward.to(log_pf.dtype))
        w = self.weights(traj, log_pf)
        if reduce is not None:
            (T,) = _global_counts(reduce, traj.T)
            return rows.sum() / T
        return rows.mean() if w is None else (rows * w[traj.traj_index]).mean()

    @torch.no_grad()
    def log_z(self, env, policy, context=None):
        return float(_s0_output(env, policy, context).log_flow[0])


class SubTrajectoryBalance(Objective):
    """SubTB(λ) (Madan et al. 2023): balance of every sub-trajectory s_j -> s_k, weighted λ^(k-j)
    and normalised per trajectory; log Z = log F(s0)."""

    name = "subtb"
    needs_flow = True

    def __init__(self, lam: float = 0.9, importance_weights: bool = False):
        super().__init__(importance_weights)
        if not (lam > 0):
            raise ValueError(f"lam (λ) must be > 0, got {lam}")
        if lam < sys.float_info.min:  # subnormal: λ^k loses its digits
            raise ValueError(f"lam (λ) must be >= {sys.float_info.min:.4g} (the smallest normal float64), got {lam}")
        self.lam = float(lam)

    def __call__(self, env, policy, traj, reduce=None):
        log_pf, log_pb, out = log_probs(env, policy, traj)
        per = ops.subtrajectory_balance(log_pf, log_pb, out.log_flow.to(log_pf.dtype), traj.offsets,
                                        traj.log_reward.to(log_pf.dtype), self.lam)
        if reduce is not None:
            (B,) = _global_counts(reduce, traj.n)
            return per.sum() / B
        return _weighted_mean(per, self.weights(traj, log_pf))

    @torch.no_grad()
    def log_z(self, env, policy, context=None):
        return float(_s0_output(env, policy, context).log_flow[0])


class FlowMatching(Objective):
    """FM (Bengio et al. 2021) with the policy's P_F logits read as log edge flows log F(s->s'):
    for every visited state, log Σ_parents F(p->s) = log Σ_children F(s->·) (stop edge included),
    and F(x->stop) = R(x) at every finished object. In-flows come from one batched forward over
    all parents (gfncore.ops.parents); log Z = log Σ_a F(s0->a)."""

    name = "fm"
    rollout_forward = False  # its forward also covers every parent state

    def __call__(self, env, policy, traj, reduce=None):
        feats = traj.features if traj.features is not None else env.encode(traj.states)
        mask = traj.mask if traj.mask is not None else env.forward_mask(traj.states)
        par, par_act, counts = ops.parents(env, traj.states)
        P = par.shape[1]
        valid = torch.arange(P, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)
        # one batched forward over the visited states (out-flows) and all their parents (in-flows)
        ctx = traj.row_context()
        if ctx is not None:
            ctx = torch.cat([ctx, ctx.repeat_interleave(counts.to(ctx.device), 0)])
        logits = policy_logits(policy, torch.cat([feats, env.encode(par[valid]).to(feats.device)]), ctx)
        log_out, par_logits = logits[:traj.T], logits[traj.T:]
        in_vals = par_logits.gather(1, par_act[valid].unsqueeze(1)).squeeze(1)
        log_in = torch.full((traj.T, P), -float("inf"), dtype=log_out.dtype, device=log_out.device)
        log_in = log_in.masked_scatter(valid, in_vals)
        rows = ops.flow_matching(log_in, counts, log_out, mask)
        n_inner, B = _global_counts(reduce, int((counts > 0).sum()), traj.n)
        fm_term = rows.sum() / n_inner
        stop = env.stop_action
        last = traj.last_rows
        rm_term = ((log_out[last, stop] - traj.log_reward.to(log_out.dtype)) ** 2).sum() / B
        return fm_term + rm_term

    @torch.no_grad()
    def log_z(self, env, policy, context=None):
        s0 = env.initial_states(1)
        lo = _s0_output(env, policy, context).pf_logits
        return float(torch.logsumexp(lo.masked_fill(~env.forward_mask(s0).to(lo.device), -float("inf")), -1)[0])


class LogPartitionVariance(Objective):
    """ZVar (Zhang et al. 2023): the variance over the batch of
    ζ(τ) = log R(x) + Σ log P_B - Σ log P_F, which is log Z for every τ at the optimum;
    log Z is estimated by the batch mean of ζ (no learned log Z)."""

    name = "zvar"

    def __init__(self, importance_weights: bool = False, head: bool = False):
        super().__init__(importance_weights)
        self._log_z = 0.0
        # head=True: the policy's log Z (or log Z(c) head) is also trained, regressed on the batch
        # mean of ζ (within each context), which is the value TB's log Z converges to on-policy.
        # The policy's gradient is ZVar's, free of the head's error, which TB's shares.
        self.head = bool(head)

    def __call__(self, env, policy, traj, reduce=None):
        log_pf, log_pb, _ = log_probs(env, policy, traj)
        lr = traj.log_reward.to(log_pf.dtype)
        if self.head:
            if reduce is not None:
                raise ValueError("loss 'zvar' with head=True is not supported in data-parallel training")
            return self._with_head(policy, traj, log_pf, log_pb, lr)
        if reduce is not None:
            return self._distributed(traj, log_pf, log_pb, lr, reduce)
        if traj.context is not None:
            return _weighted_mean(self._grouped(traj, log_pf, log_pb, lr), self.weights(traj, log_pf))
        per = ops.log_partition_variance(log_pf, log_pb, traj.offsets, lr)
        with torch.no_grad():
            zeta = lr + segment_sum(log_pb - log_pf, traj.offsets)
            if zeta.numel():
                self._log_z = float(zeta.mean())
        return _weighted_mean(per, self.weights(traj, log_pf))

    def _distributed(self, traj, log_pf, log_pb, lr, reduce):
        """The variance over the GLOBAL batch: its mean of ζ comes from one all-reduce. The mean
        needs no gradient: d/dζ_i Σ_j (ζ_j - mean)^2 = 2 (ζ_i - mean) either way."""
        if traj.context is not None:
            raise ValueError("loss 'zvar' with contexts is not supported in data-parallel training (its variance is "
                             "taken within each context); use tb or subtb")
        zeta = lr + segment_sum(log_pb - log_pf, traj.offsets)
        tot = reduce(torch.stack([zeta.detach().double().sum(), torch.tensor(float(traj.n), dtype=torch.float64)]))
        mean = (tot[0] / tot[1].clamp_min(1)).to(zeta.dtype)
        self._log_z = float(mean)
        return ((zeta - mean) ** 2).sum() / float(tot[1].clamp_min(1))

    @staticmethod
    def _grouped(traj, log_pf, log_pb, lr):
        """With contexts, ζ is log Z(c) at the optimum: the variance is taken within each group of
        trajectories that share a context (a batch draws several trajectories per context)."""
        zeta = lr + segment_sum(log_pb - log_pf, traj.offsets)
        _, group, counts = torch.unique(traj.context, dim=0, return_inverse=True, return_counts=True)
        if bool((counts < 2).all()):
            raise ValueError("loss 'zvar' with contexts needs several trajectories per context (the variance of ζ is "
                             "taken within each context): use Trainer(trajectories_per_context=k) with k >= 2")
        mean = torch.zeros(counts.shape[0], dtype=zeta.dtype, device=zeta.device).index_add(0, group, zeta)
        d = zeta - (mean / counts.to(zeta.dtype))[group]
        return d * d

    def _with_head(self, policy, traj, log_pf, log_pb, lr):
        zeta = lr + segment_sum(log_pb - log_pf, traj.offsets)
        if traj.context is None:
            group = torch.zeros(traj.n, dtype=torch.int64, device=zeta.device)
            counts = torch.tensor([traj.n], device=zeta.device)
            head = policy.log_z.to(zeta.dtype).reshape(1)
        else:
            uniq, group, counts = torch.unique(traj.context, dim=0, return_inverse=True, return_counts=True)
            head = policy.log_z_of(uniq).to(zeta.dtype)
        if bool((counts < 2).all()):
            raise ValueError("loss 'zvar' needs several trajectories per context (use "
                             "Trainer(trajectories_per_context=k) with k >= 2)")
        mean = torch.zeros(counts.shape[0], dtype=zeta.dtype, device=zeta.device).index_add(
            0, group, zeta.detach()) / counts.to(zeta.dtype)
        with torch.no_grad():
            self._log_z = float(mean.mean())
        d = zeta - mean[group]
        return _weighted_mean(d * d, self.weights(traj, log_pf)) + ((head - mean) ** 2).mean()

    def log_z(self, env, policy, context=None):
        if self.head:
            return Objective.log_z(self, env, policy, context)
        if context is not None:
            raise ValueError("loss 'zvar' estimates log Z from a batch; it has no log Z(c) for a given context")
        return self._log_z


class ModifiedDetailedBalance(Objective):
    """Modified DB (Deleu et al. 2022) for environments where every state may terminate:
    R(s') P_B(s|s') P_F(stop|s) = R(s) P_F(s'|s) P_F(stop|s') on every move; the per-state reward
    and P_F(stop|s) stand in for the flow. log Z = log R(s0) - log P_F(stop|s0)."""

    name = "mdb"

    def __call__(self, env, policy, traj, reduce=None):
        log_pf, log_pb, out = log_probs(env, policy, traj)
        mask = traj.mask if traj.mask is not None else env.forward_mask(traj.states)
        stop = torch.full_like(traj.actions, env.stop_action)
        if traj.T and not bool(mask[:, env.stop_action].all()):
            raise ValueError("loss 'mdb' needs an environment in which every state may terminate")
        log_pf_stop = ops.masked_log_softmax_gather(out.pf_logits, mask, stop)
        log_r = _relative_state_rewards(env, traj).to(log_pf.dtype)
        rows = ops.modified_detailed_balance(log_pf, log_pb, log_pf_stop, log_r, traj.offsets)
        (n_moves,) = _global_counts(reduce, traj.T - traj.n)
        w = self.weights(traj, log_pf)
        return rows.sum() / n_moves if w is None else (rows * w[traj.traj_index]).sum() / n_moves

    @torch.no_grad()
    def log_z(self, env, policy, context=None):
        s0 = env.initial_states(1)
        lo = _s0_output(env, policy, context).pf_logits
        lp = torch.log_softmax(lo.masked_fill(~env.forward_mask(s0).to(lo.device), -float("inf")), -1)
        c = None if context is None else context_rows(context)
        return float(env.log_reward_state(s0, c)[0]) - float(lp[0, env.stop_action])


def _relative_state_rewards(env: Env, traj: Trajectories) -> torch.Tensor:
    """log R(s_t) - log R(s_0) of every row, in float64. Modified DB only uses differences of
    consecutive state rewards; subtracting each trajectory's start before the cast to the loss
    dtype keeps float32 exact even where log R itself is large (a BGe score of -1000). Where the
    environment gives reward differences along moves (env.log_reward_delta), they are summed
    within each trajectory instead of scoring every state in full."""
    if traj.T == 0:
        return torch.zeros(0, dtype=torch.float64, device=traj.states.device)
    delta = env.log_reward_delta(traj.states, traj.actions, traj.row_context())
    if delta is not None:
        delta = delta.to(torch.float64)
        before = torch.cumsum(delta, 0) - delta  # the sum over every earlier row of the batch
        return before - before[traj.offsets[:-1]][traj.traj_index]
    lr = env.log_reward_state(traj.states, traj.row_context()).to(torch.float64)
    start = lr[traj.offsets[:-1]]
    return lr - start[traj.traj_index]


LOSSES = {c.name: c for c in (TrajectoryBalance, DetailedBalance, SubTrajectoryBalance, FlowMatching,
                              LogPartitionVariance, ModifiedDetailedBalance)}


def get_loss(name: str, **options) -> Objective:
    """The objective called `name` (tb, db, subtb, fm, zvar, mdb), built with its options."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}") from None
    return cls(**options)

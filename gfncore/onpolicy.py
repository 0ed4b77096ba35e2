"""On-policy training without the recomputed forward: the rollout keeps the policy trunk's hidden
activations, and the loss differentiates through those very forwards.

The recomputing path runs the policy twice on every state: once per step without gradients to
sample (the rollout), then once more over all T packed rows with gradients (the loss). When the
trajectories were drawn on-policy (temperature 1, no epsilon) by the policy being trained, with
its parameters unchanged since, the second forward computes what the first already did. Here the
rollout writes each trunk layer's output h_l (after its ReLU) into one [T, H] buffer per layer,
rows in the order the rollout visited them; the loss then asks :func:`replayed_output` for the
policy output, which

- returns the stored last trunk activation through :class:`_TrunkReplay`, an autograd function
  whose backward is the trunk's batched backward over the stored activations (the same GEMMs
  the recomputing path's autograd runs, without its forward);
- applies the heads (P_F, and the flow or shared P_B heads) with ordinary autograd: one
  [T, H] x [H, A] product, a hundredth of the trunk;
- reorders the head outputs from rollout order into packed order (a gather of A columns, not
  of H).

Off-policy batches (tempered or epsilon-mixed sampling, replayed objects mixed in, importance
weights) or parameters changed since the rollout (any parameter's version counter moved) get
None, and the caller recomputes. :func:`path_of` says which path a batch took.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ROLLOUT, RECOMPUTE = "rollout", "recompute"


def trunk_layers(policy) -> list[nn.Linear] | None:
    """The trunk's Linear layers if the policy is an unconditional MLPPolicy whose P_F is
    Linear/ReLU ... Linear/ReLU -> pf_head (no hooks): the shape whose activations a rollout can
    keep. None for any other policy (it keeps the recomputing path)."""
    from .nn import MLPPolicy  # learn-layer sibling; imported late to keep import order free

    if type(policy) is not MLPPolicy or policy.context_dim or policy.film is not None:
        return None
    return policy._plain_layers()


class ActivationRecorder:
    """The policy forward a rollout calls once per step (``forward_logits`` on the active rows),
    keeping every trunk layer's output in rollout order. Rows of step t follow those of step t-1,
    exactly as the compiled recorder lays out its rows, so row r here is the recorder's row r."""

    def __init__(self, policy, layers: list[nn.Linear], rows_hint: int, previous: "ActivationRecorder | None" = None):
        self.policy, self.layers = policy, layers
        w = layers[0].weight
        self.dtype, self.device = w.dtype, w.device
        self.widths = [layers[0].in_features] + [lin.out_features for lin in layers]
        self.pos = 0
        self.params = list(policy.parameters())
        # buffers[0] holds the features (in the weights' dtype), buffers[l] the output of layer l.
        # The previous rollout's buffers are reused (fresh pages cost a page fault each): writing
        # them moves their version counters, which retires that rollout's record (RolloutActivations.fresh)
        # and makes a backward through its graph raise instead of using overwritten numbers.
        if (previous is not None and previous.widths == self.widths and previous.dtype == self.dtype
                and previous.device == self.device and previous.cap >= rows_hint):
            self.buffers, self.cap = previous.buffers, previous.cap
        else:
            self.cap = max(int(rows_hint), 1)
            self.buffers = [torch.empty(self.cap, d, dtype=self.dtype, device=self.device) for d in self.widths]

    def _grow(self, rows: int) -> None:
        cap = max(rows, self.cap + self.cap // 2)
        new = [torch.empty(cap, d, dtype=self.dtype, device=self.device) for d in self.widths]
        for a, b in zip(new, self.buffers):
            a[:self.pos].copy_(b[:self.pos])
        self.buffers, self.cap = new, cap

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        m = features.shape[0]
        end = self.pos + m
        if end > self.cap:
            self._grow(end)
        x = self.buffers[0][self.pos:end]
        x.copy_(features)
        h = x
        for lin, buf in zip(self.layers, self.buffers[1:]):
            out = buf[self.pos:end]
            # F.linear on a matrix is this addmm: the same numbers as the recomputing path's forward
            torch.addmm(lin.bias, h, lin.weight.t(), out=out)
            out.relu_()
            h = out
        self.pos = end
        head = self.policy.pf_head
        return F.linear(h, head.weight, head.bias)

    def finish(self, perm: torch.Tensor) -> "RolloutActivations":
        """The record of a finished rollout; perm[j] = the rollout-order row of packed row j."""
        T = self.pos
        return RolloutActivations(self.policy, self.layers, [b[:T] for b in self.buffers], perm,
                                  [p._version for p in self.params] + [b._version for b in self.buffers],
                                  self.params + self.buffers)


class RolloutActivations:
    """What a rollout kept for the loss: trunk inputs and outputs per layer (rollout order), the
    packed-order permutation, and the parameters' version counters at the rollout."""

    def __init__(self, policy, layers, acts, perm, versions, params):
        self.policy, self.layers, self.acts, self.perm = policy, layers, acts, perm
        self.versions, self.params = versions, params
        self.used = False

    def fresh(self, policy) -> bool:
        return (policy is self.policy and len(self.params) == len(self.versions)
                and all(p._version == v for p, v in zip(self.params, self.versions))
                and self.policy._plain_layers() is not None)


class _TrunkReplay(torch.autograd.Function):
    """h_L of the trunk, as the rollout computed it; backward: the trunk's batched backward over
    the stored activations (ReLU gates from the stored outputs, as autograd's own ReLU does)."""

    @staticmethod
    def forward(ctx, acts_holder, *params):
        # saved, so that a backward after the buffers were overwritten (by a later rollout) raises
        ctx.save_for_backward(*acts_holder.acts)
        ctx.weights = params[0::2]
        return acts_holder.acts[-1].view_as(acts_holder.acts[-1])

    @staticmethod
    def backward(ctx, grad):
        acts, weights = ctx.saved_tensors, ctx.weights
        grads: list[torch.Tensor | None] = [None] * (2 * len(weights))
        g = grad
        for i in range(len(weights) - 1, -1, -1):
            g = torch.ops.aten.threshold_backward(g, acts[i + 1], 0)  # autograd's own ReLU backward
            if ctx.needs_input_grad[1 + 2 * i]:
                grads[2 * i] = g.t().mm(acts[i])
            if ctx.needs_input_grad[2 + 2 * i]:
                grads[2 * i + 1] = g.sum(0)
            if i:
                g = g.mm(weights[i])
        return (None, *grads)


def replayed_output(policy, traj):
    """The policy output on traj's packed rows from the rollout's own forwards (PolicyOutput,
    differentiable in every parameter), or None where the recomputing path must run."""
    rec = traj.__dict__.get("_activations")
    if rec is None or traj.context is not None or not rec.fresh(policy) or not torch.is_grad_enabled():
        return None
    from .nn import PolicyOutput

    params = [t for lin in rec.layers for t in (lin.weight, lin.bias)]
    h = _TrunkReplay.apply(rec, *params)
    perm = rec.perm
    out = PolicyOutput(F.linear(h, policy.pf_head.weight, policy.pf_head.bias).index_select(0, perm))
    if policy.pb_head is not None:
        out.pb_logits = F.linear(h, policy.pb_head.weight, policy.pb_head.bias).index_select(0, perm)
    elif policy.pb_net is not None:  # a separate network over the features: run it (only it) here
        out.pb_logits = policy.pb_net(rec.acts[0]).index_select(0, perm)
    if policy.flow_head is not None:
        out.log_flow = F.linear(h, policy.flow_head.weight, policy.flow_head.bias).squeeze(-1).index_select(0, perm)
    rec.used = True
    return out


def path_of(traj) -> str:
    """Which forward the last loss over traj differentiated: "rollout" (the rollout's stored
    activations) or "recompute" (one batched forward over the packed rows)."""
    rec = traj.__dict__.get("_activations")
    return ROLLOUT if rec is not None and rec.used else RECOMPUTE

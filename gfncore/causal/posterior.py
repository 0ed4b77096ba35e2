"""A GFlowNet sampler of the posterior P(G | D) over causal graphs: environment, policy and
training with good defaults, then samples and quality metrics (exact on d <= 5).

>>> from gfncore.causal import fit_posterior, sample_erdos_renyi_sem
>>> cd = sample_erdos_renyi_sem(5, 100, expected_edges=5, seed=0)
>>> post = fit_posterior(cd)                       # modified DB, exploration, cosine lr
>>> post.edge_marginals                            # P(i -> j | D), [d, d]
>>> post.metrics["jsd"], post.metrics["expected_shd"]
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import torch


@dataclass
class CausalConfig:
    """Settings of a posterior run; the CLI's flags are generated from these fields. The defaults
    were chosen from measurements on d = 5, N = 100 (BGe, Erdos-Renyi data with 5 expected edges):
    see the README section "Causal structure learning"."""

    score: str = field(default="bge", metadata={"help": "marginal likelihood: bge or lingauss"})
    prior: str = field(default="uniform", metadata={"help": "graph prior: uniform, erdos_renyi or edge"})
    edge_prob: float = field(default=0.0, metadata={
        "help": "erdos_renyi prior: probability of each ordered pair (0: expected d edges, 1 / (d - 1))"})
    edge_penalty: float = field(default=1.0, metadata={"help": "edge prior: log P(G) = -edge_penalty |E|"})
    max_parents: int = field(default=-1, metadata={"help": "most parents of a node (-1: no limit)"})
    loss: str = field(default="mdb", metadata={"help": "objective: mdb (modified DB), tb or subtb"})
    steps: int = field(default=1500, metadata={"help": "training steps"})
    batch_size: int = field(default=128, metadata={"help": "trajectories per step"})
    lr: float = field(default=3e-3, metadata={"help": "Adam learning rate of the policy (start of the cosine schedule)"})
    lr_final: float = field(default=0.01, metadata={"help": "final learning rate as a fraction of lr (cosine decay)"})
    lr_log_z: float = field(default=0.1, metadata={"help": "learning rate of log Z (tb)"})
    hidden: int = field(default=256, metadata={"help": "MLP width"})
    reward_shift: bool = field(default=True, metadata={
        "help": "offset the stop logit by log R(s) (DAGPolicy; --no-reward-shift: a plain MLPPolicy)"})
    stop_bias: float = field(default=-1.0, metadata={
        "help": "initial stop logit above the edge logits (-1: log of the number of edges)"})
    layers: int = field(default=2, metadata={"help": "MLP hidden layers"})
    lam: float = field(default=0.9, metadata={"help": "SubTB lambda"})
    epsilon: float = field(default=0.1, metadata={"help": "exploration: share of uniformly random legal actions"})
    temperature: float = field(default=1.0, metadata={"help": "exploration: temperature of the behaviour policy"})
    replay_capacity: int = field(default=0, metadata={"help": "replay buffer of graphs (0: no replay)"})
    replay_fraction: float = field(default=0.5, metadata={"help": "share of each batch replayed"})
    replay_mcmc: int = field(default=0, metadata={
        "help": "seed the replay buffer with the graphs of 4 MC^3 chains of this many moves each (0: off; a buffer "
                "of 20,000 graphs is made when replay_capacity is 0)"})
    samples: int = field(default=10_000, metadata={"help": "posterior samples drawn after training"})
    seed: int = field(default=0, metadata={"help": "seed of the network and of every rollout"})
    threads: int = field(default=0, metadata={"help": "torch and kernel threads (0: default)"})
    multiword: bool = field(default=False, metadata={"help": "allow more than 64 nodes"})


LOSSES = ("mdb", "tb", "subtb")


@dataclass
class Posterior:
    """A trained posterior sampler over DAGs and what was measured about it.

    samples: bool [S, d, d] graphs from the learned sampler (no exploration). edge_marginals:
    P(i -> j | D) of the sampler, float64 [d, d]: exact (pushed through the state graph) for
    d <= 5, else estimated from the samples. exact: the exact posterior (d <= 5), or None.
    metrics: see fit_posterior.
    """

    env: object
    trainer: object
    samples: torch.Tensor
    edge_marginals: torch.Tensor
    metrics: dict
    node_names: list
    exact: object = None
    learned_probs: torch.Tensor | None = None  # the sampler's exact P_T(G) over exact.graphs (d <= 5)
    true_graph: torch.Tensor | None = None

    @property
    def policy(self):
        return self.trainer.policy


def validate_config(cfg: CausalConfig) -> None:
    """Raises ValueError naming the first setting out of range."""
    from ..envs.dag import PRIORS, SCORES

    checks = [
        ("score", cfg.score in SCORES, f"one of {list(SCORES)}"),
        ("prior", cfg.prior in PRIORS, f"one of {list(PRIORS)}"),
        ("loss", cfg.loss in LOSSES, f"one of {list(LOSSES)} (every state is a finished object)"),
        ("steps", cfg.steps >= 0, ">= 0"),
        ("batch_size", cfg.batch_size >= 1, ">= 1"),
        ("lr", cfg.lr > 0 and math.isfinite(cfg.lr), "> 0"),
        ("lr_final", 0 <= cfg.lr_final <= 1, "in [0, 1]"),
        ("lr_log_z", cfg.lr_log_z >= 0 and math.isfinite(cfg.lr_log_z), ">= 0"),
        ("hidden", cfg.hidden >= 1, ">= 1"),
        ("layers", cfg.layers >= 1, ">= 1"),
        ("epsilon", 0 <= cfg.epsilon <= 1, "in [0, 1]"),
        ("temperature", cfg.temperature > 0 and math.isfinite(cfg.temperature), "> 0"),
        ("replay_capacity", cfg.replay_capacity >= 0, ">= 0"),
        ("replay_fraction", 0 <= cfg.replay_fraction < 1, "in [0, 1)"),
        ("replay_mcmc", cfg.replay_mcmc >= 0, ">= 0 (0: off)"),
        ("samples", cfg.samples >= 0, ">= 0"),
        ("edge_prob", 0 <= cfg.edge_prob < 1, "in [0, 1) (0: the default, 1 / (d - 1))"),
        ("max_parents", cfg.max_parents >= -1, ">= -1 (-1: no limit)"),
        ("threads", cfg.threads >= 0, ">= 0"),
    ]
    for name, ok, want in checks:
        if not ok:
            raise ValueError(f"{name} must be {want}, got {getattr(cfg, name)!r}")
    from ..limits import check_threads

    check_threads(cfg.threads, "--threads")


def make_env(data, cfg: CausalConfig, interventions=None, node_names=None):
    """The DAG environment of a data set under the config's score and prior."""
    from ..envs import DAG

    d = int(torch.as_tensor(data.data if hasattr(data, "node_names") else data).shape[-1])
    edge_prob = None
    if cfg.prior == "erdos_renyi":
        edge_prob = cfg.edge_prob if cfg.edge_prob > 0 else 1.0 / max(d - 1, 1)
        if edge_prob >= 1:
            raise ValueError(f"the erdos_renyi prior needs d >= 3 for the default edge_prob; give edge_prob in (0, 1)")
    return DAG(data=data, score=cfg.score, interventions=interventions, node_names=node_names, prior=cfg.prior,
               edge_prob=edge_prob, edge_penalty=cfg.edge_penalty,
               max_parents=None if cfg.max_parents < 0 else cfg.max_parents, multiword=cfg.multiword)


def make_trainer(env, cfg: CausalConfig):
    """Policy (DAGPolicy: an MLP over adjacency and legal edges with the stop logit offset by
    log R(s); uniform P_B) and Trainer."""
    from ..nn import MLPPolicy
    from ..replay import ReplayBuffer
    from ..train import Trainer
    from .policy import DAGPolicy

    torch.manual_seed(cfg.seed)
    # log R is a log-likelihood (hundreds of nats below 0, and hundreds of nats above the empty
    # graph's): log Z (TB) and log F (SubTB) start at the log R of a greedy graph, a lower bound
    # of log Z within a few nats of it, instead of hundreds of Adam steps away.
    _, log_r_greedy = greedy_graph(env)
    if cfg.reward_shift:
        log_r0 = float(env.log_reward(env.initial_states(1))[0])
        policy = DAGPolicy(env, hidden=cfg.hidden, layers=cfg.layers, flow=cfg.loss == "subtb",
                           log_z_init=log_r_greedy, reward_ref=log_r_greedy - log_r0)
    else:
        policy = MLPPolicy(env, hidden=cfg.hidden, layers=cfg.layers, flow=cfg.loss == "subtb", log_z_init=log_r_greedy)
    with torch.no_grad():
        if policy.flow_head is not None:
            policy.flow_head.bias.fill_(log_r_greedy)
        policy.pf_head.bias[-1] += stop_bias(env, cfg)
    capacity = cfg.replay_capacity or (20_000 if cfg.replay_mcmc > 0 else 0)
    replay = ReplayBuffer(env, capacity) if capacity > 0 else None
    opts = {"lam": cfg.lam} if cfg.loss == "subtb" else {}
    trainer = Trainer(env, policy, loss=cfg.loss, batch_size=cfg.batch_size, lr=cfg.lr, lr_log_z=cfg.lr_log_z,
                      temperature=cfg.temperature, epsilon=cfg.epsilon, seed=cfg.seed, loss_options=opts,
                      replay=replay, replay_fraction=cfg.replay_fraction)
    if cfg.replay_mcmc > 0:
        from .mcmc import seed_replay

        seed_replay(trainer, env, cfg.replay_mcmc, seed=cfg.seed)
    return trainer


def stop_bias(env, cfg: CausalConfig) -> float:
    """The initial stop logit above the edge logits: cfg.stop_bias, or where it is < 0 the log of
    the number of edges, so an untrained plain policy stops about half the time at the empty graph
    (graphs of a few edges) instead of once in d(d - 1) moves (graphs of hundreds of edges at d = 20)."""
    return cfg.stop_bias if cfg.stop_bias >= 0 else math.log(max(env.n_actions - 1, 1))


@torch.no_grad()
def greedy_graph(env, max_edges: int | None = None):
    """Hill climbing from the empty graph: add the legal edge of largest reward gain (cached delta
    scores) while one gains. Returns (state [1, D], log R of it)."""
    s = env.initial_states(1)
    lr = float(env.log_reward(s)[0])
    for _ in range(env.max_parents if max_edges is None else max_edges):
        legal = env.forward_mask(s)[0, : env.stop_action].nonzero().flatten()
        if legal.numel() == 0:
            break
        gain = env.log_reward_delta(s.expand(legal.numel(), -1), legal)
        if gain is None:  # a custom reward: score the children in full
            gain = env.log_reward(env.step(s.expand(legal.numel(), -1), legal)) - lr
        best = int(torch.argmax(gain))
        if not float(gain[best]) > 0:
            break
        s = env.step(s, legal[best:best + 1])
        lr += float(gain[best])
    return s, lr


@torch.no_grad()
def _progress_stats(trainer, seed: int) -> dict:
    x = trainer.sample(64, generator=torch.Generator().manual_seed(seed + trainer.step_count))
    return {"edges": float(trainer.env.adjacency(x).flatten(1).sum(1).double().mean()),
            "log_r": float(trainer.env.log_reward(x).double().mean())}


def train_posterior(trainer, steps: int, cfg: CausalConfig, *, progress: bool = True, checkpoint: str | None = None,
          checkpoint_every: float = 60.0, on_checkpoint=None) -> float:
    """Runs the trainer from its current step to `steps` with the cosine learning rate (over all
    `steps`, so a resumed run continues it; the noise of the last iterates is what limits the JSD
    of a constant learning rate) and a progress bar; saves `checkpoint` every `checkpoint_every`
    seconds, at the end and when interrupted (Ctrl-C), so a run resumes where it stopped. Returns
    the training seconds."""
    from ..train import Checkpoints, Evaluate, LRSchedule

    hooks = [LRSchedule.cosine(cfg.lr_final, steps)]
    if checkpoint:
        hooks.append(Checkpoints(checkpoint, seconds=checkpoint_every, at_end=True, on_save=on_checkpoint))
    t0 = time.perf_counter()
    if progress:
        # what a user watches for convergence: the sampler's E[#edges] and mean log R, from 64 graphs
        # every 50 steps drawn with a generator of their own (the training draws stay the same)
        hooks.append(Evaluate(50, lambda t: _progress_stats(t, cfg.seed), show=("edges", "log_r")))
    trainer.fit(max(steps - trainer.step_count, 0), progress=progress, hooks=hooks, desc=f"causal {trainer.loss_name}")
    return time.perf_counter() - t0


@torch.no_grad()
def evaluate(env, trainer, samples: torch.Tensor, true_graph=None, exact=None):
    """Quality of the sampler. Always: expected number of edges, distinct graphs among the samples,
    log Z as the objective estimates it (modified DB: log R(s0) - log P_F(stop | s0); TB: the
    learned log Z; SubTB: log F(s0)). With a true graph: expected SHD, edge AUROC, probability of
    its Markov equivalence class. With the exact posterior (d <= 5): the sampler's exact terminal
    distribution, its JSD (nats) to the posterior, edge-marginal RMSE and correlation, |log Z
    error|, and the same expectations exactly. Returns (metrics, edge marginals, learned probs)."""
    from ..metrics import exact_terminal_distribution
    from . import metrics as M

    m = {"samples": int(samples.shape[0]), "log_z": float(trainer.log_z)}
    probs = None
    if samples.shape[0]:
        m["expected_edges_samples"] = M.expected_edges(samples)
        m["distinct_graphs"] = M.n_distinct(samples)
        marg = M.edge_marginals(samples)
    else:
        marg = torch.zeros(env.d, env.d, dtype=torch.float64)
    graphs, weights = samples, None
    if exact is not None:
        p = exact_terminal_distribution(env, trainer.policy)
        probs = p / p.sum()
        marg = M.edge_marginals(exact.graphs, probs)
        graphs, weights = exact.graphs, probs
        m.update(jsd=M.jsd(exact.probs, probs), edge_rmse=M.edge_marginal_rmse(marg, exact.edge_marginals),
                 edge_corr=M.edge_marginal_corr(marg, exact.edge_marginals), true_log_z=exact.log_z,
                 log_z_error=abs(m["log_z"] - exact.log_z), expected_edges=M.expected_edges(graphs, weights),
                 exact_expected_edges=M.expected_edges(exact.graphs, exact.probs))
        if math.isnan(m["edge_corr"]):  # stored as null with the reason, never a bare NaN
            m["edge_corr"] = None
            m["edge_corr_undefined"] = ("a correlation needs both edge-marginal matrices to vary; one is constant "
                                        "(e.g. observational data on 2 variables: X->Y and Y->X get equal mass)")
    elif samples.shape[0]:
        m["expected_edges"] = m["expected_edges_samples"]
    if true_graph is not None and (samples.shape[0] or exact is not None):
        t = torch.as_tensor(true_graph).bool()
        m["expected_shd"] = M.expected_shd(graphs, t, weights)
        m["true_mec_probability"] = M.mec_probability(graphs, t, weights)
        if t.any() and not t.all():
            try:
                m["edge_auroc"] = M.edge_auroc(marg, t)
            except ValueError:
                pass
        if exact is not None:
            m["exact_expected_shd"] = M.expected_shd(exact.graphs, t, exact.probs)
    return m, marg, probs


def fit_posterior(data, interventions=None, score: str | None = None, *, config: CausalConfig | None = None,
                  node_names=None, true_graph=None, progress: bool = True, checkpoint: str | None = None,
                  resume: bool = False, **overrides) -> Posterior:
    """Learns a GFlowNet sampler of P(G | D) for a data set and returns samples and metrics.

    data: float [N, d] (rows = samples), or a CausalData (with its interventions, node names and
    true graph). interventions: a bool mask [N, d] or one list of intervened node names / ids per
    row. score: "bge" (default) or "lingauss". Any CausalConfig field may be given as a keyword
    (``steps=5000, loss="tb"``) or through ``config``.

    Defaults: modified detailed balance (every graph is a finished object; the reward differences
    along edges come from the local-score cache), DAGPolicy (an MLP of two hidden layers of 256
    over the adjacency and the legal-edge mask, stop logit offset by log R(s) and started log(#edges)
    above the edge logits), uniform P_B, epsilon = 0.1 exploration, batches of 128, Adam at 3e-3
    with a cosine decay to 3e-5 over 1500 steps.

    checkpoint: a path to save the trainer to (every minute, at the end, on Ctrl-C); resume=True
    continues from it. The metrics are described in :func:`evaluate`.
    """
    from ..runtime import set_num_threads

    cfg = dataclasses.replace(config or CausalConfig())
    if score is not None:
        cfg.score = score
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"fit_posterior() got an unexpected keyword argument {k!r} (not a CausalConfig field)")
        setattr(cfg, k, v)
    validate_config(cfg)
    if true_graph is None and hasattr(data, "graph"):
        true_graph = data.graph
    if cfg.threads > 0:
        set_num_threads(cfg.threads)
    env = make_env(data, cfg, interventions, node_names)
    if true_graph is not None:
        true_graph = torch.as_tensor(true_graph).bool()
        if tuple(true_graph.shape) != (env.d, env.d):
            raise ValueError(f"true_graph must have shape [{env.d}, {env.d}], got {list(true_graph.shape)}")
    trainer = make_trainer(env, cfg)
    if resume:
        if not checkpoint:
            raise ValueError("resume=True needs the checkpoint path to resume from")
        trainer.resume(checkpoint)
    seconds = train_posterior(trainer, cfg.steps, cfg, progress=progress, checkpoint=checkpoint)
    t0 = time.perf_counter()
    samples = env.adjacency(trainer.sample(cfg.samples)) if cfg.samples else torch.zeros(0, env.d, env.d, dtype=torch.bool)
    sample_seconds = time.perf_counter() - t0
    exact = env.exact_posterior() if env.d <= 5 else None
    metrics, marg, probs = evaluate(env, trainer, samples, true_graph, exact)
    metrics.update(steps=trainer.step_count, train_seconds=seconds, sample_seconds=sample_seconds,
                   steps_per_second=(trainer.step_count / seconds) if seconds > 0 else None,
                   marginals="exact" if exact is not None else "samples")
    return Posterior(env=env, trainer=trainer, samples=samples, edge_marginals=marg, metrics=metrics,
                     node_names=list(env.node_names), exact=exact, learned_probs=probs, true_graph=true_graph)


# the names before issue 16 (bayes has a PosteriorConfig too, and the CLI a train)
PosteriorConfig, train = CausalConfig, train_posterior

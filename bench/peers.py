"""gfncore beside its peers (torchgfn, gfnx on JAX), measured side by side at equal settings.

    python -m bench.peers                                 # whatever of the peers imports here
    python -m bench.peers --peer-python /path/to/python   # the peers from another interpreter
    python -m bench.peers --quick                         # fewer, shorter rounds

Installs nothing. The peers come with the optional extra: ``pip install '.[peers]'`` (or into a
virtual environment made with ``--system-site-packages``, so that it shares this torch; then pass
its interpreter as --peer-python). A peer that does not import is reported as such, with the error.

Settings, the same for every library: trajectory balance; MLP with two hidden layers of 256
(three Linear layers, ReLU) over the one-hot encoding of each coordinate; uniform P_B; Adam with
learning rate 1e-3 for the network and 0.1 for log Z, log Z starting at 0; on-policy sampling
(temperature 1, no epsilon, no gradient clipping); HyperGrid rewards R0 = 1e-3, R1 = 0.5, R2 = 2
(gfnx's "easy"), in 4-D with height 8 and 2-D with height 32. The peers' training steps follow
their own HyperGrid examples: torchgfn's ``train_hypergrid_simple.py`` (its Sampler with
``save_logprobs=True``, then ``TBGFlowNet.loss(..., recalculate_all_logprobs=False)``), gfnx's
``baselines/tb_hypergrid.py`` (``forward_rollout`` and the TB loss inside one ``eqx.filter_jit``
step, iterated in a ``jax.lax.fori_loop``, which is how that script trains: each timed round is
one compiled loop over its steps).

Each library runs in its own process (a worker); the parent runs rounds interleaved, one worker
at a time, so machine load falls on all alike. Reported: iterations per second (median over
rounds), median ratios of per-round times, gfncore's ratio to its network floor (the bare
network work of its step, bench.workloads.FloorPipeline, in the gfncore worker), the peak
memory each iteration adds (VmHWM after a reset, minus the resident set before the rounds), the
peers' compile (JIT) time apart from the rounds, and the exact L1 between each trained sampler's
terminal distribution and R/Z after the same number of steps from the same kind of
initialisation: each library's trained weights are loaded into a gfncore MLPPolicy and its
distribution computed exactly by gfncore.metrics, after checking that the library encodes and
rewards every state exactly as gfncore does.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

HIDDEN, LAYERS = 256, 2
LR, LR_LOG_Z = 1e-3, 0.1
R0, R1, R2 = 1e-3, 0.5, 2.0
GRIDS = {"4d8": (4, 8), "2d32": (2, 32)}
LIBS = ("gfncore", "torchgfn", "gfnx")


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> int:
    """Reset the kernel's resident-set high-water mark; return the resident set now (KiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kib("VmRSS")


# -- workers: one library each --------------------------------------------------------------------
class GfncoreRunner:
    def __init__(self, ndim, height, batch, seed):
        import torch

        import gfncore as gfn
        from bench import workloads as W

        self.env = gfn.envs.HyperGrid(ndim=ndim, height=height, R0=R0, R1=R1, R2=R2)
        torch.manual_seed(seed)
        self.policy = gfn.nn.MLPPolicy(self.env, hidden=HIDDEN, layers=LAYERS)
        self.trainer = gfn.Trainer(self.env, self.policy, loss="tb", batch_size=batch, lr=LR, lr_log_z=LR_LOG_Z,
                                   seed=seed)
        self.floor = W.FloorPipeline(batch, seed, env=self.env)
        self._schedule = []
        sample = self.trainer.sampler.sample

        def recording(*a, **k):  # keeps each batch's (active sizes, T) for the floor to replay
            t = sample(*a, **k)
            self._trajs.append(t)
            return t

        self._trajs = []
        self.trainer.sampler.sample = recording

    def compile(self):
        t0 = time.perf_counter()
        self.trainer.train_step()
        return time.perf_counter() - t0

    def run(self, iters, which="main"):
        from bench import workloads as W

        if which == "floor":
            self.floor.set_schedule(self._schedule)
            step = self.floor.step
        else:
            self._trajs = []
            step = self.trainer.train_step
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            step()
        out = (time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters
        if which != "floor":
            self._schedule = [(W.active_sizes(t), t.T) for t in self._trajs]
            self._trajs = []
        return out

    def info(self):
        return {"forward": getattr(self.trainer, "forward_path", "?")}

    def weights(self):
        p = self.policy
        lins = [m for m in p.trunk if hasattr(m, "weight")] + [p.pf_head]
        return [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in lins], float(p.log_z)


class TorchgfnRunner:
    def __init__(self, ndim, height, batch, seed):
        import torch
        from gfn.estimators import DiscretePolicyEstimator
        from gfn.gflownet import TBGFlowNet
        from gfn.gym import HyperGrid
        from gfn.preprocessors import KHotPreprocessor
        from gfn.samplers import Sampler
        from gfn.utils.modules import MLP, DiscreteUniform

        torch.manual_seed(seed)
        self.env = HyperGrid(ndim=ndim, height=height, reward_fn_str="original",
                             reward_fn_kwargs={"R0": R0, "R1": R1, "R2": R2}, device="cpu")
        self.pre = KHotPreprocessor(height=height, ndim=ndim)
        self.module = MLP(input_dim=self.pre.output_dim, output_dim=self.env.n_actions, hidden_dim=HIDDEN,
                          n_hidden_layers=LAYERS)
        pb = DiscreteUniform(output_dim=self.env.n_actions - 1)
        pf_est = DiscretePolicyEstimator(self.module, self.env.n_actions, preprocessor=self.pre, is_backward=False)
        pb_est = DiscretePolicyEstimator(pb, self.env.n_actions, preprocessor=self.pre, is_backward=True)
        self.gfn = TBGFlowNet(pf=pf_est, pb=pb_est, init_logZ=0.0)
        self.sampler = Sampler(estimator=pf_est)
        self.opt = torch.optim.Adam(self.gfn.pf_pb_parameters(), lr=LR)
        self.opt.add_param_group({"params": self.gfn.logz_parameters(), "lr": LR_LOG_Z})
        self.batch = batch

    def step(self):
        traj = self.sampler.sample_trajectories(self.env, n=self.batch, save_logprobs=True,
                                                save_estimator_outputs=False, epsilon=0.0)
        self.opt.zero_grad()
        loss = self.gfn.loss(self.env, traj, recalculate_all_logprobs=False)
        loss.backward()
        self.opt.step()

    def compile(self):
        t0 = time.perf_counter()
        self.step()
        return time.perf_counter() - t0

    def run(self, iters, which="main"):
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            self.step()
        return (time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters

    def info(self):
        return {}

    def encode(self, states):
        import torch

        s = self.env.states_from_tensor(torch.as_tensor(states, dtype=torch.long))
        return self.pre(s).double().numpy(), self.env.log_reward(s).double().numpy()

    def weights(self):
        lins = [m for m in self.module.modules() if isinstance(m, __import__("torch").nn.Linear)]
        return ([(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in lins],
                float(self.gfn.logZ.detach()))


class GfnxRunner:
    """gfnx's tb_hypergrid baseline, without its metrics and logging: rollout and loss inside one
    jitted step, a round = one jitted fori_loop over `iters` steps."""

    def __init__(self, ndim, height, batch, seed):
        import equinox as eqx
        import gfnx
        import jax
        import jax.numpy as jnp
        import optax

        self.jax, self.jnp, self.eqx = jax, jnp, eqx
        from gfnx.reward.hypergrid import GeneralHypergridRewardModule

        reward = GeneralHypergridRewardModule(R0=R0, R1=R1, R2=R2)
        env = gfnx.environment.HypergridEnvironment(reward, dim=ndim, side=height)
        env_params = env.init(jax.random.PRNGKey(1))
        key, net_key = jax.random.split(jax.random.PRNGKey(seed))
        n_fwd = env.action_space.n
        model = eqx.nn.MLP(in_size=env.observation_space.shape[0], out_size=n_fwd, width_size=HIDDEN, depth=LAYERS,
                           key=net_key)
        params = {"model": eqx.filter(model, eqx.is_array), "logZ": jnp.array(0.0)}
        static = eqx.partition(model, eqx.is_array)[1]
        labels = {"model": jax.tree.map(lambda _: "net", params["model"]), "logZ": "logz"}
        opt = optax.multi_transform({"net": optax.adam(LR), "logz": optax.adam(LR_LOG_Z)}, labels)
        self.env, self.env_params, self.static = env, env_params, static
        self.state = (key, params, opt.init(params))
        n_bwd = env.backward_action_space.n

        def loss_fn(p, traj):
            net = eqx.combine(p["model"], static)
            logits = jax.vmap(jax.vmap(net))(traj.obs)
            st = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj.state)
            inv = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1),
                               jax.vmap(env.get_invalid_mask, in_axes=(0, None))(st, env_params))
            lp = jax.nn.log_softmax(gfnx.utils.mask_logits(logits, inv), axis=-1)
            lp = jnp.take_along_axis(lp, traj.action[..., None], axis=-1).squeeze(-1)
            lp = jnp.where(traj.pad, 0.0, lp).sum(1)
            # uniform P_B: log 1/#valid backward actions at every non-pad next state
            nxt = jax.tree.map(lambda x: jnp.swapaxes(x[:, 1:], 0, 1), traj.state)
            binv = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1),
                                jax.vmap(env.get_invalid_backward_mask, in_axes=(0, None))(nxt, env_params))
            n_par = jnp.maximum((~binv).sum(-1), 1)
            lpb = jnp.where(traj.pad[:, :-1], 0.0, -jnp.log(n_par.astype(jnp.float32))).sum(1)
            lr = jnp.where(traj.pad[:, :-1], 0.0, traj.log_gfn_reward[:, :-1]).sum(1)
            return ((p["logZ"] + lp - lr - lpb) ** 2).mean()

        def step(carry):
            key, p, o = carry
            key, k = jax.random.split(key)

            def policy_fn(_, obs, mp):
                net = eqx.combine(mp, static)
                return jax.vmap(net)(obs), {}

            traj, _ = gfnx.utils.forward_rollout(rng_key=k, num_envs=batch, policy_fn=policy_fn, policy_params=p["model"],
                                                 env=env, env_params=env_params)
            g = jax.grad(loss_fn)(p, traj)
            upd, o = opt.update(g, o, p)
            return key, optax.apply_updates(p, upd), o

        self._loops = {}
        self._step = step

    def _loop(self, iters):
        f = self._loops.get(iters)
        if f is None:
            jax = self.jax
            f = jax.jit(lambda c: jax.lax.fori_loop(0, iters, lambda i, c: self._step(c), c))
            self._loops[iters] = f
        return f

    def compile(self, iters=1):
        t0 = time.perf_counter()
        self.state = self.jax.block_until_ready(self._loop(iters)(self.state))
        return time.perf_counter() - t0

    def run(self, iters, which="main"):
        f = self._loop(iters)
        w0, c0 = time.perf_counter(), time.process_time()
        self.state = self.jax.block_until_ready(f(self.state))
        return (time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters

    def info(self):
        return {}

    def encode(self, states):
        import numpy as np
        from gfnx.environment.hypergrid import EnvState

        jnp = self.jnp
        s = jnp.asarray(states, dtype=jnp.int32)
        n = s.shape[0]
        st = EnvState(state=s, is_terminal=jnp.ones(n, bool), is_initial=jnp.zeros(n, bool), is_pad=jnp.zeros(n, bool))
        obs = self.env.get_obs(st, self.env_params)
        lr = self.env.reward_module.log_reward(st, self.env_params)
        return np.asarray(obs, dtype=np.float64), np.asarray(lr, dtype=np.float64)

    def weights(self):
        import numpy as np

        p = self.state[1]
        net = self.eqx.combine(p["model"], self.static)
        return ([(np.asarray(l.weight, np.float64), np.asarray(l.bias, np.float64)) for l in net.layers],
                float(p["logZ"]))


RUNNERS = {"gfncore": GfncoreRunner, "torchgfn": TorchgfnRunner, "gfnx": GfnxRunner}


def worker(lib: str, threads: int) -> None:
    """Line protocol on stdin/stdout: one JSON command per line, one JSON answer per line."""
    if threads:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    out = sys.stdout
    sys.stdout = sys.stderr  # libraries' prints must not break the protocol
    runners, peaks = {}, {}
    try:
        import torch

        if threads:
            torch.set_num_threads(threads)
        if lib == "gfncore":
            import gfncore as gfn

            gfn.set_num_threads(threads or gfn.default_threads())
        cls = RUNNERS[lib]
        answer = {"ok": True, "torch": torch.__version__, "threads": torch.get_num_threads()}
        if lib == "gfnx":
            import jax

            answer["jax"] = jax.__version__
    except Exception as e:  # the peer is not installed here: say why, and stop
        answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        cls = None
    out.write(json.dumps(answer) + "\n")
    out.flush()
    if cls is None:
        return
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            op, key = cmd["op"], cmd.get("key")
            if op == "setup":
                ndim, height = GRIDS[cmd["grid"]]
                r = cls(ndim, height, cmd["batch"], cmd.get("seed", 0))
                runners[key] = r
                t_compile = r.compile(cmd["iters"]) if lib == "gfnx" else r.compile()
                t0 = time.perf_counter()
                r.run(cmd["iters"])  # warm-up round (a gfnx round of this length is compiled now)
                res = {"compile_s": t_compile, "warm_round_s": time.perf_counter() - t0}
                if lib == "gfncore":
                    r.run(cmd["iters"], "floor")
            elif op == "round":
                r = runners[key]
                if cmd.get("reset_peak"):
                    peaks[key] = _reset_peak()
                wall, cpu = r.run(cmd["iters"], cmd.get("which", "main"))
                res = {"wall": wall, "cpu": cpu, **r.info()}
            elif op == "peak":
                res = {"mib": (_status_kib("VmHWM") - peaks.get(cmd["key"], 0)) / 1024}
            elif op == "drop":
                runners.pop(key, None)
                import gc

                gc.collect()
                res = {}
            elif op == "train":  # fresh model, n steps, weights out for the exact L1
                ndim, height = GRIDS[cmd["grid"]]
                r = cls(ndim, height, cmd["batch"], cmd.get("seed", 0))
                steps, chunk = cmd["steps"], cmd.get("chunk", 100)
                t0 = time.perf_counter()
                done = 0
                while done < steps:
                    k = min(chunk, steps - done)
                    r.run(k)
                    done += k
                w, log_z = r.weights()
                path = os.path.join(cmd["dir"], f"{lib}.npz")
                import numpy as np

                np.savez(path, *[a for pair in w for a in pair])
                res = {"weights": path, "log_z": log_z, "seconds": time.perf_counter() - t0}
                if lib != "gfncore":
                    states = np.load(cmd["states"])
                    feats, lr = r.encode(states)
                    np.save(os.path.join(cmd["dir"], f"{lib}_enc.npy"), feats)
                    np.save(os.path.join(cmd["dir"], f"{lib}_lr.npy"), lr)
            elif op == "quit":
                break
            else:
                raise ValueError(f"unknown op {op}")
            out.write(json.dumps({"ok": True, **res}) + "\n")
        except Exception as e:
            out.write(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}",
                                  "trace": traceback.format_exc()}) + "\n")
        out.flush()


# -- the parent -----------------------------------------------------------------------------------
class Worker:
    def __init__(self, lib, python, threads):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.lib = lib
        self.p = subprocess.Popen([python, "-m", "bench.peers", "--worker", lib, "--threads", str(threads)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root, env=env)
        self.hello = json.loads(self.p.stdout.readline() or '{"ok": false, "error": "worker died"}')

    def __call__(self, **cmd):
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.lib} worker died")
        r = json.loads(line)
        if not r.get("ok"):
            raise RuntimeError(f"{self.lib}: {r.get('error')}\n{r.get('trace', '')}")
        return r

    def close(self):
        try:
            self(op="quit")
        except Exception:
            pass
        self.p.wait(timeout=30)


def exact_l1(grid, lib, path, log_z, tmp):
    """Exact L1 of a trained sampler: its weights in a gfncore MLPPolicy, gfncore.metrics."""
    import numpy as np
    import torch

    import gfncore as gfn

    ndim, height = GRIDS[grid]
    env = gfn.envs.HyperGrid(ndim=ndim, height=height, R0=R0, R1=R1, R2=R2)
    pol = gfn.nn.MLPPolicy(env, hidden=HIDDEN, layers=LAYERS).double()
    z = np.load(path)
    arrs = [torch.from_numpy(z[f"arr_{i}"]) for i in range(len(z.files))]
    lins = [m for m in pol.trunk if hasattr(m, "weight")] + [pol.pf_head]
    assert len(arrs) == 2 * len(lins), f"{lib}: {len(arrs) // 2} layers, expected {len(lins)}"
    with torch.no_grad():
        for m, (w, b) in zip(lins, zip(arrs[0::2], arrs[1::2])):
            assert m.weight.shape == w.shape, f"{lib}: layer shape {tuple(w.shape)} != {tuple(m.weight.shape)}"
            m.weight.copy_(w)
            m.bias.copy_(b)

    class F64(torch.nn.Module):  # gfncore encodes in float32; the copied network runs in float64
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward_logits(self, f):
            return self.p.forward_logits(f.double())

    p = gfn.metrics.exact_terminal_distribution(env, F64(pol))
    return gfn.metrics.l1(p, env.true_distribution())


def check_encodings(grid, lib, tmp):
    """The peer sees each terminal state as gfncore does (features) and rewards it the same."""
    import numpy as np
    import torch

    import gfncore as gfn

    ndim, height = GRIDS[grid]
    env = gfn.envs.HyperGrid(ndim=ndim, height=height, R0=R0, R1=R1, R2=R2)
    x = env.all_terminal_states()
    feats = np.load(os.path.join(tmp, f"{lib}_enc.npy"))
    lr = np.load(os.path.join(tmp, f"{lib}_lr.npy"))
    ok_f = np.array_equal(feats, env.encode(x).double().numpy())
    ok_r = np.allclose(lr, env.log_reward(x).double().numpy(), atol=1e-5)
    return ok_f, ok_r


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help="threads per library (0: each library's default)")
    ap.add_argument("--peer-python", default=sys.executable, help="interpreter that has torchgfn / gfnx")
    ap.add_argument("--libs", nargs="+", default=list(LIBS), choices=LIBS)
    ap.add_argument("--grids", nargs="+", default=list(GRIDS), choices=list(GRIDS))
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--round-seconds", type=float, default=0.5)
    ap.add_argument("--l1-steps", type=int, default=1000, help="training steps before the exact L1 (0: skip)")
    ap.add_argument("--l1-batch", type=int, default=64)
    ap.add_argument("--l1-grids", nargs="+", default=["4d8"], choices=list(GRIDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="3 rounds of ~0.2 s, L1 after 200 steps")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.threads)
    if args.quick:
        args.rounds, args.round_seconds, args.l1_steps = 3, 0.2, 200
    load0 = os.getloadavg()
    workers, missing = {}, {}
    for lib in args.libs:
        w = Worker(lib, sys.executable if lib == "gfncore" else args.peer_python, args.threads)
        if w.hello.get("ok"):
            workers[lib] = w
        else:
            missing[lib] = w.hello.get("error")
            w.p.wait(timeout=30)
            print(f"{lib}: not measured ({missing[lib]}); pip install '.[peers]'", file=sys.stderr)
    rows = []
    try:
        for grid in args.grids:
            for B in args.batches:
                key = f"{grid}-{B}"
                setup, iters = {}, {}
                for lib, w in workers.items():
                    # about round_seconds per round, from a first timed round of a few steps
                    probe = 2
                    w(op="setup", key=key + "-probe", grid=grid, batch=B, iters=probe, seed=args.seed)
                    t = w(op="round", key=key + "-probe", iters=probe)["wall"]
                    w(op="drop", key=key + "-probe")
                    iters[lib] = max(1, min(2000, int(args.round_seconds / max(t, 1e-5))))
                    setup[lib] = w(op="setup", key=key, grid=grid, batch=B, iters=iters[lib], seed=args.seed)
                times = {lib: [] for lib in workers}
                floor = []
                info = {}
                for r in range(args.rounds):
                    for lib, w in workers.items():
                        res = w(op="round", key=key, iters=iters[lib], reset_peak=(r == 0))
                        times[lib].append(res["wall"])
                        info[lib] = {k: v for k, v in res.items() if k not in ("ok", "wall", "cpu")}
                        if lib == "gfncore":
                            floor.append(w(op="round", key=key, iters=iters[lib], which="floor")["wall"])
                row = {"grid": grid, "batch": B, "iters": iters, "info": info,
                       "compile_s": {lib: s["compile_s"] for lib, s in setup.items()},
                       "it_s": {lib: 1 / statistics.median(v) for lib, v in times.items()},
                       "peak_mib": {lib: w(op="peak", key=key)["mib"] for lib, w in workers.items()}}
                if "gfncore" in times:
                    g = times["gfncore"]
                    row["vs"] = {lib: statistics.median(a / b for a, b in zip(times[lib], g)) for lib in times if lib != "gfncore"}
                    row["gf_floor"] = statistics.median(a / b for a, b in zip(g, floor))
                    row["floor_it_s"] = 1 / statistics.median(floor)
                for w in workers.values():
                    w(op="drop", key=key)
                rows.append(row)
                print(f"  {key}: " + ", ".join(f"{lib} {v:.1f} it/s" for lib, v in row["it_s"].items()), file=sys.stderr)
        l1 = {}
        if args.l1_steps:
            import numpy as np

            import gfncore as gfn

            with tempfile.TemporaryDirectory() as tmp:
                for grid in args.l1_grids:
                    ndim, height = GRIDS[grid]
                    env = gfn.envs.HyperGrid(ndim=ndim, height=height, R0=R0, R1=R1, R2=R2)
                    states = os.path.join(tmp, "states.npy")
                    np.save(states, env.all_terminal_states().numpy())
                    for lib, w in workers.items():
                        res = w(op="train", grid=grid, batch=args.l1_batch, steps=args.l1_steps, seed=args.seed, dir=tmp,
                                states=states)
                        checks = (True, True) if lib == "gfncore" else check_encodings(grid, lib, tmp)
                        l1[(grid, lib)] = {"l1": exact_l1(grid, lib, res["weights"], res["log_z"], tmp),
                                           "log_z": res["log_z"], "true_log_z": env.true_log_z(),
                                           "same_features": checks[0], "same_rewards": checks[1],
                                           "seconds": res["seconds"]}
                        print(f"  L1 {grid} {lib}: {l1[(grid, lib)]['l1']:.4f}", file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()
    report(args, rows, l1, missing, workers, load0, os.getloadavg())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "l1": {f"{g}/{lib}": v for (g, lib), v in l1.items()}, "missing": missing}, f,
                      indent=1)


def report(args, rows, l1, missing, workers, load0, load1):
    import platform

    libs = list(workers)
    vers = ", ".join(f"{lib}: torch {w.hello.get('torch')}" + (f", jax {w.hello['jax']}" if "jax" in w.hello else "") +
                     f", {w.hello.get('threads')} torch threads" for lib, w in workers.items())
    print(f"### gfncore and its peers: TB, MLP {HIDDEN}x{LAYERS}, uniform P_B, Adam ({LR}, log Z {LR_LOG_Z}), "
          f"HyperGrid R0={R0}\n")
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {vers}; threads: "
          f"{args.threads or 'each library default'}; median of {args.rounds} interleaved rounds of "
          f"~{args.round_seconds} s; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end.\n")
    for lib, why in missing.items():
        print(f"- {lib} not measured: {why}")
    if missing:
        print()
    head = "| grid | B | " + " | ".join(f"{lib} it/s" for lib in libs) + " | floor it/s | gfncore / floor | " + \
           " | ".join(f"gfncore vs {lib}" for lib in libs if lib != "gfncore") + " | " + \
           " | ".join(f"{lib} peak MiB" for lib in libs) + " | " + \
           " | ".join(f"{lib} compile s" for lib in libs if lib != "gfncore") + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cells = [r["grid"], str(r["batch"])] + [f"{r['it_s'][lib]:.1f}" for lib in libs]
        cells += [f"{r.get('floor_it_s', float('nan')):.1f}", f"{r.get('gf_floor', float('nan')):.2f}x"]
        cells += [f"{r['vs'][lib]:.2f}x" for lib in libs if lib != "gfncore" and "vs" in r]
        cells += [f"{r['peak_mib'][lib]:.1f}" for lib in libs]
        cells += [f"{r['compile_s'][lib]:.2f}" for lib in libs if lib != "gfncore"]
        print("| " + " | ".join(cells) + " |")
    print("\n'gfncore vs X' = median over rounds of X's time per iteration / gfncore's (above 1: gfncore faster). "
          "Peak MiB: resident-set high-water mark during the rounds minus the resident set before them, per process. "
          "Compile s: the peer's first call (JIT tracing and compilation for gfnx), not in the rounds.")
    if "gfncore" in workers:
        paths = {r["info"].get("gfncore", {}).get("forward") for r in rows}
        print(f"gfncore's training step differentiated through: {', '.join(sorted(p for p in paths if p))} "
              "(gfncore.onpolicy).")
    if l1:
        print(f"\nExact L1 between each trained sampler's terminal distribution and R/Z after {args.l1_steps} steps at "
              f"B = {args.l1_batch}, seed {args.seed} (each library's weights in a gfncore MLPPolicy; features and "
              "rewards of every terminal state checked equal to gfncore's):\n")
        print("| grid | library | exact L1 | log Z | true log Z | same features | same rewards | train s |")
        print("|---|---|---:|---:|---:|---|---|---:|")
        for (grid, lib), v in l1.items():
            print(f"| {grid} | {lib} | {v['l1']:.4f} | {v['log_z']:.3f} | {v['true_log_z']:.3f} | {v['same_features']} | "
                  f"{v['same_rewards']} | {v['seconds']:.1f} |")


if __name__ == "__main__":
    main()

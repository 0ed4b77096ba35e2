"""The posterior predictive Q(y|x, D) = Σ_θ w(θ) P(y|x, θ) averaged over posterior θ's, and its
accuracy and calibration on held-out data.

One code path serves both sources of θ: exact-posterior weights (every grid setting with w = P(θ|D))
and GFlowNet samples (weights=None: each sample counts 1/S, repeats included)."""
from __future__ import annotations

import torch

LEVELS = (0.5, 0.8, 0.9, 0.95)


def _weights(theta: torch.Tensor, weights) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(theta, torch.Tensor) or theta.dim() != 2 or not theta.is_floating_point():
        raise ValueError(f"theta must be a floating-point tensor [S, n] of grid values, got "
                         f"{getattr(theta, 'dtype', type(theta))} {tuple(getattr(theta, 'shape', ()))}")
    S = theta.shape[0]
    if S == 0:
        raise ValueError("theta holds no posterior settings (S = 0)")
    if weights is None:
        return theta.to(torch.float64), torch.full((S,), 1.0 / S, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    if tuple(w.shape) != (S,):
        raise ValueError(f"weights must have shape ({S},) (one per theta row), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights must be finite, >= 0 and not all 0")
    return theta.to(torch.float64), w / w.sum()


def _check_xy(X, y, n):
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or X.shape[1] != n:
        raise ValueError(f"X must have shape [M, {n}], got {tuple(getattr(X, 'shape', ()))}")
    if y is not None and (not isinstance(y, torch.Tensor) or tuple(y.shape) != (X.shape[0],)):
        raise ValueError(f"y must have shape ({X.shape[0]},), got {tuple(getattr(y, 'shape', ()))}")


def _need(model, name):
    if not callable(getattr(model, name, None)):
        raise TypeError(f"the model must define {name}(theta, X, ...) for this posterior-predictive quantity")
    return getattr(model, name)


def posterior_predictive(model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor | None = None,
                         weights: torch.Tensor | None = None, chunk: int = 1 << 22) -> dict:
    """Q(y|x, D) at each test x [M], averaged over θ [S, n] with weights [S] (None: samples, equal weight).

    Classification models (`predict_proba`): {"p": Q(y=1|x, D)}. Regression models
    (`predictive_mean`, `predictive_cdf`, `noise_std`): {"mean", "std"} of the mixture. With y
    given, also {"log_prob": log Q(y|x, D)} and for regression {"pit": Q(Y ≤ y|x, D)}, the
    probability integral transform (uniform on [0, 1] when the predictive is calibrated)."""
    theta, w = _weights(theta, weights)
    _check_xy(X, y, theta.shape[1])
    X = X.to(torch.float64)
    step = max(1, chunk // theta.shape[0])
    task = getattr(model, "task", None)
    parts: dict[str, list] = {}

    def add(k, v):
        parts.setdefault(k, []).append(v)

    logw = w.log()
    for i in range(0, X.shape[0], step):
        Xi = X[i:i + step]
        yi = y[i:i + step].to(torch.float64) if y is not None else None
        if task == "classification":
            add("p", w @ _need(model, "predict_proba")(theta, Xi))
        elif task == "regression":
            mu = _need(model, "predictive_mean")(theta, Xi)
            m = w @ mu
            add("mean", m)
            # mixture variance: noise + spread of the component means
            add("std", (model.noise_std ** 2 + w @ (mu - m).square()).sqrt())
            if yi is not None:
                add("pit", w @ _need(model, "predictive_cdf")(theta, Xi, yi))
        if yi is not None:
            lp = _need(model, "predictive_log_prob")(theta, Xi, yi)
            add("log_prob", torch.logsumexp(lp + logw[:, None], 0))
    if task not in ("classification", "regression") and y is None:
        raise TypeError("the model must say its task ('classification' or 'regression'), or y must be given "
                        "for log Q(y|x, D)")
    return {k: torch.cat(v) for k, v in parts.items()}


def evaluate_predictive(model, theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor,
                        weights: torch.Tensor | None = None, n_bins: int = 10) -> dict:
    """Accuracy and calibration of the posterior predictive on held-out (X, y).

    Always: `log_predictive` (mean log Q(y|x, D), nats per example) and `effective_samples`
    (1 / Σ w²). Classification: `accuracy` (threshold 1/2), `brier`, and calibration of
    Q(y=1|x, D) in `n_bins` equal-width bins: `ece` = Σ_bins (n_b/M)·|frequency of y=1 − mean Q|
    and the `reliability` table. Regression: `rmse` of the predictive mean, `coverage` of the
    central predictive intervals at LEVELS (from the PIT), `calibration_error` = mean |coverage −
    level|, and the PIT histogram `pit_histogram` (n_bins bins, each 1/n_bins when calibrated)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    _, w = _weights(theta, weights)
    pred = posterior_predictive(model, theta, X, y, weights)
    y = y.to(torch.float64)
    out = {"n_test": int(y.numel()), "effective_samples": float(1.0 / w.square().sum()),
           "log_predictive": float(pred["log_prob"].mean())}
    if "p" in pred:
        p = pred["p"]
        if bool(((y != 0) & (y != 1)).any()):
            raise ValueError("classification labels y must be 0 or 1")
        out["accuracy"] = float(((p >= 0.5).double() == y).double().mean())
        out["brier"] = float((p - y).square().mean())
        b = (p * n_bins).long().clamp(max=n_bins - 1)
        rel, ece = [], 0.0
        for k in range(n_bins):
            m = b == k
            c = int(m.sum())
            if c:
                conf, freq = float(p[m].mean()), float(y[m].mean())
                ece += c / y.numel() * abs(freq - conf)
                rel.append({"bin": [k / n_bins, (k + 1) / n_bins], "count": c, "mean_q": conf, "frequency": freq})
        out["ece"] = ece
        out["reliability"] = rel
    if "pit" in pred:
        u = pred["pit"]
        out["rmse"] = float((pred["mean"] - y).square().mean().sqrt())
        cov = {lv: float(((u - 0.5).abs() <= lv / 2).double().mean()) for lv in LEVELS}
        out["coverage"] = {str(k): v for k, v in cov.items()}
        out["calibration_error"] = sum(abs(v - k) for k, v in cov.items()) / len(cov)
        hist = torch.bincount((u * n_bins).long().clamp(0, n_bins - 1), minlength=n_bins).double() / u.numel()
        out["pit_histogram"] = hist.tolist()
    return out


"""Pictures: a learned terminal distribution against the true one."""
from __future__ import annotations

import torch


def plot_distribution(env, learned: torch.Tensor, path: str, title: str = "") -> str:
    """Side-by-side heat maps of R(x)/Z and the sampler's P_T(x) for a 2-D HyperGrid."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("the distribution plot needs matplotlib (pip install matplotlib)") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H = env.height
    terms = env.all_terminal_states()
    true = env.true_distribution()

    def grid(p):
        g = torch.zeros(H, H, dtype=torch.float64)
        g[terms[:, 0].long(), terms[:, 1].long()] = p.double()
        return g.numpy()

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    vmax = float(max(true.max(), learned.max()))
    for ax, g, name in ((axes[0], grid(true), "true R(x)/Z"), (axes[1], grid(learned), "learned P_T(x)")):
        im = ax.imshow(g, origin="lower", cmap="viridis", vmin=0, vmax=vmax)
        ax.set_title(name)
        ax.set_xlabel("x[1]")
        ax.set_ylabel("x[0]")
    fig.colorbar(im, ax=axes, shrink=0.8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

"""Figure 5 of the paper from a Section 5 ``results.json`` (matplotlib imported inside; no torch)."""

from __future__ import annotations

from typing import Any

from sdlib.nn.results import curves

__all__ = ["figure5"]


def figure5(doc: dict[str, Any], title: str | None = None):  # type: ignore[no-untyped-def]
    """Training (left) and validation (right) accuracy per distillation step, one line per chain
    (fixed alpha in a colour scale, alpha-hat in black, thicker): mean over seeds with a min/max
    band. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib import cm

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, metric, label in zip(axes, ("train_acc", "val_acc"), ("training", "validation"), strict=True):
        cs = curves(doc, metric)
        fixed = [c for c in cs if c != "alpha_hat"]
        for i, chain in enumerate(fixed + ["alpha_hat"]):
            c = cs[chain]
            if chain == "alpha_hat":
                color, lw, name, z = "black", 2.6, r"$\hat\alpha^{(\tau)}$", 3
            else:
                color = cm.viridis(i / max(len(fixed) - 1, 1))
                lw, name, z = 1.3, rf"$\alpha$ = {chain.split('=')[1]}", 2
            ax.plot(c["steps"], c["mean"], "-o", color=color, lw=lw, ms=3, label=name, zorder=z)
            ax.fill_between(c["steps"], c["min"], c["max"], color=color, alpha=0.12, lw=0, zorder=1)
        ax.set_xlabel(r"distillation step $\tau$")
        ax.set_ylabel(f"{label} accuracy")
        ax.set_title(f"{label.capitalize()} accuracy (mean, min/max over seeds)")
        ax.grid(alpha=0.3)
    axes[0].set_xticks(cs["alpha_hat"]["steps"])
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    p = doc["parameters"]
    fig.suptitle(title or f"{p['dataset']}, {p['arch']}, {len(p['seeds'])} seeds, {p['epochs']} epochs per fit")
    fig.tight_layout()
    return fig

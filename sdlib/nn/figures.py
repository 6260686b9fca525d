"""Figure 5 of the paper from a Section 5 ``results.json``, and the verdict's figure (matplotlib
imported inside; no torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdlib.nn.results import curves

__all__ = ["figure5", "comparison_figure"]

_LABELS = {"train_acc": "training", "val_acc": "validation", "test_acc": "test"}


def figure5(doc: dict[str, Any], title: str | None = None, *, metrics: Sequence[str] = ("train_acc", "test_acc"),
            band: str = "ci", level: float = 0.95):  # type: ignore[no-untyped-def]
    """Accuracy per distillation step, one panel per metric (default: training and test), one line
    per chain (fixed alpha in a colour scale, alpha-hat in black, thicker): the mean over seeds with a
    band, ``"ci"`` (the t-interval of the mean at ``level``) or ``"minmax"`` (the paper's). Returns
    the matplotlib figure."""
    import matplotlib.pyplot as plt
    from matplotlib import cm

    if band not in ("ci", "minmax"):
        raise ValueError(f"band must be 'ci' or 'minmax', got band={band!r}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4.2), sharex=True, squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, metrics, strict=True):
        label = _LABELS.get(metric, metric)
        cs = curves(doc, metric, level)
        fixed = [c for c in cs if c != "alpha_hat"]
        for i, chain in enumerate(fixed + ["alpha_hat"]):
            c = cs[chain]
            if chain == "alpha_hat":
                color, lw, name, z = "black", 2.6, r"$\hat\alpha^{(\tau)}$", 3
            else:
                color = cm.viridis(i / max(len(fixed) - 1, 1))
                lw, name, z = 1.3, rf"$\alpha$ = {chain.split('=')[1]}", 2
            ax.plot(c["steps"], c["mean"], "-o", color=color, lw=lw, ms=3, label=name, zorder=z)
            lo, hi = (c["lo"], c["hi"]) if band == "ci" else (c["min"], c["max"])
            ax.fill_between(c["steps"], lo, hi, color=color, alpha=0.12, lw=0, zorder=1)
        ax.set_xlabel(r"distillation step $\tau$")
        ax.set_ylabel(f"{label} accuracy")
        what = f"{level:.0%} interval of the mean" if band == "ci" else "min/max"
        ax.set_title(f"{label.capitalize()} accuracy (mean, {what} over seeds)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xticks(cs["alpha_hat"]["steps"])
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    p = doc["parameters"]
    fig.suptitle(title or f"{p['dataset']}, {p['arch']}, {len(p['seeds'])} seeds, {p['epochs']} epochs per fit")
    fig.tight_layout()
    return fig


def comparison_figure(rows: list[dict[str, Any]], delta: float, level: float = 0.95):  # type: ignore[no-untyped-def]
    """The seed-paired differences alpha-hat minus best fixed alpha (rows of
    :func:`sdlib.nn.results.paired_comparison`), in percentage points: each seed's difference, the
    mean with its interval, and the band ``±delta`` of "comparable". Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.axhspan(-100 * delta, 100 * delta, color="tab:green", alpha=0.12, lw=0,
               label=rf"comparable: $\pm\delta$ = $\pm${100 * delta:g} pp")
    ax.axhline(0, color="grey", lw=0.8)
    for r in rows:
        x = r["step"]
        jitter = np.linspace(-0.12, 0.12, len(r["diff"]))
        ax.plot(x + jitter, 100 * np.asarray(r["diff"]), "o", color="tab:grey", ms=4, alpha=0.7,
                label="one seed" if x == rows[0]["step"] else None)
        first = x == rows[0]["step"]
        err = [[100 * (r["mean"] - r["lo"])], [100 * (r["hi"] - r["mean"])]]
        ax.errorbar([x + 0.25], [100 * r["mean"]], yerr=err, fmt="s", color="black", capsize=4,
                    label=f"mean, {level:.0%} t-interval" if first else None)
    ax.set_xticks([r["step"] for r in rows], [f"{r['step']}\n(best fixed: {r['best_chain']})" for r in rows])
    ax.set_xlabel(r"distillation step $\tau$")
    ax.set_ylabel(r"test accuracy, $\hat\alpha$ minus best fixed $\alpha$ (pp)")
    ax.set_title(r"$\hat\alpha$ against the best fixed $\alpha$ (chosen on validation), per seed", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    fig.tight_layout()
    return fig

"""Figure 5 of the paper from a Section 5 ``results.json``, and the figure of the chapter's verdict
(:func:`sdlib.nn.results.paired_comparison`), in the book's style of :mod:`sdlib.chapters.plotting`:
at most :data:`~sdlib.chapters.plotting.PAGE_WIDTH` inches wide, fonts of
:data:`~sdlib.chapters.plotting.FONT_SIZE` points, labels in mathtext. matplotlib is imported inside
the functions; nothing here imports torch, so a committed run is drawn without it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sdlib.chapters.plotting import PAGE_WIDTH, book_rc, book_subplots
from sdlib.nn.results import curves

__all__ = ["figure5", "comparison_figure"]

_LABELS = {"train_acc": "training", "val_acc": "validation", "test_acc": "test"}
_DATASETS = {"fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "digits": "digits"}


def _chain_label(chain: str) -> str:
    """``alpha=0.4`` -> ``$\\alpha$ = 0.4``, ``alpha_hat`` -> ``$\\hat\\alpha^{(\\tau)}$``."""
    if chain == "alpha_hat":
        return r"$\hat\alpha^{(\tau)}$"
    return rf"$\alpha$ = {chain.split('=', 1)[1]}" if "=" in chain else chain


def figure5(doc: dict[str, Any], title: str | None = None, *, metrics: Sequence[str] = ("train_acc", "test_acc"),
            band: str = "ci", level: float = 0.95):  # type: ignore[no-untyped-def]
    """Figure 5 (Section 5): accuracy per distillation step, one panel per metric (default: training
    and test), one line per chain (fixed alpha in a colour scale, the alpha-hat chain of eq. 16 in
    black, thicker): the mean over seeds with a band, ``"ci"`` (the t-interval of the mean at
    ``level``) or ``"minmax"`` (the paper's). One legend below the panels. Returns the figure."""
    import matplotlib as mpl
    from matplotlib import cm

    if band not in ("ci", "minmax"):
        raise ValueError(f"band must be 'ci' or 'minmax', got band={band!r}")
    if not metrics:
        raise ValueError(f"metrics must name at least one metric, got metrics={list(metrics)!r}")
    fig, axes = book_subplots(1, len(metrics), figsize=(PAGE_WIDTH, 3.3), sharex=True, squeeze=False,
                          layout="constrained")
    axes = axes[0]
    with mpl.rc_context(book_rc()):
        for ax, metric in zip(axes, metrics, strict=True):
            label = _LABELS.get(metric, metric)
            cs = curves(doc, metric, level)
            fixed = [c for c in cs if c != "alpha_hat"]
            for i, chain in enumerate(fixed + ["alpha_hat"]):
                c = cs[chain]
                if chain == "alpha_hat":
                    color, lw, z = "black", 2.4, 3
                else:
                    color, lw, z = cm.viridis(i / max(len(fixed) - 1, 1)), 1.2, 2
                ax.plot(c["steps"], c["mean"], "-o", color=color, lw=lw, ms=3, label=_chain_label(chain), zorder=z)
                lo, hi = (c["lo"], c["hi"]) if band == "ci" else (c["min"], c["max"])
                ax.fill_between(c["steps"], lo, hi, color=color, alpha=0.12, lw=0, zorder=1)
            ax.set_xlabel(r"distillation step $\tau$")
            ax.set_ylabel(f"{label} accuracy")
            ax.set_title(f"{label.capitalize()} accuracy")
            ax.grid(alpha=0.3)
            ax.set_xticks(cs["alpha_hat"]["steps"])
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), frameon=False)
        p = doc["parameters"]
        what = f"{level:.0%} interval of the mean" if band == "ci" else "min to max"
        fig.suptitle(title or f"{_DATASETS.get(p['dataset'], p['dataset'])}, {p['arch']}: mean over "
                     f"{len(p['seeds'])} seeds ({what}), {p['epochs']} epochs per fit",
                     fontsize=book_rc()["axes.titlesize"])
    return fig


def comparison_figure(rows: list[dict[str, Any]], delta: float, level: float = 0.95):  # type: ignore[no-untyped-def]
    """The seed-paired differences alpha-hat minus best fixed alpha (rows of
    :func:`sdlib.nn.results.paired_comparison`), in percentage points: each seed's difference, the
    mean with its interval, and the band ``±delta`` of "comparable". Returns the figure."""
    import matplotlib as mpl

    if not rows:
        raise ValueError("rows must hold at least one step, got rows=[]")
    fig, ax = book_subplots(figsize=(PAGE_WIDTH * 0.85, 3.4), layout="constrained")
    with mpl.rc_context(book_rc()):
        ax.axhspan(-100 * delta, 100 * delta, color="tab:green", alpha=0.12, lw=0,
                   label=rf"comparable: $\pm\delta$ = $\pm${100 * delta:g} pp")
        ax.axhline(0, color="grey", lw=0.8)
        for r in rows:
            x = r["step"]
            first = x == rows[0]["step"]
            jitter = np.linspace(-0.12, 0.12, len(r["diff"]))
            ax.plot(x + jitter, 100 * np.asarray(r["diff"]), "o", color="tab:grey", ms=4, alpha=0.7,
                    label="one seed" if first else None)
            err = [[100 * (r["mean"] - r["lo"])], [100 * (r["hi"] - r["mean"])]]
            ax.errorbar([x + 0.25], [100 * r["mean"]], yerr=err, fmt="s", color="black", capsize=4,
                        label=f"mean, {level:.0%} $t$-interval" if first else None)
        ax.set_xticks([r["step"] for r in rows],
                      [f"{r['step']}\n(best fixed: {_chain_label(r['best_chain'])})" for r in rows])
        ax.set_xlabel(r"distillation step $\tau$")
        ax.set_ylabel(r"$\hat\alpha$ minus best fixed $\alpha$ (pp)")
        ax.set_title(r"Test accuracy, $\hat\alpha$ against the best fixed $\alpha$ (chosen on validation)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", frameon=False)
    return fig

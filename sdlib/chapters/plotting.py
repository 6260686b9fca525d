"""The paper's Figures 2, 3 and 4 (Section 4.5), one function each, in one style.

Each function takes arrays that the caller has already computed (with :mod:`sdlib.krr.estimator` or
:mod:`sdlib.krr.reference`) and returns a :class:`matplotlib.figure.Figure`; nothing here fits a model.
matplotlib is imported inside the functions, so ``import sdlib`` works without it.

* :func:`figure2` -- the fits ``f(x, beta^(tau))`` of ``tau = 1..steps`` steps, the training points
  (``x`` markers), the limit ``f(x, beta^(inf))`` of Theorem 4.5 dashed, optionally the noiseless
  function, and (Figure 2c) a second panel with ``alpha*(tau)`` against ``tau``.
* :func:`figure3` -- the diagonal of ``B^(tau)`` (eqs. 11-12), ``tau = 1..steps`` overlaid, one panel
  per case, eigenvalues ascending (index ``k = 1..n``); markers rather than the paper's bars.
* :func:`figure4` -- the ratios ``R_k^(tau) = [B^(tau)]_{k+1,k+1} / [B^(tau)]_{k,k}`` against
  ``k = 1..n-1``, one line per ``tau``, one panel per case.

Two figures that are not in the paper illustrate statements of its Section 4.5 text:

* :func:`alpha_tradeoff` -- against a grid of fixed ``alpha``: the change between consecutive steps
  and the distance of the limit ``f(x, beta^(inf))`` to the first fit ``f(x, beta^(1))``;
* :func:`gamma_sweep` -- how well the best of a few steps follows the noiseless function, against
  the kernel parameter ``gamma`` on a log axis (the erratum on ``gamma = 1/80``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["alpha_tradeoff", "figure2", "figure3", "figure4", "gamma_sweep", "step_colors"]

#: Size of one panel in inches (width, height); every figure uses it.
PANEL = (4.6, 3.4)


def step_colors(steps: int) -> list[Any]:
    """One colour per step ``tau = 1..steps`` from the ``viridis`` map (dark = early)."""
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    return [cmap(t) for t in np.linspace(0.0, 0.9, max(int(steps), 1))]


def _check_2d(name: str, value: ArrayLike) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (steps, points), got shape {arr.shape}")
    return arr


def figure2(
    x: ArrayLike,
    paths: ArrayLike,
    X_train: ArrayLike,
    y_train: ArrayLike,
    *,
    limit: ArrayLike | None = None,
    truth: ArrayLike | None = None,
    alpha_star: ArrayLike | None = None,
    alpha_star_clipped: ArrayLike | None = None,
    title: str = "",
) -> Figure:
    """Figure 2 of the paper: ``steps`` steps of self-distillation on a 1-d input.

    Parameters
    ----------
    x : (m,) query inputs, increasing.
    paths : (steps, m) ``f(x, beta^(tau))`` for ``tau = 1..steps``.
    X_train, y_train : (n,) training inputs and targets, drawn as ``x`` markers.
    limit : (m,), optional -- ``f(x, beta^(inf))`` (Theorem 4.5), drawn dashed.
    truth : (m,), optional -- the noiseless function, drawn dotted grey.
    alpha_star, alpha_star_clipped : (steps - 1,), optional -- ``alpha*(2..steps)`` unclipped and
        clipped to ``[0, 1]`` (footnote 11); when given, a second panel plots them against ``tau``
        (Figure 2c).
    title : str -- panel title.
    """
    import matplotlib.pyplot as plt

    x = np.asarray(x, dtype=float).ravel()
    paths = _check_2d("paths", paths)
    if paths.shape[1] != x.shape[0]:
        raise ValueError(f"paths has {paths.shape[1]} points per step but x has {x.shape[0]}")
    steps = paths.shape[0]
    with_alpha = alpha_star is not None or alpha_star_clipped is not None
    if with_alpha:
        fig, (ax, ax_a) = plt.subplots(
            1, 2, figsize=(PANEL[0] * 1.7, PANEL[1]), gridspec_kw={"width_ratios": [2.2, 1]}
        )
        fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.28)
    else:
        fig, ax = plt.subplots(figsize=PANEL)
        fig.subplots_adjust(left=0.15, right=0.97, bottom=0.15, top=0.9)
    if truth is not None:
        ax.plot(x, np.asarray(truth, float).ravel(), ":", color="0.55", lw=1.2, label=r"$\sin(2\pi x)$")
    for tau, (f, c) in enumerate(zip(paths, step_colors(steps), strict=True), start=1):
        ax.plot(x, f, color=c, lw=1.4, label=rf"$\tau={tau}$")
    if limit is not None:
        ax.plot(x, np.asarray(limit, float).ravel(), "--", color="crimson", lw=1.4, label=r"$\tau\to\infty$")
    ax.plot(np.ravel(X_train), np.ravel(y_train), "x", color="black", ms=7, mew=1.5, label="training")
    ax.set_xlabel("x")
    ax.set_ylabel(r"$f(x, \hat\beta^{(\tau)})$")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2, loc="best")
    if with_alpha:
        for values, style, label in (
            (alpha_star, "o-", r"$\alpha^{\star(\tau)}$ (eq. 16)"),
            (alpha_star_clipped, "s--", r"clipped to $[0,1]$"),
        ):
            if values is None:
                continue
            values = np.asarray(values, float).ravel()
            ax_a.plot(np.arange(2, values.shape[0] + 2), values, style, ms=4, label=label)
        ax_a.axhspan(0.0, 1.0, color="0.92", zorder=0)
        ax_a.set_xlabel(r"step $\tau$")
        ax_a.set_ylabel(r"$\alpha^{\star(\tau)}$")
        ax_a.set_title(r"optimal $\alpha^{\star(\tau)}$")
        ax_a.legend(fontsize=7)
    return fig


def _panels(mapping: Mapping[str, ArrayLike], name: str) -> tuple[Any, list[Any], list[tuple[str, np.ndarray]]]:
    import matplotlib.pyplot as plt

    items = [(str(k), _check_2d(f"{name}[{k!r}]", v)) for k, v in mapping.items()]
    if not items:
        raise ValueError(f"{name} must hold at least one case, got an empty mapping")
    fig, axes = plt.subplots(1, len(items), figsize=(PANEL[0] * len(items), PANEL[1]), squeeze=False)
    # Fixed margins rather than a constrained layout: as readable, and half the drawing time.
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.25)
    return fig, list(axes[0]), items


def figure3(
    B_diags: Mapping[str, ArrayLike],
    *,
    log: bool = False,
    limits: Mapping[str, ArrayLike] | None = None,
) -> Figure:
    """Figure 3 of the paper: ``diag B^(tau)``, ``tau = 1..steps`` overlaid, one panel per case.

    ``B_diags`` maps a case's title (e.g. ``"(a) alpha = 0"``) to an array ``(steps, n)`` whose rows
    are the diagonals of ``B^(1..steps)`` with eigenvalues ascending (:meth:`B_diag`). The paper
    overlays bars, which hides a step whose values lie below a later one's (step-wise ``alpha*``
    need not decrease); markers joined by thin lines keep every step visible. ``limits`` maps some
    of the same titles to the diagonal of the limit ``B^(inf)`` (``(n,)``, Theorem 4.5), drawn as a
    dashed line.
    """
    fig, axes, items = _panels(B_diags, "B_diags")
    limits = {} if limits is None else dict(limits)
    unknown = sorted(set(limits) - {label for label, _ in items})
    if unknown:
        raise ValueError(f"limits has cases that B_diags lacks: {unknown}")
    for ax, (label, B) in zip(axes, items, strict=True):
        k = np.arange(1, B.shape[1] + 1)
        for tau, (row, c) in enumerate(zip(B, step_colors(B.shape[0]), strict=True), start=1):
            ax.plot(k, row, "o-", ms=4, lw=0.8, color=c, label=rf"$\tau={tau}$")
        if label in limits:
            lim = np.asarray(limits[label], dtype=float).ravel()
            if lim.shape != k.shape:
                raise ValueError(f"limits[{label!r}] has {lim.size} entries, B_diags has {k.size} per step")
            ax.plot(k, lim, "--", color="crimson", lw=1.4, label=r"$\tau\to\infty$")
        ax.set_xlabel(r"index $k$ (eigenvalues $d_k$ ascending)")
        ax.set_ylabel(r"$[\mathbf{B}^{(\tau)}]_{k,k}$")
        ax.set_xticks(k)
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0.0, 1.0)
        ax.set_title(label)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    return fig


def figure4(ratios: Mapping[str, ArrayLike]) -> Figure:
    """Figure 4 of the paper: ``R_k^(tau)`` against ``k = 1..n-1``, one line per step, per case.

    ``ratios`` maps a case's title to an array ``(steps, n - 1)`` with
    ``R_k^(tau) = [B^(tau)]_{k+1,k+1} / [B^(tau)]_{k,k}`` (eigenvalues ascending), ``tau = 1..steps``.
    """
    fig, axes, items = _panels(ratios, "ratios")
    for ax, (label, R) in zip(axes, items, strict=True):
        k = np.arange(1, R.shape[1] + 1)
        for tau, (row, c) in enumerate(zip(R, step_colors(R.shape[0]), strict=True), start=1):
            ax.plot(k, row, "o-", ms=3, color=c, label=rf"$\tau={tau}$")
        ax.set_xlabel(r"index $k$")
        ax.set_ylabel(r"$R_k^{(\tau)}$")
        ax.set_xticks(k)
        ax.set_title(label)
        ax.legend(fontsize=7, ncol=2)
    return fig


def alpha_tradeoff(
    alphas: ArrayLike,
    step_changes: ArrayLike,
    limit_distance: ArrayLike,
    *,
    mark: float | None = None,
) -> Figure:
    """Not a figure of the paper: the trade-off in ``alpha`` that Section 4.5 describes in words.

    Left: ``step_changes`` ``(len(alphas), steps - 1)``, the size of ``f(., beta^(tau)) -
    f(., beta^(tau-1))`` for ``tau = 2..steps``, one line per ``tau``, against a fixed ``alpha``.
    Right: ``limit_distance`` ``(len(alphas),)``, the size of ``f(., beta^(inf)) - f(., beta^(1))``
    (Theorem 4.5) against ``alpha``. ``mark`` draws a vertical line at one ``alpha`` (case (b)).
    """
    import matplotlib.pyplot as plt

    alphas = np.asarray(alphas, dtype=float).ravel()
    changes = _check_2d("step_changes", step_changes)
    dist = np.asarray(limit_distance, dtype=float).ravel()
    if changes.shape[0] != alphas.size or dist.size != alphas.size:
        raise ValueError(f"step_changes {changes.shape} and limit_distance {dist.shape} need one row "
                         f"per alpha ({alphas.size})")
    fig, (ax_c, ax_l) = plt.subplots(1, 2, figsize=(PANEL[0] * 2, PANEL[1]))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    colors = step_colors(changes.shape[1] + 1)[1:]
    for tau, (col, c) in enumerate(zip(changes.T, colors, strict=True), start=2):
        ax_c.plot(alphas, col, "o-", ms=3, color=c, label=rf"$\tau={tau}$")
    ax_c.set_ylabel(r"RMS of $f^{(\tau)} - f^{(\tau-1)}$")
    ax_c.set_title("change between consecutive steps")
    ax_c.legend(fontsize=7, ncol=2)
    ax_l.plot(alphas, dist, "o-", ms=3, color="crimson")
    ax_l.set_ylabel(r"RMS of $f^{(\infty)} - f^{(1)}$")
    ax_l.set_title("distance of the limit to the first fit")
    for ax in (ax_c, ax_l):
        ax.set_xlabel(r"fixed weight $\alpha$")
        if mark is not None:
            ax.axvline(float(mark), color="0.5", ls=":", lw=1.2)
    return fig


def gamma_sweep(
    gammas: ArrayLike,
    explained: ArrayLike,
    *,
    marks: Mapping[str, float] | None = None,
    thresholds: ArrayLike | None = None,
) -> Figure:
    """Not a figure of the paper: the share of a function's variance a fit explains, against ``gamma``.

    ``explained`` ``(len(gammas),)`` is ``1 - MSE / mean(f^2)`` of the best of a few steps (the
    caller says which); ``gammas`` are drawn on a log axis. ``marks`` maps labels to ``gamma``
    values drawn as vertical lines (the paper's ``80`` and the text's ``1/80``); ``thresholds``
    are drawn as horizontal dotted lines (the readings of "reproduces Figure 2").
    """
    import matplotlib.pyplot as plt

    gammas = np.asarray(gammas, dtype=float).ravel()
    explained = np.asarray(explained, dtype=float).ravel()
    if gammas.shape != explained.shape:
        raise ValueError(f"gammas {gammas.shape} and explained {explained.shape} must have one shape")
    if np.any(gammas <= 0):
        raise ValueError("gammas must be > 0 (log axis)")
    fig, ax = plt.subplots(figsize=(PANEL[0] * 1.3, PANEL[1]))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.15, top=0.9)
    ax.semilogx(gammas, explained, "-", color="black", lw=1.5, label="best step")
    for t in np.atleast_1d(np.asarray([] if thresholds is None else thresholds, dtype=float)):
        ax.axhline(t, color="0.6", ls=":", lw=1)
    colors = itertools.cycle(("crimson", "tab:blue", "tab:green", "tab:orange"))
    for (label, g), c in zip((marks or {}).items(), colors, strict=False):
        ax.axvline(float(g), color=c, ls="--", lw=1.2, label=label)
    ax.set_xlabel(r"kernel parameter $\gamma$ in $e^{-\gamma\|x - x'\|^2}$")
    ax.set_ylabel("share of the variance explained")
    ax.set_ylim(min(0.0, float(np.min(explained))), 1.0)
    ax.set_title(r"fit quality against $\gamma$")
    ax.legend(fontsize=7)
    return fig

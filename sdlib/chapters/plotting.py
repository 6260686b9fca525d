"""The paper's Figures 2, 3 and 4 (Section 4.5), one function each, in one style.

Each function takes arrays that the caller has already computed (with :mod:`sdlib.krr.estimator` or
:mod:`sdlib.krr.reference`) and returns a :class:`matplotlib.figure.Figure`; nothing here fits a model.
matplotlib is imported inside the functions, so ``import sdlib`` works without it.

* :func:`figure2` -- the fits ``f(x, beta^(tau))`` of ``tau = 1..steps`` steps, the training points
  (``x`` markers), the limit ``f(x, beta^(inf))`` of Theorem 4.5 dashed, optionally the noiseless
  function, and (Figure 2c) a second panel with ``alpha*(tau)`` against ``tau``;
  :func:`figure2_cases` draws the three cases and the ``alpha*`` panel as one 2 x 2 figure.
* :func:`figure3` -- the diagonal of ``B^(tau)`` (eqs. 11-12), ``tau = 1..steps`` overlaid, one panel
  per case, eigenvalues ascending (index ``k = 1..n``); markers rather than the paper's bars.
* :func:`figure4` -- the ratios ``R_k^(tau) = [B^(tau)]_{k+1,k+1} / [B^(tau)]_{k,k}`` against
  ``k = 1..n-1``, one line per ``tau``, one panel per case.

Two figures that are not in the paper illustrate statements of its Section 4.5 text:

* :func:`alpha_tradeoff` -- against a grid of fixed ``alpha``: the change between consecutive steps
  and the distance of the limit ``f(x, beta^(inf))`` to the first fit ``f(x, beta^(1))``;
* :func:`gamma_sweep` -- how well the best of a few steps follows the noiseless function, against
  the kernel parameter ``gamma`` on a log axis (the erratum on ``gamma = 1/80``).

Every figure is at most :data:`PAGE_WIDTH` inches wide, with fonts of :data:`FONT_SIZE` points, so
that its text is read at the size of the book's prose when the figure spans the page (a wider
figure is scaled down with its fonts: three 4.6-inch panels put 7-point text at about 6 pixels).
Labels are matplotlib mathtext. :func:`annotate_parameters` writes the parameters of a rerun that
differ from the paper's setting onto a figure, so that no figure drawn off that setting can be
taken for the paper's. :func:`book_style` gives a chapter's own figures the same fonts and width.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "FONT_SIZE", "PAGE_WIDTH", "PARAMETERS_GID", "alpha_tradeoff", "annotate_parameters", "book_rc", "book_style",
    "book_subplots", "figure2",
    "figure2_cases", "figure3", "figure4", "gamma_sweep", "parameter_text", "step_colors",
]

#: Width of the book's text column in inches (about 700 CSS pixels at matplotlib's 100 dpi): no
#: figure is wider, so that it is shown at its own size, fonts included.
PAGE_WIDTH = 7.0
#: Font size in points of labels and ticks (legends and titles are set relative to it).
FONT_SIZE = 9.0
#: Size of a single-panel figure in inches (width, height).
PANEL = (4.6, 3.2)
#: Height of one row of panels in a figure as wide as the page.
ROW_HEIGHT = 2.7

#: The ``gid`` of the text that :func:`annotate_parameters` draws.
PARAMETERS_GID = "sdlib-parameters"
#: How a parameter's name is written on a figure (mathtext), for :func:`parameter_text`.
SYMBOLS = {"lam": r"$\lambda$", "gamma": r"$\gamma$", "alpha": r"$\alpha$", "alpha_b": r"$\alpha_{(b)}$",
           "steps": "steps", "eta": r"$\eta$", "alpha_star": r"$\alpha^\star$"}


def book_rc() -> dict[str, Any]:
    """The book's font sizes as matplotlib ``rcParams`` (for an ``rc_context`` around drawing)."""
    return {"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 0.5, "axes.labelsize": FONT_SIZE,
            "xtick.labelsize": FONT_SIZE - 0.5, "ytick.labelsize": FONT_SIZE - 0.5,
            "legend.fontsize": FONT_SIZE - 1, "legend.title_fontsize": FONT_SIZE - 1}


def book_style() -> None:
    """Set matplotlib's defaults (``rcParams``) to the book's figure style: fonts of
    :data:`FONT_SIZE` points and a figure :data:`PAGE_WIDTH` inches wide, so that a chapter's own
    figure is shown at its own size and its text reads like the prose. A chapter calls it once, after
    its imports; a figure that asks for its own ``figsize`` should stay within :data:`PAGE_WIDTH`."""
    import matplotlib as mpl

    mpl.rcParams.update({**book_rc(), "figure.figsize": (PAGE_WIDTH, PANEL[1])})


def book_subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` with the book's fonts (:func:`book_rc`), for the figures of the book's modules."""
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    with mpl.rc_context(book_rc()):
        made = plt.subplots(*args, **kwargs)
        # A backend set up by this first use of pyplot (Jupyter's inline one) turns interactive mode
        # on; leaving the context would turn it off again, and the chapter's later figures would
        # no longer be shown at the end of their cells.
        interactive = mpl.is_interactive()
    mpl.interactive(interactive)
    return made


def _fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return f"{float(v):g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt_value(x) for x in v) + "]"
    return str(v)


def parameter_text(changed: Mapping[str, tuple[Any, Any]]) -> str:
    """One line naming each changed parameter with its value and the paper's:
    ``{"lam": (0.2, 0.05)}`` gives ``"rerun: λ = 0.05 (paper: 0.2)"``; ``""`` when nothing changed."""
    parts = []
    for name, pair in changed.items():
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"changed[{name!r}] must be a pair (paper's value, this run's value), got {pair!r}")
        paper, now = pair
        parts.append(f"{SYMBOLS.get(name, name)} = {_fmt_value(now)} (paper: {_fmt_value(paper)})")
    return ("rerun: " + ", ".join(parts)) if parts else ""


def annotate_parameters(fig: Figure, changed: Mapping[str, tuple[Any, Any]]) -> Figure:
    """Write the parameters that differ from the paper's setting on ``fig`` (a line at its top left).

    ``changed`` maps a parameter's name to ``(paper's value, this run's value)`` and holds only the
    parameters that differ; when it is empty the figure is the paper's and is left as it is. The
    figure's top margin grows to make room, so that the line covers no title. Returns ``fig``.
    The text artist has the id :data:`PARAMETERS_GID` (``fig.texts``; in an SVG, the group's id).
    """
    text = parameter_text(changed)
    if not text:
        return fig
    height = fig.get_figheight()
    pad = 0.22  # inches for one line of text
    fig.set_figheight(height + pad)
    for ax in fig.axes:  # keep every axes where it was, in inches, below the new strip
        pos = ax.get_position()
        ax.set_position([pos.x0, pos.y0 * height / (height + pad), pos.width, pos.height * height / (height + pad)])
    fig.text(0.01, 1 - 0.6 * pad / (height + pad), text, ha="left", va="center", fontsize=FONT_SIZE - 0.5,
             color="crimson", gid=PARAMETERS_GID)
    return fig


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
    x = np.asarray(x, dtype=float).ravel()
    paths = _check_2d("paths", paths)
    if paths.shape[1] != x.shape[0]:
        raise ValueError(f"paths has {paths.shape[1]} points per step but x has {x.shape[0]}")
    with_alpha = alpha_star is not None or alpha_star_clipped is not None
    if with_alpha:
        fig, (ax, ax_a) = book_subplots(1, 2, figsize=(PAGE_WIDTH, PANEL[1]), gridspec_kw={"width_ratios": [2.2, 1]})
        fig.subplots_adjust(left=0.09, right=0.98, bottom=0.16, top=0.9, wspace=0.3)
    else:
        fig, ax = book_subplots(figsize=PANEL)
        fig.subplots_adjust(left=0.15, right=0.97, bottom=0.16, top=0.9)
    _draw_fits(ax, x, paths, X_train, y_train, limit=limit, truth=truth, title=title)
    if with_alpha:
        _draw_alpha_star(ax_a, alpha_star, alpha_star_clipped)
    return fig


def _draw_fits(ax: Any, x: np.ndarray, paths: np.ndarray, X_train: ArrayLike, y_train: ArrayLike, *,
               limit: ArrayLike | None, truth: ArrayLike | None, title: str, legend: bool = True) -> None:
    import matplotlib as mpl

    steps = paths.shape[0]
    if truth is not None:
        ax.plot(x, np.asarray(truth, float).ravel(), ":", color="0.55", lw=1.2, label=r"$\sin(2\pi x)$")
    for tau, (f, c) in enumerate(zip(paths, step_colors(steps), strict=True), start=1):
        ax.plot(x, f, color=c, lw=1.4, label=rf"$\tau={tau}$")
    if limit is not None:
        ax.plot(x, np.asarray(limit, float).ravel(), "--", color="crimson", lw=1.4, label=r"$\tau\to\infty$")
    ax.plot(np.ravel(X_train), np.ravel(y_train), "x", color="black", ms=6, mew=1.4, label="training")
    with mpl.rc_context(book_rc()):
        ax.set_xlabel(r"$x$")
        ax.set_ylabel(r"$f(x, \hat{\beta}^{(\tau)})$")
        ax.set_title(title)
        if legend:
            ax.legend(ncol=2, loc="best", handlelength=1.5, columnspacing=0.8, labelspacing=0.3)


def _draw_alpha_star(ax_a: Any, alpha_star: ArrayLike | None, alpha_star_clipped: ArrayLike | None) -> None:
    import matplotlib as mpl

    for values, style, label in (
        (alpha_star, "o-", r"$\alpha^{\star(\tau)}$ (eq. 16)"),
        (alpha_star_clipped, "s--", r"clipped to $[0,1]$"),
    ):
        if values is None:
            continue
        values = np.asarray(values, float).ravel()
        ax_a.plot(np.arange(2, values.shape[0] + 2), values, style, ms=4, label=label)
    ax_a.axhspan(0.0, 1.0, color="0.92", zorder=0)
    with mpl.rc_context(book_rc()):
        ax_a.set_xlabel(r"step $\tau$")
        ax_a.set_ylabel(r"$\alpha^{\star(\tau)}$")
        ax_a.set_title(r"optimal $\alpha^{\star(\tau)}$")
        ax_a.legend()


def figure2_cases(
    x: ArrayLike,
    paths: Mapping[str, ArrayLike],
    X_train: ArrayLike,
    y_train: ArrayLike,
    *,
    limits: Mapping[str, ArrayLike] | None = None,
    truth: ArrayLike | None = None,
    alpha_star: ArrayLike | None = None,
    alpha_star_clipped: ArrayLike | None = None,
) -> Figure:
    """Figure 2 of the paper as one figure of page width: the fits of each case (``paths`` maps a
    panel title to its ``(steps, m)`` array, as for :func:`figure2`) with their ``limits`` dashed,
    then, when given, the panel of ``alpha*(tau)`` (Figure 2c); two panels a row, one legend."""
    x = np.asarray(x, dtype=float).ravel()
    items = [(str(k), _check_2d(f"paths[{k!r}]", v)) for k, v in paths.items()]
    if not items:
        raise ValueError("paths must hold at least one case, got an empty mapping")
    for k, P in items:
        if P.shape[1] != x.shape[0]:
            raise ValueError(f"paths[{k!r}] has {P.shape[1]} points per step but x has {x.shape[0]}")
    limits = {} if limits is None else dict(limits)
    unknown = sorted(set(limits) - {k for k, _ in items})
    if unknown:
        raise ValueError(f"limits has cases that paths lacks: {unknown}")
    import matplotlib as mpl

    with_alpha = alpha_star is not None or alpha_star_clipped is not None
    n = len(items) + with_alpha
    rows = (n + 1) // 2
    height = ROW_HEIGHT * rows + 0.6   # 0.6 inches below the panels for the legend of the fits
    fig, axes = book_subplots(rows, 2, figsize=(PAGE_WIDTH, height), squeeze=False)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=1.0 / height, top=1 - 0.3 / height, wspace=0.28,
                        hspace=0.45)
    flat = list(axes.ravel())
    for ax, (title, P) in zip(flat, items, strict=False):
        _draw_fits(ax, x, P, X_train, y_train, limit=limits.get(title), truth=truth, title=title, legend=False)
    if with_alpha:
        _draw_alpha_star(flat[len(items)], alpha_star, alpha_star_clipped)
    for ax in flat[n:]:
        ax.set_visible(False)
    # One legend for the panels of fits (they share their lines), below them: it covers no curve.
    handles, labels = flat[0].get_legend_handles_labels()
    with mpl.rc_context(book_rc()):
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 9), handlelength=1.5,
                   columnspacing=0.9, frameon=False)
    return fig


def _panels(mapping: Mapping[str, ArrayLike], name: str) -> tuple[Any, list[Any], list[tuple[str, np.ndarray]]]:
    """One panel per case, at most three a row, the whole figure as wide as the page."""
    items = [(str(k), _check_2d(f"{name}[{k!r}]", v)) for k, v in mapping.items()]
    if not items:
        raise ValueError(f"{name} must hold at least one case, got an empty mapping")
    cols = min(len(items), 3)
    rows = -(-len(items) // cols)
    width = PAGE_WIDTH if cols > 1 else PANEL[0]
    fig, axes = book_subplots(rows, cols, figsize=(width, (ROW_HEIGHT + 0.4) * rows), squeeze=False)
    # Fixed margins rather than a constrained layout: as readable, and half the drawing time.
    fig.subplots_adjust(left=0.08 if cols > 1 else 0.15, right=0.99, bottom=0.17 / rows, top=1 - 0.1 / rows,
                        wspace=0.32, hspace=0.55)
    flat = list(axes.ravel())
    for ax in flat[len(items):]:
        ax.set_visible(False)
    return fig, flat[: len(items)], items


def _legend(ax: Any, **kwargs: Any) -> None:
    import matplotlib as mpl

    with mpl.rc_context(book_rc()):
        ax.legend(handlelength=1.2, columnspacing=0.6, labelspacing=0.25, borderpad=0.3, **kwargs)


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
    import matplotlib as mpl

    for ax, (label, B) in zip(axes, items, strict=True):
        k = np.arange(1, B.shape[1] + 1)
        for tau, (row, c) in enumerate(zip(B, step_colors(B.shape[0]), strict=True), start=1):
            ax.plot(k, row, "o-", ms=3, lw=0.8, color=c, label=rf"$\tau={tau}$")
        if label in limits:
            lim = np.asarray(limits[label], dtype=float).ravel()
            if lim.shape != k.shape:
                raise ValueError(f"limits[{label!r}] has {lim.size} entries, B_diags has {k.size} per step")
            ax.plot(k, lim, "--", color="crimson", lw=1.4, label=r"$\tau\to\infty$")
        with mpl.rc_context(book_rc()):
            ax.set_xlabel(r"index $k$ ($d_k$ ascending)")
            ax.set_ylabel(r"$[\mathbf{B}^{(\tau)}]_{k,k}$")
            ax.set_xticks(k[::2] if k.size > 8 else k)
            if log:
                ax.set_yscale("log")
            else:
                ax.set_ylim(0.0, 1.0)
            ax.set_title(label)
        _legend(ax, ncol=2, loc="lower right")  # large k: entries near 1, small k: near 0
    return fig


def figure4(ratios: Mapping[str, ArrayLike]) -> Figure:
    """Figure 4 of the paper: ``R_k^(tau)`` against ``k = 1..n-1``, one line per step, per case.

    ``ratios`` maps a case's title to an array ``(steps, n - 1)`` with
    ``R_k^(tau) = [B^(tau)]_{k+1,k+1} / [B^(tau)]_{k,k}`` (eigenvalues ascending), ``tau = 1..steps``.
    """
    import matplotlib as mpl

    fig, axes, items = _panels(ratios, "ratios")
    for ax, (label, R) in zip(axes, items, strict=True):
        k = np.arange(1, R.shape[1] + 1)
        for tau, (row, c) in enumerate(zip(R, step_colors(R.shape[0]), strict=True), start=1):
            ax.plot(k, row, "o-", ms=3, color=c, label=rf"$\tau={tau}$")
        with mpl.rc_context(book_rc()):
            ax.set_xlabel(r"index $k$")
            ax.set_ylabel(r"$R_k^{(\tau)}$")
            ax.set_xticks(k[::2] if k.size > 8 else k)
            ax.set_title(label)
        _legend(ax, ncol=2)
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
    import matplotlib as mpl

    alphas = np.asarray(alphas, dtype=float).ravel()
    changes = _check_2d("step_changes", step_changes)
    dist = np.asarray(limit_distance, dtype=float).ravel()
    if changes.shape[0] != alphas.size or dist.size != alphas.size:
        raise ValueError(f"step_changes {changes.shape} and limit_distance {dist.shape} need one row "
                         f"per alpha ({alphas.size})")
    fig, (ax_c, ax_l) = book_subplots(1, 2, figsize=(PAGE_WIDTH, PANEL[1]))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.16, top=0.9, wspace=0.32)
    colors = step_colors(changes.shape[1] + 1)[1:]
    for tau, (col, c) in enumerate(zip(changes.T, colors, strict=True), start=2):
        ax_c.plot(alphas, col, "o-", ms=3, color=c, label=rf"$\tau={tau}$")
    ax_l.plot(alphas, dist, "o-", ms=3, color="crimson")
    with mpl.rc_context(book_rc()):
        ax_c.set_ylabel(r"RMS of $f^{(\tau)} - f^{(\tau-1)}$")
        ax_c.set_title("change between consecutive steps")
        ax_l.set_ylabel(r"RMS of $f^{(\infty)} - f^{(1)}$")
        ax_l.set_title("distance of the limit to the first fit")
        for ax in (ax_c, ax_l):
            ax.set_xlabel(r"fixed weight $\alpha$")
            if mark is not None:
                ax.axvline(float(mark), color="0.5", ls=":", lw=1.2)
    _legend(ax_c, ncol=2)
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
    import matplotlib as mpl

    gammas = np.asarray(gammas, dtype=float).ravel()
    explained = np.asarray(explained, dtype=float).ravel()
    if gammas.shape != explained.shape:
        raise ValueError(f"gammas {gammas.shape} and explained {explained.shape} must have one shape")
    if np.any(gammas <= 0):
        raise ValueError("gammas must be > 0 (log axis)")
    fig, ax = book_subplots(figsize=(PANEL[0] * 1.3, PANEL[1]))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.16, top=0.9)
    ax.semilogx(gammas, explained, "-", color="black", lw=1.5, label="best step")
    for t in np.atleast_1d(np.asarray([] if thresholds is None else thresholds, dtype=float)):
        ax.axhline(t, color="0.6", ls=":", lw=1)
    colors = itertools.cycle(("crimson", "tab:blue", "tab:green", "tab:orange"))
    for (label, g), c in zip((marks or {}).items(), colors, strict=False):
        ax.axvline(float(g), color=c, ls="--", lw=1.2, label=label)
    with mpl.rc_context(book_rc()):
        ax.set_xlabel(r"kernel parameter $\gamma$ in $e^{-\gamma\|x - x'\|^2}$")
        ax.set_ylabel("share of the variance explained")
        ax.set_ylim(min(0.0, float(np.min(explained))), 1.0)
        ax.set_title(r"fit quality against $\gamma$")
    _legend(ax)
    return fig

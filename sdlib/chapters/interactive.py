"""Figure 2 of the paper to play with: sliders for the weight alpha and the ridge penalty lambda.

The closed form makes every frame cheap. :func:`figure2_frames` fits the estimator once per
``lam`` of a grid (one Cholesky factorisation of ``K + lam I``) and, for every fixed ``alpha`` of a
grid, computes the ``steps`` fits ``f(x, beta^(tau))`` of eqs. (5)-(7) (Theorem 4.1) and the limit of
Theorem 4.5, kernel ridge regression with the penalty ``lam / alpha`` (eq. 17; the zero function for
``alpha = 0``). :func:`explorer` draws them with Bokeh: one panel, a slider for ``alpha`` and one for
``lam`` that switch between the precomputed frames in the browser (no server, no Python: a
JavaScript callback looks the frame up), and the error of each curve against the noiseless
function. The frames travel as 16-bit integers with one scale (:func:`quantise`), so the plotted
values differ from the closed form by at most half a quantisation step, :attr:`Figure2Frames.step`.

* :func:`explorer_html` -- a self-contained HTML file (BokehJS inline): opens from disk, offline.
* :func:`explorer_javascript` -- the same as one script that draws the figure where it stands in a
  page: a notebook output of type ``application/javascript`` (:class:`Explorer`), which the book's
  pages run and which a notebook's reference outputs (text only) do not store.
* :func:`hero_figure` -- a static matplotlib figure of Figure 2's three cases (for the book's
  landing page, and where scripts do not run: the PDF).

Bokeh and matplotlib are imported inside the functions (``book`` extra), so that ``import sdlib``
needs neither.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sdlib.krr import theory

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "SOURCE_NAME",
    "Explorer",
    "Figure2Frames",
    "explorer",
    "explorer_html",
    "explorer_javascript",
    "figure2_frames",
    "hero_figure",
    "quantise",
    "write_html",
]

#: The ``name`` of the Bokeh data source that holds the plotted curves (the browser test reads it).
SOURCE_NAME = "sdlib-figure2-curves"
#: Names of the two sliders and of the text under the panel.
ALPHA_SLIDER, LAM_SLIDER, ERRORS_DIV = "sdlib-figure2-alpha", "sdlib-figure2-lam", "sdlib-figure2-errors"
_INT16_MAX = 32767


@dataclass(frozen=True)
class Figure2Frames:
    """The precomputed frames: ``curves[i, j]`` are the fits at ``lams[i]``, ``alphas[j]``.

    ``curves`` has shape ``(len(lams), len(alphas), steps + 1, m)``: rows ``0..steps-1`` are
    ``f(x, beta^(tau))`` for ``tau = 1..steps`` (eq. 7 with ``alpha^(2..steps) = alpha``), the last
    row the limit ``f(x, beta^(inf))`` of Theorem 4.5. ``mse`` (same leading shape, last axis
    ``steps + 1``) is each curve's mean squared error against ``truth``.
    """

    x: NDArray[np.float64]
    truth: NDArray[np.float64]
    X_train: NDArray[np.float64]
    y_train: NDArray[np.float64]
    gamma: float
    lams: NDArray[np.float64]
    alphas: NDArray[np.float64]
    curves: NDArray[np.float64]
    mse: NDArray[np.float64]
    seconds: float

    @property
    def steps(self) -> int:
        return int(self.curves.shape[2] - 1)

    @property
    def n_frames(self) -> int:
        """Number of (lam, alpha) frames."""
        return int(self.lams.size * self.alphas.size)

    @property
    def step(self) -> float:
        """The quantisation step of the 16-bit encoding (:func:`quantise`)."""
        return quantise(self.curves)[1]

    def index(self, lam: float, alpha: float) -> tuple[int, int]:
        """Indices of the grid values nearest to ``lam`` (on a log scale) and ``alpha``."""
        i = int(np.argmin(np.abs(np.log(self.lams) - np.log(theory.check_lam(lam)))))
        j = int(np.argmin(np.abs(self.alphas - float(alpha))))
        return i, j



def _grid(name: str, values: ArrayLike, low: float, high: float, *, open_low: bool) -> NDArray[np.float64]:
    arr = np.array(values, dtype=float).ravel()  # a copy: the caller's array is never kept
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {name}={values!r}")
    bad = arr[(arr <= low) if open_low else (arr < low)]
    bad = np.concatenate([bad, arr[arr > high]])
    if bad.size:
        interval = f"({low:g}, {high:g}]" if open_low else f"[{low:g}, {high:g}]"
        raise ValueError(f"{name} must lie in {interval}, got {name}={arr.tolist()!r}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {name}={arr.tolist()!r}")
    return arr


def figure2_frames(
    X: ArrayLike,
    y: ArrayLike,
    x_grid: ArrayLike,
    truth: ArrayLike,
    *,
    gamma: float,
    lams: ArrayLike,
    alphas: ArrayLike,
    steps: int,
) -> Figure2Frames:
    """Every frame of the explorer by the closed form (eqs. 5-7 and Theorem 4.5), timed.

    ``X`` (n,) or (n, 1) training inputs, ``y`` (n,) targets, ``x_grid`` (m,) query points, ``truth``
    (m,) the noiseless function on them; an RBF kernel ``exp(-gamma |x - x'|^2)``; ``lams`` an
    increasing grid of penalties > 0 and ``alphas`` an increasing grid of weights in ``[0, 1]``
    (Theorem 4.5 needs a fixed ``alpha`` in ``[0, 1]``). No argument is written to.
    """
    from sdlib.krr.estimator import KernelSelfDistillation

    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got steps={steps!r}")
    gamma = theory.check_lam(gamma, "gamma")
    lam_grid = _grid("lams", lams, 0.0, np.inf, open_low=True)
    alpha_grid = _grid("alphas", alphas, 0.0, 1.0, open_low=False)
    X_arr = np.array(X, dtype=float).reshape(-1, 1)
    y_arr = np.array(y, dtype=float).ravel()
    xq = np.array(x_grid, dtype=float).ravel()
    f = np.array(truth, dtype=float).ravel()
    if y_arr.shape[0] != X_arr.shape[0]:
        raise ValueError(f"y has {y_arr.shape[0]} targets but X has {X_arr.shape[0]} inputs")
    if f.shape != xq.shape:
        raise ValueError(f"truth has {f.shape[0]} values but x_grid has {xq.shape[0]} points")
    curves = np.empty((lam_grid.size, alpha_grid.size, int(steps) + 1, xq.size))
    start = time.perf_counter()
    for i, lam in enumerate(lam_grid):
        model = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=float(lam)).fit(X_arr, y_arr)
        for j, alpha in enumerate(alpha_grid):
            curves[i, j, :steps] = model.path(xq[:, None], steps=int(steps), alpha=float(alpha))
            curves[i, j, steps] = model.limit(xq[:, None], alpha=float(alpha))
    seconds = time.perf_counter() - start
    mse = np.mean((curves - f) ** 2, axis=-1)
    return Figure2Frames(x=xq, truth=f, X_train=X_arr[:, 0].copy(), y_train=y_arr, gamma=gamma, lams=lam_grid,
                         alphas=alpha_grid, curves=curves, mse=mse, seconds=seconds)


def quantise(values: ArrayLike) -> tuple[NDArray[np.int16], float]:
    """``values`` as 16-bit integers ``q`` and one ``step``: ``q * step`` is within ``step / 2`` of them."""
    arr = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError("quantise needs finite values, got a NaN or an infinity")
    top = float(np.max(np.abs(arr))) if arr.size else 0.0
    step = top / _INT16_MAX if top > 0 else 1.0
    return np.rint(arr / step).astype(np.int16), step


def _fmt(v: float) -> str:
    return f"{v:g}"


_CALLBACK = """
const i = lam.value, j = alpha.value;
const M = x.length, C = S + 1;
const base = (i * A + j) * C * M;
const data = {x: x};
for (let t = 0; t < C; t++) {
  const col = new Float64Array(M);
  for (let k = 0; k < M; k++) { col[k] = q[base + t * M + k] * step; }
  data[t < S ? "tau" + (t + 1) : "limit"] = col;
}
source.data = data;
const e = [];
for (let t = 0; t < C; t++) {
  const v = mse[(i * A + j) * C + t];
  e.push((t < S ? "τ = " + (t + 1) : "τ → ∞") + ": " + v.toFixed(4));
}
errors.text = "Mean squared error against sin(2πx) at λ = " + lams[i] + ", α = " + alphas[j] + ": " +
  e.join(" · ");
"""


def explorer(frames: Figure2Frames, *, lam: float, alpha: float, height: int = 360) -> Any:
    """The Bokeh layout: the panel of Figure 2, a slider for ``alpha`` and one for ``lam``.

    The sliders start at the grid values nearest to ``lam`` and ``alpha``. Each slider's value is
    the index of a grid value (its label shows the value); moving one replaces the curves of the
    data source :data:`SOURCE_NAME` by the frame's.
    """
    import matplotlib as mpl
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, CustomJS, CustomJSTickFormatter, Div, Legend, Range1d, Slider
    from bokeh.plotting import figure

    i, j = frames.index(lam, alpha)
    S = frames.steps
    q, step = quantise(frames.curves)
    data: dict[str, Any] = {"x": frames.x.tolist()}
    for t in range(S):
        data[f"tau{t + 1}"] = (q[i, j, t] * step).tolist()
    data["limit"] = (q[i, j, S] * step).tolist()
    source = ColumnDataSource(data, name=SOURCE_NAME)
    lo = min(float(frames.curves.min()), float(frames.y_train.min()), float(frames.truth.min()))
    hi = max(float(frames.curves.max()), float(frames.y_train.max()), float(frames.truth.max()))
    pad = 0.05 * (hi - lo)
    p = figure(height=height, sizing_mode="stretch_width", x_range=Range1d(0, 1), y_range=Range1d(lo - pad, hi + pad),
               tools="pan,wheel_zoom,box_zoom,reset,save", toolbar_location="above",
               x_axis_label="x", y_axis_label="f(x, β̂⁽ᵗ⁾)")
    items = [("sin(2πx)", [p.line(frames.x, frames.truth, line_dash="dotted", color="#8c8c8c", line_width=1.5)])]
    cmap = mpl.colormaps["viridis"]
    for t, c in enumerate(np.linspace(0.0, 0.9, max(S, 1))[:S]):
        items.append((f"τ = {t + 1}", [p.line("x", f"tau{t + 1}", source=source, color=mpl.colors.to_hex(cmap(c)),
                                              line_width=2)]))
    items.append(("τ → ∞", [p.line("x", "limit", source=source, color="crimson", line_dash="dashed",
                                    line_width=2)]))
    items.append(("training", [p.scatter(frames.X_train, frames.y_train, marker="x", size=9, color="black",
                                         line_width=2)]))
    legend = Legend(items=items, location="top_right", label_text_font_size="9pt", ncols=3,
                    click_policy="hide", background_fill_alpha=0.7, spacing=2, padding=4)
    p.add_layout(legend)
    lams, alphas = [_fmt(v) for v in frames.lams], [_fmt(v) for v in frames.alphas]
    fmt = "return values[Math.round(tick)];"
    s_alpha = Slider(start=0, end=max(len(alphas) - 1, 1), step=1, value=j, name=ALPHA_SLIDER,
                     sizing_mode="stretch_width", title="α, the weight of the ground truth at every step τ ≥ 2",
                     format=CustomJSTickFormatter(args={"values": alphas}, code=fmt), disabled=len(alphas) == 1)
    s_lam = Slider(start=0, end=max(len(lams) - 1, 1), step=1, value=i, name=LAM_SLIDER, sizing_mode="stretch_width",
                   title="λ, the ridge penalty", format=CustomJSTickFormatter(args={"values": lams}, code=fmt),
                   disabled=len(lams) == 1)
    errors = Div(text="", name=ERRORS_DIV, sizing_mode="stretch_width", styles={"font-size": "0.85em"})
    callback = CustomJS(args={"source": source, "alpha": s_alpha, "lam": s_lam, "errors": errors,
                              "x": frames.x, "q": q.ravel(), "step": step, "S": S, "A": len(alphas),
                              "lams": lams, "alphas": alphas, "mse": frames.mse.astype(np.float32).ravel()},
                        code=_CALLBACK)
    s_alpha.js_on_change("value", callback)
    s_lam.js_on_change("value", callback)
    e = " · ".join(f"{'τ = ' + str(t + 1) if t < S else 'τ → ∞'}: {frames.mse[i, j, t]:.4f}" for t in range(S + 1))
    errors.text = f"Mean squared error against sin(2πx) at λ = {lams[i]}, α = {alphas[j]}: {e}"
    return column(s_alpha, s_lam, p, errors, sizing_mode="stretch_width")


def explorer_html(layout: Any, *, title: str = "Figure 2, interactive") -> str:
    """A self-contained HTML document of ``layout`` (BokehJS inline: no server, no network)."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    return file_html(layout, INLINE, title)


def explorer_javascript(layout: Any, *, css_class: str = "sdlib-interactive") -> str:
    """One script that draws ``layout`` where the script stands in a page (BokehJS inline).

    It inserts a ``<div class=css_class>`` before itself and embeds the Bokeh document there; it
    loads nothing from the network. Written for a notebook's ``application/javascript`` output,
    which myst-nb puts in the page as a ``<script>``.
    """
    from bokeh.embed import json_item
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    bundle = bundle_for_objs_and_resources([layout], INLINE)
    item = json.dumps(json_item(layout), separators=(",", ":")).replace("</", "<\\/")
    embed = ("(function () {\n"
             "  const script = document.currentScript;\n"
             "  const host = document.createElement('div');\n"
             f"  host.className = {json.dumps(css_class)};\n"
             "  host.id = 'sdlib-bokeh-' + Math.random().toString(36).slice(2);\n"
             "  script.parentNode.insertBefore(host, script);\n"
             f"  Bokeh.embed.embed_item({item}, host.id);\n"
             "})();\n")
    return ";\n".join([*bundle.js_raw, embed])


class Explorer:
    """A notebook output: the interactive figure as ``application/javascript``, a note as text.

    Jupyter shows the text (it does not run the script of an untrusted notebook); the book's HTML
    pages run the script. ``nbytes`` is the size of the script.
    """

    def __init__(self, layout: Any, *, text: str = "Figure 2 with sliders for α and λ (runs in the book's HTML page)"):
        self.javascript = explorer_javascript(layout)
        self.text = text

    @property
    def nbytes(self) -> int:
        return len(self.javascript.encode("utf8"))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"application/javascript": self.javascript, "text/plain": self.text}


def write_html(path: str | os.PathLike[str], html: str) -> Path:
    """Write ``html`` to ``path`` atomically (a temporary file in the same folder, then a rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf8") as fh:
            fh.write(html)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's file is private; the result is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def hero_figure(
    x: ArrayLike,
    cases: Mapping[str, tuple[ArrayLike, ArrayLike]],
    X_train: ArrayLike,
    y_train: ArrayLike,
    truth: ArrayLike,
    *,
    stacked: bool = False,
) -> Figure:
    """Figure 2's cases side by side (``stacked``: one above the other, for narrow screens), closed.

    ``cases`` maps a panel title to ``(paths, limit)``: ``paths`` (steps, m) the fits of
    ``tau = 1..steps`` (eq. 7), ``limit`` (m,) the limit of Theorem 4.5, drawn dashed.
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    from sdlib.chapters.plotting import PAGE_WIDTH, book_rc, book_subplots, step_colors

    if not cases:
        raise ValueError("cases must name at least one panel, got cases={}")
    x = np.asarray(x, dtype=float).ravel()
    n = len(cases)
    shape: Sequence[int] = (n, 1) if stacked else (1, n)
    # At most the page's width, so that the figure is shown at its own size with its fonts.
    size = (4.4, 2.4 * n + 0.6) if stacked else (PAGE_WIDTH, 3.0)
    fig, axes = book_subplots(*shape, figsize=size, sharex=True, sharey=True, squeeze=False, layout="constrained")
    with mpl.rc_context(book_rc()):
        for ax, (title, (paths, limit)) in zip(axes.ravel(), cases.items(), strict=True):
            P = np.asarray(paths, dtype=float)
            if P.ndim != 2 or P.shape[1] != x.size:
                raise ValueError(f"paths of {title!r} must have shape (steps, {x.size}), got {P.shape}")
            ax.plot(x, np.asarray(truth, float).ravel(), ":", color="0.55", lw=1.2, label=r"$\sin(2\pi x)$")
            for tau, (f, c) in enumerate(zip(P, step_colors(P.shape[0]), strict=True), start=1):
                ax.plot(x, f, color=c, lw=1.3, label=rf"$\tau={tau}$")
            ax.plot(x, np.asarray(limit, float).ravel(), "--", color="crimson", lw=1.3, label=r"$\tau\to\infty$")
            ax.plot(np.ravel(X_train), np.ravel(y_train), "x", color="black", ms=5, mew=1.2)
            ax.set_title(title)
            ax.set_xlabel(r"$x$")
        for ax in axes[:, 0]:
            ax.set_ylabel(r"$f(x, \hat{\beta}^{(\tau)})$")
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=4 if stacked else len(labels), frameon=False)
    # Closed for pyplot: a notebook shows the figure where it is pasted (glue, display), not also
    # at the end of the cell that made it.
    plt.close(fig)
    return fig

"""The figure functions of sdlib.chapters.plotting draw what they are given, label it, and refuse bad shapes.

The figures are checked by what a reader needs without the code: one panel per case, one line per
step, labelled axes, a legend, the limit drawn when given; and by clear errors for arrays of the
wrong shape. Skipped where matplotlib (the ``book`` extra) is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdlib.chapters import plotting

matplotlib = pytest.importorskip("matplotlib")  # the book extra; sdlib itself does not need it
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _labelled(ax) -> bool:  # type: ignore[no-untyped-def]
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel()) and ax.get_legend() is not None


def test_figure2_draws_every_step_the_data_and_the_alpha_panel() -> None:
    x = np.linspace(0, 1, 21)
    paths = np.stack([np.sin(2 * np.pi * x) * 0.9**t for t in range(4)])
    fig = plotting.figure2(x, paths, x[::5], np.ones(5), limit=np.zeros_like(x), truth=np.sin(2 * np.pi * x),
                           alpha_star=[0.1, 0.3, 0.3], alpha_star_clipped=[0.1, 0.3, 0.3], title="t")
    ax, ax_a = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert [lab for lab in labels if lab.startswith("$\\tau=")] == [f"$\\tau={t}$" for t in range(1, 5)]
    assert "training" in labels and r"$\tau\to\infty$" in labels
    assert _labelled(ax) and _labelled(ax_a) and ax.get_title() == "t"
    np.testing.assert_allclose(ax_a.get_lines()[0].get_xdata(), [2, 3, 4])  # alpha*(2..steps)


def test_figure2_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="points per step"):
        plotting.figure2(np.zeros(5), np.zeros((3, 4)), [0.0], [0.0])
    with pytest.raises(ValueError, match="2-d"):
        plotting.figure2(np.zeros(5), np.zeros(5), [0.0], [0.0])


def test_figure3_one_panel_per_case_with_the_limit_dashed() -> None:
    B = {"(a)": np.linspace(1, 0.1, 12).reshape(3, 4), "(b)": np.full((3, 4), 0.5)}
    fig = plotting.figure3(B, limits={"(b)": np.full(4, 0.4)})
    assert len(fig.axes) == 2 and all(_labelled(ax) for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == ["(a)", "(b)"]
    dashed = [line for line in fig.axes[1].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and np.allclose(dashed[0].get_ydata(), 0.4)
    assert not [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    with pytest.raises(ValueError, match="lacks"):
        plotting.figure3(B, limits={"(c)": np.zeros(4)})
    with pytest.raises(ValueError, match="entries"):
        plotting.figure3(B, limits={"(a)": np.zeros(3)})
    with pytest.raises(ValueError, match="at least one case"):
        plotting.figure3({})


def test_figure4_one_line_per_step() -> None:
    fig = plotting.figure4({"(a)": np.ones((6, 10))})
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 6 and _labelled(ax)
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), np.arange(1, 11))


def test_alpha_tradeoff_draws_both_halves() -> None:
    alphas = np.linspace(0, 1, 5)
    changes = np.outer(1 - alphas, [1.0, 0.5, 0.25])
    fig = plotting.alpha_tradeoff(alphas, changes, 1 - alphas, mark=0.25)
    left, right = fig.axes
    assert len([line for line in left.get_lines() if line.get_label().startswith("$\\tau=")]) == 3
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), 1 - alphas)
    assert left.get_xlabel() and right.get_ylabel() and left.get_legend() is not None
    with pytest.raises(ValueError, match="one row per alpha"):
        plotting.alpha_tradeoff(alphas, changes[:3], 1 - alphas)


def test_gamma_sweep_marks_and_thresholds() -> None:
    g = np.geomspace(0.01, 100, 9)
    fig = plotting.gamma_sweep(g, np.linspace(0, 0.7, 9), marks={"80": 80.0, "1/80": 0.0125},
                               thresholds=[0.25, 0.5])
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and _labelled(ax)
    assert {"80", "1/80", "best step"} <= {line.get_label() for line in ax.get_lines()}
    with pytest.raises(ValueError, match="one shape"):
        plotting.gamma_sweep(g, np.zeros(3))
    with pytest.raises(ValueError, match="> 0"):
        plotting.gamma_sweep(np.array([0.0, 1.0]), np.zeros(2))


# ------------------------------------------------------------------------------------------------
# Readable at page width: no figure is wider than the page, no text smaller than the legend's size.


def _all_figures():  # type: ignore[no-untyped-def]
    x = np.linspace(0, 1, 21)
    paths = np.stack([np.sin(2 * np.pi * x) * 0.9**t for t in range(4)])
    B = {"(a)": np.linspace(1, 0.1, 33).reshape(3, 11), "(b)": np.full((3, 11), 0.5), "(c)": np.ones((3, 11))}
    return {
        "figure2": plotting.figure2(x, paths, x[::5], np.ones(5), alpha_star=[0.1, 0.3, 0.3]),
        "figure2_cases": plotting.figure2_cases(x, {"(a)": paths, "(b)": paths, "(c)": paths}, x[::5], np.ones(5),
                                                alpha_star=[0.1, 0.3, 0.3]),
        "figure3": plotting.figure3(B),
        "figure4": plotting.figure4({k: v[:, 1:] / v[:, :-1] for k, v in B.items()}),
        "alpha_tradeoff": plotting.alpha_tradeoff(np.linspace(0, 1, 5), np.ones((5, 3)), np.ones(5)),
        "gamma_sweep": plotting.gamma_sweep(np.geomspace(0.01, 100, 9), np.linspace(0, 0.7, 9), marks={"80": 80.0}),
        **_section5_figures(),
    }


def _section5_figures():  # type: ignore[no-untyped-def]
    """Figure 5 and the verdict's figure of Section 5, drawn from the chapter's committed run."""
    from sdlib.chapters.section5_figures import comparison_figure, figure5
    from sdlib.nn import results as R

    doc = json.loads((ROOT / "results" / "section5" / "fmnist_cnn_spatial_8seeds" / "results.json").read_text())
    rows = R.paired_comparison(doc, select="val_acc", score="test_acc")
    return {"figure5": figure5(doc), "comparison_figure": comparison_figure(rows, 0.01)}


def test_book_style_sets_the_book_fonts_and_width() -> None:
    with matplotlib.rc_context():
        plotting.book_style()
        fig = plt.figure()
        assert fig.get_figwidth() == pytest.approx(plotting.PAGE_WIDTH)
        assert matplotlib.rcParams["font.size"] == plotting.FONT_SIZE
        assert matplotlib.rcParams["legend.fontsize"] >= plotting.FONT_SIZE - 1
    assert matplotlib.rcParams["font.size"] != plotting.FONT_SIZE or plotting.FONT_SIZE == 10


def test_figures_fit_the_page_with_readable_text() -> None:
    for name, fig in _all_figures().items():
        assert fig.get_figwidth() <= plotting.PAGE_WIDTH + 1e-9, name
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
        assert sizes and min(sizes) >= plotting.FONT_SIZE - 1, (name, min(sizes))
        # at page width, the smallest text is at least 10 CSS pixels (1 pt = 1/72 in, 96 px per in)
        shown = min(sizes) / 72 * 96 * min(1.0, plotting.PAGE_WIDTH / fig.get_figwidth())
        assert shown >= 10, (name, shown)


def test_figure2_cases_one_panel_per_case_then_alpha_star_and_one_legend() -> None:
    x = np.linspace(0, 1, 21)
    paths = np.stack([np.sin(2 * np.pi * x) * 0.9**t for t in range(3)])
    fig = plotting.figure2_cases(x, {"(a)": paths, "(b)": paths, "(c)": paths}, x[::5], np.ones(5),
                                 limits={"(b)": np.zeros_like(x)}, truth=np.sin(2 * np.pi * x),
                                 alpha_star=[0.1, 0.3], alpha_star_clipped=[0.1, 0.3])
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["(a)", "(b)", "(c)", r"optimal $\alpha^{\star(\tau)}$"]
    assert len(fig.legends) == 1 and "training" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert [line.get_linestyle() for line in visible[1].get_lines()].count("--") == 1
    assert [line.get_linestyle() for line in visible[0].get_lines()].count("--") == 0
    with pytest.raises(ValueError, match="lacks"):
        plotting.figure2_cases(x, {"(a)": paths}, x, x, limits={"(z)": x})
    with pytest.raises(ValueError, match="points per step"):
        plotting.figure2_cases(x[:5], {"(a)": paths}, x, x)


def test_annotate_parameters_draws_the_rerun_and_leaves_the_paper_alone() -> None:
    fig = plotting.figure3({"(a)": np.full((3, 4), 0.5)})
    before = fig.axes[0].get_position().bounds
    h0 = fig.get_figheight()
    assert plotting.annotate_parameters(fig, {}) is fig and not fig.texts and fig.get_figheight() == h0
    plotting.annotate_parameters(fig, {"lam": (0.2, 0.05), "gamma": (80.0, 40)})
    (text,) = [t for t in fig.texts if t.get_gid() == plotting.PARAMETERS_GID]
    assert text.get_text() == r"rerun: $\lambda$ = 0.05 (paper: 0.2), $\gamma$ = 40 (paper: 80)"
    assert fig.get_figheight() > h0
    # the panel keeps its size and place in inches: only a strip is added at the top
    after = fig.axes[0].get_position().bounds
    assert after[1] * fig.get_figheight() == pytest.approx(before[1] * h0)
    assert after[3] * fig.get_figheight() == pytest.approx(before[3] * h0)
    fig.canvas.draw()
    assert text.get_window_extent().y0 > fig.axes[0].title.get_window_extent().y1  # above the title
    with pytest.raises(ValueError, match="pair"):
        plotting.annotate_parameters(fig, {"lam": 0.05})  # type: ignore[dict-item]


def test_a_figure_of_the_library_leaves_jupyter_s_interactive_mode_on() -> None:
    """In a kernel, the first figure a chapter draws may be the library's (its fonts set in an
    ``rc_context``): setting up the inline backend inside it must not turn interactive mode off on
    leaving, or the chapter's later figures are no longer shown (Section 5's second figure was not)."""
    pytest.importorskip("matplotlib_inline")
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance()  # as in a kernel: the inline backend then turns interactive on\n"
            "import matplotlib, numpy as np\n"
            "from sdlib.chapters import plotting\n"
            "plotting.figure3({'(a)': np.linspace(1, 0.1, 12).reshape(2, 6)})\n"
            "assert matplotlib.is_interactive(), 'interactive mode turned off'\n")
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

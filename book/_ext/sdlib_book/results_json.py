"""Feature 12: committed result files in the prose.

``{sdlib-json}`FILE#a.b.c:FORMAT``` pastes a value of a committed JSON result into the prose (as
``{glue:text}`` does for a notebook's values); ``{sdlib-benchmark-figure} FILE`` draws the
benchmark's scaling figure (time against n and against tau, log-log, fitted slopes) from the file
when the book is built; ``{sdlib-benchmark-comparison} FILE`` tabulates its idle and loaded ratios.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

from ._shared import _directive_json, _dirty, _simple_table


def json_value(data: Any, path: str) -> Any:
    """``data`` followed along ``a.b.-1.c`` (keys, and list indices such as ``-1``)."""
    for part in [p for p in path.split(".") if p]:
        if isinstance(data, list):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(f"no {part!r} in {path!r}")
    return data


def _json_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any, options: Any = None,
               content: Any = None) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """``{sdlib-json}`benchmarks/results/krr.json#summary.authors_vs_path.ratio:.0f``` (format optional)."""
    env = inliner.document.settings.env
    target, _, rest = text.partition("#")
    path, _, fmt = rest.partition(":")
    file = Path(env.srcdir) / target.strip().lstrip("/")
    env.note_dependency(str(file))
    try:
        value = json_value(json.loads(file.read_text(encoding="utf8")), path.strip())
        out = format(value, fmt) if fmt else str(value)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        msg = inliner.reporter.warning(f"sdlib-json: cannot paste {text!r}: {exc}", line=lineno)
        return [inliner.problematic(rawtext, rawtext, msg)], [msg]
    return [nodes.inline(out, out, classes=["pasted-text", "sdlib-json"])], []



def benchmark_figure_svg(data: dict[str, Any]) -> str:
    """Two log-log panels (time against n, time against steps) with the fitted slopes, as SVG.

    The panels are stacked (they stay legible in a narrow column), each legend under its panel
    (it hides no point), and the ticks are the measured sizes.
    """
    import io

    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    sizes, steps = data["sizes"], data["steps"]
    k = sizes.get("authors_timed_steps")
    scaled = f"authors' per-step inverse (timed for {k} steps, scaled)"
    with matplotlib.rc_context({"svg.hashsalt": "sdlib-bench", "svg.fonttype": "path", "font.size": 9}):
        fig = Figure(figsize=(6.4, 8.6), facecolor="white", layout="constrained")
        ax1, ax2 = fig.subplots(2, 1)
        ns = [r["n"] for r in sizes["rows"]]
        colour = {"ours": "C0", "kernelridge": "C1", "authors": "C2"}  # the same series, the same colour
        for key, label, style in (("ours", f"α* path over {sizes['steps']:,} steps (sdlib)", "o-"),
                                  ("kernelridge", "one KernelRidge fit", "s-"), ("authors", scaled, "^--")):
            ax1.loglog(ns, [r[key] for r in sizes["rows"]], style, color=colour[key],
                       label=f"{label}: slope {sizes['slopes'][key]:.2f}")
        ax1.set(xlabel="training points n", ylabel="seconds",
                title=f"Time against n ({sizes['m']:,} query points)")
        taus = [r["steps"] for r in steps["rows"]]
        for key, label, style in (("ours", "α* path (sdlib)", "o-"), ("authors", scaled, "^--")):
            ax2.loglog(taus, [r[key] for r in steps["rows"]], style, color=colour[key],
                       label=f"{label}: slope {steps['slopes'][key]:.2f}")
        ax2.axhline(steps["kernelridge"], color=colour["kernelridge"], lw=1, ls=":",
                    label="one KernelRidge fit (for scale)")
        ax2.set(xlabel="distillation steps τ", ylabel="seconds", title=f"Time against τ (n = {steps['n']:,})")
        for ax, ticks in ((ax1, ns), (ax2, taus)):
            ax.set_xticks(ticks, labels=[f"{t:,}" for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


class BenchmarkFigureDirective(SphinxDirective):
    """``{sdlib-benchmark-figure} benchmarks/results/krr.json``: the scaling figure, inline SVG."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0].strip("/")
        try:
            rel, data = _directive_json(self)
            svg = benchmark_figure_svg(data)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            return [self.state_machine.reporter.warning(
                f"sdlib-benchmark-figure: {rel} has no scaling sweep ({exc!r}): run make bench", line=self.lineno)]
        fig = nodes.figure(classes=["sdlib-bench-figure"])
        fig += nodes.raw("", svg, format="html")
        prov = data.get("provenance") or {}
        flags = []
        if data.get("quick"):
            flags.append("a --quick run at small sizes")
        if data.get("dirty") or _dirty(prov):
            flags.append("made from a tree with uncommitted changes")
        text = ("Not a figure of the paper. Seconds against the number of training points n (top) and "
                "against the number of distillation steps τ (bottom), on log–log axes, with the slope of "
                "a least-squares line through each series"
                + (f" (top: over n ≥ {data['sizes']['slope_min_n']:,})" if data["sizes"].get("slope_min_n") else "")
                + f". The authors' way was timed for "
                f"{data['sizes'].get('authors_timed_steps')} steps after its set-up and scaled to the "
                f"number of steps. {rel}, {prov.get('device', 'device not recorded')}, "
                f"{data.get('blas_threads') or 'unrecorded'} BLAS thread(s)"
                + (f"; ⚠ {', '.join(flags)}." if flags else "."))
        fig += nodes.caption(text, text)
        return [fig]


class BenchmarkComparisonDirective(SphinxDirective):
    """``{sdlib-benchmark-comparison} benchmarks/results/krr.json``: the path / KernelRidge ratios,
    idle and loaded, with the load average beside each, one row a size (the file's ``comparison``)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rel = self.arguments[0].strip("/")
        try:
            rows = _directive_json(self)[1]["comparison"]["rows"]
            cells: list[list[nodes.Node | str]] = [
                [f"{r['n']:,}", f"{r['idle']['ratio']:.2f}", f"{r['idle']['load']:.1f}",
                 f"{r['loaded']['ratio']:.2f}", f"{r['loaded']['load']:.1f}", f"{r['idle']['vs_limit']:.2f}"]
                for r in rows]
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            return [self.state_machine.reporter.warning(
                f"sdlib-benchmark-comparison: {rel} has no idle/loaded comparison ({exc!r}): run make bench",
                line=self.lineno)]
        return [_simple_table(["n", "path / KernelRidge, idle", "load average", "path / KernelRidge, loaded",
                               "load average", "path / limit, idle"], cells, ["sdlib-bench-comparison"])]


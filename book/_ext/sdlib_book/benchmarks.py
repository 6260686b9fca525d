"""Feature 8: ``{sdlib-benchmarks}``.

The files ``benchmarks/results/*.json`` (argument: the folder), each as a table of its ``summary``
(measured ratio with its label, goal, met) and its full content in a collapsed block, flagged when
made from a tree with uncommitted changes; the page is re-read when a file changes, appears or
disappears.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective

from ._shared import BENCH, _dirty, _simple_table, _store


def _bench_listing(folder: Path) -> list[tuple[str, float]]:
    return [(str(p), p.stat().st_mtime) for p in sorted(folder.glob("*.json"))]


def _bench_outdated(env: BuildEnvironment) -> list[str]:
    files = getattr(env, BENCH, None) or {}
    return [doc for doc, (folder, listing) in files.items() if _bench_listing(Path(folder)) != listing]


def _summary_rows(summary: dict[str, Any]) -> list[list[nodes.Node | str]]:
    """One row a measure of a result's ``summary``: label, measured number, goal, met."""
    rows: list[list[nodes.Node | str]] = []
    for key, val in summary.items():
        if not isinstance(val, dict):
            rows.append([key, str(val), "", ""])
            continue
        # the measured number: a ratio, or a time in seconds (then said so)
        unit, ratio = next(((u, val[k]) for k, u in (("ratio", ""), ("value", ""), ("seconds", " s"))
                            if isinstance(val.get(k), (int, float))), ("", None))
        met = val.get("met")
        rows.append([str(val.get("label") or key),
                     f"{ratio:.3g}{unit}" if ratio is not None else "not recorded",
                     str(val.get("goal", "")),
                     "✓" if met is True else ("✗" if met is False else str(met))])
    return rows


def _meta_line(data: dict[str, Any]) -> str:
    """What and where: the benchmark, quick or not, device, start, commit, Python."""
    meta = [f"{key}: {data[key]}" for key in ("benchmark", "quick") if key in data]
    prov = data.get("provenance")
    if isinstance(prov, dict):
        meta += [f"{key}: {prov[key]}" for key in ("device", "started", "git_commit", "python")
                 if prov.get(key) is not None]
    return "; ".join(meta)


def _result_file(name: str, data: Any, folder_arg: str) -> list[nodes.Node]:
    """The nodes of one result file: its name, summary table, provenance, dirty flag, content."""
    path = Path(name)
    out: list[nodes.Node] = [nodes.rubric("", "", nodes.literal(text=f"{folder_arg}/{path.name}"))]
    summary = data.get("summary") if isinstance(data, dict) else None
    if isinstance(summary, dict) and summary:
        out.append(_simple_table(["measure", "measured", "goal", "met"], _summary_rows(summary),
                                 ["sdlib-benchmarks"]))
    meta = _meta_line(data) if isinstance(data, dict) else ""
    if meta:
        out.append(nodes.paragraph(text=meta))
    if isinstance(data, dict) and (data.get("dirty") or _dirty(data.get("provenance"))):
        out.append(nodes.paragraph(text=(
            f"⚠ {path.name} was made from a tree with uncommitted changes (its commit ends in "
            "+dirty): rerun the benchmark from a clean tree before relying on it.")))
    text = json.dumps(data, indent=2)
    box = nodes.container(classes=["toggle"])
    box += nodes.paragraph(text=f"The whole file {path.name}:")
    block = nodes.literal_block(text, text)
    block["language"] = "json"
    box += block
    out.append(box)
    return out


class BenchmarksDirective(SphinxDirective):
    """``{sdlib-benchmarks} benchmarks/results``: every result file's summary and content."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        folder = Path(self.env.srcdir) / self.arguments[0].strip("/")
        listing = _bench_listing(folder)
        _store(self.env, BENCH)[self.env.docname] = (str(folder), listing)
        if not listing:
            return [nodes.paragraph(text=(
                f"No benchmark results yet ({self.arguments[0]}/*.json is empty): run `make bench`, "
                "then rebuild the book."))]
        out: list[nodes.Node] = []
        for name, _ in listing:
            self.env.note_dependency(name)
            try:
                data = json.loads(Path(name).read_text(encoding="utf8"))
            except (OSError, ValueError) as exc:
                out.append(self.state_machine.reporter.warning(
                    f"sdlib-benchmarks: cannot read {Path(name).name}: {exc}", line=self.lineno))
                continue
            out.extend(_result_file(name, data, self.arguments[0]))
        return out

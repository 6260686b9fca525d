"""What a sweep wrote: ``sweep.csv`` (a line per point), ``sweep.json`` (statuses, provenance), ``sweep.png``.

The table holds each point's status, parameters, glued numbers and claim verdicts
(``verdict:KEY``); the summary figure draws the ``plot:`` numbers of the grid (or the glued
numbers that vary) against the one or two parameters that vary. It is not a figure of the paper.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sdlib.chapters import claims as claims_api
from sdlib.provenance import provenance, write_bytes_atomic, write_json_atomic
from sdlib.sweeps.grid import Grid, Point

__all__ = ["SweepResult", "summarise"]


@dataclass
class SweepResult:
    """What :func:`run_sweep` did and wrote."""

    outdir: Path
    status: str
    points: list[dict[str, Any]]
    csv: Path
    json: Path
    figure: Path | None

    def count(self, status: str) -> int:
        return sum(p["status"] == status for p in self.points)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _scalar(value: Any) -> bool:
    return (value is None or isinstance(value, (bool, int, float))
            or (isinstance(value, str) and len(value) <= 200 and "\n" not in value))


def _row(point: Point, record: Mapping[str, Any], doc: Mapping[str, Any] | None) -> dict[str, Any]:
    """One line of sweep.csv: the point, its status, its parameters, glued numbers and verdicts."""
    row: dict[str, Any] = {"point": point.id, "status": record["status"],
                           "seconds": round(float(record.get("seconds") or 0.0), 3),
                           "error": record.get("error") or ""}
    params = dict(record.get("parameters", point.parameters))
    row.update({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in params.items()})
    if doc:
        skip = {claims_api.ledger_key(p) for p in claims_api.glue_prefixes(doc.get("results", {}))}
        for key, value in (doc.get("results") or {}).items():
            if key not in skip and key not in row and not key.endswith("_status") and _scalar(value):
                row[key] = value
        for claim in doc.get("claims") or []:
            if isinstance(claim, Mapping) and "key" in claim:
                row[f"verdict:{claim['key']}"] = claim.get("verdict")
    return row


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _key(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def _plotted(rows: list[dict[str, Any]], grid: Grid) -> list[str]:
    """The numbers of the summary figure: the grid's ``plot:`` keys that some point glued, else (none
    asked for, or none glued by this version of the chapter) up to six glued numbers that vary."""
    keys = [k for k in grid.plot if any(_number(r.get(k)) for r in rows)]
    if keys:
        return keys
    skip = {"point", "status", "seconds", "error", *grid.fixed, *{k for p in grid.points for k in p.parameters}}
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [c for c in columns if c not in skip and not c.startswith("verdict:") and "seconds" not in c
            and all(_number(r.get(c)) or r.get(c) is None for r in rows)
            and len({r[c] for r in rows if _number(r.get(c))}) > 1][:6]


def _groups(ok: list[tuple[Point, dict[str, Any]]], varying: list[str]) -> dict[str, tuple[str | None, list[Any]]]:
    """The points by the value of the second varying parameter (one group when only one varies)."""
    x = varying[0]
    groups: dict[str, tuple[str | None, list[tuple[Any, dict[str, Any]]]]] = {}
    for p, r in ok:
        if x not in p.parameters:
            continue
        g = p.parameters.get(varying[1]) if len(varying) == 2 else None
        label = None if len(varying) == 1 else f"{varying[1]} = {g}"
        groups.setdefault(_key(g), (label, []))[1].append((p.parameters[x], r))
    return groups


def _figure(rows: list[dict[str, Any]], grid: Grid, notebook: Path, path: Path) -> Path | None:
    """The summary figure: glued numbers against the one or two parameters that vary."""
    varying = grid.varying
    ok = [(p, r) for p, r in zip(grid.points, rows, strict=True) if r["status"] == "ok"]
    if not 1 <= len(varying) <= 2 or not ok:
        return None
    keys = _plotted([r for _, r in ok], grid)
    if not keys:
        return None
    import matplotlib  # only a sweep that draws its summary pays for matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = varying[0]
    xs = list({_key(p.parameters[x]): p.parameters[x] for p in grid.points if x in p.parameters}.values())
    numeric = all(_number(v) for v in xs)
    order = [_key(v) for v in xs]
    groups = _groups(ok, varying)
    cols = min(3, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for label, members in groups.values():
            pts = sorted((v if numeric else order.index(_key(v)), r[key]) for v, r in members if _number(r.get(key)))
            if pts:
                ax.plot([a for a, _ in pts], [b for _, b in pts], "o-", label=label)
        ax.set_xlabel(x)
        ax.set_ylabel(key)
        ax.set_title(key, fontsize=9)
        if numeric and min(xs) > 0 and max(xs) / min(xs) >= 100:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        if len(groups) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    fig.suptitle(f"Not a figure of the paper. Sweep of {notebook.name}: {len(ok)} of {len(rows)} points ok",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_bytes_atomic(path, buf.getvalue())


def _csv(rows: list[dict[str, Any]]) -> bytes:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf8")


def summarise(notebook: Path, grid: Grid, outdir: Path, records: Mapping[str, dict[str, Any]],
               started: datetime, seconds: float, status: str, cluster: str) -> SweepResult:
    rows, points = [], []
    for p in grid.points:
        rec = records.get(p.id) or {"status": "not run", "parameters": p.parameters}
        doc = rec.get("doc")
        rows.append(_row(p, rec, doc))
        points.append({"id": p.id, "status": rec["status"], "parameters": p.parameters,
                       "seconds": rec.get("seconds"), "skipped": bool(rec.get("skipped")),
                       "error": rec.get("error"), "folder": p.id,
                       "t_start": rec.get("t_start"), "t_end": rec.get("t_end")})
    table = write_bytes_atomic(outdir / "sweep.csv", _csv(rows))
    figure = None
    try:
        figure = _figure(rows, grid, notebook, outdir / "sweep.png")
    except Exception as exc:  # noqa: BLE001 - a figure must never lose the table
        logging.getLogger(__name__).warning("no summary figure: %s", exc)
    doc = {
        "notebook": str(notebook), "grid": grid.source, "status": status,
        "counts": {s: sum(pt["status"] == s for pt in points) for s in sorted({pt["status"] for pt in points})},
        "varying": grid.varying, "fixed": grid.fixed, "cluster": cluster,
        "points": points, "table": table.name, "figure": figure.name if figure else None,
        "provenance": provenance(started=started, seconds=seconds, parameters=grid.fixed),
    }
    doc["provenance"]["command"] = " ".join(sys.argv) if sys.argv else None
    js = write_json_atomic(outdir / "sweep.json", doc)
    return SweepResult(outdir=outdir, status=status, points=points, csv=table, json=js, figure=figure)


"""A sweep on Dask against the same points run one after the other, timed in the same run.

    python benchmarks/bench_sweep.py                 # 8 points of notebooks/theorem45.md, 2 workers
    python benchmarks/bench_sweep.py --quick         # 4 points of a tiny notebook: checks the script runs

Both sides run the same points of a chapter (the first ``--points`` of ``--grid``, by default
configs/sweep_theorem45.yaml) from the same starting state:

* ``serial``: a loop of ``python -m sdlib run NOTEBOOK -f POINT.yaml -o DIR`` (one command after
  the other, as a shell loop would), timed from the first start to the last end;
* ``sweep``: one ``python -m sdlib sweep NOTEBOOK -g GRID.yaml -o DIR --workers W``, timed as a user
  sees it: the command's start-up, the LocalCluster's start, the points and the summary.

Reported (``summary``, each value under ``ratio`` as in the other result files):

* ``speedup`` = serial seconds / sweep seconds (goal >= 1.6 on 2 cores with 2 workers);
* ``scheduling_overhead_per_point`` = (the span from the first point's start to the last point's end
  - the sum of the points' own seconds / W) / N: the seconds per point that the W workers spend
  not running a point while the sweep runs points (handing out tasks, starting each point's
  process, idle workers at the end; goal <= 1 s);
* outside ``summary``, ``command_overhead_per_point`` = (sweep seconds - the sum of the points' own
  seconds / W) / N: the same plus what the command does before the first point and after the last
  (its start-up, validating every point, starting the cluster, the table and the figure), a fixed
  cost spread over N points.

Both sides run in the same run, so that load on the machine affects both alike; on a machine
others are using (``load_average`` records it: at the start and the end, and around each side; the
speed-up's label and the printed summary say it) they are noisy, and
points that run side by side compete for the cores with the other users.
The order of the two sides alternates with ``--repeats`` > 1 and the best of each is kept.

Writes ``benchmarks/results/sweep.json`` (``--quick``: ``runs/bench/sweep_quick.json``, never
committed), with provenance. A result in benchmarks/results/ is made from a clean tree: from a tree
with uncommitted changes the script stops, unless ``--allow-dirty`` (the file then says
``"dirty": true``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from sdlib.provenance import git_commit, provenance, write_json_atomic
from sdlib.sweeps.sweep import load_grid, make_grid, plan_sweep

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "runs" / "bench" / "sweep_quick.json"
GOALS = {"speedup": (">=", 1.6), "scheduling_overhead_per_point": ("<=", 1.0)}

TINY = """---
jupytext:
  text_representation: {extension: .md, format_name: myst, format_version: 0.13, jupytext_version: 1.19.6}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

```{code-cell} ipython3
:tags: [parameters]
a = 1.0  # > 0; a number
work = 2000000  # >= 1; loop length (a second or so of CPU)
```

```{code-cell} ipython3
from myst_nb import glue

total = 0
for i in range(work):
    total += i % 7
glue("bench_product", a * total, display=False)
```
"""


def tree_is_dirty() -> bool:
    """Uncommitted changes to tracked files (as :func:`sdlib.provenance.git_commit` marks them)."""
    commit = git_commit(ROOT)
    return commit is None or commit.endswith("+dirty")


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def _fmt_load(load: list[float] | None) -> str:
    return "n/a" if load is None else " ".join(f"{x:.1f}" for x in load)


def _env() -> dict[str, str]:
    # one BLAS thread per process: W workers on W cores, as the serial loop's one process on one core
    return dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def run_serial(notebook: Path, points: list[Any], folder: Path) -> dict[str, Any]:
    """The baseline: ``python -m sdlib run`` once per point, one after the other."""
    seconds = []
    t0 = time.perf_counter()
    for p in points:
        out = folder / p.id
        out.mkdir(parents=True)
        config = out / "point.yaml"
        config.write_text(yaml.safe_dump(p.parameters, sort_keys=False))
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sdlib", "run", str(notebook), "-f", str(config), "-o", str(out),
                               "--no-progress"], capture_output=True, text=True, env=_env())
        seconds.append(time.perf_counter() - t)
        if proc.returncode != 0:
            raise SystemExit(f"bench_sweep.py: serial point {p.id} failed: {proc.stderr.strip()[-500:]}")
    return {"seconds": time.perf_counter() - t0, "point_seconds": seconds}


def run_sweep(notebook: Path, grid_file: Path, folder: Path, workers: int, n: int) -> dict[str, Any]:
    """One ``python -m sdlib sweep`` of the same points on a LocalCluster of ``workers`` processes."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sdlib", "sweep", str(notebook), "-g", str(grid_file), "-o",
                           str(folder), "--workers", str(workers), "--no-progress"],
                          capture_output=True, text=True, env=_env())
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_sweep.py: the sweep failed: {proc.stderr.strip()[-500:]}")
    doc = json.loads((folder / "sweep.json").read_text())
    own = [p["seconds"] for p in doc["points"]]
    starts = [p["t_start"] for p in doc["points"]]
    ends = [p["t_end"] for p in doc["points"]]
    span = max(ends) - min(starts)
    return {"seconds": seconds, "point_seconds": own, "points_span": span,
            "scheduling_overhead_per_point": (span - sum(own) / workers) / n,
            "command_overhead_per_point": (seconds - sum(own) / workers) / n, "cluster": doc["cluster"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 points of a tiny notebook: check that the script runs")
    ap.add_argument("--notebook", type=Path, default=ROOT / "notebooks" / "theorem45.md")
    ap.add_argument("--grid", type=Path, default=ROOT / "configs" / "sweep_theorem45.yaml")
    ap.add_argument("--points", type=int, default=8, help="the first N points of the grid")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes of the sweep")
    ap.add_argument("--repeats", type=int, default=1, help="runs of each side, alternating; the best is kept")
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs' folders here (default: a temporary one)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write into benchmarks/results/ from a tree with uncommitted changes (flagged)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output JSON (default benchmarks/results/sweep.json; --quick: runs/bench/sweep_quick.json)")
    args = ap.parse_args(argv)
    for name in ("points", "workers", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    target = (args.out or (QUICK_OUT if args.quick else RESULTS / "sweep.json")).resolve()
    dirty = tree_is_dirty()
    if dirty and RESULTS.resolve() in target.parents and not args.allow_dirty:
        print(f"bench_sweep.py: error: the working tree has uncommitted changes (git status), and {target} is a "
              "committed result: commit first, or pass --allow-dirty (the result is then flagged), or --out "
              "elsewhere", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_")) if args.keep is None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.quick:
            notebook = work / "tiny.md"
            notebook.write_text(TINY)
            grid = make_grid({"grid": {"a": [1.0, 2.0, 3.0, 4.0]}}, source="the tiny grid")
            n = min(args.points, 4)
        else:
            notebook = args.notebook.resolve()
            grid = load_grid(args.grid)
            n = args.points
        if n > len(grid.points):
            ap.error(f"--points {n} exceeds the {len(grid.points)} points of the grid")
        grid.points = grid.points[:n]
        plan = plan_sweep(notebook, grid)
        grid_file = work / "grid.yaml"
        grid_file.write_text(yaml.safe_dump({"points": [{"id": p.id, **p.parameters} for p in grid.points]}
                                            | ({"parameters": grid.fixed} if grid.fixed else {}), sort_keys=False))
        started = datetime.now(timezone.utc)
        load_start = _load()
        t0 = time.perf_counter()
        serial: list[dict[str, Any]] = []
        sweep: list[dict[str, Any]] = []
        for r in range(args.repeats):
            order = ("serial", "sweep") if r % 2 == 0 else ("sweep", "serial")
            for side in order:
                folder = work / f"{side}{r}"
                before = _load()
                if side == "serial":
                    serial.append(run_serial(notebook, plan.points, folder))
                else:
                    sweep.append(run_sweep(notebook, grid_file, folder, args.workers, n))
                done = (serial if side == "serial" else sweep)[-1]
                done["load_average"] = {"start": before, "end": _load()}
                print(f"{side} (repeat {r + 1}): {done['seconds']:.1f} s (load average {_fmt_load(before)} -> "
                      f"{_fmt_load(done['load_average']['end'])})", flush=True)
        best_serial = min(serial, key=lambda d: d["seconds"])
        best_sweep = min(sweep, key=lambda d: d["seconds"])
        measured = {"speedup": best_serial["seconds"] / best_sweep["seconds"],
                    "scheduling_overhead_per_point": best_sweep["scheduling_overhead_per_point"]}
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        loads = [x for d in (best_serial, best_sweep) for x in (d["load_average"]["start"], d["load_average"]["end"])
                 if x is not None]
        load_text = (f"; load average {min(v[0] for v in loads):.1f}-{max(v[0] for v in loads):.1f} on {cores} cores"
                     if loads else "")
        labels = {"speedup": f"{n} points: serial loop of 'sdlib run' / 'sdlib sweep --workers {args.workers}'"
                             f"{load_text}",
                  "scheduling_overhead_per_point": "seconds per point the workers spend not running a point "
                                                   "(first point's start to last point's end)"}
        summary = {k: {"label": labels[k], "ratio": v,
                       "goal": f"{GOALS[k][0]} {GOALS[k][1]}",
                       "met": bool(v >= GOALS[k][1] if GOALS[k][0] == ">=" else v <= GOALS[k][1])}
                   for k, v in measured.items()}
        out = {
            "benchmark": "sweep",
            "title": "A sweep on a 2-worker LocalCluster against a serial loop of 'python -m sdlib run'",
            "command": " ".join(["python", "benchmarks/bench_sweep.py", *(argv if argv is not None else sys.argv[1:])]),
            "quick": args.quick,
            "dirty": dirty,
            "notebook": str(notebook.relative_to(ROOT)) if ROOT in notebook.parents else notebook.name,
            "points": [{"id": p.id, **p.parameters} for p in plan.points],
            "workers": args.workers,
            "cpu_cores": cores,
            # the machine's load (1, 5, 15 min) beside the speed-up: on a shared machine both sides compete
            "load_average": {"start": load_start, "end": _load(),
                             "serial": best_serial["load_average"], "sweep": best_sweep["load_average"]},
            "summary": summary,
            "command_overhead_per_point": best_sweep["command_overhead_per_point"],
            "serial": serial,
            "sweep": sweep,
            "provenance": provenance(started=started, seconds=time.perf_counter() - t0,
                                     parameters={"points": n, "workers": args.workers, "repeats": args.repeats,
                                                 "quick": args.quick}),
        }
        write_json_atomic(target, out)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    for k, v in summary.items():
        print(f"{k}: {v['ratio']:.2f} (goal {v['goal']}: {'met' if v['met'] else 'NOT met'}) - {v['label']}")
    print(f"load average: {_fmt_load(out['load_average']['start'])} at the start, "
          f"{_fmt_load(out['load_average']['end'])} at the end ({out['cpu_cores']} cores)")
    print(f"command_overhead_per_point: {out['command_overhead_per_point']:.2f} s")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

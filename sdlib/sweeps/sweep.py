"""Sweeps of a chapter's parameters: one notebook run per point of a grid, as Dask tasks.

A sweep (:func:`run_sweep`, ``python -m sdlib sweep``) runs one chapter at every point of a grid
(:mod:`sdlib.sweeps.grid`): each point as ``python -m sdlib run`` in a process of its own
(:mod:`sdlib.sweeps.points`) as one Dask task on the client of :func:`sdlib.sweeps.cluster.dask_client`,
into ``OUTDIR/<point-id>/`` (``lam=0.05_steps=2``); the results land in ``OUTDIR/sweep.csv``,
``OUTDIR/sweep.json`` and ``OUTDIR/sweep.png`` (:mod:`sdlib.sweeps.summary`).

The names this module held before the split into those modules (``dask_client``, ``make_grid``,
``load_grid``, ``point_id``, ``run_point``, ``visible_gpus``, ``make_security``, ...) are still
importable from here; new code imports them from their own modules.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sdlib.chapters.params import load_parameter_file, notebook_parameters, validate_parameters
from sdlib.errors import UsageError
from sdlib.provenance import folder_lock, prepare_outdir
from sdlib.sweeps.cluster import InsecureSchedulerWarning as InsecureSchedulerWarning
from sdlib.sweeps.cluster import dask_client
from sdlib.sweeps.cluster import default_workers as default_workers
from sdlib.sweeps.cluster import insecure_scheduler as insecure_scheduler
from sdlib.sweeps.cluster import make_security as make_security
from sdlib.sweeps.cluster import visible_gpus as visible_gpus
from sdlib.sweeps.grid import Grid, Point, load_grid
from sdlib.sweeps.grid import make_grid as make_grid
from sdlib.sweeps.grid import point_id as point_id
from sdlib.sweeps.points import done, other_result, run_point, terminate_points
from sdlib.sweeps.summary import SweepResult, summarise

__all__ = ["plan_sweep", "run_sweep"]


def plan_sweep(notebook: str | Path, grid: Grid | str | Path, *, parameters: Mapping[str, Any] | None = None,
               config: str | Path | None = None) -> Grid:
    """The grid with every point's parameters complete and validated against the notebook.

    A point's parameters are the grid's fixed ``parameters:``, then ``config`` (a YAML file), then
    ``parameters`` (``-p``), then the point's own values; a parameter both varied by the grid and set
    by ``config``/``parameters`` is an error, and so is any value the notebook refuses (unknown name,
    wrong type, outside its declared constraint: :func:`sdlib.chapters.params.validate_parameters`). Nothing runs.
    """
    grid = grid if isinstance(grid, Grid) else load_grid(grid)
    params = notebook_parameters(notebook)
    base = dict(load_parameter_file(config)) if config is not None else {}
    base.update(parameters or {})
    clash = sorted(set(base) & {k for p in grid.points for k in p.parameters})
    if clash:
        raise UsageError(f"{', '.join(map(repr, clash))} both varies across the grid's points and is set by "
                         "-p/-f; drop it from one of them")
    fixed = {**grid.fixed, **base}
    points = [Point(p.id, validate_parameters(params, {**fixed, **p.parameters},
                                                     notebook=f"{Path(notebook).name} (point {p.id})"))
              for p in grid.points]
    return Grid(points=points, fixed=fixed, varying=list(grid.varying), plot=list(grid.plot), source=grid.source)


def run_sweep(
    notebook: str | Path,
    grid: Grid | str | Path,
    outdir: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    timeout: float | None = None,
    kernel_name: str | None = None,
    progress: bool = True,
    force: bool = False,
    security: Any = None,
) -> SweepResult:
    """Run ``notebook`` at every point of ``grid`` on Dask and write OUTDIR's summary.

    Every point's parameters are completed and validated before anything runs (:func:`plan_sweep`:
    :class:`sdlib.chapters.params.ParameterError` for a value the notebook refuses). Each point runs through
    :func:`run_point` as a Dask task (on ``client``, or a :func:`dask_client` of
    ``workers``/``scheduler``) into ``OUTDIR/<point-id>/``.
    Points whose ``results.json`` says ``"ok"`` with the same parameters are skipped (``force``
    reruns them); failed and interrupted ones run again; a failing point does not stop the others.
    Writes ``OUTDIR/sweep.csv`` (one line per point: status, parameters, glued numbers, claim
    verdicts), ``OUTDIR/sweep.json`` (the points, their statuses and the provenance) and, when one
    or two parameters vary, ``OUTDIR/sweep.png``. On Ctrl-C or SIGTERM the running points are
    stopped (each records ``"interrupted"``), the summary is written and ``KeyboardInterrupt`` raised.
    Returns a :class:`SweepResult`; its status is ``"ok"`` when every point is.

    OUTDIR is locked for the sweep (a second sweep into it is a :class:`~sdlib.errors.UsageError`),
    and a point folder holding a finished run made with other parameters is refused unless
    ``force``. ``security``: see :func:`dask_client`.
    """
    notebook = Path(notebook).resolve()
    outdir = Path(outdir).resolve()
    grid = plan_sweep(notebook, grid, parameters=parameters, config=config)
    if timeout is not None and not timeout > 0:
        raise UsageError(f"timeout must be a positive number of seconds, got {timeout!r}")

    prepare_outdir(outdir)
    # one sweep at a time in a folder: two would run the same points and mix their tables
    with folder_lock(outdir, f"a sweep of {notebook.name} (python -m sdlib sweep)"):
        return _sweep_locked(notebook, grid, outdir, workers=workers, scheduler=scheduler, client=client,
                             timeout=timeout, kernel_name=kernel_name, progress=progress, force=force,
                             security=security)


def _sweep_locked(notebook: Path, grid: Grid, outdir: Path, *, workers: int | None, scheduler: str | None,
                  client: Any, timeout: float | None, kernel_name: str | None, progress: bool,
                  force: bool, security: Any) -> SweepResult:
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    records: dict[str, dict[str, Any]] = {}
    todo: list[Point] = []
    if not force:
        for p in grid.points:
            other = other_result(outdir / p.id, p.parameters)
            if other is not None:
                raise UsageError(f"point {p.id} of {outdir} holds a finished run with other parameters ({other}); "
                                 "give another -o/--outdir, or --force to rerun every point")
    for p in grid.points:
        doc = None if force else done(outdir / p.id, p.parameters)
        if doc is not None:
            records[p.id] = {"status": "ok", "skipped": True, "parameters": p.parameters, "doc": doc,
                             "seconds": doc.get("provenance", {}).get("seconds")}
        else:
            todo.append(p)
    status = "ok"
    cluster = "none (every point done)"
    bar = tqdm(total=len(grid.points), initial=len(records), unit="point", disable=not progress,
               desc=f"sweep {notebook.name}", dynamic_ncols=True)
    try:
        if todo:
            with ExitStack() as stack:
                if client is None:
                    # each point runs in a process of its own, so that the local workers only wait:
                    # threads of this process, with nothing to start
                    client = stack.enter_context(dask_client(workers, scheduler, processes=False,
                                                             security=security))
                cluster = _describe(client)
                _run_points(client, str(notebook), outdir, todo, records, bar, timeout, kernel_name)
    except BaseException as exc:
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        summarise(notebook, grid, outdir, records, started, time.perf_counter() - t0, status, cluster)
        raise
    finally:
        bar.close()
    if any(r["status"] != "ok" for r in records.values()) or len(records) < len(grid.points):
        status = "failed"
    return summarise(notebook, grid, outdir, records, started, time.perf_counter() - t0, status, cluster)


def _describe(client: Any) -> str:
    try:
        info = client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return f"{info.get('address', '?')}: {len(workers)} worker(s), {threads} thread(s)"
    except Exception:  # noqa: BLE001 - a description only
        return str(client)


def _run_points(client: Any, notebook: str, outdir: Path, todo: list[Point], records: dict[str, dict[str, Any]],
                bar: Any, timeout: float | None, kernel_name: str | None) -> None:
    """Submit one task per point and record each as it completes; on interrupt stop the running ones."""
    from distributed import as_completed  # the 'dist' extra, imported when points run

    futures = {}
    for p in todo:
        fut = client.submit(run_point, notebook, str(outdir / p.id), p.parameters, timeout=timeout,
                            kernel_name=kernel_name, key=f"sdlib-sweep-{p.id}-{uuid.uuid4().hex[:8]}",
                            pure=False, retries=0)
        futures[fut] = p
    try:
        for fut in as_completed(futures):
            p = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost, a task killed: this point fails alone
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "doc": None}
            rec["parameters"] = p.parameters
            records[p.id] = rec
            bar.update(1)
            bar.set_postfix_str(f"{p.id}: {rec['status']}", refresh=True)
    except BaseException:
        # Stop the points still running (Dask does not stop running tasks when futures are
        # cancelled), give them a moment to record "interrupted", then cancel the rest.
        pending = [f for f in futures if not f.done()]
        folders = [str(outdir / futures[f].id) for f in pending]
        with contextlib.suppress(Exception):
            client.run(terminate_points, folders)
        deadline = time.monotonic() + 20
        for fut in pending:
            p = futures[fut]
            with contextlib.suppress(Exception):
                rec = fut.result(timeout=max(0.1, deadline - time.monotonic()))
                rec["parameters"] = p.parameters
                records[p.id] = rec
        with contextlib.suppress(Exception):
            client.cancel(pending)
        for fut in pending:
            p = futures[fut]
            records.setdefault(p.id, {"status": "interrupted", "error": "the sweep was interrupted",
                                      "parameters": p.parameters, "doc": None})
        raise

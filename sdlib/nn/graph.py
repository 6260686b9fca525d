"""Section 5 as a task graph: the scheduler. One task per fit (seed, chain, step), run in this
process or on a Dask cluster, with checkpoints on a shared path as the hand-off between tasks.

What the fits are and what each reads is :mod:`sdlib.nn.plan`; what one task does (train its
fits, score them, write their records and checkpoints) is :func:`sdlib.nn.task.run_task`; the
checkpoints and their identity are :mod:`sdlib.nn.checkpoints`. :func:`train` schedules the tasks,
collects their records and writes ``results.json``.

Resume: a task whose checkpoints all exist, and were trained from the fits that are there now, is
not run (and a task that finds its checkpoint on disk loads it instead of training); resuming
with other settings is a :class:`~sdlib.errors.UsageError` (:func:`~sdlib.nn.checkpoints.fit_identity`).

Determinism: a fit depends only on its seed ``1000 s + tau``, its alpha and its teacher, and every
task runs with ``threads`` intra-op threads (default 1), so on a CPU a serial run and a run on any
number of Dask workers give bitwise identical records (tested); on CUDA this is not claimed
(see :mod:`sdlib.nn.fitting`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdlib.nn.checkpoints import (
    IDENTITY_KEYS,
    check_checkpoint_dir,
    fit_identity,
    load_matching,
    record_identity,
    upstream_changed,
)
from sdlib.nn.config import ExperimentConfig
from sdlib.nn.fitting import resolve_device
from sdlib.nn.plan import AH, ALPHA0, FitKey, Task, fit_seed, plan
from sdlib.nn.results import RESULTS_KIND
from sdlib.nn.task import run_task
from sdlib.provenance import provenance, write_json_atomic

__all__ = ["train", "run_experiment", "InterruptedRun", "FitKey", "Task", "plan", "fit_identity", "fit_seed",
           "IDENTITY_KEYS", "AH", "ALPHA0"]


class InterruptedRun(RuntimeError):
    """Raised by ``stop_after_fits`` (the tests simulate a killed serial run with it)."""


class _Progress:
    """The driver's account of a run: the records of the finished fits, the counts, the progress
    bar, ``outdir/progress.json`` and the ``on_task`` callback."""

    def __init__(self, cfg: ExperimentConfig, outdir: Path, ckpt_dir: Path, identity: dict[str, Any],
                 n_fits: int, on_task: Callable[[dict[str, Any]], None] | None) -> None:
        self.cfg_dict, self.outdir, self.ckpt_dir, self.identity = cfg.to_dict(), outdir, ckpt_dir, identity
        self.n_fits, self.on_task = n_fits, on_task
        self.recs: dict[FitKey, dict[str, Any]] = {}
        self.counts = {"trained": 0, "loaded": 0}
        self.sizes: dict[str, int] = {}
        self.bar: Any = None
        self.t0 = time.perf_counter()

    def resume(self, tasks: list[Task]) -> list[Task]:
        """Take the records of the tasks whose checkpoints all exist and were trained from what is
        there now; return the others. A task that waits for a pending one is pending too (then
        :func:`~sdlib.nn.task.run_task` compares what each fit was trained from with what is there)."""
        pending: list[Task] = []
        for t in tasks:
            cks = [load_matching(k.path(self.ckpt_dir), self.identity, mmap=True) for k in t.fits]
            waits = any(d.name in t.deps for d in pending)
            if not waits and all(ck is not None and not upstream_changed(k, ck, self.ckpt_dir, self.identity)
                                 for k, ck in zip(t.fits, cks, strict=True)):
                for k, ck in zip(t.fits, cks, strict=True):
                    self.recs[k] = dict(ck["record"])  # type: ignore[index]
                    self.sizes.update(ck.get("sizes") or {})  # type: ignore[union-attr]
                self.counts["loaded"] += len(t.fits)
            else:
                pending.append(t)
        return pending

    def show_bar(self) -> None:
        from tqdm.auto import tqdm  # only a run that shows its progress pays for importing tqdm

        self.bar = tqdm(total=self.n_fits, initial=self.counts["loaded"], desc=f"Section 5 fits ({self.outdir.name})",
                        unit="fit")

    def done(self, result: list[dict[str, Any]], name: str) -> None:
        """Account for the results of task ``name`` (:func:`~sdlib.nn.task.run_task`)."""
        record_identity(self.ckpt_dir, self.identity)
        for r in result:
            self.recs[r["key"]] = r["record"]
            self.sizes.update(r.get("sizes") or {})
            self.counts["trained" if r["trained"] else "loaded"] += 1
        if self.bar is not None:
            self.bar.update(len(result))
        state = {"task": name, "fits_done": len(self.recs), "fits": self.n_fits, **self.counts,
                 "seconds": round(time.perf_counter() - self.t0, 1)}
        # every finished fit is on disk at once, outside the checkpoints too (a run stopped by a
        # timeout keeps its records); results.json is written when all fits are done
        write_json_atomic(self.outdir / "progress.json", {"kind": f"{RESULTS_KIND}/progress", **state,
                                                          "parameters": self.cfg_dict,
                                                          "records": list(self.recs.values())})
        if self.on_task is not None:
            self.on_task(state)


def _run_here(pending: list[Task], book: _Progress, threads: int | None, data: Any,
              stop_after_fits: int | None) -> int:
    """Run the tasks in this process, in order; returns the number of workers (0)."""
    cfg_dict, ckpt_dir = book.cfg_dict, str(book.ckpt_dir)
    for t in pending:
        if stop_after_fits is not None and book.counts["trained"] + len(t.fits) > stop_after_fits:
            raise InterruptedRun(f"stopped after {book.counts['trained']} fits (stop_after_fits={stop_after_fits})")
        book.done(run_task(cfg_dict, t.fits, ckpt_dir, book.identity, threads, data=data), t.name)
    return 0


def _run_on(client: Any, pending: list[Task], book: _Progress, threads: int | None, token: str) -> int:
    """Submit the tasks to a ``distributed.Client``, each with the futures it waits for; account for
    them as they finish (all are cancelled if one fails). Returns the number of workers."""
    from distributed import as_completed  # the optional `dist` extra: only a run on a cluster needs it

    workers = len(client.scheduler_info().get("workers", {}))
    futs: dict[str, Any] = {}
    for t in pending:
        ups = [futs[d] for d in t.deps if d in futs]
        futs[t.name] = client.submit(run_task, book.cfg_dict, t.fits, str(book.ckpt_dir), book.identity, threads,
                                     *ups, key=f"sdlib-fit-{t.name}-{token}", pure=False)
    names = {f.key: n for n, f in futs.items()}
    try:
        for fut in as_completed(list(futs.values())):
            book.done(fut.result(), names[fut.key])
    except BaseException:
        client.cancel(list(futs.values()))
        raise
    return workers


def _assemble(cfg: ExperimentConfig, recs: dict[FitKey, dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Records in the order of :func:`train`'s results: per seed, the shared
    first model under every chain, then per step each chain; the alpha = 0 fits as helper records."""
    records, helpers = [], []
    for s in cfg.seeds:
        first = recs[FitKey(s, "first", 1)]
        for name in cfg.chains:
            records.append({**first, "chain": name, "fits": 1, "shared_first": True})
        for tau in range(2, cfg.steps + 1):
            for name in cfg.chains[:-1]:
                records.append({**recs[FitKey(s, name, tau)], "fits": tau, "shared_first": False})
            h = recs[FitKey(s, ALPHA0, tau)]
            helpers.append(h)
            r = recs[FitKey(s, AH, tau)]
            records.append({**r, "fits": 2 * (tau - 1) + 1, "shared_first": False,
                            "seconds_with_alpha0": round(r["seconds"] + h["seconds"], 4)})
    return records, helpers


def _document(cfg: ExperimentConfig, book: _Progress, n_tasks: int, workers: int, threads: int | None,
              started: datetime) -> dict[str, Any]:
    """The content of ``results.json``: parameters, results (the assembled records), provenance."""
    records, helpers = _assemble(cfg, book.recs)
    results = {
        "dataset": cfg.dataset, "arch": cfg.arch, **book.sizes,
        "records": records, "helper_records": helpers,
        "fits_trained": book.counts["trained"], "fits_loaded": book.counts["loaded"],
        "tasks": n_tasks, "workers": workers, "threads_per_fit": threads, "identity": book.identity,
    }
    return {
        "kind": RESULTS_KIND,
        "parameters": book.cfg_dict,
        "results": results,
        "provenance": provenance(started=started, seconds=time.perf_counter() - book.t0, parameters=book.cfg_dict,
                                 seed=list(cfg.seeds), device=cfg.device),
    }


def train(
    cfg: ExperimentConfig,
    outdir: str | Path,
    *,
    client: Any = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    threads: int | None = 1,
    data: Any = None,
    stop_after_fits: int | None = None,
    on_task: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) every fit of ``cfg`` and write ``outdir/results.json`` (atomically, with
    provenance); returns its content.

    ``client``: a ``distributed.Client`` (one task per fit, submitted with its dependencies; e.g.
    ``sdlib.sweeps.sweep.dask_client``), or None to run the same tasks here, in order. The checkpoints
    (default ``outdir/checkpoints``) must be on a path every worker can read and write. ``threads``:
    intra-op threads of every task (None: leave torch's setting). ``data``: a preloaded
    :class:`~sdlib.nn.data.DataBundle` for a serial run (tests). ``stop_after_fits`` (serial):
    raise :class:`InterruptedRun` once that many fits were trained. ``on_task``: called with the
    driver's progress after each finished task.

    While it runs, ``outdir/progress.json`` holds the records of the fits finished so far (rewritten
    after every task, removed once ``results.json`` is written).

    ``results``: ``records`` (one per seed, chain, step: alpha, alpha_hat, train/val/test accuracy,
    train_loss, seconds, fits), ``helper_records`` (alpha-hat's alpha = 0 fits), ``fits_trained`` and
    ``fits_loaded`` (this call), ``tasks``, ``workers``.
    """
    started = datetime.now(timezone.utc)
    outdir = Path(outdir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else outdir / "checkpoints"
    device_type = "cuda" if str(cfg.device).startswith("cuda") else "cpu"
    if client is None:
        resolve_device(cfg.device)   # no GPU here: say so before anything runs
    identity = fit_identity(cfg, device_type)
    check_checkpoint_dir(ckpt_dir, identity)
    tasks = plan(cfg)
    n_fits = sum(len(t.fits) for t in tasks)
    book = _Progress(cfg, outdir, ckpt_dir, identity, n_fits, on_task)
    pending = book.resume(tasks)
    if progress:
        book.show_bar()
    if client is None:
        workers = _run_here(pending, book, threads, data, stop_after_fits)
    else:
        workers = _run_on(client, pending, book, threads, token=f"{started.strftime('%H%M%S')}-{id(tasks):x}")
    if book.bar is not None:
        book.bar.close()
    if len(book.recs) != n_fits:
        raise RuntimeError(f"{n_fits - len(book.recs)} fits missing after the run")   # a bug, not a user error
    record_identity(ckpt_dir, identity)
    doc = _document(cfg, book, len(tasks), workers, threads, started)
    write_json_atomic(outdir / "results.json", doc)
    (outdir / "progress.json").unlink(missing_ok=True)   # superseded by results.json
    return doc


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    data: Any = None,
    checkpoint_dir: str | Path | None = None,
    stop_after_fits: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) every chain of ``cfg`` in this process and write ``out_dir/results.json``:
    :func:`train` without a cluster, showing progress as ``cfg.progress`` says."""
    return train(cfg, out_dir, checkpoint_dir=checkpoint_dir, data=data, stop_after_fits=stop_after_fits,
                 progress=cfg.progress)

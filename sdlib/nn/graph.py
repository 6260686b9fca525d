"""Section 5 as a task graph: one task per fit (seed, chain, step), run in this process or on a Dask
cluster, with checkpoints on a shared path as the hand-off between tasks.

The fits of one seed ``s`` (Section 5.1; :mod:`sdlib.nn.chains` describes the chains):

* ``first`` (step 1): eq. (18) with alpha = 1, no teacher; shared by every chain of the seed;
* ``alpha=a`` step tau >= 2: teacher = that chain's step tau - 1 (the first model at tau = 2);
* ``alpha_hat/alpha=0`` step tau: the alpha = 0 student of the alpha-hat chain's step tau - 1;
* ``alpha_hat`` step tau: needs its ``alpha = 0`` fit of step tau and the first model (their
  validation probabilities give alpha-hat by eq. 16) and its own step tau - 1 as the teacher.

Each task reads its teacher from the teacher's checkpoint and writes its own checkpoint (weights,
record, fp32 validation probabilities, identity) atomically; resume = a task whose checkpoint exists
is not run (and a task that finds its checkpoint on disk loads it instead of training). With
``chains_together`` the fixed-alpha fits and the alpha = 0 fit of one (seed, step) form one task
(trained as one vmapped stack, :func:`sdlib.nn.train.fit_together`), still one checkpoint per fit;
when one of them is lost (a truncated file), the whole stack is trained again and only the lost fit
saved, so that the repaired run equals an uninterrupted one. Every checkpoint records a fingerprint
of each fit it read (record and validation probabilities): a fit whose teacher is no longer the one
it was trained from is trained again.

Identity: every checkpoint, and ``checkpoint_dir/config.json``, records the parameters that shape a
fit plus the device type and the precision actually used (:func:`fit_identity`); a checkpoint made
with another identity is never loaded: resuming with other settings is a :class:`UsageError`.

Determinism: a fit depends only on its seed ``1000 s + tau``, its alpha and its teacher, and every
task runs with ``threads`` intra-op threads (default 1), so on a CPU a serial run and a run on any
number of Dask workers give bitwise identical records (tested); on CUDA this is not claimed
(see :mod:`sdlib.nn.train`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sdlib.errors import UsageError
from sdlib.nn.config import ExperimentConfig, chain_name
from sdlib.nn.results import RESULTS_KIND
from sdlib.provenance import provenance, write_json_atomic

__all__ = ["train", "FitKey", "Task", "plan", "fit_identity", "fit_seed", "InterruptedRun", "IDENTITY_KEYS"]

AH = chain_name(None)
ALPHA0 = f"{AH}/alpha=0"

#: Parameters that change what a fit computes (with the device type and precision: :func:`fit_identity`).
IDENTITY_KEYS = ("dataset", "arch", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "n_train",
                 "n_val", "n_test", "split_seed", "augment", "alpha_hat_clip", "data_dir")


class InterruptedRun(RuntimeError):
    """Raised by ``stop_after_fits`` (the tests simulate a killed serial run with it)."""


def fit_seed(seed: int, step: int) -> int:
    """The one integer seeding every fit of step ``step`` of seed ``seed`` (initialisation, data order)."""
    return 1000 * seed + step


def fit_identity(cfg: ExperimentConfig, device_type: str) -> dict[str, Any]:
    """What a checkpoint must match to be reused: :data:`IDENTITY_KEYS`, the device type (``cpu`` or
    ``cuda``) and the precision actually used (``fp32`` or ``bf16``; a CPU run is fp32 whatever
    ``amp`` says), channels_last and compile as they take effect (CUDA only)."""
    from sdlib.nn.train import precision

    cuda = device_type == "cuda"
    return {**{k: getattr(cfg, k) for k in IDENTITY_KEYS}, "device_type": device_type,
            "precision": precision(cfg, device_type), "channels_last": bool(cfg.channels_last and cuda),
            "compile": bool(cfg.compile and cuda)}


@dataclass(frozen=True)
class FitKey:
    """One fit: ``chain`` is ``"first"`` (step 1), ``"alpha=a"``, ``"alpha_hat/alpha=0"`` or ``"alpha_hat"``."""

    seed: int
    chain: str
    step: int

    def path(self, ckpt_dir: Path) -> Path:
        d = Path(ckpt_dir) / f"seed{self.seed}"
        if self.chain == "first":
            return d / "first.pt"
        if self.chain == ALPHA0:
            return d / AH / f"step{self.step}_alpha0.pt"
        return d / self.chain / f"step{self.step}.pt"

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.chain}-step{self.step}"


def _teacher(key: FitKey) -> FitKey | None:
    if key.chain == "first":
        return None
    if key.step == 2:
        return FitKey(key.seed, "first", 1)
    return FitKey(key.seed, AH if key.chain in (AH, ALPHA0) else key.chain, key.step - 1)


def _needs(key: FitKey) -> list[FitKey]:
    """The fits whose checkpoints ``key`` reads: its teacher, and for alpha-hat its alpha = 0 fit and
    the first model."""
    out = [t] if (t := _teacher(key)) is not None else []
    if key.chain == AH:
        out += [FitKey(key.seed, ALPHA0, key.step), FitKey(key.seed, "first", 1)]
    return list(dict.fromkeys(out))


@dataclass
class Task:
    """Fits trained by one call (one fit, or the stack of a step with ``chains_together``)."""

    fits: list[FitKey]
    deps: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        f = self.fits[0]
        return f.name if len(self.fits) == 1 else f"seed{f.seed}-together-step{f.step}"


def plan(cfg: ExperimentConfig) -> list[Task]:
    """The tasks of ``cfg`` in a topological order, each with the names of the tasks it waits for."""
    tasks: list[Task] = []
    for s in cfg.seeds:
        tasks.append(Task([FitKey(s, "first", 1)]))
        for tau in range(2, cfg.steps + 1):
            group = [FitKey(s, c, tau) for c in cfg.chains[:-1]] + [FitKey(s, ALPHA0, tau)]
            if cfg.chains_together:
                tasks.append(Task(group))
            else:
                tasks.extend(Task([k]) for k in group)
            tasks.append(Task([FitKey(s, AH, tau)]))
    owner = {k: t.name for t in tasks for k in t.fits}
    for t in tasks:
        t.deps = list(dict.fromkeys(owner[d] for k in t.fits for d in _needs(k) if owner[d] != t.name))
    return tasks


# ------------------------------------------------------------------------------------------------
# Running one task (in this process or on a worker)

_DATA: dict[str, Any] = {}


def _data(cfg: ExperimentConfig, dev: Any) -> Any:
    """The data of ``cfg`` on ``dev``, loaded once per process."""
    from sdlib.nn.data import load_data

    key = json.dumps([cfg.dataset, cfg.data_dir, cfg.n_train, cfg.n_val, cfg.n_test, cfg.split_seed, str(dev)])
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(cfg.dataset, cfg.data_dir, download=cfg.download, n_train=cfg.n_train,
                               n_val=cfg.n_val, n_test=cfg.n_test, split_seed=cfg.split_seed).to(dev)
    return _DATA[key]


def _load(path: Path, identity: dict[str, Any], *, mmap: bool = False) -> dict[str, Any] | None:
    """A finished fit's checkpoint, None if absent or unreadable; another identity is an error."""
    from sdlib.nn.train import load_checkpoint

    ck = load_checkpoint(path, mmap=mmap)
    if ck is not None and ck.get("identity") != identity:
        have = ck.get("identity") or {}
        diff = {k: (have.get(k), v) for k, v in identity.items() if have.get(k) != v}
        raise UsageError(f"checkpoint {path} was made with other settings (name: (then, now)) {diff}; "
                         "use another checkpoint directory or delete it")
    return ck


def _fingerprint(ck: dict[str, Any]) -> str:
    """What a fit handed on: its record (without wall-clock seconds) and its validation
    probabilities, which the students' teachers and alpha-hat read."""
    import hashlib

    record = {k: v for k, v in ck["record"].items() if not k.startswith("seconds")}
    h = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode())
    probs = ck.get("val_probs")
    if probs is not None:
        h.update(probs.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _upstream_changed(key: FitKey, ck: dict[str, Any], ck_dir: Path, identity: dict[str, Any]) -> bool:
    """Whether a fit it read (teacher, alpha-hat's inputs) is not the one it was trained from: a teacher
    retrained since (its checkpoint was lost) must not stay under a student of the old one."""
    made_from = ck.get("needs")
    if not isinstance(made_from, dict):   # a checkpoint of an older version: nothing to compare
        return False
    for need in _needs(key):
        need_ck = _load(need.path(ck_dir), identity, mmap=True)
        if need_ck is None or made_from.get(need.name) != _fingerprint(need_ck):
            return True
    return False


def _model(cfg: ExperimentConfig, spec: Any, ck: dict[str, Any], dev: Any) -> Any:
    from sdlib.nn.train import new_model

    model = new_model(cfg, spec, 0, dev)
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def run_task(cfg_dict: dict[str, Any], fits: list[FitKey], ckpt_dir: str, identity: dict[str, Any],
             threads: int | None, *_upstream: Any, data: Any = None) -> list[dict[str, Any]]:
    """Train the fits of one task (or load them if their checkpoints exist) and return one
    ``{"key", "record", "trained"}`` per fit. ``_upstream`` are the results of the tasks this one
    waits for (only their order matters: the hand-off is the checkpoints)."""
    import torch

    from sdlib.nn.chains import estimate_alpha_hat
    from sdlib.nn.train import fit, fit_together, predict_probs, resolve_device, save_checkpoint

    if threads:
        torch.set_num_threads(threads)
    cfg = ExperimentConfig.from_dict(cfg_dict)
    ck_dir = Path(ckpt_dir)
    out: list[dict[str, Any] | None] = [None] * len(fits)
    todo = []
    for i, k in enumerate(fits):
        ck = _load(k.path(ck_dir), identity, mmap=True)
        if ck is not None and _upstream_changed(k, ck, ck_dir, identity):
            ck = None   # trained from a teacher that is no longer there: train it again
        if ck is None:
            todo.append(i)
        else:
            out[i] = {"key": k, "record": dict(ck["record"]), "trained": False, "sizes": ck.get("sizes")}
    if not todo:
        return out  # type: ignore[return-value]
    # A stack is trained whole: a fit of a chains_together group trained alone (its checkpoint
    # truncated, the others kept) would differ from the one the uninterrupted stack gives.
    missing = set(todo)
    train_idx = list(range(len(fits))) if len(fits) > 1 else todo
    dev = resolve_device(cfg.device)
    data = data.to(dev) if data is not None else _data(cfg, dev)
    y_val = torch.nn.functional.one_hot(data.val.y.cpu(), data.spec.num_classes).double().numpy()
    sizes = {"n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test)}

    def ck_of(k: FitKey) -> dict[str, Any]:
        ck = _load(k.path(ck_dir), identity)
        if ck is None:
            raise RuntimeError(f"fit {k.name} needs the checkpoint {k.path(ck_dir)}, which is missing")
        return ck

    jobs = []
    for i in train_idx:
        k = fits[i]
        t = _teacher(k)
        teacher = _model(cfg, data.spec, ck_of(t), dev) if t is not None else None
        extra: dict[str, Any] = {"alpha_hat": None}
        if k.chain == "first":
            alpha = 1.0
        elif k.chain == ALPHA0:
            alpha = 0.0
        elif k.chain == AH:
            y1 = ck_of(FitKey(k.seed, "first", 1))["val_probs"].double().numpy()
            y0 = ck_of(FitKey(k.seed, ALPHA0, k.step))["val_probs"].double().numpy()
            alpha = extra["alpha_hat"] = estimate_alpha_hat(y_val, y1, y0, clip=cfg.alpha_hat_clip)
        else:
            alpha = float(k.chain.split("=", 1)[1])
        jobs.append((i, k, alpha, teacher, extra))
    seed = fit_seed(fits[0].seed, fits[0].step)
    where = {"seed": fits[0].seed, "step": fits[0].step}
    if len(jobs) > 1:
        results = fit_together(cfg, data, alphas=[j[2] for j in jobs], teachers=[j[3] for j in jobs],
                               seed=seed, where=where)
    else:
        [(_, k, alpha, teacher, _)] = jobs
        results = [fit(cfg, data, alpha=alpha, teacher=teacher, seed=seed, where={**where, "chain": k.chain})]
    for (i, k, alpha, _, extra), res in zip(jobs, results, strict=True):
        if i not in missing:   # kept as it was: its checkpoint and record are the stack's own
            continue
        accs, val_probs = {}, None
        for name in ("train", "val", "test"):
            s = getattr(data, name)
            p = predict_probs(res.model, s.x, data.spec, cfg)     # fp32 (eq. 16 reads val_probs)
            accs[f"{name}_acc"] = float((p.argmax(1) == s.y.cpu()).double().mean())
            val_probs = p if name == "val" else val_probs
        record = {"seed": k.seed, "chain": k.chain, "step": k.step, "alpha": float(alpha), **extra, **accs,
                  "train_loss": float(res.train_loss), "seconds": round(float(res.seconds), 4)}
        state = {n: v.detach().cpu() for n, v in res.model.state_dict().items()}
        needs = {n.name: _fingerprint(ck_of(n)) for n in _needs(k)}
        save_checkpoint(k.path(ck_dir), {"state_dict": state, "record": record, "val_probs": val_probs,
                                         "identity": identity, "sizes": sizes, "needs": needs})
        out[i] = {"key": k, "record": record, "trained": True, "sizes": sizes}
    return out  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------------
# The driver


def _check_checkpoint_dir(ckpt_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse a checkpoint directory whose ``config.json`` records another identity."""
    path = ckpt_dir / "config.json"
    if path.exists():
        have = json.loads(path.read_text())
        diff = {k: (have.get(k), v) for k, v in identity.items() if have.get(k) != v}
        if diff:
            raise UsageError(f"checkpoint directory {ckpt_dir} was made with other settings (name: (then, now)) "
                             f"{diff}; use another --checkpoint-dir or delete it")


def _record_identity(ckpt_dir: Path, identity: dict[str, Any]) -> None:
    """Write ``ckpt_dir/config.json`` once a fit is done: a start refused before anything was trained
    (data missing, ``n_train`` too large) must not block the corrected rerun."""
    path = ckpt_dir / "config.json"
    if not path.exists():
        write_json_atomic(path, identity)


def _assemble(cfg: ExperimentConfig, recs: dict[FitKey, dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """Records in the order of :func:`sdlib.nn.chains.run_experiment`'s results: per seed, the shared
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
    t0 = time.perf_counter()
    outdir = Path(outdir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else outdir / "checkpoints"
    device_type = "cuda" if str(cfg.device).startswith("cuda") else "cpu"
    if client is None:
        from sdlib.nn.train import resolve_device

        resolve_device(cfg.device)   # no GPU here: say so before anything runs
    identity = fit_identity(cfg, device_type)
    _check_checkpoint_dir(ckpt_dir, identity)
    tasks = plan(cfg)
    n_fits = sum(len(t.fits) for t in tasks)
    cfg_dict = cfg.to_dict()
    recs: dict[FitKey, dict[str, Any]] = {}
    counts = {"trained": 0, "loaded": 0}
    sizes: dict[str, int] = {}

    # resume: tasks whose checkpoints all exist are not run, unless a task they wait for runs (then
    # run_task compares what each fit was trained from with what is there now)
    pending = []
    for t in tasks:
        cks = [_load(k.path(ckpt_dir), identity, mmap=True) for k in t.fits]
        waits = any(d.name in t.deps for d in pending)
        if not waits and all(ck is not None and not _upstream_changed(k, ck, ckpt_dir, identity)
                             for k, ck in zip(t.fits, cks, strict=True)):
            for k, ck in zip(t.fits, cks, strict=True):
                recs[k] = dict(ck["record"])  # type: ignore[index]
                sizes.update(ck.get("sizes") or {})  # type: ignore[union-attr]
            counts["loaded"] += len(t.fits)
        else:
            pending.append(t)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_fits, initial=counts["loaded"], desc=f"Section 5 fits ({outdir.name})", unit="fit")

    def done(result: list[dict[str, Any]], name: str) -> None:
        _record_identity(ckpt_dir, identity)
        for r in result:
            recs[r["key"]] = r["record"]
            sizes.update(r.get("sizes") or {})
            counts["trained" if r["trained"] else "loaded"] += 1
        if bar is not None:
            bar.update(len(result))
        state = {"task": name, "fits_done": len(recs), "fits": n_fits, **counts,
                 "seconds": round(time.perf_counter() - t0, 1)}
        # every finished fit is on disk at once, outside the checkpoints too (a run stopped by a
        # timeout keeps its records); results.json is written when all fits are done
        write_json_atomic(outdir / "progress.json", {"kind": f"{RESULTS_KIND}/progress", **state,
                                                     "parameters": cfg_dict, "records": list(recs.values())})
        if on_task is not None:
            on_task(state)

    workers = 0
    if client is None:
        for t in pending:
            if stop_after_fits is not None and counts["trained"] + len(t.fits) > stop_after_fits:
                raise InterruptedRun(f"stopped after {counts['trained']} fits (stop_after_fits={stop_after_fits})")
            done(run_task(cfg_dict, t.fits, str(ckpt_dir), identity, threads, data=data), t.name)
    else:
        from distributed import as_completed

        workers = len(client.scheduler_info().get("workers", {}))
        token = f"{started.strftime('%H%M%S')}-{id(tasks):x}"
        futs: dict[str, Any] = {}
        for t in pending:
            ups = [futs[d] for d in t.deps if d in futs]
            futs[t.name] = client.submit(run_task, cfg_dict, t.fits, str(ckpt_dir), identity, threads, *ups,
                                         key=f"sdlib-fit-{t.name}-{token}", pure=False)
        names = {f.key: n for n, f in futs.items()}
        try:
            for fut in as_completed(list(futs.values())):
                done(fut.result(), names[fut.key])
        except BaseException:
            client.cancel(list(futs.values()))
            raise
    if bar is not None:
        bar.close()
    if len(recs) != n_fits:
        raise RuntimeError(f"{n_fits - len(recs)} fits missing after the run")   # a bug, not a user error
    _record_identity(ckpt_dir, identity)
    records, helpers = _assemble(cfg, recs)
    results = {
        "dataset": cfg.dataset, "arch": cfg.arch, **sizes,
        "records": records, "helper_records": helpers,
        "fits_trained": counts["trained"], "fits_loaded": counts["loaded"],
        "tasks": len(tasks), "workers": workers, "threads_per_fit": threads, "identity": identity,
    }
    doc = {
        "kind": RESULTS_KIND,
        "parameters": cfg_dict,
        "results": results,
        "provenance": provenance(started=started, seconds=time.perf_counter() - t0, parameters=cfg_dict,
                                 seed=list(cfg.seeds), device=cfg.device),
    }
    write_json_atomic(outdir / "results.json", doc)
    (outdir / "progress.json").unlink(missing_ok=True)   # superseded by results.json
    return doc


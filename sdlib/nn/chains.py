"""Chains of self-distillation steps for Section 5: fixed alpha, and the alpha-hat chain (Algorithm 1
adapted to networks).

Per seed ``s``:

* step 1: one model trained on the one-hot labels only (eq. 18 with alpha = 1), shared by every
  chain of the seed (Section 5.1, footnote 13); its validation probabilities are ``Y~^(1)``;
* fixed chain ``alpha``: step tau trains a fresh network on eq. (18) with ``alpha`` and the chain's
  step-(tau-1) model as the teacher;
* alpha-hat chain: step tau first trains the ``alpha = 0`` student of the chain's current teacher,
  whose validation probabilities are ``Y~^(tau)_{alpha=0}``, sets
  ``alpha_hat = sdlib.theory.alpha_star(Y~, Y~^(1), Y~^(tau)_{alpha=0})`` (eq. 16, Frobenius norm,
  ``Y~`` the one-hot validation labels), then trains the step's model with ``alpha_hat``:
  ``2(tau - 1) + 1`` fits in all, against ``g(tau - 1) + 1`` for a grid of ``g`` fixed alphas.

Every fit of step tau of seed s starts from the same initialisation and sees the same batches and
augmentations (seed ``1000 s + tau``), whatever its chain. A checkpoint (model weights, the record,
the validation probabilities) is written atomically after every fit; a rerun skips finished fits
(``torch.load(weights_only=True)``) and retrains a fit whose checkpoint is corrupt, with a warning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from sdlib import theory
from sdlib.nn.config import ExperimentConfig, chain_name
from sdlib.nn.data import DataBundle, load_data
from sdlib.nn.results import RESULTS_KIND
from sdlib.nn.train import (
    FitResult,
    fit,
    fit_together,
    load_checkpoint,
    new_model,
    predict_probs,
    resolve_device,
    save_checkpoint,
)
from sdlib.provenance import provenance, write_json_atomic

__all__ = ["run_experiment", "fit_seed", "InterruptedRun", "RESULTS_KIND", "estimate_alpha_hat", "alpha_hat_chain"]

M = TypeVar("M")


def estimate_alpha_hat(y_val: np.ndarray, y1_val: np.ndarray, y0_val: np.ndarray, *, clip: bool = False) -> float:
    """alpha-hat of Section 5: eq. (16) with the Frobenius norm (:func:`sdlib.theory.alpha_star`) on the
    validation set: ``y_val`` one-hot labels, ``y1_val`` the first model's and ``y0_val`` the alpha = 0
    student's softmax outputs; clipped to [0, 1] if ``clip``."""
    a = theory.alpha_star(y_val, y1_val, y0_val)
    return float(np.clip(a, 0.0, 1.0)) if clip else float(a)


def alpha_hat_chain(
    fit_fn: Callable[[float, M | None], M],
    predict_val: Callable[[M], np.ndarray],
    y_val: np.ndarray,
    steps: int,
    *,
    clip: bool = False,
) -> tuple[list[float], list[M], int]:
    """Algorithm 1 adapted to any model (Section 5): ``fit_fn(alpha, teacher)`` trains a fresh model on
    eq. (18)'s targets (``teacher`` None at step 1, with alpha = 1), ``predict_val`` gives its
    validation outputs. Returns (alpha-hat for steps 2..steps, the chain's models for steps 1..steps,
    the number of fits: ``2(steps - 1) + 1``). :func:`run_experiment` follows the same sequence
    (with checkpoints, step-major over all chains); the tests run this one on kernel ridge regression,
    where eq. (16) is exact."""
    first = fit_fn(1.0, None)
    y1 = predict_val(first)
    models, alphas, fits = [first], [], 1
    for _tau in range(2, steps + 1):
        y0 = predict_val(fit_fn(0.0, models[-1]))
        a = estimate_alpha_hat(y_val, y1, y0, clip=clip)
        models.append(fit_fn(a, models[-1]))
        alphas.append(a)
        fits += 2
    return alphas, models, fits



class InterruptedRun(RuntimeError):
    """Raised by ``stop_after_fits`` (tests simulate a killed run with it)."""


def fit_seed(seed: int, step: int) -> int:
    """The one integer seeding every fit of step ``step`` of seed ``seed`` (initialisation, data order)."""
    return 1000 * seed + step


@dataclass
class _Job:
    path: Path
    alpha: float
    teacher: nn.Module | None
    seed: int
    where: dict[str, Any]
    extra: dict[str, Any]


class _Runner:
    def __init__(self, cfg: ExperimentConfig, data: DataBundle, ckpt_dir: Path, stop_after_fits: int | None):
        self.cfg = cfg
        self.data = data
        self.ckpt_dir = ckpt_dir
        self.stop_after_fits = stop_after_fits
        self.trained = 0
        self.loaded = 0
        self.y_val = torch.nn.functional.one_hot(data.val.y.cpu(), data.spec.num_classes).double().numpy()

    def _evaluate(self, model: nn.Module) -> tuple[dict[str, float], torch.Tensor]:
        accs = {}
        val_probs = None
        for name in ("train", "val", "test"):
            s = getattr(self.data, name)
            p = predict_probs(model, s.x, self.data.spec, self.cfg)
            accs[f"{name}_acc"] = float((p.argmax(1) == s.y.cpu()).double().mean())
            if name == "val":
                val_probs = p
        assert val_probs is not None
        return accs, val_probs

    def _finish(self, job: _Job, res: FitResult) -> tuple[nn.Module, dict[str, Any], torch.Tensor]:
        accs, val_probs = self._evaluate(res.model)
        record = {**job.where, "alpha": float(job.alpha), **job.extra, **accs,
                  "train_loss": float(res.train_loss), "seconds": round(float(res.seconds), 4)}
        state = {k: v.detach().cpu() for k, v in res.model.state_dict().items()}
        save_checkpoint(job.path, {"state_dict": state, "record": record, "val_probs": val_probs})
        return res.model, record, val_probs

    def _count(self) -> None:
        if self.stop_after_fits is not None and self.trained >= self.stop_after_fits:
            raise InterruptedRun(f"stopped after {self.trained} fits (stop_after_fits={self.stop_after_fits})")
        self.trained += 1

    def run(self, jobs: list[_Job]) -> list[tuple[nn.Module, dict[str, Any], torch.Tensor]]:
        """Load the finished jobs, train the others (together when configured), in order."""
        dev = self.data.train.x.device
        out: list[Any] = [None] * len(jobs)
        todo = []
        for i, job in enumerate(jobs):
            ck = load_checkpoint(job.path)
            if ck is None:
                todo.append(i)
                continue
            model = new_model(self.cfg, self.data.spec, job.seed, dev)
            model.load_state_dict(ck["state_dict"])
            model.eval()
            self.loaded += 1
            out[i] = (model, dict(ck["record"]), ck["val_probs"])
        if self.cfg.chains_together and len(todo) > 1:
            for _ in todo:
                self._count()
            first = jobs[todo[0]]
            results = fit_together(self.cfg, self.data, alphas=[jobs[i].alpha for i in todo],
                                   teachers=[jobs[i].teacher for i in todo],  # type: ignore[misc]
                                   seed=first.seed, where={k: first.where[k] for k in ("seed", "step")})
            for i, res in zip(todo, results, strict=True):
                out[i] = self._finish(jobs[i], res)
        else:
            for i in todo:
                self._count()
                j = jobs[i]
                out[i] = self._finish(j, fit(self.cfg, self.data, alpha=j.alpha, teacher=j.teacher, seed=j.seed,
                                             where=j.where))
        return out


# Parameters that change what a fit computes: checkpoints made with other values must not be reused.
_FIT_KEYS = ("dataset", "arch", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "n_train",
             "n_val", "n_test", "split_seed", "augment", "alpha_hat_clip", "amp", "data_dir")


def _check_checkpoint_dir(ckpt_dir: Path, cfg: ExperimentConfig) -> None:
    """Record the fit-defining parameters in ``ckpt_dir/config.json``; refuse a directory made with others."""
    import json

    want = {k: getattr(cfg, k) for k in _FIT_KEYS}
    path = ckpt_dir / "config.json"
    if path.exists():
        have = json.loads(path.read_text())
        diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
        if diff:
            raise ValueError(f"checkpoint directory {ckpt_dir} was made with other parameters "
                             f"(name: (then, now)) {diff}; use another directory or delete it")
    else:
        write_json_atomic(path, want)


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    data: DataBundle | None = None,
    checkpoint_dir: str | Path | None = None,
    stop_after_fits: int | None = None,
    verify_md5: bool = True,
) -> dict[str, Any]:
    """Run (or resume) every chain of ``cfg`` and write ``out_dir/results.json``; returns its content.

    ``results.records``: one record per (seed, chain, step) with alpha, alpha_hat (alpha-hat chain),
    train_acc, val_acc, test_acc, train_loss, seconds (of that fit; the alpha-hat chain's include
    its alpha = 0 fit) and fits (fits the chain has needed up to that step: tau for a fixed chain,
    2(tau - 1) + 1 for alpha-hat). ``results.helper_records``: the alpha-hat chain's alpha = 0 fits.
    """
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    dev = resolve_device(cfg.device)
    out_dir = Path(out_dir)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else out_dir / "checkpoints"
    if data is None:
        data = load_data(cfg.dataset, cfg.data_dir, download=cfg.download, n_train=cfg.n_train, n_val=cfg.n_val,
                         n_test=cfg.n_test, split_seed=cfg.split_seed, verify_md5=verify_md5)
    data = data.to(dev)
    _check_checkpoint_dir(ckpt_dir, cfg)
    r = _Runner(cfg, data, ckpt_dir, stop_after_fits)
    records: list[dict[str, Any]] = []
    helpers: list[dict[str, Any]] = []
    ah = chain_name(None)
    for seed in cfg.seeds:
        sdir = ckpt_dir / f"seed{seed}"
        where1 = {"seed": seed, "chain": "first", "step": 1}
        [(first, rec1, val1)] = r.run([_Job(sdir / "first.pt", 1.0, None, fit_seed(seed, 1), where1,
                                            {"alpha_hat": None})])
        y1_val = val1.double().numpy()
        teachers: dict[str, nn.Module] = {}
        for name in cfg.chains:
            records.append({**rec1, "chain": name, "fits": 1, "shared_first": True})
            teachers[name] = first
        for tau in range(2, cfg.steps + 1):
            fs = fit_seed(seed, tau)
            jobs = [_Job(sdir / name / f"step{tau}.pt", a, teachers[name], fs,
                         {"seed": seed, "chain": name, "step": tau}, {"alpha_hat": None})
                    for name, a in zip(cfg.chains[:-1], cfg.alphas, strict=True)]
            jobs.append(_Job(sdir / ah / f"step{tau}_alpha0.pt", 0.0, teachers[ah], fs,
                             {"seed": seed, "chain": f"{ah}/alpha=0", "step": tau}, {"alpha_hat": None}))
            done = r.run(jobs)
            for (model, rec, _), name in zip(done[:-1], cfg.chains[:-1], strict=True):
                records.append({**rec, "fits": tau, "shared_first": False})
                teachers[name] = model
            _, hrec, val0 = done[-1]
            helpers.append(hrec)
            a_hat = estimate_alpha_hat(r.y_val, y1_val, val0.double().numpy(), clip=cfg.alpha_hat_clip)
            [(model, rec, _)] = r.run([_Job(sdir / ah / f"step{tau}.pt", a_hat, teachers[ah], fs,
                                            {"seed": seed, "chain": ah, "step": tau}, {"alpha_hat": a_hat})])
            records.append({**rec, "fits": 2 * (tau - 1) + 1, "shared_first": False,
                            "seconds_with_alpha0": round(rec["seconds"] + hrec["seconds"], 4)})
            teachers[ah] = model
    results = {
        "dataset": cfg.dataset, "arch": cfg.arch,
        "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
        "records": records, "helper_records": helpers,
        "fits_trained": r.trained, "fits_loaded": r.loaded,
    }
    doc = {
        "kind": RESULTS_KIND,
        "parameters": cfg.to_dict(),
        "results": results,
        "provenance": provenance(started=started, seconds=time.perf_counter() - t0, parameters=cfg.to_dict(),
                                 seed=list(cfg.seeds), device=str(dev)),
    }
    write_json_atomic(out_dir / "results.json", doc)
    return doc

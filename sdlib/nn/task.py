"""One task of the Section 5 graph, on whichever process runs it: train its fits and close each.

A task (:class:`sdlib.nn.plan.Task`) is one fit, or with ``chains_together`` the fixed-alpha fits
and the alpha = 0 fit of one (seed, step), trained as one vmapped stack. :func:`run_task`:

1. keeps the fits whose checkpoints exist and were trained from the fits that are there now;
2. for the others, reads each one's teacher from its checkpoint and its weight: fixed, or alpha-hat
   from the validation probabilities of the first model and of the step's alpha = 0 fit
   (:func:`sdlib.nn.alpha_hat.estimate_alpha_hat`, eq. 16);
3. trains them (:func:`sdlib.nn.fitting.fit` or :func:`~sdlib.nn.fitting.fit_together`);
4. closes each fit (:func:`close_fit`): predicts on the three splits in fp32, scores, writes its
   record and checkpoint (weights, record, validation probabilities, identity, the fingerprints of
   what it read).

When one fit of a stack is lost (a truncated file), the whole stack is trained again and only the
lost fit saved, so that the repaired run equals an uninterrupted one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdlib.nn.alpha_hat import estimate_alpha_hat
from sdlib.nn.checkpoints import fingerprint, load_matching, save_checkpoint, upstream_changed
from sdlib.nn.config import ExperimentConfig
from sdlib.nn.data import DataBundle, Spec, load_data
from sdlib.nn.fitting import FitResult, fit, fit_together, new_model, predict_probs, resolve_device
from sdlib.nn.plan import ALPHA0, FitKey, alpha_of, fit_seed, needs_of, teacher_of

__all__ = ["run_task", "close_fit", "score", "Job"]

_DATA: dict[str, Any] = {}


def _data(cfg: ExperimentConfig, dev: torch.device) -> DataBundle:
    """The data of ``cfg`` on ``dev``, loaded once per process."""
    key = json.dumps([cfg.dataset, cfg.data_dir, cfg.n_train, cfg.n_val, cfg.n_test, cfg.split_seed, str(dev)])
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(cfg.dataset, cfg.data_dir, download=cfg.download, n_train=cfg.n_train,
                               n_val=cfg.n_val, n_test=cfg.n_test, split_seed=cfg.split_seed).to(dev)
    return _DATA[key]


@dataclass
class Job:
    """A fit to train: its key, its weight of eq. (18), its teacher, and alpha-hat if estimated."""

    key: FitKey
    alpha: float
    teacher: nn.Module | None
    alpha_hat: float | None


def _required(key: FitKey, ck_dir: Path, identity: dict[str, Any]) -> dict[str, Any]:
    ck = load_matching(key.path(ck_dir), identity)
    if ck is None:
        raise RuntimeError(f"fit {key.name} needs the checkpoint {key.path(ck_dir)}, which is missing")
    return ck


def _model(cfg: ExperimentConfig, spec: Spec, ck: dict[str, Any], dev: torch.device) -> nn.Module:
    model = new_model(cfg, spec, 0, dev)
    model.load_state_dict(ck["state_dict"])
    return model.eval()


def _finished(fits: list[FitKey], ck_dir: Path, identity: dict[str, Any]) -> tuple[list[dict | None], list[int]]:
    """The results of the fits whose checkpoints can be kept, and the indices of the others."""
    out: list[dict[str, Any] | None] = [None] * len(fits)
    todo = []
    for i, k in enumerate(fits):
        ck = load_matching(k.path(ck_dir), identity, mmap=True)
        if ck is not None and upstream_changed(k, ck, ck_dir, identity):
            ck = None   # trained from a teacher that is no longer there: train it again
        if ck is None:
            todo.append(i)
        else:
            out[i] = {"key": k, "record": dict(ck["record"]), "trained": False, "sizes": ck.get("sizes")}
    return out, todo


def _alpha_hat(cfg: ExperimentConfig, data: DataBundle, key: FitKey, ck_dir: Path, identity: dict[str, Any]) -> float:
    """alpha-hat of ``key``'s step (eq. 16) from the saved fp32 validation probabilities."""
    y_val = torch.nn.functional.one_hot(data.val.y.cpu(), data.spec.num_classes).double().numpy()
    y1 = _required(FitKey(key.seed, "first", 1), ck_dir, identity)["val_probs"].double().numpy()
    y0 = _required(FitKey(key.seed, ALPHA0, key.step), ck_dir, identity)["val_probs"].double().numpy()
    return estimate_alpha_hat(y_val, y1, y0, clip=cfg.alpha_hat_clip)


def _job(cfg: ExperimentConfig, data: DataBundle, key: FitKey, ck_dir: Path, identity: dict[str, Any],
         dev: torch.device) -> Job:
    t = teacher_of(key)
    teacher = _model(cfg, data.spec, _required(t, ck_dir, identity), dev) if t is not None else None
    alpha = alpha_of(key)
    if alpha is None:
        alpha = _alpha_hat(cfg, data, key, ck_dir, identity)
        return Job(key, alpha, teacher, alpha)
    return Job(key, alpha, teacher, None)


def _train(cfg: ExperimentConfig, data: DataBundle, jobs: list[Job]) -> list[FitResult]:
    """Train the jobs (one task: one seed and step): alone, or as one vmapped stack."""
    first = jobs[0].key
    seed = fit_seed(first.seed, first.step)
    where = {"seed": first.seed, "step": first.step}
    if len(jobs) > 1:
        return fit_together(cfg, data, alphas=[j.alpha for j in jobs], teachers=[j.teacher for j in jobs],
                            seed=seed, where=where)
    [j] = jobs
    return [fit(cfg, data, alpha=j.alpha, teacher=j.teacher, seed=seed, where={**where, "chain": first.chain})]


def score(model: nn.Module, data: DataBundle, cfg: ExperimentConfig) -> tuple[dict[str, float], torch.Tensor]:
    """Accuracies on the train, val and test splits, and the validation probabilities; all scored in
    fp32 (eq. 16 reads the validation probabilities)."""
    probs = {name: predict_probs(model, getattr(data, name).x, data.spec, cfg) for name in ("train", "val", "test")}
    accs = {f"{name}_acc": float((p.argmax(1) == getattr(data, name).y.cpu()).double().mean())
            for name, p in probs.items()}
    return accs, probs["val"]


def close_fit(cfg: ExperimentConfig, data: DataBundle, job: Job, res: FitResult, ck_dir: Path,
              identity: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """A trained fit's closing work: score it (:func:`score`), write its record and its checkpoint;
    returns ``{"key", "record", "trained", "sizes"}``."""
    k = job.key
    accs, val_probs = score(res.model, data, cfg)
    record = {"seed": k.seed, "chain": k.chain, "step": k.step, "alpha": float(job.alpha),
              "alpha_hat": job.alpha_hat, **accs, "train_loss": float(res.train_loss),
              "seconds": round(float(res.seconds), 4)}
    state = {n: v.detach().cpu() for n, v in res.model.state_dict().items()}
    needs = {n.name: fingerprint(_required(n, ck_dir, identity)) for n in needs_of(k)}
    save_checkpoint(k.path(ck_dir), {"state_dict": state, "record": record, "val_probs": val_probs,
                                     "identity": identity, "sizes": sizes, "needs": needs})
    return {"key": k, "record": record, "trained": True, "sizes": sizes}


def run_task(cfg_dict: dict[str, Any], fits: list[FitKey], ckpt_dir: str, identity: dict[str, Any],
             threads: int | None, *_upstream: Any, data: DataBundle | None = None) -> list[dict[str, Any]]:
    """Train the fits of one task (or load them if their checkpoints exist) and return one
    ``{"key", "record", "trained", "sizes"}`` per fit. ``_upstream`` are the results of the tasks this
    one waits for (only their order matters: the hand-off is the checkpoints)."""
    if threads:
        torch.set_num_threads(threads)
    cfg = ExperimentConfig.from_dict(cfg_dict)
    ck_dir = Path(ckpt_dir)
    out, todo = _finished(fits, ck_dir, identity)
    if not todo:
        return out  # type: ignore[return-value]
    dev = resolve_device(cfg.device)
    data = data.to(dev) if data is not None else _data(cfg, dev)
    sizes = {"n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test)}
    # A stack is trained whole: a fit of a chains_together group trained alone (its checkpoint
    # truncated, the others kept) would differ from the one the uninterrupted stack gives.
    train_idx = list(range(len(fits))) if len(fits) > 1 else todo
    jobs = [_job(cfg, data, fits[i], ck_dir, identity, dev) for i in train_idx]
    for i, job, res in zip(train_idx, jobs, _train(cfg, data, jobs), strict=True):
        if i in todo:   # a fit kept as it was keeps its checkpoint and record: the stack's own
            out[i] = close_fit(cfg, data, job, res, ck_dir, identity, sizes)
    return out  # type: ignore[return-value]

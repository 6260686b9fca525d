"""Training one fit of eq. (18) (and, optionally, the fits of one step together), deterministic.

Every fit is seeded by one integer: the initialisation (global RNG, seeded just before the model is
built) and the data order and augmentation (a ``torch.Generator`` on the data's device). A fit does
not depend on anything that ran before it, so a chain resumed from a checkpoint gives the same
numbers as one run straight through (on the same device and thread count).

Speed paths: the data stay on the device as uint8 tensors (the GPU when there is one), augmentation
and normalisation are batched tensor operations there; on CUDA the forward passes run under bf16
autocast (``amp="bf16"``) with channels_last memory, and ``compile=True`` wraps the student in
``torch.compile``. :func:`fit_together` trains several fits of one distillation step as one
vmapped stack of models (``torch.func``), each model still seeing batches of ``batch_size``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdlib.nn.config import ExperimentConfig
from sdlib.nn.data import DataBundle, Spec, augment, normalise
from sdlib.nn.models import build_model, has_batchnorm
from sdlib.nn.objective import distill_loss, l2_penalty

__all__ = ["resolve_device", "fit", "fit_together", "predict_probs", "FitResult", "save_checkpoint",
           "load_checkpoint", "CorruptCheckpointWarning"]


class CorruptCheckpointWarning(UserWarning):
    """A checkpoint could not be read; the step it held is trained again."""


@dataclass
class FitResult:
    model: nn.Module
    train_loss: float
    seconds: float


def resolve_device(device: str) -> torch.device:
    """``torch.device(device)``; ``cuda`` without a usable GPU is an error."""
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={device!r} was requested but no CUDA GPU is available "
                               "(torch.cuda.is_available() is False); use device='cpu'")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if device != "cpu":
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got device={device!r}")
    return torch.device("cpu")


def _autocast(dev: torch.device, cfg: ExperimentConfig) -> contextlib.AbstractContextManager[Any]:
    if dev.type == "cuda" and cfg.amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _prepare(x: torch.Tensor, spec: Spec, dev: torch.device, cfg: ExperimentConfig) -> torch.Tensor:
    x = normalise(x, spec)
    if dev.type == "cuda" and cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _batches(data: DataBundle, cfg: ExperimentConfig, gen: torch.Generator, dev: torch.device):  # type: ignore[no-untyped-def]
    """One epoch of training batches ``(x, y)``: a seeded permutation, augmented and normalised on ``dev``."""
    n = len(data.train)
    perm = torch.randperm(n, generator=gen, device=dev)
    for i in range(0, n, cfg.batch_size):
        idx = perm[i:i + cfg.batch_size]
        xb = data.train.x[idx]
        if cfg.augment:
            xb = augment(xb, data.spec, gen)
        yield _prepare(xb, data.spec, dev, cfg), data.train.y[idx]


def _optimizer(params: Sequence[torch.Tensor], cfg: ExperimentConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def _where(where: dict[str, Any] | None, epoch: int) -> str:
    w = dict(where or {})
    w["epoch"] = epoch
    return ", ".join(f"{k}={v}" for k, v in w.items())


def new_model(cfg: ExperimentConfig, spec: Spec, seed: int, dev: torch.device) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(cfg.arch, spec.num_classes, spec.channels).to(dev)
    if dev.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def fit(
    cfg: ExperimentConfig,
    data: DataBundle,
    *,
    alpha: float,
    teacher: nn.Module | None,
    seed: int,
    where: dict[str, Any] | None = None,
) -> FitResult:
    """Train a fresh network (init seed ``seed``) on eq. (18) with weight ``alpha`` and ``teacher``.

    ``data`` must already be on the training device. ``train_loss`` is the mean objective over the
    last epoch's batches. A non-finite loss raises ``FloatingPointError`` naming ``where`` (seed,
    chain, step) and the epoch.
    """
    dev = data.train.x.device
    t0 = time.perf_counter()
    model = new_model(cfg, data.spec, seed, dev)
    student = torch.compile(model) if (cfg.compile and dev.type == "cuda") else model
    opt = _optimizer(list(model.parameters()), cfg)
    gen = torch.Generator(device=dev).manual_seed(seed)
    if teacher is not None:
        teacher.eval()
    n = len(data.train)
    loss_mean = float("nan")
    epochs = range(1, cfg.epochs + 1)
    if cfg.progress:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=_where(where, 0).rsplit(", epoch", 1)[0], leave=False)
    for epoch in epochs:
        model.train()
        total = torch.zeros((), device=dev)
        for xb, yb in _batches(data, cfg, gen, dev):
            with _autocast(dev, cfg):
                tp = None
                if teacher is not None:
                    with torch.no_grad():
                        tp = torch.softmax(teacher(xb).float(), -1)
                logits = student(xb)
            loss = distill_loss(logits, yb, tp, alpha) + l2_penalty(model.parameters(), cfg.weight_decay)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(yb)
        loss_mean = float(total) / n
        if not torch.isfinite(torch.tensor(loss_mean)):
            raise FloatingPointError(f"non-finite training loss ({loss_mean}) at {_where(where, epoch)}")
    model.eval()
    return FitResult(model, loss_mean, time.perf_counter() - t0)


def fit_together(
    cfg: ExperimentConfig,
    data: DataBundle,
    *,
    alphas: Sequence[float],
    teachers: Sequence[nn.Module],
    seed: int,
    where: dict[str, Any] | None = None,
) -> list[FitResult]:
    """The fits ``fit(alpha=alphas[j], teacher=teachers[j], seed=seed)`` for all ``j`` at once.

    The models are stacked with ``torch.func.stack_module_state`` and run with ``vmap``: every model
    sees the same batches of ``cfg.batch_size`` (the same ones :func:`fit` would draw with ``seed``),
    the loss is the sum of the models' eq. (18) losses, so each model's gradient is its own, and
    Adam/SGD act elementwise, so each model's update is the one :func:`fit` would make (up to
    floating-point rounding of the batched convolutions). Needs an architecture without BatchNorm.
    """
    from torch.func import functional_call, stack_module_state, vmap

    if len(alphas) != len(teachers) or not alphas:
        raise ValueError(f"alphas and teachers must have one non-zero length, got {len(alphas)} and {len(teachers)}")
    dev = data.train.x.device
    t0 = time.perf_counter()
    models = [new_model(cfg, data.spec, seed, dev) for _ in alphas]
    if has_batchnorm(models[0]):
        raise ValueError(f"chains_together needs an architecture without BatchNorm (small_cnn), got arch={cfg.arch!r}")
    params, buffers = stack_module_state(models)
    tparams, tbuffers = stack_module_state([t.eval() for t in teachers])
    tparams = {k: v.detach() for k, v in tparams.items()}
    base = copy.deepcopy(models[0]).to("meta")

    def fmodel(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(base, (p, b), (x,))

    vm = vmap(fmodel, in_dims=(0, 0, None))
    a = torch.tensor(list(alphas), dtype=torch.float32, device=dev)
    opt = _optimizer(list(params.values()), cfg)
    gen = torch.Generator(device=dev).manual_seed(seed)
    n = len(data.train)
    k = len(alphas)
    losses = torch.full((k,), float("nan"))
    for epoch in range(1, cfg.epochs + 1):
        total = torch.zeros(k, device=dev)
        for xb, yb in _batches(data, cfg, gen, dev):
            with _autocast(dev, cfg):
                with torch.no_grad():
                    tp = torch.softmax(vm(tparams, tbuffers, xb).float(), -1)
                logits = vm(params, buffers, xb)
            per = torch.stack([distill_loss(logits[j], yb, tp[j], a[j]) for j in range(k)])
            per = per + 0.5 * cfg.weight_decay * sum(
                (v.float() ** 2).flatten(1).sum(1) for v in params.values())
            opt.zero_grad(set_to_none=True)
            per.sum().backward()
            opt.step()
            total += per.detach() * len(yb)
        losses = (total / n).cpu()
        bad = [j for j in range(k) if not torch.isfinite(losses[j])]
        if bad:
            raise FloatingPointError(f"non-finite training loss at {_where(where, epoch)}, "
                                     f"alpha={[alphas[j] for j in bad]}")
    seconds = (time.perf_counter() - t0) / k
    out = []
    for j, m in enumerate(models):
        m.load_state_dict({name: v[j].detach() for name, v in {**params, **buffers}.items()})
        m.eval()
        out.append(FitResult(m, float(losses[j]), seconds))
    return out


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, spec: Spec, cfg: ExperimentConfig) -> torch.Tensor:
    """Softmax outputs ``(N, p)`` (float32, on the CPU) of ``model`` in eval mode, unaugmented inputs."""
    model.eval()
    dev = x.device
    outs = []
    for i in range(0, x.shape[0], cfg.eval_batch_size):
        xb = _prepare(x[i:i + cfg.eval_batch_size], spec, dev, cfg)
        with _autocast(dev, cfg):
            outs.append(torch.softmax(model(xb).float(), -1).cpu())
    return torch.cat(outs)


def save_checkpoint(path: str | Path, obj: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (``torch.load(weights_only=True)``), None if absent; a file that
    cannot be read gives a :class:`CorruptCheckpointWarning` and None (the step is retrained)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or "state_dict" not in obj or "record" not in obj:
            raise ValueError("not a sdlib.nn checkpoint (no state_dict/record)")
        return obj
    except Exception as e:  # noqa: BLE001 - any unreadable file means: retrain this step
        warnings.warn(f"checkpoint {path} is corrupt ({type(e).__name__}: {e}); retraining that step",
                      CorruptCheckpointWarning, stacklevel=2)
        return None

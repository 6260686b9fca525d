"""Training one network on eq. (18) (and, optionally, the fits of one step together), deterministic.

What a fit of the task graph does after training (scoring on three splits, its record, its
checkpoint) is :func:`sdlib.nn.task.close_fit`; checkpoints are :mod:`sdlib.nn.checkpoints`.

Every fit is seeded by one integer: the initialisation (global RNG, seeded just before the model is
built) and the data order and augmentation (a ``torch.Generator`` on the data's device). A fit does
not depend on anything that ran before it, so a chain resumed from a checkpoint gives the same
numbers as one run straight through. That is bitwise on a CPU (tested); on CUDA it is not claimed:
some kernels have no deterministic backward (adaptive average pooling, used by every network here),
and :func:`configure_precision` only makes cuDNN choose deterministic convolutions.

Precision (:func:`precision`, part of every checkpoint's identity): ``"fp32"`` means IEEE float32
everywhere: :func:`configure_precision` turns TF32 off for matrix products and convolutions
(PyTorch's default lets cuDNN use TF32 for convolutions on Ampere and later GPUs). ``"bf16"``
(``amp="bf16"`` on CUDA) runs the forward passes of training under bf16 autocast. Evaluation, and so
the validation predictions from which alpha-hat is computed, is always fp32 (:func:`predict_probs`).

Speed paths: the data stay on the device as uint8 tensors (the GPU when there is one), augmentation
and normalisation are batched tensor operations there; on CUDA the forward passes run under bf16
autocast (``amp="bf16"``) with channels_last memory, and ``compile=True`` wraps the student in
``torch.compile``. :func:`fit_together` trains several fits of one distillation step as one
vmapped stack of models (``torch.func``), each model still seeing batches of ``batch_size``.
:func:`train_step` is the one optimisation step of :func:`fit` (``benchmarks/bench_nn.py`` times it).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sdlib.errors import DeviceUnavailableError, UsageError
from sdlib.nn.config import ExperimentConfig
from sdlib.nn.data import DataBundle, Spec, augment, normalise
from sdlib.nn.models import build_model, has_batchnorm
from sdlib.nn.objective import distill_loss, l2_penalty

__all__ = ["resolve_device", "fit", "fit_together", "predict_probs", "FitResult", "precision",
           "configure_precision", "train_step", "new_model", "StackedFits", "batches"]

@dataclass
class FitResult:
    model: nn.Module
    train_loss: float
    seconds: float


def resolve_device(device: str) -> torch.device:
    """``torch.device(device)``; ``cuda`` without a usable GPU is a :class:`DeviceUnavailableError`."""
    if str(device).startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device={device!r} was requested but no CUDA GPU is available "
                "(torch.cuda.is_available() is False); use device='cpu' (-p device cpu)")
        dev = torch.device(device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) "
                                         "present; use device='cuda' or a smaller index")
        return dev
    if device != "cpu":
        raise UsageError(f"device must be 'cpu', 'cuda' or 'cuda:N', got device={device!r}")
    return torch.device("cpu")


def precision(cfg: ExperimentConfig, device_type: str) -> str:
    """The arithmetic a fit actually uses: ``"bf16"`` (autocast, CUDA with ``amp="bf16"``) or ``"fp32"``
    (everything else: ``amp`` is ignored on a CPU). Part of the checkpoint identity."""
    return "bf16" if device_type == "cuda" and cfg.amp == "bf16" else "fp32"


def configure_precision(dev: torch.device) -> None:
    """fp32 means fp32: no TF32 in matrix products or convolutions (PyTorch lets cuDNN use TF32 for
    convolutions by default); on CUDA, deterministic cuDNN convolution algorithms, no autotuning."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    if dev.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def _autocast(dev: torch.device, cfg: ExperimentConfig) -> contextlib.AbstractContextManager[Any]:
    if dev.type == "cuda" and cfg.amp == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _prepare(x: torch.Tensor, spec: Spec, dev: torch.device, cfg: ExperimentConfig) -> torch.Tensor:
    x = normalise(x, spec)
    if dev.type == "cuda" and cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def batches(data: DataBundle, cfg: ExperimentConfig, gen: torch.Generator,
            dev: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
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


def train_step(
    student: nn.Module,
    model: nn.Module,
    teacher: nn.Module | None,
    opt: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    alpha: float,
    cfg: ExperimentConfig,
    dev: torch.device,
) -> torch.Tensor:
    """One Adam/SGD step on eq. (18) for a batch ``(xb, yb)`` (already augmented and normalised):
    the teacher's probabilities on the same batch, the student's loss (:func:`distill_loss` +
    :func:`l2_penalty` of ``model``'s parameters; ``student`` is ``model`` or its compiled wrapper).
    Returns the detached loss."""
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
    return loss.detach()


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
    configure_precision(dev)
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
        for xb, yb in batches(data, cfg, gen, dev):
            loss = train_step(student, model, teacher, opt, xb, yb, alpha, cfg, dev)
            total += loss * len(yb)
        loss_mean = float(total) / n
        if not torch.isfinite(torch.tensor(loss_mean)):
            raise FloatingPointError(f"non-finite training loss ({loss_mean}) at {_where(where, epoch)}")
    model.eval()
    return FitResult(model, loss_mean, time.perf_counter() - t0)


class StackedFits:
    """``k`` fresh models of one architecture trained as one vmapped stack (``torch.func``), each on
    eq. (18) with its own ``alpha`` and teacher; :meth:`step` is one optimisation step of all of them
    on the same batch (the step :func:`fit_together` repeats and ``benchmarks/bench_nn.py`` times).

    The loss is the sum of the models' eq. (18) losses, so each model's gradient is its own, and
    Adam/SGD act elementwise, so each model's update is the one :func:`train_step` would make.
    """

    def __init__(self, cfg: ExperimentConfig, models: Sequence[nn.Module], teachers: Sequence[nn.Module],
                 alphas: Sequence[float], dev: torch.device) -> None:
        from torch.func import functional_call, stack_module_state, vmap

        if len(alphas) != len(teachers) or len(alphas) != len(models) or not alphas:
            raise ValueError(f"models, alphas and teachers must have one non-zero length, got {len(models)}, "
                             f"{len(alphas)} and {len(teachers)}")
        if has_batchnorm(models[0]):   # ExperimentConfig rejects this before anything runs
            raise UsageError(f"chains_together needs an architecture without BatchNorm (small_cnn, "
                             f"small_cnn_spatial), got arch={cfg.arch!r}")
        self.cfg, self.dev, self.models = cfg, dev, list(models)
        self.params, self.buffers = stack_module_state(self.models)
        tparams, self.tbuffers = stack_module_state([t.eval() for t in teachers])
        self.tparams = {k: v.detach() for k, v in tparams.items()}
        base = copy.deepcopy(self.models[0]).to("meta")

        def fmodel(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(base, (p, b), (x,))

        self.vm = vmap(fmodel, in_dims=(0, 0, None))
        self.alphas = torch.tensor(list(alphas), dtype=torch.float32, device=dev)
        self.opt = _optimizer(list(self.params.values()), cfg)

    def step(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """One step of every model on the batch; returns the ``k`` detached losses."""
        k = len(self.models)
        with _autocast(self.dev, self.cfg):
            with torch.no_grad():
                tp = torch.softmax(self.vm(self.tparams, self.tbuffers, xb).float(), -1)
            logits = self.vm(self.params, self.buffers, xb)
        per = torch.stack([distill_loss(logits[j], yb, tp[j], self.alphas[j]) for j in range(k)])
        per = per + 0.5 * self.cfg.weight_decay * sum(
            (v.float() ** 2).flatten(1).sum(1) for v in self.params.values())
        self.opt.zero_grad(set_to_none=True)
        per.sum().backward()
        self.opt.step()
        return per.detach()

    def unstack(self) -> list[nn.Module]:
        """The trained models, each in eval mode."""
        for j, m in enumerate(self.models):
            m.load_state_dict({name: v[j].detach() for name, v in {**self.params, **self.buffers}.items()})
            m.eval()
        return self.models


def fit_together(
    cfg: ExperimentConfig,
    data: DataBundle,
    *,
    alphas: Sequence[float],
    teachers: Sequence[nn.Module],
    seed: int,
    where: dict[str, Any] | None = None,
) -> list[FitResult]:
    """The fits ``fit(alpha=alphas[j], teacher=teachers[j], seed=seed)`` for all ``j`` at once
    (:class:`StackedFits`): every model sees the same batches of ``cfg.batch_size`` (the ones
    :func:`fit` would draw with ``seed``); equal to the separate fits up to floating-point rounding
    of the batched convolutions (the tests: 1e-4 in probability, fp32 on a CPU; under bf16 autocast
    no equality is claimed). Needs an architecture without BatchNorm.
    """
    if len(alphas) != len(teachers) or not alphas:
        raise ValueError(f"alphas and teachers must have one non-zero length, got {len(alphas)} and {len(teachers)}")
    dev = data.train.x.device
    configure_precision(dev)
    t0 = time.perf_counter()
    stack = StackedFits(cfg, [new_model(cfg, data.spec, seed, dev) for _ in alphas], teachers, alphas, dev)
    gen = torch.Generator(device=dev).manual_seed(seed)
    n = len(data.train)
    k = len(alphas)
    losses = torch.full((k,), float("nan"))
    for epoch in range(1, cfg.epochs + 1):
        total = torch.zeros(k, device=dev)
        for xb, yb in batches(data, cfg, gen, dev):
            total += stack.step(xb, yb) * len(yb)
        losses = (total / n).cpu()
        bad = [j for j in range(k) if not torch.isfinite(losses[j])]
        if bad:
            raise FloatingPointError(f"non-finite training loss at {_where(where, epoch)}, "
                                     f"alpha={[alphas[j] for j in bad]}")
    seconds = (time.perf_counter() - t0) / k
    return [FitResult(m, float(losses[j]), seconds) for j, m in enumerate(stack.unstack())]


@torch.no_grad()
def predict_probs(model: nn.Module, x: torch.Tensor, spec: Spec, cfg: ExperimentConfig, *,
                  amp: bool = False) -> torch.Tensor:
    """Softmax outputs ``(N, p)`` (float32, on the CPU) of ``model`` in eval mode, unaugmented inputs.

    Scored in fp32 (TF32 off) unless ``amp``: alpha-hat (eq. 16) is computed from these validation
    probabilities, and bf16 scoring moves it by up to 0.01."""
    model.eval()
    dev = x.device
    configure_precision(dev)
    outs = []
    for i in range(0, x.shape[0], cfg.eval_batch_size):
        xb = _prepare(x[i:i + cfg.eval_batch_size], spec, dev, cfg)
        with _autocast(dev, cfg) if amp else contextlib.nullcontext():
            outs.append(torch.softmax(model(xb).float(), -1).cpu())
    return torch.cat(outs)

"""Parameters of a Section 5 experiment (eq. 18 chains), validated; no torch needed here.

The names are the notebook's papermill parameters (``notebooks/section5_deep.md``) and the keys of
``configs/figure5_*.yaml`` / ``configs/smoke_cpu.yaml``. ``weight_decay`` is the paper's ``lam``
(the ``lam/2 ||theta||^2`` term of eq. 18); see :mod:`sdlib.nn.objective` for the reduction.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sdlib.errors import UsageError
from sdlib.provenance import read_yaml

__all__ = ["ExperimentConfig", "DATASETS", "ARCHS", "BATCHNORM_ARCHS", "OPTIMIZERS", "load_experiment", "load_config",
           "chain_name"]

DATASETS = ("cifar10", "fashion_mnist", "digits")
ARCHS = (
    "resnet18", "resnet34", "resnet50",
    "resnet18_cifar", "resnet34_cifar", "resnet50_cifar",
    "small_cnn", "small_cnn_spatial",
)
#: The architectures with BatchNorm (running statistics): they cannot be trained as a vmapped stack.
BATCHNORM_ARCHS = tuple(a for a in ARCHS if a.startswith("resnet"))
OPTIMIZERS = ("adam", "sgd")


def chain_name(alpha: float | None) -> str:
    """``"alpha=0.3"`` for a fixed-alpha chain, ``"alpha_hat"`` for the estimated one (None)."""
    return "alpha_hat" if alpha is None else f"alpha={alpha:g}"


@dataclass
class ExperimentConfig:
    """One Figure 5 experiment: ``len(seeds)`` x (``len(alphas)`` fixed chains + the alpha-hat chain)
    x ``steps`` distillation steps, each fit trained for ``epochs`` epochs.

    ``n_train``, ``n_val``, ``n_test``: sizes of the training subset, of the validation split held out
    of the training set (alpha-hat is estimated on it) and of the test subset (None: all that is left).
    ``split_seed`` fixes the split and subsets, the same for every seed.
    ``alpha_hat_clip``: clip alpha-hat to [0, 1] (the paper's eq. 16 is over the reals: default False).
    ``chains_together``: train the fits of one step as one vmapped model stack (BatchNorm-free
    architectures only, i.e. ``small_cnn`` and ``small_cnn_spatial``; a ResNet is rejected here,
    before anything is trained); each model still sees batches of ``batch_size``.
    ``amp``: ``"bf16"`` autocast on CUDA (ignored on CPU: a CPU run is fp32), or ``"none"`` (fp32,
    TF32 off: :func:`sdlib.nn.fitting.configure_precision`).

    Invalid values raise :class:`sdlib.errors.UsageError` (a ``ValueError``) naming the parameter.
    """

    dataset: str = "digits"
    arch: str = "small_cnn"
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    steps: int = 3
    alphas: list[float] = field(default_factory=lambda: [0.0, 0.5])
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "cpu"
    data_dir: str | None = None
    download: bool = False
    n_train: int | None = None
    n_val: int = 300
    n_test: int | None = None
    split_seed: int = 0
    augment: bool = True
    alpha_hat_clip: bool = False
    chains_together: bool = False
    amp: str = "bf16"
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 1024
    progress: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~sdlib.errors.UsageError` naming the parameter and its value for anything out of range."""
        self._check_types()
        self._check_numbers()
        self._check_lists()
        self._check_sizes_and_device()

    def _check_types(self) -> None:
        """The flags are bools, the names strings, data_dir a path or None, split_seed an int >= 0."""
        # YAML reads `augment: "false"` (quoted) as a string, which Python would take as true
        for name in ("download", "augment", "alpha_hat_clip", "chains_together", "channels_last", "compile",
                     "progress"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise UsageError(f"{name} must be true or false, got {name}={v!r} ({type(v).__name__})")
        for name in ("dataset", "arch", "optimizer", "device", "amp"):
            v = getattr(self, name)
            if not isinstance(v, str):
                raise UsageError(f"{name} must be a string, got {name}={v!r} ({type(v).__name__})")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise UsageError(f"data_dir must be a path or null, got data_dir={self.data_dir!r}")
        if not isinstance(self.split_seed, int) or isinstance(self.split_seed, bool) or self.split_seed < 0:
            raise UsageError(f"split_seed must be a non-negative int, got split_seed={self.split_seed!r}")

    def _check_numbers(self) -> None:
        """dataset, arch and optimizer known; counts positive ints; lr, weight_decay, momentum finite >= 0."""
        if self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset={self.dataset!r}; valid datasets: {', '.join(DATASETS)}")
        if self.arch not in ARCHS:
            raise UsageError(f"unknown arch={self.arch!r}; valid architectures: {', '.join(ARCHS)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer={self.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size", "steps", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UsageError(f"{name} must be a positive int, got {name}={v!r}")
        for name in ("lr", "weight_decay", "momentum"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise UsageError(f"{name} must be a finite number >= 0, got {name}={v!r}")
        if self.lr <= 0:
            raise UsageError(f"lr must be > 0, got lr={self.lr!r}")

    def _check_lists(self) -> None:
        """alphas and seeds: lists of distinct values in range (stored as lists, alphas as floats)."""
        if not isinstance(self.alphas, (list, tuple)):
            raise UsageError(f"alphas must be a list of numbers, got alphas={self.alphas!r}")
        if any(not isinstance(a, (int, float)) or isinstance(a, bool) for a in self.alphas):
            raise UsageError(f"alphas must be a list of numbers, got alphas={self.alphas!r}")
        self.alphas = [float(a) for a in self.alphas]
        for a in self.alphas:
            if not (math.isfinite(a) and 0.0 <= a <= 1.0):
                raise UsageError(f"each fixed alpha must lie in [0, 1], got alphas={self.alphas!r}")
        if len(set(self.alphas)) != len(self.alphas):
            raise UsageError(f"alphas must be distinct, got alphas={self.alphas!r}")
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise UsageError(f"seeds must be a non-empty list of ints, got seeds={self.seeds!r}")
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise UsageError(f"seeds must be non-negative ints, got seeds={self.seeds!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"seeds must be distinct, got seeds={self.seeds!r}")
        self.seeds = list(self.seeds)

    def _check_sizes_and_device(self) -> None:
        """Split sizes, amp, device, and chains_together only without BatchNorm."""
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise UsageError(f"{name} must be None or a positive int, got {name}={v!r}")
        if not isinstance(self.n_val, int) or isinstance(self.n_val, bool) or self.n_val < 1:
            raise UsageError(
                f"n_val must be a positive int (alpha-hat needs a validation split), got n_val={self.n_val!r}")
        if self.amp not in ("bf16", "none"):
            raise UsageError(f"amp must be 'bf16' or 'none', got amp={self.amp!r}")
        if not (self.device == "cpu" or self.device == "cuda" or str(self.device).startswith("cuda:")):
            raise UsageError(f"device must be 'cpu', 'cuda' or 'cuda:N', got device={self.device!r}")
        if self.chains_together and self.arch in BATCHNORM_ARCHS:
            raise UsageError(f"chains_together=True needs an architecture without BatchNorm, got arch={self.arch!r}; "
                             "set chains_together: false (or use small_cnn / small_cnn_spatial)")

    @property
    def chains(self) -> list[str]:
        """Chain names: the fixed alphas in order, then ``"alpha_hat"``."""
        return [chain_name(a) for a in self.alphas] + [chain_name(None)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, ignore: tuple[str, ...] = ("results_dir", "train")) -> ExperimentConfig:
        """Build from a mapping (a YAML file, the notebook's parameters); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names - set(ignore))
        if unknown:
            raise UsageError(f"unknown parameter(s) {unknown}; valid parameters: {', '.join(sorted(names))}")
        return cls(**{k: v for k, v in d.items() if k in names})


def load_experiment(path: str | Path, **overrides: Any) -> ExperimentConfig:
    """Read a YAML parameter file (``configs/*.yaml``), apply ``overrides``, validate."""
    d = read_yaml(path, what="config file", hint="give a YAML file such as configs/smoke_cpu.yaml")
    return ExperimentConfig.from_dict({**d, **overrides})


def load_config(path: str | Path, **overrides: Any) -> ExperimentConfig:
    """Deprecated name of :func:`load_experiment` (``load_config`` also named the chapter runner's
    reader of parameter files); warns :class:`DeprecationWarning`."""
    warnings.warn("sdlib.nn.load_config is deprecated; use sdlib.nn.load_experiment", DeprecationWarning,
                  stacklevel=2)
    return load_experiment(path, **overrides)

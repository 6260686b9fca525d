"""Section 5 of Borup & Andersen (2021): self-distillation of neural networks with the estimated
weight alpha-hat (eq. 18, Algorithm 1 adapted to networks).

Modules, from the parameters up: :mod:`~sdlib.nn.config` (parameters, :func:`load_experiment`),
:mod:`~sdlib.nn.data`, :mod:`~sdlib.nn.models`, :mod:`~sdlib.nn.objective` (eq. 18),
:mod:`~sdlib.nn.fitting` (training one network), :mod:`~sdlib.nn.alpha_hat` (Algorithm 1 for
networks: eq. 16 on validation outputs), :mod:`~sdlib.nn.plan` (the fits and what each reads),
:mod:`~sdlib.nn.checkpoints`, :mod:`~sdlib.nn.task` (one task: train its fits, score, record,
checkpoint), :mod:`~sdlib.nn.graph` (the scheduler, here or on a Dask cluster:
:func:`sdlib.nn.graph.train`), :mod:`~sdlib.nn.results` (the verdict's statistics); Figure 5 is drawn by
:mod:`sdlib.chapters.section5_figures`.
``config``, ``alpha_hat``, ``plan`` and ``results`` do not import torch, so committed
results can be read and drawn without it; the names below that need torch are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sdlib.nn.config import ARCHS, DATASETS, ExperimentConfig, load_config, load_experiment

__all__ = ["ARCHS", "DATASETS", "ExperimentConfig", "load_experiment", "load_config", "run_experiment", "load_data",
           "build_model"]

#: Names whose modules import torch: imported on first use (PEP 562), so that ``import sdlib.nn`` and
#: reading committed results need no torch (start-up cost, and torch is an optional extra).
_NEEDS_TORCH = {"run_experiment": "sdlib.nn.graph", "load_data": "sdlib.nn.data", "build_model": "sdlib.nn.models"}


def __getattr__(name: str) -> Any:
    if name in _NEEDS_TORCH:
        return getattr(import_module(_NEEDS_TORCH[name]), name)
    raise AttributeError(f"module 'sdlib.nn' has no attribute {name!r}")

"""Section 5 of Borup & Andersen (2021): self-distillation of neural networks with the estimated
weight alpha-hat (eq. 18, Algorithm 1 adapted to networks).

Modules: :mod:`~sdlib.nn.config` (parameters), :mod:`~sdlib.nn.data`, :mod:`~sdlib.nn.models`,
:mod:`~sdlib.nn.objective` (eq. 18), :mod:`~sdlib.nn.train` (one fit), :mod:`~sdlib.nn.chains`
(fixed-alpha and alpha-hat chains), :mod:`~sdlib.nn.graph` (the fits as a task graph, here or on a
Dask cluster: :func:`sdlib.nn.graph.train`), :mod:`~sdlib.nn.results` (the verdict's statistics)
and :mod:`~sdlib.nn.figures` (Figure 5).
``config``, ``results`` and ``figures`` do not import torch, so committed results can be read and
drawn without it; the names below that need torch are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from sdlib.nn.config import ARCHS, DATASETS, ExperimentConfig, load_config

__all__ = ["ARCHS", "DATASETS", "ExperimentConfig", "load_config", "run_experiment", "load_data", "build_model"]

_LAZY = {"run_experiment": "sdlib.nn.chains", "load_data": "sdlib.nn.data", "build_model": "sdlib.nn.models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sdlib.nn' has no attribute {name!r}")

"""Chains of self-distillation steps for Section 5: fixed alpha, and the alpha-hat chain (Algorithm 1
adapted to networks).

Per seed ``s``:

* step 1: one model trained on the one-hot labels only (eq. 18 with alpha = 1), shared by every
  chain of the seed (Section 5.1, footnote 13); its validation probabilities are ``Y~^(1)``;
* fixed chain ``alpha``: step tau trains a fresh network on eq. (18) with ``alpha`` and the chain's
  step-(tau-1) model as the teacher;
* alpha-hat chain: step tau first trains the ``alpha = 0`` student of the chain's current teacher,
  whose validation probabilities are ``Y~^(tau)_{alpha=0}``, sets
  ``alpha_hat = sdlib.krr.theory.alpha_star(Y~, Y~^(1), Y~^(tau)_{alpha=0})`` (eq. 16, Frobenius norm,
  ``Y~`` the one-hot validation labels), then trains the step's model with ``alpha_hat``:
  ``2(tau - 1) + 1`` fits in all, against ``g(tau - 1) + 1`` for a grid of ``g`` fixed alphas.

Every fit of step tau of seed s starts from the same initialisation and sees the same batches and
augmentations (seed ``1000 s + tau``), whatever its chain. The fits run as the tasks of
:mod:`sdlib.nn.graph` (here, or on a Dask cluster); :func:`run_experiment` is its serial form.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sdlib.krr import theory
from sdlib.nn.config import ExperimentConfig
from sdlib.nn.graph import InterruptedRun, fit_seed
from sdlib.nn.results import RESULTS_KIND

__all__ = ["run_experiment", "fit_seed", "InterruptedRun", "RESULTS_KIND", "estimate_alpha_hat", "alpha_hat_chain"]

M = TypeVar("M")


def estimate_alpha_hat(y_val: np.ndarray, y1_val: np.ndarray, y0_val: np.ndarray, *, clip: bool = False) -> float:
    """alpha-hat of Section 5: eq. (16) with the Frobenius norm (:func:`sdlib.krr.theory.alpha_star`) on the
    validation set: ``y_val`` one-hot labels, ``y1_val`` the first model's and ``y0_val`` the alpha = 0
    student's softmax outputs (scored in fp32); clipped to [0, 1] if ``clip``."""
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
    the number of fits: ``2(steps - 1) + 1``). :mod:`sdlib.nn.graph` runs the same sequence as tasks
    (with checkpoints); the tests run this one on kernel ridge regression, where eq. (16) is exact."""
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


def run_experiment(
    cfg: ExperimentConfig,
    out_dir: str | Path,
    *,
    data: Any = None,
    checkpoint_dir: str | Path | None = None,
    stop_after_fits: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) every chain of ``cfg`` in this process and write ``out_dir/results.json``:
    :func:`sdlib.nn.graph.train` without a cluster (see there for the records)."""
    from sdlib.nn.graph import train

    return train(cfg, out_dir, checkpoint_dir=checkpoint_dir, data=data, stop_after_fits=stop_after_fits,
                 progress=cfg.progress)

"""alpha-hat: Algorithm 1 of the paper adapted to models that are not kernel machines (Section 5).

One place for it, called by the Section 5 task graph (:mod:`sdlib.nn.task`, the networks of
eq. 18) and by the NTK chapter (:func:`sdlib.ntk.network_optimal_path`, networks on the ridge
objective). numpy and :mod:`sdlib.krr.theory` only: no torch.

Per chain:

* step 1: one model fitted on the labels only (eq. 18 with alpha = 1); its validation outputs are
  ``Y~^(1)``;
* step tau >= 2: first the ``alpha = 0`` student of the chain's current teacher, whose validation
  outputs are ``Y~^(tau)_{alpha=0}``; then ``alpha_hat = alpha*(Y~, Y~^(1), Y~^(tau)_{alpha=0})``
  (eq. 16 with the Frobenius norm, :func:`sdlib.krr.theory.alpha_star`; ``Y~`` the validation
  labels), and the step's model fitted with ``alpha_hat`` and the same teacher:
  ``2 (tau - 1) + 1`` fits in all, against ``g (tau - 1) + 1`` for a grid of ``g`` fixed alphas.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

from sdlib.krr import theory

__all__ = ["estimate_alpha_hat", "alpha_hat_chain"]

M = TypeVar("M")


def estimate_alpha_hat(y_val: ArrayLike, y1_val: ArrayLike, y0_val: ArrayLike, *, clip: bool = False) -> float:
    """alpha-hat of Section 5: eq. (16) with the Frobenius norm (:func:`sdlib.krr.theory.alpha_star`)
    on the validation set: ``y_val`` the labels (one-hot for a classifier), ``y1_val`` the first
    model's and ``y0_val`` the alpha = 0 student's outputs; clipped to [0, 1] if ``clip``."""
    a = theory.alpha_star(y_val, y1_val, y0_val)
    return float(np.clip(a, 0.0, 1.0)) if clip else float(a)


def alpha_hat_chain(
    fit_fn: Callable[[float, M | None], M],
    predict_val: Callable[[M], np.ndarray],
    y_val: ArrayLike,
    steps: int,
    *,
    clip: bool = False,
) -> tuple[list[float], list[M], int]:
    """Algorithm 1 adapted to any model (Section 5): ``fit_fn(alpha, teacher)`` fits a fresh model on
    eq. (18)'s targets (``teacher`` None at step 1, with alpha = 1), ``predict_val`` gives its
    validation outputs (of the shape of ``y_val``). Returns (alpha-hat for steps 2..steps, the
    chain's models for steps 1..steps, the number of fits: ``2 (steps - 1) + 1``); ``fit_fn`` is
    called in that order: step 1, then per step the ``alpha = 0`` fit and the alpha-hat fit.

    :mod:`sdlib.nn.task` runs the same sequence as the tasks of a graph (with checkpoints), calling
    :func:`estimate_alpha_hat`; the tests run this one on kernel ridge regression, where eq. (16) is exact.
    """
    first = fit_fn(1.0, None)
    y1 = predict_val(first)
    if np.shape(y1) != np.shape(y_val):
        raise ValueError(f"y_val must have shape {np.shape(y1)} to match the validation outputs, got "
                         f"{np.shape(y_val)}")
    models, alphas, fits = [first], [], 1
    for _tau in range(2, steps + 1):
        y0 = predict_val(fit_fn(0.0, models[-1]))
        a = estimate_alpha_hat(y_val, y1, y0, clip=clip)
        models.append(fit_fn(a, models[-1]))
        alphas.append(a)
        fits += 2
    return alphas, models, fits

"""Brute-force oracles: self-distillation refitted step by step, each step solving problem (1).

Nothing here shares code with :mod:`sdlib.krr`. Each step minimises the objective (1)

    alpha/2 ||Phi beta - y_1||^2 + (1 - alpha)/2 ||Phi beta - y_2||^2 + lam/2 ||beta||^2

*in the primal*, over the weights ``beta`` of an explicit finite feature map ``Phi``, by solving
its normal equations ``(alpha + 1 - alpha) Phi^T Phi beta + lam beta = Phi^T (alpha y_1 +
(1 - alpha) y_2)`` with a general LU solver (the Hessian ``Phi^T Phi + lam I`` is positive definite
for every real alpha, so the minimiser exists for alpha outside [0, 1] too).

Feature maps: ``linear`` is ``phi(x) = x``; ``polynomial`` with integer degree is the weighted
monomial map whose inner product is ``(gamma <x, x'> + coef0)^degree``; any other kernel gets the
exact map on the finite set of points involved (training and query points together): the rows of
``U S^(1/2)`` for the eigendecomposition ``U S U^T`` of their joint Gram matrix, which reproduces
``kappa`` on that set exactly (to rounding).

Used by the tests and notebooks, never by the engine. Slow on purpose: clarity over speed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from math import factorial

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, optimize

from sdlib.kernels import kernel_matrix

__all__ = [
    "FitCounter",
    "algorithm1_refits",
    "grid_search_refits",
    "rel_err",
    "feature_map",
    "solve_problem1",
    "distill_refits",
    "objective1",
    "alpha_star_numerical",
]

FloatArray = NDArray[np.float64]


def _polynomial_features(
    X: FloatArray, gamma: float, coef0: float, degree: int
) -> FloatArray:
    """Explicit map with ``<phi(x), phi(x')> = (gamma <x, x'> + coef0)^degree``.

    Multinomial expansion over the ``d + 1`` coordinates ``(sqrt(gamma) x, sqrt(coef0))``.
    """
    Z = np.hstack([np.sqrt(gamma) * X, np.full((X.shape[0], 1), np.sqrt(coef0))])
    cols = []
    for combo in itertools.combinations_with_replacement(range(Z.shape[1]), degree):
        counts = np.bincount(combo, minlength=Z.shape[1])
        coeff = factorial(degree) / np.prod([factorial(int(c)) for c in counts])
        cols.append(np.sqrt(coeff) * np.prod(Z[:, list(combo)], axis=1))
    return np.column_stack(cols)


def feature_map(
    X: ArrayLike,
    Xq: ArrayLike | None = None,
    kernel: str = "rbf",
    **params: float,
) -> tuple[FloatArray, FloatArray]:
    """Explicit features ``(Phi(X), Phi(Xq))`` for the kernel (see the module docstring)."""
    X = np.asarray(X, float)
    Xq = X[:0] if Xq is None else np.asarray(Xq, float)
    gamma = params.get("gamma")
    gamma = 1.0 / X.shape[1] if gamma is None else float(gamma)
    if kernel == "linear":
        return X.copy(), Xq.copy()
    degree = params.get("degree", 3)
    if kernel in ("polynomial", "poly") and float(degree).is_integer() and degree >= 0:
        coef0 = float(params.get("coef0", 1))
        if coef0 >= 0:
            Z = _polynomial_features(np.vstack([X, Xq]), gamma, coef0, int(degree))
            return Z[: X.shape[0]], Z[X.shape[0] :]
    allX = np.vstack([X, Xq])
    G = kernel_matrix(allX, None, kernel, gamma=gamma, **{
        k: v for k, v in params.items() if k in ("degree", "coef0")
    })
    s, U = np.linalg.eigh((G + G.T) / 2)
    Z = U * np.sqrt(np.clip(s, 0.0, None))
    return Z[: X.shape[0]], Z[X.shape[0] :]


def objective1(
    Phi: FloatArray, beta: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
) -> float:
    """The self-distillation objective (1), Frobenius norms for multi-output targets."""
    f = Phi @ beta
    return float(
        alpha / 2 * np.sum((f - y1) ** 2)
        + (1 - alpha) / 2 * np.sum((f - y2) ** 2)
        + lam / 2 * np.sum(beta**2)
    )


def solve_problem1(
    Phi: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
) -> FloatArray:
    """``argmin_beta`` of (1) in the primal: the zero of its gradient, by LU (not Cholesky)."""
    D = Phi.shape[1]
    H = alpha * Phi.T @ Phi + (1 - alpha) * Phi.T @ Phi + lam * np.eye(D)
    g = alpha * Phi.T @ y1 + (1 - alpha) * Phi.T @ y2
    return linalg.solve(H, g, assume_a="gen")


def distill_refits(
    X: ArrayLike,
    y: ArrayLike,
    Xq: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    kernel: str = "rbf",
    **params: float,
) -> tuple[FloatArray, FloatArray]:
    """Self-distillation by refitting, eqs. (3)-(5): ``(f(Xq, beta^(tau)), y^(tau))`` for all tau.

    ``alphas`` are ``alpha^(2..tau)``; returns arrays of shape ``(tau, m[, p])`` and
    ``(tau, n[, p])``.
    """
    Phi, Phiq = feature_map(X, Xq, kernel, **params)
    y = np.asarray(y, float)
    preds, trains = [], []
    y_prev = y
    for tau in range(len(alphas) + 1):
        alpha = 1.0 if tau == 0 else float(alphas[tau - 1])  # step 1: both targets are y
        beta = solve_problem1(Phi, y, y_prev, alpha, lam)
        y_prev = Phi @ beta
        trains.append(y_prev)
        preds.append(Phiq @ beta)
    return np.array(preds), np.array(trains)


def alpha_star_numerical(
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    steps: int,
    kernel: str = "rbf",
    clip: bool = False,
    **params: float,
) -> FloatArray:
    """``alpha*(2..steps)`` by :func:`scipy.optimize.minimize_scalar` of the validation error.

    Each candidate alpha is evaluated by refitting the step from scratch (problem (1)), given the
    earlier steps' minimisers: the greedy definition of Theorem 4.4, without eq. (16).
    """
    Phi, Phiv = feature_map(X, X_val, kernel, **params)
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    y_prev = Phi @ solve_problem1(Phi, y, y, 1.0, lam)
    out = []
    for _ in range(2, steps + 1):

        def val_err(alpha: float, y_prev: FloatArray = y_prev) -> float:
            beta = solve_problem1(Phi, y, y_prev, alpha, lam)
            return float(np.sum((y_val - Phiv @ beta) ** 2))

        # The validation error is a convex quadratic in alpha: bracket widely, then refine.
        res = optimize.minimize_scalar(val_err, bracket=(-10.0, 10.0), tol=1e-14)
        a = float(res.x)
        if clip:
            a = float(np.clip(a, 0.0, 1.0))
        out.append(a)
        y_prev = Phi @ solve_problem1(Phi, y, y_prev, a, lam)
    return np.array(out)


def rel_err(a: ArrayLike, b: ArrayLike) -> float:
    """Largest entry of ``|a - b|`` relative to the largest entry of ``|b|`` (the yardstick)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"rel_err needs arrays of one shape, got {a.shape} and {b.shape}")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


class FitCounter:
    """:func:`solve_problem1` (problem (1) in the primal) that counts how often it is called."""

    def __init__(self) -> None:
        self.fits = 0

    def __call__(
        self, Phi: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
    ) -> FloatArray:
        self.fits += 1
        return solve_problem1(Phi, y1, y2, alpha, lam)


def algorithm1_refits(
    Phi: FloatArray,
    Phi_val: FloatArray,
    y: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    tau: int,
    fit: FitCounter | None = None,
    clip: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Algorithm 1 carried out with refits of problem (1): ``(alpha*(2..tau), validation preds of step tau)``.

    Each step fits the ``alpha = 0`` student, takes eq. (16) of its validation predictions, and
    refits with ``alpha*``: ``2(tau - 1) + 1`` calls of ``fit`` in all.
    """
    from sdlib.theory import alpha_star  # the formula under test: eq. (16) itself

    fit = FitCounter() if fit is None else fit
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    beta = fit(Phi, y, y, 1.0, lam)  # step 1 (any alpha^(1))
    y_prev, val1 = Phi @ beta, Phi_val @ beta
    val, alphas = val1, []
    for _ in range(2, tau + 1):
        beta0 = fit(Phi, y, y_prev, 0.0, lam)
        a = alpha_star(y_val, val1, Phi_val @ beta0)
        a = float(np.clip(a, 0.0, 1.0)) if clip else a
        beta = fit(Phi, y, y_prev, a, lam)
        y_prev, val = Phi @ beta, Phi_val @ beta
        alphas.append(a)
    return np.array(alphas), val


def grid_search_refits(
    Phi: FloatArray,
    Phi_val: FloatArray,
    y: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    tau: int,
    fit: FitCounter | None = None,
) -> tuple[float, float]:
    """Best fixed alpha on a grid for ``tau`` steps by refits: ``(alpha, validation MSE)``.

    One shared first fit, then ``tau - 1`` refits per grid value: ``g(tau - 1) + 1`` calls of ``fit``.
    """
    fit = FitCounter() if fit is None else fit
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    beta1 = fit(Phi, y, y, 1.0, lam)
    best = (float("nan"), float("inf"))
    for a in alphas:
        y_prev, beta = Phi @ beta1, beta1
        for _ in range(2, tau + 1):
            beta = fit(Phi, y, y_prev, float(a), lam)
            y_prev = Phi @ beta
        err = float(np.mean((y_val - Phi_val @ beta) ** 2))
        best = (float(a), err) if err < best[1] else best
    return best

"""Jointly optimal weights ``alpha^(2..T)`` for the validation error after ``T`` steps (beyond the paper).

Theorem 4.4 gives ``alpha*(tau)``, the best weight of step ``tau`` *given* the earlier ones, and
Algorithm 1 applies it greedily; the paper notes that this is "not necessarily" optimal over several
steps. This module finds the joint optimum exactly.

The key is eq. (6). With ``M = K (K + lam I)^-1`` the training predictions of step ``T`` are
``y^(T) = sum_{k=1..T} c_k M^k y`` with the coefficients of :func:`sdlib.krr.theory.path_coefficients`

    c_T = eta(2, T),    c_k = alpha^(T-k+1) eta(T-k+2, T)    (k = 1..T-1),

and the predictions at any ``x`` are ``f(x, beta^(T)) = sum_k c_k g_{k-1}(x)`` where ``g_j`` is the
prediction of ``j`` steps of pure distillation (every ``alpha = 0``) after the first fit:
``g_j(x) = kappa(x, X) (K + lam I)^-1 M^j y``. The ``g_j`` do not depend on the weights, so the
validation error is a quadratic function of ``c``. Two facts make the joint problem easy:

* the coefficients sum to one (``c_1 + ... + c_k = 1 - eta(T-k+1, T)`` telescopes), and every ``c``
  with ``sum c = 1`` comes from weights unless a partial product ``eta(T-k+1, T)`` vanishes with a
  non-zero remainder: the inverse is ``alpha^(T-k) = c_{k+1} / eta(T-k+1, T)`` with
  ``eta(T-k+1, T) = 1 - c_1 - ... - c_k`` (:func:`alphas_from_coefficients`);
* weights in ``[0, 1]`` give exactly the coefficients in the probability simplex (``c >= 0``,
  ``sum c = 1``).

So the jointly optimal weights are a least-squares problem with one linear equality
(``clip=False``: one :func:`numpy.linalg.lstsq`) or a least-squares problem over the simplex
(``clip=True``: a finite active-set method, :func:`simplex_lstsq`), followed by the inverse map. Both
are global optima. The weights of the unconstrained optimum are often far outside ``[0, 1]`` and grow
quickly with ``T``: the ``g_j`` are nearly collinear, so the optimal ``c`` alternate in sign, and the
inverse divides by small partial products ``eta``.

:func:`coordinate_descent` is the direct approach in the weights: the error is quadratic in each
``alpha^(tau)`` when the others are fixed (the prediction is affine in each weight), so each update
has a closed form like eq. (16). It is kept for comparison: it drives some ``alpha^(tau)`` towards 1,
where the earlier weights stop mattering, and stalls there above the joint optimum.

Errors are sums of squares (Frobenius norm for multi-output targets, as eq. 16 in Section 5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_array

from sdlib.krr import theory

__all__ = [
    "JointResult",
    "alphas_from_coefficients",
    "chain_predictions",
    "coefficients",
    "coordinate_descent",
    "joint_alphas",
    "joint_optimum",
    "simplex_lstsq",
    "validation_error",
]

FloatArray = NDArray[np.float64]


class FittedChain(Protocol):
    """A fitted self-distillation model as these functions use it (the estimator is one): its
    number of steps and its path at given inputs. A structural type, so that this module, which
    the estimator imports, never imports the estimator."""

    steps: int

    def path(self, Xq: Any, steps: int | None = ..., alpha: Any = ...) -> FloatArray: ...


@dataclass(frozen=True)
class JointResult:
    """Weights ``alpha^(2..T)`` for the validation error after ``T`` steps, and how they were found.

    ``error`` is the sum of squared validation errors that the returned weights give (recomputed
    through :func:`coefficients`, not the solver's own residual); ``iterations`` counts active-set
    iterations (``"simplex"``), sweeps over all weights (``"coordinate descent"``) or is 0 (``"lstsq"``);
    ``history`` holds the error after each iteration (coordinate descent only); ``solver_error`` is
    the error of the solver's own coefficients before they are mapped to weights (the least-squares
    minimum; equal to ``error`` up to the rounding of eq. J2 when the weights are large).
    """

    alphas: FloatArray
    coefficients: FloatArray
    error: float
    iterations: int
    converged: bool
    solver: str
    history: tuple[float, ...] = ()
    solver_error: float = float("nan")


def coefficients(alphas: ArrayLike) -> FloatArray:
    """``c_1..c_T`` of eq. (6) for the weights ``alpha^(2..T)`` (``T = len(alphas) + 1``); they sum to 1."""
    a = np.asarray(alphas, dtype=float).reshape(-1)
    return theory.path_coefficients(a, a.shape[0] + 1)[1:]


def alphas_from_coefficients(c: ArrayLike) -> FloatArray:
    """The weights ``alpha^(2..T)`` whose eq. (6) coefficients are ``c`` (inverse of :func:`coefficients`).

    ``alpha^(T) = c_1`` and ``alpha^(T-k) = c_{k+1} / eta_k`` with ``eta_k = eta(T-k+1, T) =
    eta_{k-1} (1 - alpha^(T-k+1))``, ``eta_0 = 1``. Where ``eta_k = 0`` the earlier weights do not
    enter eq. (6); they are set to 1 (plain kernel ridge regression steps). If the remaining
    coefficients are not zero there, no weights give ``c`` and a :class:`RuntimeWarning` says so.
    ``c`` must sum to 1 (to within ``1e-9`` of ``max(1, sum |c|)``).
    """
    c = np.asarray(c, dtype=float).reshape(-1)
    if c.size < 1 or not np.all(np.isfinite(c)):
        raise ValueError(f"c must be a non-empty finite vector, got c={c.tolist()!r}")
    if abs(c.sum() - 1.0) > 1e-9 * max(1.0, float(np.abs(c).sum())):
        raise ValueError(f"the coefficients of eq. (6) sum to 1, got sum(c)={c.sum()!r}")
    T = c.size
    out = np.ones(T - 1)
    eta = 1.0
    for k in range(T - 1):  # out[T - 2 - k] is alpha^(T - k)
        if eta == 0.0:
            if np.any(c[k:] != 0.0):
                warnings.warn(
                    f"no weights give these coefficients: eta(T-{k - 1}, T) = 0 but c_{k + 1}.. are "
                    "not all zero; the earlier weights are set to 1",
                    RuntimeWarning,
                    stacklevel=2,
                )
            break
        a = c[k] / eta
        out[T - 2 - k] = a
        eta = eta * (1.0 - a)
    return out


def _flat(G: ArrayLike, y_val: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``G`` as ``(T, m*p)`` and ``y_val`` as ``(m*p,)``, shapes checked."""
    G = np.asarray(G, dtype=float)
    y_val = np.asarray(y_val, dtype=float)
    if G.ndim < 2 or G.shape[1:] != y_val.shape:
        raise ValueError(
            f"G must have shape (T,) + y_val.shape = (T,) + {y_val.shape}, got G.shape={G.shape}"
        )
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(y_val))):
        raise ValueError("G and y_val must be finite")
    return G.reshape(G.shape[0], -1), y_val.reshape(-1)


def validation_error(G: ArrayLike, y_val: ArrayLike, c: ArrayLike) -> float:
    """``||y_val - sum_k c_k G[k-1]||^2`` (Frobenius): the validation error of eq. (6)'s coefficients ``c``."""
    Gf, yf = _flat(G, y_val)
    r = yf - np.asarray(c, dtype=float) @ Gf
    return float(r @ r)


def chain_predictions(
    model: FittedChain, X: ArrayLike, steps: int
) -> FloatArray:
    """``G[j] = g_j(X)``, ``j = 0..steps-1``: the fitted model's pure-distillation path (every
    ``alpha = 0``) at ``X``, shape ``(steps, m[, p])``; ``G[0]`` is the first fit."""
    return model.path(X, steps=steps, alpha=0.0)


def _equality_lstsq(A: FloatArray, y: FloatArray) -> FloatArray:
    """``argmin ||A c - y||`` subject to ``sum c = 1`` (minimum norm, in column-scaled
    coordinates, among minimisers).

    Eliminates ``c_0 = 1 - sum_{k>0} c_k``: ``A c = a_0 + sum_{k>0} c_k (a_k - a_0)``. The columns
    ``a_k - a_0`` shrink geometrically with ``k`` (each step multiplies by ``d / (d + lam) < 1``), so
    they are scaled to unit norm first: otherwise the solver's cut-off ``eps max(m, n) s_max``
    discards late steps whose direction is well determined but whose norm is small.
    """
    if A.shape[1] == 1:
        return np.ones(1)
    B = A[:, 1:] - A[:, :1]
    scale = np.linalg.norm(B, axis=0)
    scale[scale == 0] = 1.0
    v, *_ = np.linalg.lstsq(B / scale, y - A[:, 0], rcond=None)
    u = v / scale
    return np.concatenate([[1.0 - u.sum()], u])


def simplex_lstsq(A: ArrayLike, y: ArrayLike, max_iter: int | None = None) -> tuple[FloatArray, int]:
    """``argmin ||A c - y||^2`` over the probability simplex (``c >= 0``, ``sum c = 1``): ``(c, iterations)``.

    A primal active-set method (Lawson and Hanson's NNLS with the equality kept on the support):
    start at the best vertex; add the coordinate whose reduced gradient is most negative; solve the
    equality-constrained problem on the support and, where that leaves the simplex, step back to its
    boundary and drop the coordinates that reach zero. Stops when the KKT conditions hold (to
    ``1e-12`` relative). Exact up to rounding, finitely many iterations.
    """
    A = np.asarray(A, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1)
    if A.ndim != 2 or A.shape[0] != y.shape[0] or A.shape[1] < 1:
        raise ValueError(f"A must be (m, T) with m = len(y), got A.shape={A.shape}, len(y)={y.shape[0]}")
    T = A.shape[1]
    max_iter = 10 * T + 10 if max_iter is None else max_iter
    k0 = int(np.argmin(np.sum((A - y[:, None]) ** 2, axis=0)))
    c = np.zeros(T)
    c[k0] = 1.0
    support = [k0]
    scale = float(np.linalg.norm(A, ord=2) * (np.linalg.norm(A, ord=2) + np.linalg.norm(y))) or 1.0
    for it in range(1, max_iter + 1):
        grad = A.T @ (A @ c - y)
        mu = float(np.mean(grad[support]))  # equal on the support at its optimum
        outside = [k for k in range(T) if k not in support]
        if not outside:
            return c, it - 1
        k = min(outside, key=lambda j: grad[j])
        if grad[k] >= mu - 1e-12 * scale:
            return c, it - 1  # KKT: no coordinate outside the support lowers the error
        support.append(k)
        while True:
            s = np.zeros(T)
            s[support] = _equality_lstsq(A[:, support], y)
            if np.all(s[support] > 0):
                c = s
                break
            # Step from c towards s until the first coordinate of the support reaches zero; drop it.
            neg = [j for j in support if s[j] <= 0]
            ratios = [c[j] / (c[j] - s[j]) if c[j] > s[j] else 0.0 for j in neg]  # c >= 0 >= s
            out = neg[int(np.argmin(ratios))]
            c = c + min(ratios) * (s - c)
            c[out] = 0.0
            support = [j for j in support if j != out and c[j] > 0]
            c[[j for j in range(T) if j not in support]] = 0.0
            c /= c.sum()  # stay on the simplex despite rounding
    warnings.warn(f"simplex_lstsq stopped after max_iter={max_iter} iterations", ConvergenceWarning,
                  stacklevel=2)
    return c, max_iter


def joint_alphas(G: ArrayLike, y_val: ArrayLike, clip: bool = False) -> JointResult:
    """Jointly optimal ``alpha^(2..T)`` for the validation error after ``T = len(G)`` steps (exact).

    ``G[j]`` are the predictions ``g_j`` on the validation inputs of ``j`` steps of pure
    distillation (:func:`chain_predictions`), ``y_val`` the validation targets. ``clip=False``:
    the weights range over all reals and the optimum is eq. (6)'s coefficients by least squares with
    ``sum c = 1``; ``clip=True``: weights in ``[0, 1]``, the coefficients over the simplex
    (:func:`simplex_lstsq`). Both are global minima. ``T = 1`` has no weights.
    """
    Gf, yf = _flat(G, y_val)
    T = Gf.shape[0]
    if T == 1:
        err = validation_error(G, y_val, [1.0])
        return JointResult(np.empty(0), np.ones(1), err, 0, True, "none", solver_error=err)
    if clip:
        c, iterations = simplex_lstsq(Gf.T, yf)
        alphas = np.clip(alphas_from_coefficients(c), 0.0, 1.0)
        solver = "simplex"
    else:
        c = _equality_lstsq(Gf.T, yf)
        alphas, iterations, solver = alphas_from_coefficients(c), 0, "lstsq"
    c_alphas = coefficients(alphas)
    return JointResult(alphas, c_alphas, validation_error(G, y_val, c_alphas), iterations, True, solver,
                       solver_error=validation_error(G, y_val, c))


def coordinate_descent(
    G: ArrayLike,
    y_val: ArrayLike,
    start: ArrayLike,
    clip: bool = False,
    tol: float = 1e-12,
    max_sweeps: int = 1000,
) -> JointResult:
    """Coordinate descent over ``alpha^(2..T)`` with closed-form updates, from ``start`` (e.g. greedy).

    With the other weights fixed, the validation predictions are affine in ``alpha^(tau)``:
    ``u + alpha^(tau) v`` with ``u`` the predictions at ``alpha^(tau) = 0`` and ``v`` the change to
    ``alpha^(tau) = 1``, so the best ``alpha^(tau)`` is ``<v, y_val - u> / ||v||^2`` (eq. 16 is the
    case ``tau = T``), clipped to ``[0, 1]`` if ``clip``. One sweep updates ``tau = 2..T`` in turn;
    a zero ``||v||`` leaves the weight as it is. Stops when a sweep lowers the error by at most
    ``tol`` relative, or after ``max_sweeps`` sweeps (``converged=False``, with a
    :class:`~sklearn.exceptions.ConvergenceWarning`).
    """
    Gf, yf = _flat(G, y_val)
    T = Gf.shape[0]
    a = np.array(start, dtype=float).reshape(-1)
    if a.shape != (T - 1,) or not np.all(np.isfinite(a)):
        raise ValueError(f"start must hold T - 1 = {T - 1} finite weights, got {np.asarray(start).tolist()!r}")
    if not (isinstance(max_sweeps, (int, np.integer)) and max_sweeps >= 1):
        raise ValueError(f"max_sweeps must be an integer >= 1, got max_sweeps={max_sweeps!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got tol={tol!r}")
    if clip:
        a = np.clip(a, 0.0, 1.0)
    err = validation_error(Gf, yf, coefficients(a))
    history = [err]
    converged = T == 1
    sweeps = 0
    while not converged and sweeps < max_sweeps:
        sweeps += 1
        for j in range(T - 1):
            old = a[j]
            a[j] = 0.0
            c0 = coefficients(a)
            a[j] = 1.0
            v = (coefficients(a) - c0) @ Gf
            u = c0 @ Gf
            den = float(v @ v)
            a[j] = float(v @ (yf - u)) / den if den > 0 else old
            if clip:
                a[j] = min(max(a[j], 0.0), 1.0)
        new = validation_error(Gf, yf, coefficients(a))
        history.append(new)
        converged = history[-2] - new <= tol * history[-2]
    if not converged:
        warnings.warn(
            f"coordinate descent did not converge in max_sweeps={max_sweeps} sweeps (last relative "
            f"decrease {(history[-2] - history[-1]) / history[-2]:.1e} > tol={tol:.1e})",
            ConvergenceWarning,
            stacklevel=2,
        )
    c = coefficients(a)
    err = validation_error(Gf, yf, c)
    return JointResult(a, c, err, sweeps, converged, "coordinate descent", tuple(history), solver_error=err)


def joint_optimum(
    model: FittedChain,
    X_val: ArrayLike,
    y_val: ArrayLike,
    steps: int | None = None,
    clip: bool = False,
) -> JointResult:
    """Jointly optimal ``alpha^(2..steps)`` of a fitted model for the validation error after ``steps``.

    ``steps`` solves with the model's Cholesky factor give the pure-distillation path ``g_j`` at
    ``X_val`` (:func:`chain_predictions`); the rest is :func:`joint_alphas` on ``steps`` vectors.
    """
    steps = model.steps if steps is None else steps
    G = chain_predictions(model, X_val, steps)
    y_val = check_array(y_val, dtype=np.float64, ensure_2d=False, input_name="y_val")
    if y_val.shape[0] != G.shape[1] or y_val.size != int(np.prod(G.shape[1:])):
        raise ValueError(
            f"y_val must have shape {G.shape[1:]} to match X_val and the training targets, "
            f"got y_val.shape={y_val.shape}"
        )
    return joint_alphas(G, y_val.reshape(G.shape[1:]), clip=clip)

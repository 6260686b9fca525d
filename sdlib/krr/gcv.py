"""Weights ``alpha^(2..T)`` without a hold-out set: generalised cross-validation (beyond the paper).

The paper chooses ``alpha`` on a validation split (Algorithm 1, eq. 16); it has no criterion on
the training data alone. Self-distillation is a linear smoother on the training points: by eq. (10)
the training predictions of step ``tau`` are ``y^(tau) = S y`` with ``S = V B^(tau) V^T`` and
``B^(tau)`` the diagonal of eqs. (11)-(12) in the eigenbasis ``K = V D V^T``. Generalised
cross-validation (Craven & Wahba 1979; Golub, Heath & Wahba 1979) scores a linear smoother by

    GCV(S) = n ||(I - S) y||^2 / (n - tr S)^2,

and in the eigenbasis, with ``z = V^T y``, ``omega_k = sum_j z_kj^2`` (Frobenius norm for
multi-output targets) and ``h`` the diagonal of ``B^(tau)``,

    GCV(h) = n sum_k omega_k (1 - h_k)^2 / (n - sum_k h_k)^2.                           (G1)

**Greedy, one step at a time** (:func:`greedy_alphas`, as Algorithm 1 but with GCV in place of the
validation error). With the earlier weights fixed, eq. (12) makes the filter of step ``tau``
affine in its weight: ``h(alpha) = u + alpha w`` with ``u = a b`` and ``w = a (1 - b)``, where
``a = d / (d + lam)`` and ``b`` is the diagonal of ``B^(tau-1)``. So (G1) is the ratio
``N(alpha) / Q(alpha)^2`` of a quadratic ``N(alpha) = n (P0 - 2 alpha P1 + alpha^2 P2)`` and an
affine ``Q(alpha) = m - alpha W``, with ``r = 1 - u``, ``P0 = sum omega r^2``, ``P1 = sum omega r
w``, ``P2 = sum omega w^2``, ``m = n - sum u`` and ``W = sum w``. Its derivative is

    GCV'(alpha) = 2 n kappa (alpha - alpha_g) / Q(alpha)^3,   kappa = m P2 - W P1,
    alpha_g = (m P1 - W P0) / kappa,                                                    (G2)

(the ``alpha^2`` terms cancel), so on the set where ``tr S < n`` (``Q > 0``, where GCV is defined
as a criterion) it has one stationary point, the global minimum ``alpha_g`` when ``kappa > 0`` and
``Q(alpha_g) > 0``. Otherwise GCV decreases towards the edge of that set and has no minimiser: a
:class:`GCVWarning` says so and the step keeps the first fit (``alpha = 1``), as eq. (16) does for
a zero denominator. With ``clip=True`` the weight is the minimiser over ``[0, 1]``; there
``h <= a < 1`` whenever ``b <= 1``, so ``tr S < n`` and (G2) makes the clipped ``alpha_g`` exact.

**Jointly after T steps** (:func:`joint_alphas`). The filter after ``T`` steps is
``h = sum_j c_j a^j`` with the coefficients ``c`` of eq. (6), which sum to one
(:func:`sdlib.krr.joint.coefficients`). With ``e = c / (n - tr S)`` (so ``sum e = 1 / (n - tr S)``),
(G1) becomes a homogeneous least-squares problem with one linear constraint,

    GCV = n || sqrt(omega) * sum_j e_j (1 - a^j) ||^2,    sum_j g_j e_j = 1,   g_j = n - sum_k a_k^j,

and with ``f_j = g_j e_j`` (``g_j > 0``) it is a least-squares problem over the affine plane
``sum f = 1`` (all real weights) or over the probability simplex (weights in ``[0, 1]``, which are
exactly the ``c >= 0``: :mod:`sdlib.krr.joint`). Both are solved exactly
(:func:`sdlib.krr.joint.simplex_lstsq` for the simplex) and mapped back, ``c = e / sum e``, and to the
weights by :func:`sdlib.krr.joint.alphas_from_coefficients`. Over all reals the minimiser can have
``sum e <= 0``, i.e. ``tr S >= n``: then (the problem being convex in ``e`` on ``sum e > 0``) GCV has
no minimiser where ``tr S < n``, only an infimum at infinite weights; a :class:`GCVWarning` says so
and the greedy weights are returned. Over ``[0, 1]`` a minimiser always exists.

**Leave-one-out** (:func:`loo_residuals`): for kernel ridge regression (one step, or any
``T``-step filter read as a fixed smoother) the shortcut ``(y - S y)_i / (1 - S_ii)``. It is the
exact leave-one-out residual of kernel ridge regression (step 1); for ``T >= 2`` it is the residual
of the smoother with ``S`` held fixed, not of refitting the whole chain without point ``i``.

Every function works on arrays (eigenvalues ``d``, projections ``z = V^T y``, ``lam``, weights);
:class:`sdlib.krr.estimator.KernelSelfDistillation` calls them with its own eigendecomposition
(``optimal_alphas(method="gcv")``). Eigenvalues are clipped at 0 as in :func:`sdlib.krr.theory.A_diag`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sdlib.krr import joint, theory

__all__ = [
    "GCVResult",
    "GCVWarning",
    "gcv_from_filter",
    "gcv_score",
    "greedy_alphas",
    "joint_alphas",
    "krr_gcv",
    "loo_residuals",
    "step_minimiser",
]

FloatArray = NDArray[np.float64]


class GCVWarning(RuntimeWarning):
    """GCV has no minimiser where ``tr S < n``: it decreases towards the edge of that set."""


@dataclass(frozen=True)
class GCVResult:
    """Weights ``alpha^(2..T)`` chosen by GCV and the GCV of the ``T``-step smoother they give.

    ``gcv`` is recomputed from the returned weights by (G1) (:func:`gcv_score`), not taken from the
    solver; ``solver_gcv`` is the solver's own minimum (equal up to the rounding of the map from
    coefficients to weights).
    """

    alphas: FloatArray
    gcv: float
    method: str
    solver_gcv: float = float("nan")


def _omega(d: ArrayLike, z: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``(d, omega)`` with ``omega_k = sum_j z_kj^2``; shapes and finiteness checked."""
    d = np.asarray(d, dtype=float).reshape(-1)
    z = np.asarray(z, dtype=float)
    if z.ndim not in (1, 2) or z.shape[0] != d.shape[0]:
        raise ValueError(f"z must have shape (n,) or (n, p) with n = len(d) = {d.shape[0]}, got z.shape={z.shape}")
    if d.size == 0 or not (np.all(np.isfinite(d)) and np.all(np.isfinite(z))):
        raise ValueError("d and z must be non-empty and finite")
    z2 = z.reshape(d.shape[0], -1)
    return d, np.einsum("ij,ij->i", z2, z2)


def gcv_from_filter(omega: ArrayLike, h: ArrayLike) -> float:
    """(G1): ``n sum_k omega_k (1 - h_k)^2 / (n - sum_k h_k)^2`` for the filter ``h`` (``inf`` when
    ``tr S = n``)."""
    omega = np.asarray(omega, dtype=float)
    h = np.asarray(h, dtype=float)
    n = h.shape[-1]
    q = n - h.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = n * (omega * (1.0 - h) ** 2).sum(axis=-1) / q**2
    return out if np.ndim(out) else float(out)


def krr_gcv(d: ArrayLike, z: ArrayLike, lams: ArrayLike) -> FloatArray:
    """GCV of kernel ridge regression for each ``lam`` in ``lams`` (filter ``d / (d + lam)``, eq. 9)."""
    d, omega = _omega(d, z)
    lams = np.atleast_1d(np.asarray(lams, dtype=float))
    for lam in lams.tolist():
        theory.check_lam(lam, "lams")
    H = np.clip(d, 0.0, None)[None, :] / (np.clip(d, 0.0, None)[None, :] + lams[:, None])
    return np.asarray(gcv_from_filter(omega, H), dtype=float)


def gcv_score(d: ArrayLike, z: ArrayLike, lam: float, alphas: ArrayLike) -> float:
    """GCV (G1) of the smoother after ``T = len(alphas) + 1`` steps (filter ``B^(T)``, eqs. 11-12)."""
    d, omega = _omega(d, z)
    a = np.asarray(alphas, dtype=float).reshape(-1)
    return float(gcv_from_filter(omega, theory.B_diag_path(d, lam, a)[-1]))


def step_minimiser(
    omega: ArrayLike, u: ArrayLike, w: ArrayLike, bounds: tuple[float, float] | None = None
) -> tuple[float, float] | None:
    """The minimiser of (G1) with the affine filter ``h(alpha) = u + alpha w`` where ``tr S < n``:
    ``(alpha, GCV)``, or ``None`` where there is none.

    Exact from (G2): the one stationary point ``alpha_g`` and, with ``bounds = (lo, hi)``, the
    end points; only points with ``n - sum h > 0`` are candidates.
    """
    omega = np.asarray(omega, dtype=float)
    u = np.asarray(u, dtype=float)
    w = np.asarray(w, dtype=float)
    n = u.shape[0]
    r = 1.0 - u
    P0, P1, P2 = float(omega @ (r * r)), float(omega @ (r * w)), float(omega @ (w * w))
    m, W = n - float(u.sum()), float(w.sum())

    def value(alpha: float) -> float:
        q = m - alpha * W
        return n * (P0 - 2.0 * alpha * P1 + alpha * alpha * P2) / (q * q)

    kappa = m * P2 - W * P1
    cands: list[float] = []
    if kappa != 0.0:
        ag = (m * P1 - W * P0) / kappa
        if np.isfinite(ag) and m - ag * W > 0 and (bounds is None or bounds[0] <= ag <= bounds[1]):
            cands.append(ag)
    if bounds is not None:
        cands += [float(b) for b in bounds if m - float(b) * W > 0]
    elif not (kappa > 0 and cands):
        return None  # unbounded, and GCV falls towards the edge of tr S < n
    if not cands:
        return None
    vals = [value(c) for c in cands]
    i = int(np.argmin(vals))
    return float(cands[i]), float(vals[i])


def greedy_alphas(
    d: ArrayLike, z: ArrayLike, lam: float, steps: int, clip: bool = False
) -> GCVResult:
    """``alpha^(2..steps)`` chosen step by step, each minimising the GCV (G1) of its step's smoother
    given the earlier weights (Algorithm 1 with GCV for the validation error; closed form (G2)).

    ``clip=True``: each weight minimises over ``[0, 1]``. Where a step has no minimiser (see the
    module docstring) it gets ``alpha = 1`` with a :class:`GCVWarning`.
    """
    d, omega = _omega(d, z)
    lam = theory.check_lam(lam)
    theory.alpha_sequence(0.0, steps)  # validates steps
    a = theory.A_diag(d, lam)
    b = a.copy()
    out = np.empty(steps - 1)
    for tau in range(2, steps + 1):
        u, w = a * b, a * (1.0 - b)
        best = step_minimiser(omega, u, w, (0.0, 1.0) if clip else None)
        if best is None:
            warnings.warn(
                f"GCV has no minimiser at step {tau} (lam={lam!r}): it decreases towards the edge of "
                "tr S < n; keeping the first fit's targets, alpha=1.0", GCVWarning, stacklevel=2)
            alpha = 1.0
        else:
            alpha = best[0]
        out[tau - 2] = alpha
        b = u + alpha * w
    return GCVResult(out, float(gcv_from_filter(omega, b)), "gcv", float(gcv_from_filter(omega, b)))


def joint_alphas(
    d: ArrayLike, z: ArrayLike, lam: float, steps: int, clip: bool = False
) -> GCVResult:
    """``alpha^(2..steps)`` that minimise the GCV (G1) of the smoother after ``steps`` steps jointly.

    Over all real weights (``clip=False``) or weights in ``[0, 1]`` (``clip=True``), exactly, by the
    homogeneous least-squares form of the module docstring and the solvers of :mod:`sdlib.krr.joint`.
    The weights can be far outside ``[0, 1]`` (as for the validation error, :mod:`sdlib.krr.joint`).
    """
    d, omega = _omega(d, z)
    lam = theory.check_lam(lam)
    theory.alpha_sequence(0.0, steps)
    if steps == 1:
        g1 = float(gcv_from_filter(omega, theory.A_diag(d, lam)))
        return GCVResult(np.empty(0), g1, "gcv_joint", g1)
    n = d.shape[0]
    a = theory.A_diag(d, lam)
    powers = a[:, None] ** np.arange(1, steps + 1)[None, :]  # (n, T): a^j
    g = n - powers.sum(axis=0)  # > 0: every a_k < 1
    M = np.sqrt(omega)[:, None] * (1.0 - powers) / g[None, :]
    # (G1) = n ||M f||^2 with sum f = 1 (f = g e)
    if clip:
        f, _ = joint.simplex_lstsq(M, np.zeros(n))
    else:
        f = joint._equality_lstsq(M, np.zeros(n))
    e = f / g
    s = float(e.sum())
    if not s > 0:
        # convex in e on the half-space sum e > 0 (tr S < n): the infimum is at its edge, where the
        # coefficients are infinite. No minimiser; the greedy weights are a defined choice.
        warnings.warn(
            f"GCV after {steps} steps has no joint minimiser where tr S < n (lam={lam!r}): it decreases "
            "towards infinite weights; returning the greedy GCV weights", GCVWarning, stacklevel=2)
        res = greedy_alphas(d, z, lam, steps, clip=False)
        return GCVResult(res.alphas, res.gcv, "gcv_joint (greedy fallback)", float("nan"))
    c = e / s
    solver_gcv = float(n * np.sum((M @ f) ** 2))
    if clip:
        c = np.clip(c, 0.0, None)
        c /= c.sum()
    alphas = joint.alphas_from_coefficients(c)
    if clip:
        alphas = np.clip(alphas, 0.0, 1.0)
    return GCVResult(alphas, float(gcv_from_filter(omega, theory.B_diag_path(d, lam, alphas)[-1])),
                     "gcv_joint", solver_gcv)


def loo_residuals(V: ArrayLike, y: ArrayLike, h: ArrayLike) -> FloatArray:
    """Leave-one-out residuals ``(y - S y)_i / (1 - S_ii)`` of the smoother ``S = V diag(h) V^T``.

    Exact leave-one-out residuals of kernel ridge regression when ``h = d / (d + lam)`` (eq. 9);
    for a ``T``-step filter, the residuals of the smoother held fixed (see the module docstring).
    ``V`` holds the eigenvectors of ``K`` in its columns; ``y`` is ``(n,)`` or ``(n, p)``.
    """
    V = np.asarray(V, dtype=float)
    h = np.asarray(h, dtype=float).reshape(-1)
    y = np.asarray(y, dtype=float)
    if V.ndim != 2 or V.shape != (h.shape[0], h.shape[0]) or y.shape[0] != h.shape[0]:
        raise ValueError(f"V must be (n, n) and y (n[, p]) with n = len(h) = {h.shape[0]}, got "
                         f"V.shape={V.shape}, y.shape={y.shape}")
    Sy = V @ (h.reshape(-1, *([1] * (y.ndim - 1))) * (V.T @ y))
    s_ii = np.einsum("ik,k,ik->i", V, h, V)
    return (y - Sy) / (1.0 - s_ii).reshape(-1, *([1] * (y.ndim - 1)))

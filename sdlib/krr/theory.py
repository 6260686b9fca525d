"""The paper's formulas as pure functions of the spectrum ``d``, ``lam`` and the weights ``alpha``.

Notation follows Borup & Andersen (2021), Section 4:

* ``d`` holds the eigenvalues of the kernel matrix ``K = V D V^T`` (ascending, as in Section 4.5);
* ``A = D (D + lam I)^-1`` (eq. 11) is stored as its diagonal ``a = d / (d + lam)``;
* ``alphas`` is the sequence ``alpha^(2), ..., alpha^(tau)`` (step 1 is plain kernel ridge
  regression and has no weight), so it has ``tau - 1`` entries;
* ``eta(i, tau) = prod_{j=i}^{tau} (1 - alpha^(j))`` (the extraction of the paper misprints the
  index of the product; see the book's *Conventions* page), with the empty product equal to one.

Every function here is a direct transcription of one equation; the engine (:mod:`sdlib.krr.estimator`) uses
the recursion (eq. 12) and these functions are the yardstick the notebooks check it against.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DegenerateAlphaWarning",
    "check_lam",
    "alpha_sequence",
    "eta",
    "A_diag",
    "B_diag_sum",
    "B_diag_path",
    "B_diag_limit",
    "ratio_eq14",
    "sign_rule_eq15",
    "alpha_star",
    "limit_lam",
    "convergence_rate",
    "path_coefficients",
]

FloatArray = NDArray[np.float64]


class DegenerateAlphaWarning(RuntimeWarning):
    """Eq. (16) has a zero denominator: every alpha gives the same validation predictions."""


def check_lam(lam: Any, name: str = "lam") -> float:
    """``lam`` as a float, or ``ValueError`` naming ``name`` and the value unless finite and > 0."""
    try:
        lam_f = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number > 0, got {name}={lam!r}") from None
    if not np.isfinite(lam_f) or lam_f <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {name}={lam!r}")
    return lam_f


def alpha_sequence(alpha: float | ArrayLike | None, steps: int) -> FloatArray:
    """Normalise ``alpha`` to the array ``(alpha^(2), ..., alpha^(steps))`` of length ``steps - 1``.

    A scalar is repeated (the paper's "fixed alpha" case); a sequence must have exactly
    ``steps - 1`` finite entries. Any real value is allowed (Theorem 4.4, footnote 9).
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got steps={steps!r}")
    if alpha is None:
        alpha = 0.0
    arr = np.asarray(alpha, dtype=float)
    if arr.ndim == 0:
        if not np.isfinite(arr):
            raise ValueError(f"alpha must be finite, got alpha={alpha!r}")
        return np.full(int(steps) - 1, float(arr))
    if arr.ndim != 1 or arr.shape[0] != steps - 1:
        raise ValueError(
            f"alpha must be a scalar or a sequence of steps - 1 = {steps - 1} weights "
            f"alpha^(2..{steps}), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"alpha must be finite, got alpha={arr.tolist()!r}")
    return arr.copy()


def eta(alphas: Sequence[float] | FloatArray, i: int, tau: int) -> float:
    """``eta(i, tau) = prod_{j=i}^{tau} (1 - alpha^(j))`` (Theorem 4.1); one for ``i > tau``.

    ``alphas[0]`` is ``alpha^(2)``, so ``alpha^(j)`` is ``alphas[j - 2]``.
    """
    a = np.asarray(alphas, dtype=float)
    if i > tau:
        return 1.0
    if i < 2 or tau - 2 >= a.shape[0]:
        raise ValueError(f"eta needs 2 <= i and tau <= {a.shape[0] + 1}, got i={i}, tau={tau}")
    return float(np.prod(1.0 - a[i - 2 : tau - 1]))


def A_diag(d: ArrayLike, lam: float) -> FloatArray:
    """Diagonal of ``A = D (D + lam I)^-1`` (eq. 11), i.e. the eigenvalues of ``K (K + lam I)^-1``
    (eq. 9)."""
    lam = check_lam(lam)
    d = np.clip(np.asarray(d, dtype=float), 0.0, None)
    return d / (d + lam)


def path_coefficients(alphas: ArrayLike, tau: int) -> FloatArray:
    """Coefficients ``c_k`` of eq. (6): ``y^(tau) = sum_k c_k (K (K + lam I)^-1)^k y``, ``k = 0..tau``.

    From eq. (6): ``c_tau = eta(2, tau)`` and ``c_{tau-i+1} += alpha^(i) eta(i+1, tau)`` for
    ``i = 2..tau``; ``c_0 = 0``.
    """
    a = np.asarray(alphas, dtype=float)
    c = np.zeros(tau + 1)
    c[tau] += eta(a, 2, tau)
    for i in range(2, tau + 1):
        c[tau - i + 1] += a[i - 2] * eta(a, i + 1, tau)
    return c


def B_diag_sum(d: ArrayLike, lam: float, alphas: ArrayLike) -> FloatArray:
    """Diagonal of ``B^(tau)`` from its defining sum, eq. (11), with ``tau = len(alphas) + 1``.

    ``B^(tau) = sum_{i=2}^{tau} alpha^(i) eta(i+1, tau) A^(tau-i+1) + eta(2, tau) A^tau``.
    """
    a_diag = A_diag(d, lam)
    a = np.asarray(alphas, dtype=float)
    tau = a.shape[0] + 1
    c = path_coefficients(a, tau)
    return sum(c[k] * a_diag**k for k in range(tau + 1))


def B_diag_path(d: ArrayLike, lam: float, alphas: ArrayLike) -> FloatArray:
    """Diagonals of ``B^(1), ..., B^(tau)`` by the recursion of Lemma 4.2, eq. (12).

    ``B^(tau) = A ((1 - alpha^(tau)) B^(tau-1) + alpha^(tau) I)`` with ``B^(1) = A``.
    Returns an array of shape ``(tau, n)``, ``tau = len(alphas) + 1``.
    """
    a_diag = A_diag(d, lam)
    a = np.asarray(alphas, dtype=float)
    out = np.empty((a.shape[0] + 1, a_diag.shape[0]))
    out[0] = a_diag
    for t, alpha in enumerate(a, start=1):
        out[t] = a_diag * ((1.0 - alpha) * out[t - 1] + alpha)
    return out


def B_diag_limit(d: ArrayLike, lam: float, alpha: float) -> FloatArray:
    """Diagonal of ``B^(inf) = D (D + lam/alpha I)^-1`` (eq. 17 in the eigenbasis), zero for alpha=0.

    The fixed point of eq. (12) is ``alpha a / (1 - (1 - alpha) a) = d / (d + lam / alpha)``; it is
    the limit for ``alpha in (0, 1]`` (Theorem 4.5) and the zero matrix for ``alpha = 0``.
    """
    lam = check_lam(lam)
    d = np.clip(np.asarray(d, dtype=float), 0.0, None)
    if alpha == 0:
        return np.zeros_like(d)
    return alpha * d / (alpha * d + lam)


def ratio_eq14(d_k: ArrayLike, d_j: ArrayLike, lam: float, tau: int, alpha: float) -> FloatArray:
    """Right-hand side of eq. (14): ``[B]_kk / [B]_jj`` for ``alpha = 1`` or ``alpha = 0``."""
    lam = check_lam(lam)
    base = (1.0 + lam / np.asarray(d_j, float)) / (1.0 + lam / np.asarray(d_k, float))
    if alpha == 1:
        return base
    if alpha == 0:
        return base**tau
    raise ValueError(f"eq. (14) holds for alpha in {{0, 1}}, got alpha={alpha!r}")


def sign_rule_eq15(
    B_prev_k: ArrayLike, B_prev_j: ArrayLike, A_k: ArrayLike, A_j: ArrayLike, alpha: float
) -> NDArray[np.int_]:
    """Predicted ``sgn(R^(tau) - R^(tau-1))`` of eq. (15) from step ``tau - 1`` quantities.

    ``R = [B]_kk / [B]_jj`` for ``d_k > d_j``; the right-hand side is
    ``sgn( ( (R^(tau-1) - A_k/A_j) A_j / (B_k^(tau-1) (A_k - A_j)) + 1 )^-1 - alpha )``.
    """
    B_prev_k = np.asarray(B_prev_k, float)
    B_prev_j = np.asarray(B_prev_j, float)
    A_k = np.asarray(A_k, float)
    A_j = np.asarray(A_j, float)
    r_prev = B_prev_k / B_prev_j
    inner = (r_prev - A_k / A_j) * A_j / (B_prev_k * (A_k - A_j)) + 1.0
    return np.sign(1.0 / inner - alpha).astype(int)


def alpha_star(y_val: ArrayLike, y1_val: ArrayLike, y0_val: ArrayLike) -> float:
    """Optimal weight of Theorem 4.4, eq. (16), Frobenius norm for multi-output targets (Section 5).

    ``alpha* = 1 - <y0 - y1, y_val - y1> / ||y0 - y1||^2`` with ``y1`` the first fit's and ``y0``
    the ``alpha = 0`` step's validation predictions. When ``y0`` and ``y1`` coincide (to within
    ``1e-12`` relative), every alpha gives the same validation predictions: the denominator is zero
    and this returns ``1.0`` (keep the first fit) with a :class:`DegenerateAlphaWarning`.
    """
    y_val = np.asarray(y_val, float)
    y1_val = np.asarray(y1_val, float)
    y0_val = np.asarray(y0_val, float)
    if not (y_val.shape == y1_val.shape == y0_val.shape):
        raise ValueError(
            f"y_val, y1_val and y0_val must have one shape, got "
            f"{y_val.shape}, {y1_val.shape}, {y0_val.shape}"
        )
    for name, a in (("y_val", y_val), ("y1_val", y1_val), ("y0_val", y0_val)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, got {int(np.sum(~np.isfinite(a)))} non-finite value(s)")
    # Eq. (16) is invariant to the scale of the targets; its products are not (they under- or
    # overflow beyond about 1e+-150). Divide by a power of two near the largest value: exact in
    # floating point, so the result does not depend on the scale at all.
    top = max(float(np.max(np.abs(a), initial=0.0)) for a in (y_val, y1_val, y0_val))
    if np.isfinite(top) and top > 0:
        unit = math.ldexp(1.0, -math.frexp(top)[1])
        y_val, y1_val, y0_val = y_val * unit, y1_val * unit, y0_val * unit
    diff = (y0_val - y1_val).ravel()
    denom = float(diff @ diff)
    scale = max(float(np.linalg.norm(y1_val)), float(np.linalg.norm(y0_val)), 1e-300)
    if not np.isfinite(denom) or np.sqrt(denom) <= 1e-12 * scale:
        warnings.warn(
            "alpha* is undefined: the alpha=0 and first-step validation predictions coincide "
            "(zero denominator in eq. 16); returning alpha*=1.0",
            DegenerateAlphaWarning,
            stacklevel=2,
        )
        return 1.0
    return float(1.0 - diff @ (y_val - y1_val).ravel() / denom)


def limit_lam(lam: float, alpha: float) -> float:
    """Amplified regularisation ``lam / alpha`` of the limit, Theorem 4.5 / eq. (17)."""
    lam = check_lam(lam)
    if not 0 < alpha <= 1:
        raise ValueError(f"Theorem 4.5 needs alpha in (0, 1], got alpha={alpha!r}")
    return lam / alpha


def convergence_rate(d: ArrayLike, lam: float, alpha: float) -> float:
    """Linear rate of ``B^(tau) -> B^(inf)`` (Theorem 4.5): ``(1 - alpha) max_k a_k``.

    From eq. (12), ``B^(tau) - B^(inf) = (1 - alpha) A (B^(tau-1) - B^(inf))``, so coordinate ``k``
    contracts by ``(1 - alpha) a_k`` per step and the slowest one sets the rate.
    """
    return float((1.0 - alpha) * np.max(A_diag(d, lam)))


def eq6_path(K: ArrayLike, y: ArrayLike, lam: float, alphas: ArrayLike) -> FloatArray:
    """Training predictions ``y^(1), ..., y^(tau)`` by eq. (6) of Theorem 4.1, term by term.

    ``y^(tau) = (sum_{i=2}^{tau} alpha^(i) eta(i+1, tau) M^(tau-i+1) + eta(2, tau) M^tau) y`` with
    ``M = K (K + lam I)^-1`` formed once and its powers by :func:`numpy.linalg.matrix_power`; no
    recursion is used. ``alphas`` are ``alpha^(2..tau)``; returns shape ``(tau, n[, p])``.
    """
    lam = check_lam(lam)
    K = np.asarray(K, dtype=float)
    y = np.asarray(y, dtype=float)
    a = np.asarray(alphas, dtype=float).reshape(-1)
    # (K + lam I)^-1 K = K (K + lam I)^-1: both are functions of the symmetric K.
    M = np.linalg.solve(K + lam * np.eye(K.shape[0]), K)
    out = []
    for tau in range(1, a.shape[0] + 2):
        S = eta(a, 2, tau) * np.linalg.matrix_power(M, tau)
        for i in range(2, tau + 1):
            S = S + a[i - 2] * eta(a, i + 1, tau) * np.linalg.matrix_power(M, tau - i + 1)
        out.append(S @ y)
    return np.array(out)


def eq13_path(
    Kq: ArrayLike, d: ArrayLike, V: ArrayLike, y: ArrayLike, lam: float, alphas: ArrayLike, form: str = "printed"
) -> FloatArray:
    """Predictions ``f(x, beta^(1..tau))`` by the basis representation of eq. (13): ``(tau, m[, p])``.

    ``f(x, beta^(tau)) = p(x)^T B^(tau) z`` with ``p(x) = D^-1 V^T kappa(x, X)`` and ``z = V^T y``;
    ``Kq`` holds the rows ``kappa(x, X)^T``, ``K = V D V^T`` (eigenvectors in the columns of ``V``).

    ``form="printed"`` is eq. (13) as printed, with ``D^-1``: undefined (``inf``/``nan``) when an
    eigenvalue is zero. ``form="stable"`` uses ``D^-1 B^(tau) = (D + lam I)^-1 (alpha^(tau) I +
    (1 - alpha^(tau)) B^(tau-1))`` (eq. 12, ``B^(0) = I``; ``(D + lam I)^-1`` at ``tau = 1``),
    defined for every kernel matrix.
    """
    if form not in ("printed", "stable"):
        raise ValueError(f"form must be 'printed' or 'stable', got form={form!r}")
    lam = check_lam(lam)
    d = np.asarray(d, dtype=float)
    V = np.asarray(V, dtype=float)
    a = np.asarray(alphas, dtype=float).reshape(-1)
    z = V.T @ np.asarray(y, dtype=float)
    KqV = np.asarray(Kq, dtype=float) @ V
    B = B_diag_path(d, lam, a)
    out = []
    for tau in range(1, a.shape[0] + 2):
        if form == "printed":
            with np.errstate(divide="ignore", invalid="ignore"):
                coef = B[tau - 1] / d
        else:
            T = np.ones_like(d) if tau == 1 else a[tau - 2] + (1.0 - a[tau - 2]) * B[tau - 2]
            coef = T / (np.clip(d, 0.0, None) + lam)
        with np.errstate(invalid="ignore", over="ignore"):
            out.append(KqV @ (coef[:, None] * z if z.ndim == 2 else coef * z))
    return np.array(out)


def mobahi_path(Gq: ArrayLike, G: ArrayLike, y0: ArrayLike, c: ArrayLike) -> FloatArray:
    """Self-distillation without the ground truth in the closed form of Mobahi et al. (2020).

    Round 0 fits ``y_0`` with regularisation ``c_0``; round ``t`` fits the previous round's
    predictions on the training inputs with ``c_t``. With ``G = V D V^T`` (Gram matrix, eigenvectors
    in the columns of ``V``) and ``g_x = kappa(x, X)`` (the rows of ``Gq``), round ``t`` predicts

        ``f_t(x) = g_x^T V D^-1 (prod_{i=0}^{t} A_i) V^T y_0``,  ``A_i = D (D + c_i I)^-1``,

    derived here from their setup: the form the paper's Section 4.2 says its eq. (13) generalises
    (cited there as their eq. (47); that number and their notation are not verified here).
    Returns ``f_0, ..., f_t`` at the rows of ``Gq``, shape ``(len(c), m)``. Needs ``G`` positive
    definite (the ``D^-1``); every ``c_i`` finite and ``> 0``. Round ``t`` is the paper's step
    ``tau = t + 1`` with ``alpha = 0`` and ``lam = c_i``.
    """
    cs = [check_lam(ci, "c") for ci in np.asarray(c, dtype=float).reshape(-1).tolist()]
    if not cs:
        raise ValueError("c must hold at least one regularisation c_0, got an empty sequence")
    d, V = np.linalg.eigh(np.asarray(G, dtype=float))
    if d[0] <= 0:
        raise ValueError(f"G must be positive definite (D^-1), got smallest eigenvalue {d[0]!r}")
    P = (np.asarray(Gq, dtype=float) @ V) / d
    z = V.T @ np.asarray(y0, dtype=float)
    prod = np.cumprod([d / (d + ci) for ci in cs], axis=0)
    return np.array([P @ (prod_t * z) for prod_t in prod])


__all__ += ["eq6_path", "eq13_path", "mobahi_path"]

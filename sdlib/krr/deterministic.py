"""Deterministic equivalents of one step of self-distilled ridge regression (linear kernel).

The object is the setting of *Optimal unconstrained self-distillation in ridge regression* (Dang,
Patil & Rinaldo, 2026, arXiv:2602.17565; repository ``hhd357/optimal_self_distillation_ridge``):
Gaussian features ``x ~ N(0, Sigma)`` in ``R^p``, ``n`` training points, a fixed (deterministic)
signal ``beta_star``, ``y = x^T beta_star + noise`` with noise variance ``sigma^2``, and ridge
regression in *their* normalisation,

    beta_0(lam) = (S + lam I)^-1 X^T y / n,        S = X^T X / n,

the teacher. The pure-distillation student refits on the teacher's training predictions,
``beta_1 = (S + lam I)^-1 S beta_0``, and the student of weight ``xi`` on the teacher refits on
``xi X beta_0 + (1 - xi) y``: by linearity ``beta_xi = (1 - xi) beta_0 + xi beta_1``. With the
excess risks ``A = E||beta_0 - beta_star||_Sigma^2``, ``B = E||beta_1 - beta_star||_Sigma^2`` and
the cross term ``C = E<beta_0 - beta_star, beta_1 - beta_star>_Sigma`` (expectations over the noise)

    R(xi) = sigma^2 + (1 - xi)^2 A + xi^2 B + 2 xi (1 - xi) C,      xi* = (A - C) / (A + B - 2 C),

and the optimal risk is ``sigma^2 + (A B - C^2) / (A + B - 2 C)``. This is the notation of the
ridge paper's abstract and of its repository's figures (``R``, ``R_pd``, ``R_sd*``, ``xi*``).

Mapping to Borup & Andersen (2021): a linear kernel ``K = X X^T`` with the book's penalty
``lam_book = n * lam`` gives the same teacher (eq. 2: ``c = (K + lam_book I)^-1 y``); step 2 with
weight ``alpha`` on the ground truth (eq. 3) is the student with ``xi = 1 - alpha``, so the
optimal weight of eq. (16), with the risk as validation error, is ``alpha* = 1 - xi*``.

Deterministic equivalents (proportional limit ``n, p -> inf``, ``p / n`` fixed). The paper derives
its fourth-order equivalents by block linearisation; its text was not available to us, so this
module derives the same objects by another route, from two standard second-order facts and one
exact identity (so its equation numbers are ours, not the paper's):

1. **Effective penalty** (the fixed point of the Stieltjes transform of ``S``): ``kappa > 0``
   solves ``lam = kappa (1 - tr[Sigma (Sigma + kappa I)^-1] / n)``, and ``lam (S + lam I)^-1`` is
   equivalent to ``kappa (Sigma + kappa I)^-1`` (Dobriban & Wager 2018; for ``Sigma = I`` it is
   the Marchenko-Pastur law: :func:`mp_stieltjes`).
2. **Two penalties at once**: with ``G_i = (Sigma + kappa_i I)^-1`` and
   ``D_12 = tr(Sigma G_1 Sigma G_2) / n``, the noise-averaged cross risk of two ridge fits on the
   same data is

       K(lam_1, lam_2) = E<beta_0(lam_1) - beta_star, beta_0(lam_2) - beta_star>_Sigma
                      ~ [kappa_1 kappa_2 beta_star^T G_1 Sigma G_2 beta_star + sigma^2 D_12] / (1 - D_12)

   (:func:`cross_risk`; at ``lam_1 = lam_2`` the classical bias + variance of ridge regression).
3. **The student is a derivative of the teacher** (exact, any ``n``): ``beta_1 - beta_star =
   d/dlam [lam (beta_0(lam) - beta_star)]``, because ``(S + lam I)^-1 S = I - lam (S + lam I)^-1``
   and ``d/dlam (S + lam I)^-1 = -(S + lam I)^-2``. Hence

       A = K,   C = K + lam d_2 K,   B = K + 2 lam d_2 K + lam^2 d_1 d_2 K      (at lam_1 = lam_2 = lam)

   with ``d_i = d / d lam_i``, computed analytically (chain rule through ``dkappa/dlam =
   1 / (1 - D_11)``). In particular ``A - C = -(lam / 2) R'(lam)`` and
   ``A + B - 2 C = lam^2 d_1 d_2 K >= 0``: the sign rule ``sign(xi*) = -sign(R'(lam))`` of the
   ridge paper's abstract.

Everything is evaluated in the eigenbasis of ``Sigma`` (one ``eigh``), for a grid of ``lam``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

__all__ = [
    "OneStepDE",
    "effective_penalty",
    "mp_effective_penalty",
    "mp_stieltjes",
    "cross_risk",
    "one_step",
]

FloatArray = NDArray[np.float64]


# ---------------------------------------------------------------------------------- validation
def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got n={n!r}")
    return int(n)


def _check_lams(lam: Any, name: str = "lam") -> FloatArray:
    try:
        lams = np.atleast_1d(np.asarray(lam, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be finite numbers > 0, got {name}={lam!r}") from None
    if lams.ndim != 1 or lams.size == 0 or not np.all(np.isfinite(lams)) or np.any(lams <= 0):
        raise ValueError(f"{name} must be finite numbers > 0, got {name}={np.asarray(lam).tolist()!r}")
    return lams.copy()


def _check_sigma(sigma: Any) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a finite number >= 0, got sigma={sigma!r}") from None
    if not math.isfinite(s) or s < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got sigma={sigma!r}")
    return s


def _check_eigs(eigs: Any) -> FloatArray:
    s = np.asarray(eigs, dtype=float)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"eigs must be a non-empty 1-d array of finite numbers >= 0, got shape {s.shape} "
                         f"with min {float(np.min(s)) if s.size else None!r}")
    return s


def _spectrum(Sigma: Any, beta_star: Any) -> tuple[FloatArray, FloatArray]:
    """Eigenvalues ``s`` of ``Sigma`` and the squared coordinates ``w`` of ``beta_star`` in its eigenbasis."""
    S = np.asarray(Sigma, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] == 0:
        raise ValueError(f"Sigma must be a square p x p matrix, got Sigma of shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise ValueError("Sigma must be finite, got a Sigma with NaN or inf entries")
    asym = float(np.max(np.abs(S - S.T)))
    scale = float(np.max(np.abs(S))) or 1.0
    if asym > 1e-10 * scale:
        raise ValueError(f"Sigma must be symmetric, got max|Sigma - Sigma^T| = {asym:.3g}")
    b = np.asarray(beta_star, dtype=float)
    if b.shape != (S.shape[0],) or not np.all(np.isfinite(b)):
        raise ValueError(f"beta_star must be a finite vector of length p = {S.shape[0]}, got shape {b.shape}")
    s, V = np.linalg.eigh((S + S.T) / 2)
    if s[0] < -1e-10 * max(scale, 1.0):
        raise ValueError(f"Sigma must be positive semi-definite, got smallest eigenvalue {float(s[0]):.3g}")
    return np.clip(s, 0.0, None), (V.T @ b) ** 2


# ---------------------------------------------------------------------------------- fixed point
def effective_penalty(lam: ArrayLike, eigs: ArrayLike, n: int) -> FloatArray:
    """The effective penalty ``kappa(lam)`` of ridge regression with ``S = X^T X / n``: one per ``lam``.

    ``kappa`` is the root in ``[lam, lam + sum(eigs) / n]`` of ``kappa (1 - sum_j s_j / (s_j + kappa) / n)
    = lam`` (fact 1 of the module docstring; ``eigs`` are the eigenvalues ``s_j`` of ``Sigma``): the
    left side is ``<= lam`` at the lower end and ``>= lam`` at the upper end, and the root is unique
    for ``lam > 0``. Solved by Brent's method to a relative ``4 eps``. ``-1 / kappa`` relates to the
    Stieltjes transform of the limiting spectrum of ``S``: ``tr[(S + lam I)^-1] / p ~
    (kappa / lam) tr[(Sigma + kappa I)^-1] / p``.
    """
    lams = _check_lams(lam)
    s = _check_eigs(eigs)
    n = _check_n(n)

    def f(k: float, lam_i: float) -> float:
        return k - k * float(np.sum(s / (s + k))) / n - lam_i

    out = np.empty_like(lams)
    for i, lam_i in enumerate(lams.tolist()):
        hi = lam_i + float(np.sum(s)) / n
        if f(hi, lam_i) <= 0.0:  # only when every s_j = 0 (then kappa = lam), or by rounding at hi
            out[i] = hi
            continue
        out[i] = optimize.brentq(f, lam_i, hi, args=(lam_i,), xtol=1e-300, rtol=4 * np.finfo(float).eps,
                                 maxiter=500)
    return out


def mp_effective_penalty(lam: ArrayLike, gamma: float) -> FloatArray:
    """``kappa(lam)`` for ``Sigma = I`` and ``p / n = gamma``, in closed form.

    With every ``s_j = 1`` the fixed point is the quadratic ``kappa^2 + (1 - gamma - lam) kappa -
    lam = 0``; its positive root.
    """
    lams = _check_lams(lam)
    g = float(gamma)
    if not math.isfinite(g) or g <= 0:
        raise ValueError(f"gamma must be a finite number > 0, got gamma={gamma!r}")
    b = 1.0 - g - lams
    root = np.sqrt(b * b + 4.0 * lams)
    # the two algebraically equal forms of the root, each where it does not cancel
    return np.where(b > 0, 2.0 * lams / (b + root), (root - b) / 2.0)


def mp_stieltjes(lam: ArrayLike, gamma: float) -> FloatArray:
    """The Stieltjes transform ``m(-lam) = int dF(x) / (x + lam)`` of the Marchenko-Pastur law.

    The limit of ``tr[(S + lam I)^-1] / p`` for ``S = X^T X / n``, ``x ~ N(0, I_p)``, ``p / n ->
    gamma`` (Marchenko & Pastur 1967; the form of Dobriban & Wager 2018):
    ``m = [-(1 - gamma + lam) + sqrt((1 - gamma + lam)^2 + 4 gamma lam)] / (2 gamma lam)``.
    """
    lams = _check_lams(lam)
    g = float(gamma)
    if not math.isfinite(g) or g <= 0:
        raise ValueError(f"gamma must be a finite number > 0, got gamma={gamma!r}")
    b = 1.0 - g + lams
    root = np.sqrt(b * b + 4.0 * g * lams)
    return np.where(b > 0, 2.0 / (b + root), (root - b) / (2.0 * g * lams))


# ---------------------------------------------------------------------------------- risks
def _cross(s: FloatArray, w: FloatArray, n: int, k1: FloatArray, k2: FloatArray, sigma: float) -> FloatArray:
    g1, g2 = 1.0 / (s + k1[:, None]), 1.0 / (s + k2[:, None])
    N = np.sum(w * s * g1 * g2, axis=1)
    D = np.sum(s * s * g1 * g2, axis=1) / n
    return (k1 * k2 * N + sigma**2 * D) / (1.0 - D)


def cross_risk(Sigma: ArrayLike, beta_star: ArrayLike, n: int, lam1: ArrayLike, lam2: ArrayLike,
               sigma: float) -> FloatArray:
    """Deterministic equivalent of ``E<beta_0(lam1) - beta_star, beta_0(lam2) - beta_star>_Sigma``.

    Two ridge fits (their normalisation, ``S + lam I``) on the same data, the expectation over the
    noise (fact 2 of the module docstring). ``lam1`` and ``lam2`` broadcast to one shape (1-d).
    """
    s, w = _spectrum(Sigma, beta_star)
    n = _check_n(n)
    sigma = _check_sigma(sigma)
    l1, l2 = np.broadcast_arrays(_check_lams(lam1, "lam1"), _check_lams(lam2, "lam2"))
    return _cross(s, w, n, effective_penalty(l1, s, n), effective_penalty(l2, s, n), sigma)


@dataclass(frozen=True)
class OneStepDE:
    """Deterministic equivalents of one step of self-distillation, one entry per ``lam``.

    ``A``, ``B``, ``C`` are the excess risks of the teacher, of the pure-distillation student and
    their cross term (module docstring); ``lam`` is the ridge paper's penalty (``S + lam I``; the
    book's is ``n * lam``) and ``kappa`` the effective penalty.
    """

    lam: FloatArray
    kappa: FloatArray
    A: FloatArray
    B: FloatArray
    C: FloatArray
    sigma: float
    n: int

    @property
    def xi_star(self) -> FloatArray:
        """The optimal weight on the teacher, ``(A - C) / (A + B - 2 C)`` (the ridge paper's ``xi*``)."""
        return (self.A - self.C) / (self.A + self.B - 2.0 * self.C)

    @property
    def alpha_star(self) -> FloatArray:
        """The same optimum as the weight of the ground truth (Borup & Andersen, eq. 16): ``1 - xi*``."""
        return 1.0 - self.xi_star

    @property
    def risk_teacher(self) -> FloatArray:
        """Test risk of ridge regression (the teacher), ``sigma^2 + A``: the ridge paper's ``R``."""
        return self.sigma**2 + self.A

    @property
    def risk_distilled(self) -> FloatArray:
        """Test risk of the pure-distillation student (``xi = 1``, ``alpha = 0``), ``sigma^2 + B``: ``R_pd``."""
        return self.sigma**2 + self.B

    @property
    def risk_optimal(self) -> FloatArray:
        """Test risk of the optimally mixed student, ``sigma^2 + (A B - C^2) / (A + B - 2 C)``: ``R_sd*``."""
        return self.sigma**2 + (self.A * self.B - self.C**2) / (self.A + self.B - 2.0 * self.C)

    def risk(self, xi: ArrayLike) -> FloatArray:
        """Test risk of the student with weight ``xi`` on the teacher (``alpha = 1 - xi``), per ``lam``.

        ``xi`` is a scalar or broadcasts against ``lam``; it is a real number, not confined to [0, 1].
        """
        x = np.asarray(xi, dtype=float)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"xi must be finite, got xi={x.tolist()!r}")
        return self.sigma**2 + (1 - x) ** 2 * self.A + x**2 * self.B + 2 * x * (1 - x) * self.C


def one_step(Sigma: ArrayLike, beta_star: ArrayLike, n: int, lam: ArrayLike, sigma: float) -> OneStepDE:
    """Deterministic equivalents of ``A``, ``B``, ``C`` (hence ``xi*`` and every risk) for each ``lam``.

    ``Sigma`` (p x p, symmetric positive semi-definite) is the covariance of the features,
    ``beta_star`` (p,) the fixed signal, ``n`` the number of training points (so ``p / n`` is the
    aspect ratio), ``lam`` one penalty or a 1-d array of them in the ridge paper's normalisation
    (the book's engine takes ``n * lam``), ``sigma >= 0`` the noise level. Fact 3 of the module
    docstring: the derivatives of ``K(lam_1, lam_2)`` are analytic, through
    ``dkappa/dlam = 1 / (1 - D)``.
    """
    s, w = _spectrum(Sigma, beta_star)
    n = _check_n(n)
    sigma = _check_sigma(sigma)
    lams = _check_lams(lam)
    k = effective_penalty(lams, s, n)
    g = 1.0 / (s + k[:, None])
    # moments at kappa_1 = kappa_2 = kappa; derivatives in kappa_1 (= those in kappa_2 by symmetry)
    N0, N1, N12 = (np.sum(w * s * g**j, axis=1) * c for j, c in ((2, 1.0), (3, -1.0), (4, 1.0)))
    D0, D1, D12 = (np.sum(s * s * g**j, axis=1) / n * c for j, c in ((2, 1.0), (3, -1.0), (4, 1.0)))
    s2 = sigma**2
    P = k * k * N0 + s2 * D0
    P1 = k * N0 + k * k * N1 + s2 * D1
    P12 = N0 + 2 * k * N1 + k * k * N12 + s2 * D12
    Q, Q1, Q12 = 1.0 - D0, -D1, -D12
    K = P / Q
    K1 = (P1 * Q - P * Q1) / Q**2
    K12 = P12 / Q - 2 * P1 * Q1 / Q**2 - P * Q12 / Q**2 + 2 * P * Q1**2 / Q**3
    dk = 1.0 / Q  # dkappa / dlam
    A = K
    C = K + lams * dk * K1
    B = K + 2 * lams * dk * K1 + lams**2 * dk**2 * K12
    return OneStepDE(lam=lams, kappa=k, A=A, B=B, C=C, sigma=sigma, n=n)

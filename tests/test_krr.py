"""The closed forms of :class:`sdlib.KernelSelfDistillation` against independent oracles.

The oracle is :func:`sdlib.krr.reference.distill_refits`: every step of self-distillation refitted by
solving problem (1) in the primal (explicit feature map, LU solve of the normal equations), sharing
no code with the engine. Further independent routes: powers of ``K (K + lam I)^-1`` built here with
:func:`numpy.linalg.solve` (eq. 6), an eigendecomposition computed here (eqs. 10 and 13),
scikit-learn's :class:`~sklearn.kernel_ridge.KernelRidge` (Theorem 4.5), and scipy's scalar
minimiser of the validation error (Theorem 4.4).

Conditioning assumed by the random problems (documented once, here): inputs in ``[-1, 1]^d`` with
``d <= 4``, ``n <= 25``, ``lam`` in ``[1e-3, 1e2]`` and kernels scaled so that ``||K|| <~ 1e2``; then
``cond(K + lam I) <~ 1e5`` and primal and dual solutions agree to ``~1e-11`` relative, far inside the
tolerance ``1e-9 * max(1, max|y|, max|oracle|)``. The ``max|oracle|`` term covers weights outside
``[0, 1]``, for which ``y^(tau)`` can grow like ``|1 - alpha|^tau`` (at most ``3^5`` here).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import optimize
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import pairwise_kernels

from sdlib import KernelSelfDistillation
from sdlib.krr import reference, theory

FloatArray = NDArray[np.float64]
RTOL = 1e-9


def cauchy_kernel(x: FloatArray, z: FloatArray, gamma: float = 1.0) -> float:
    """A positive definite kernel given as a callable: ``1 / (1 + gamma ||x - z||^2)``."""
    return float(1.0 / (1.0 + gamma * np.sum((x - z) ** 2)))


@dataclass
class Problem:
    """A random self-distillation problem and the keyword arguments of each implementation."""

    kernel: str
    X: FloatArray
    y: FloatArray
    Xq: FloatArray
    lam: float
    est_kw: dict[str, Any] = field(default_factory=dict)  # KernelSelfDistillation / KernelRidge
    ref_kernel: Any = "rbf"  # reference.distill_refits(kernel=...)
    ref_kw: dict[str, Any] = field(default_factory=dict)

    def model(self, **kw: Any) -> KernelSelfDistillation:
        return KernelSelfDistillation(**self.est_kw, lam=self.lam, **kw).fit(self.X, self.y)

    def refits(self, alphas: Any, Xq: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        Xq = self.Xq if Xq is None else Xq
        return reference.distill_refits(self.X, self.y, Xq, self.lam, list(alphas), self.ref_kernel, **self.ref_kw)

    def gram(self, A: FloatArray, B: FloatArray | None = None) -> FloatArray:
        """The kernel matrix from scikit-learn directly (not through sdlib.krr.kernels)."""
        kw = dict(self.est_kw)
        kernel = kw.pop("kernel")
        if callable(kernel):
            return pairwise_kernels(A, B, metric=kernel, **kw.get("kernel_params", {}))
        return pairwise_kernels(A, B, metric=kernel, filter_params=True, **kw)

    def krr(self, lam: float) -> KernelRidge:
        kw = dict(self.est_kw)
        return KernelRidge(alpha=lam, **kw)


KERNELS = ("rbf", "laplacian", "linear", "polynomial", "callable")


@st.composite
def problems(
    draw: st.DrawFn,
    kernels: tuple[str, ...] = KERNELS,
    max_n: int = 25,
    lam_decades: tuple[float, float] = (-3.0, 2.0),
    outputs: tuple[int | None, ...] = (None, 1, 3),
) -> Problem:
    """Random problems: kernel, n <= max_n, d <= 4, lam = 10^U(decades), y of shape (n,) or (n, p)."""
    kernel = draw(st.sampled_from(kernels))
    n = draw(st.integers(3, max_n))
    d = draw(st.integers(1, 4))
    m = draw(st.integers(1, 6))
    p = draw(st.sampled_from(outputs))
    seed = draw(st.integers(0, 2**32 - 1))
    lam = 10.0 ** draw(st.floats(*lam_decades))
    y_scale = 10.0 ** draw(st.floats(-2.0, 2.0))
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, d))
    Xq = rng.uniform(-1.5, 1.5, (m, d))
    y = y_scale * rng.standard_normal((n,) if p is None else (n, p))
    if kernel == "rbf":
        kw: dict[str, Any] = {"gamma": 10.0 ** draw(st.floats(-1.0, 1.5))}
    elif kernel == "laplacian":
        kw = {"gamma": 10.0 ** draw(st.floats(-1.0, 1.0))}
    elif kernel == "linear":
        kw = {}
    elif kernel == "polynomial":
        kw = {
            "degree": draw(st.sampled_from([2, 3])),
            "gamma": 10.0 ** draw(st.floats(-1.0, 0.0)) / d,
            "coef0": draw(st.floats(0.0, 1.5)),
        }
    else:
        g = 10.0 ** draw(st.floats(-1.0, 1.0))
        return Problem(
            "callable", X, y, Xq, lam,
            est_kw={"kernel": cauchy_kernel, "kernel_params": {"gamma": g}},
            ref_kernel=partial(cauchy_kernel, gamma=g),
        )
    return Problem(kernel, X, y, Xq, lam, est_kw={"kernel": kernel, **kw}, ref_kernel=kernel, ref_kw=kw)


def alpha_args(steps: int) -> st.SearchStrategy[Any]:
    """One weight for every step or ``steps - 1`` weights, values in [-2, 3] (outside [0, 1] too)."""
    weight = st.floats(-2.0, 3.0)
    return st.one_of(weight, st.lists(weight, min_size=steps - 1, max_size=steps - 1))


def assert_oracle(actual: Any, expected: Any, y: FloatArray, what: str, rtol: float = RTOL) -> None:
    """``max |actual - expected| <= rtol * max(1, max|y|, max|expected|)`` with a readable message."""
    actual = np.asarray(actual, float)
    expected = np.asarray(expected, float)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(1.0, float(np.max(np.abs(y))), float(np.max(np.abs(expected), initial=0.0)))
    err = float(np.max(np.abs(actual - expected), initial=0.0))
    assert err <= rtol * scale, f"{what}: max abs error {err:.3e} > {rtol:.0e} * {scale:.3e}"


def powers_of_M(K: FloatArray, lam: float, y: FloatArray, tau: int) -> list[FloatArray]:
    """``[M^0 y, M^1 y, ..., M^tau y]`` with ``M = K (K + lam I)^-1 = (K + lam I)^-1 K`` (eq. 9)."""
    M = np.linalg.solve(K + lam * np.eye(K.shape[0]), K)
    out = [y]
    for _ in range(tau):
        out.append(M @ out[-1])
    return out


# ---------------------------------------------------------------------------- Theorem 4.1, eqs. (3)-(7)
@given(prob=problems(), steps=st.integers(1, 6), data=st.data())
def test_path_train_path_predict_match_refits(prob: Problem, steps: int, data: st.DataObject) -> None:
    """path (eqs. 5, 7), train_path (eq. 6) and predict agree with refits of problem (1)."""
    alpha = data.draw(alpha_args(steps))
    alphas = theory.alpha_sequence(alpha, steps)
    F_ref, Y_ref = prob.refits(alphas)
    m = prob.model(steps=steps, alpha=alpha)
    assert_oracle(m.path(prob.Xq), F_ref, prob.y, "path")
    assert_oracle(m.path(prob.Xq, steps=steps, alpha=alpha), F_ref, prob.y, "path(steps, alpha)")
    assert_oracle(m.train_path(steps=steps, alpha=alpha), Y_ref, prob.y, "train_path")
    assert_oracle(m.predict(prob.Xq), F_ref[-1], prob.y, "predict")
    assert_oracle(m.predict(prob.X), Y_ref[-1], prob.y, "predict on the training inputs")
    # A model fitted with other defaults gives the same path when steps and alpha are passed.
    other = prob.model(steps=1, alpha=0.5)
    assert_oracle(other.path(prob.Xq, steps=steps, alpha=alpha), F_ref, prob.y, "path of another fit")


@given(prob=problems(), steps=st.integers(1, 7), data=st.data())
def test_theorem41_eq6_powers_of_K_K_lam_inv(prob: Problem, steps: int, data: st.DataObject) -> None:
    """Eq. (6): y^(tau) = sum_k c_k (K (K + lam I)^-1)^k y, c_k from theory.path_coefficients."""
    alphas = np.asarray(data.draw(st.lists(st.floats(-2.0, 3.0), min_size=steps - 1, max_size=steps - 1)))
    _, Y_ref = prob.refits(alphas)
    K = prob.gram(prob.X)
    My = powers_of_M(K, prob.lam, prob.y, steps)
    for tau in range(1, steps + 1):
        c = theory.path_coefficients(alphas[: tau - 1], tau)
        assert c.shape == (tau + 1,) and c[0] == 0.0
        y_tau = sum(c[k] * My[k] for k in range(tau + 1))
        assert_oracle(y_tau, Y_ref[tau - 1], prob.y, f"eq. (6) at tau={tau}")


@given(prob=problems(), steps=st.integers(2, 6), data=st.data())
def test_theorem41_eq7_mixture_of_first_fit_and_alpha0_step(prob: Problem, steps: int, data: st.DataObject) -> None:
    """Eq. (7): f^(tau) = alpha^(tau) f^(1) + (1 - alpha^(tau)) f^(tau)_{alpha^(tau)=0}."""
    alphas = np.asarray(data.draw(st.lists(st.floats(-2.0, 3.0), min_size=steps - 1, max_size=steps - 1)))
    m = prob.model()
    F = m.path(prob.Xq, steps=steps, alpha=alphas)
    for tau in range(2, steps + 1):
        a = alphas[tau - 2]
        zero_last = np.concatenate([alphas[: tau - 2], [0.0]])  # same history, alpha^(tau) = 0
        F0_ref, _ = prob.refits(zero_last)
        rhs = a * F0_ref[0] + (1.0 - a) * F0_ref[-1]
        assert_oracle(F[tau - 1], rhs, prob.y, f"eq. (7) at tau={tau}")


# ---------------------------------------------------------------------------- Section 4.2, eqs. (10), (13)
def _eig(K: FloatArray) -> tuple[FloatArray, FloatArray]:
    d, V = np.linalg.eigh(K)
    return d, V


@given(
    prob=problems(kernels=("rbf", "laplacian", "callable"), max_n=15, lam_decades=(-2.0, 2.0)),
    steps=st.integers(1, 6),
    data=st.data(),
)
def test_eq10_and_eq13_basis_representation(prob: Problem, steps: int, data: st.DataObject) -> None:
    """Eq. (10) y^(tau) = V B V^T y and eq. (13) f(x) = p(x)^T B z with p(x) = D^-1 V^T kappa(X, x).

    ``V, D`` come from numpy's eigendecomposition here; ``B`` from the engine's ``B_diag``. Eq. (13)
    divides by the eigenvalues of ``K``, so it is checked on draws whose ``K`` is well conditioned:
    ``d_min >= 1e-6 d_max`` (strictly positive definite kernels, few points).
    """
    alpha = data.draw(alpha_args(steps))
    m = prob.model()
    B = m.B_diag(steps=steps, alpha=alpha)
    K = prob.gram(prob.X)
    d, V = _eig(K)
    np.testing.assert_allclose(m.eigenvalues_, np.clip(d, 0, None), rtol=0, atol=1e-12 * d.max())
    F_ref, Y_ref = prob.refits(theory.alpha_sequence(alpha, steps))
    y2 = prob.y.reshape(len(prob.y), -1)
    z = V.T @ y2  # (13): z = V^T y
    for tau in range(steps):
        y_tau = V @ (B[tau][:, None] * z)  # (10)
        assert_oracle(y_tau.reshape(prob.y.shape), Y_ref[tau], prob.y, f"eq. (10) at tau={tau + 1}")
    assume(d.min() >= 1e-6 * d.max())
    P = (V.T @ prob.gram(prob.X, prob.Xq)) / d[:, None]  # columns p(x) = D^-1 V^T kappa(X, x)
    for tau in range(steps):
        f = P.T @ (B[tau][:, None] * z)  # (13): p(x)^T B z
        assert_oracle(f.reshape(F_ref[tau].shape), F_ref[tau], prob.y, f"eq. (13) at tau={tau + 1}")


# ---------------------------------------------------------------------------- grid (eq. 13, many lam)
@settings(max_examples=20)
@given(
    prob=problems(max_n=15),
    lams=st.lists(st.floats(-3.0, 2.0), min_size=1, max_size=3),
    alphas=st.lists(st.floats(-2.0, 3.0), min_size=1, max_size=3),
    steps=st.integers(1, 4),
)
def test_grid_matches_separate_fits(prob: Problem, lams: list[float], alphas: list[float], steps: int) -> None:
    """``grid`` (one eigendecomposition) equals a separate fit for every lam, and the oracle."""
    lam_values = [10.0**e for e in lams]
    G = prob.model().grid(prob.Xq, lam_values, alphas, steps)
    tail = prob.y.shape[1:]
    assert G.shape == (len(lam_values), len(alphas), steps, prob.Xq.shape[0]) + tail
    for i, lam in enumerate(lam_values):
        single = KernelSelfDistillation(**prob.est_kw, lam=lam).fit(prob.X, prob.y)
        for j, alpha in enumerate(alphas):
            expected = single.path(prob.Xq, steps=steps, alpha=alpha)
            assert_oracle(G[i, j], expected, prob.y, f"grid[lam={lam:.3g}, alpha={alpha:.3g}] vs a separate fit")
    # and one cell against the brute-force oracle
    F_ref, _ = reference.distill_refits(
        prob.X, prob.y, prob.Xq, lam_values[-1], [alphas[-1]] * (steps - 1), prob.ref_kernel, **prob.ref_kw
    )
    assert_oracle(G[-1, -1], F_ref, prob.y, "grid vs refits")


# ---------------------------------------------------------------------------- Theorem 4.5, eq. (17)
@given(prob=problems(), alpha=st.floats(0.01, 1.0))
def test_theorem45_limit_is_krr_with_lam_over_alpha(prob: Problem, alpha: float) -> None:
    """f(x, beta^(inf)) = KRR with lam/alpha (eq. 17) = alpha f^(1) + (1 - alpha) f(x, gamma^(inf))."""
    m = prob.model()
    L = m.limit(prob.Xq, alpha=alpha)
    krr_inf = prob.krr(prob.lam / alpha).fit(prob.X, prob.y)
    assert_oracle(L, krr_inf.predict(prob.Xq), prob.y, "limit vs KernelRidge(alpha=lam/alpha)")
    # The theorem's form: gamma^(inf) is KRR with lam on the targets y^(inf) = K (K + lam/alpha I)^-1 y.
    y_inf = krr_inf.predict(prob.X)
    f1 = prob.krr(prob.lam).fit(prob.X, prob.y).predict(prob.Xq)
    f_gamma = prob.krr(prob.lam).fit(prob.X, y_inf).predict(prob.Xq)
    assert_oracle(L, alpha * f1 + (1 - alpha) * f_gamma, prob.y, "limit vs alpha f^(1) + (1 - alpha) f(gamma^inf)")


@settings(max_examples=10)
@given(prob=problems(max_n=12), alpha=st.floats(0.02, 1.0))
def test_theorem45_limit_equals_2000_engine_steps(prob: Problem, alpha: float) -> None:
    """The limit equals 2,000 explicit steps: (1 - alpha)^2000 <= 0.98^2000 ~ 3e-18."""
    m = prob.model()
    F = m.path(prob.Xq, steps=2000, alpha=alpha)
    assert_oracle(m.limit(prob.Xq, alpha=alpha), F[-1], prob.y, "limit vs path(steps=2000)")
    # the training predictions converge to eq. (17) as well
    Y = m.train_path(steps=2000, alpha=alpha)
    y_inf = prob.krr(prob.lam / alpha).fit(prob.X, prob.y).predict(prob.X)
    assert_oracle(Y[-1], y_inf, prob.y, "y^(2000) vs eq. (17)")


@settings(max_examples=4)
@given(prob=problems(kernels=("rbf", "linear", "polynomial"), max_n=8, outputs=(None, 2)), alpha=st.floats(0.05, 1.0))
def test_theorem45_limit_equals_2000_refits(prob: Problem, alpha: float) -> None:
    """The limit equals 2,000 brute-force refits of problem (1) (small problems: 2,000 LU solves)."""
    F_ref, _ = prob.refits([alpha] * 1999)
    assert_oracle(prob.model().limit(prob.Xq, alpha=alpha), F_ref[-1], prob.y, "limit vs 2000 refits")


@given(prob=problems())
def test_theorem45_alpha0_collapses_to_zero(prob: Problem) -> None:
    """alpha = 0: y^(inf) and f(x, beta^(inf)) are the zero solution (Section 4.4)."""
    L = prob.model().limit(prob.Xq, alpha=0.0)
    assert L.shape == (prob.Xq.shape[0],) + prob.y.shape[1:]
    assert np.all(L == 0.0)


@settings(max_examples=20)
@given(
    prob=problems(kernels=("rbf", "laplacian", "linear", "polynomial"), max_n=15, outputs=(None,)),
    alpha=st.floats(0.05, 0.95),
)
def test_theorem45_linear_convergence_at_rate(prob: Problem, alpha: float) -> None:
    """||y^(tau) - y^(inf)|| contracts by at most theory.convergence_rate per step, and by that rate
    asymptotically when y has a component along the top eigenvector (Theorem 4.5: linear rate)."""
    m = prob.model()
    rate = theory.convergence_rate(m.eigenvalues_, prob.lam, alpha)
    y_inf = prob.krr(prob.lam / alpha).fit(prob.X, prob.y).predict(prob.X)
    Y = m.train_path(steps=400, alpha=alpha)
    err = np.linalg.norm(Y - y_inf, axis=1)
    # Both sides carry round-off up to ~cond(K + lam I) * eps * max|y| <~ 1e-11 max|y|: ratios are
    # only meaningful while the error is well above it.
    floor = 1e-6 * max(1.0, float(np.abs(prob.y).max()))
    ok = (err[:-1] > floor) & (err[1:] > floor)
    ratios = err[1:][ok] / err[:-1][ok]
    assume(ratios.size > 0)
    assert np.all(ratios <= rate * (1 + 1e-4) + 1e-9), f"ratio {ratios.max()} > rate {rate}"


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_theorem45_asymptotic_ratio_equals_rate(alpha: float, rng: np.random.Generator) -> None:
    """On a kernel with a well separated top eigenvalue (rbf, small gamma: K ~ a rank-one matrix of
    ones), the ratio of successive errors tends to theory.convergence_rate = (1 - alpha) max_k a_k."""
    X = rng.uniform(-1, 1, (20, 2))
    y = 1.0 + rng.standard_normal(20)  # a visible component along the top eigenvector (~ ones)
    lam = 2.0
    m = KernelSelfDistillation(gamma=0.05, lam=lam).fit(X, y)
    d = np.linalg.eigvalsh(pairwise_kernels(X, metric="rbf", gamma=0.05))
    a = d / (d + lam)
    assert (a[-1] - a[-2]) / a[-1] > 0.5  # the separation the test relies on
    rate = theory.convergence_rate(m.eigenvalues_, lam, alpha)
    assert abs(rate - (1 - alpha) * a[-1]) <= 1e-12
    y_inf = KernelRidge(alpha=lam / alpha, kernel="rbf", gamma=0.05).fit(X, y).predict(X)
    err = np.linalg.norm(m.train_path(steps=6, alpha=alpha) - y_inf, axis=1)
    # the other eigen-coordinates die out relatively like (a_2 / a_1)^tau < 0.25^tau; after six
    # steps the ratio matches the rate to ~1e-6 while the error is still far above round-off
    assert err[-1] > 1e-8 * np.linalg.norm(y)
    assert abs(err[-1] / err[-2] - rate) <= 1e-4 * rate


# ---------------------------------------------------------------------------- Theorem 4.4, eq. (16), Algorithm 1
@st.composite
def validation_problems(draw: st.DrawFn) -> tuple[Problem, FloatArray, FloatArray, int]:
    """A problem with validation data ``y_val = g(X_val) + noise`` for a smooth g shared with y."""
    prob = draw(problems(kernels=("rbf", "laplacian", "polynomial", "linear"), max_n=20, lam_decades=(-2.0, 1.0)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m_val = draw(st.integers(3, 12))
    d = prob.X.shape[1]
    w = rng.standard_normal(d)
    X_val = rng.uniform(-1.0, 1.0, (m_val, d))
    shape = (prob.y.shape[1],) if prob.y.ndim == 2 else ()
    g = np.sin(2 * prob.X @ w)
    prob.y = (g.reshape(-1, *[1] * len(shape)) + 0.3 * rng.standard_normal(prob.y.shape)) * 1.0
    y_val = np.sin(2 * X_val @ w).reshape(-1, *[1] * len(shape)) + 0.3 * rng.standard_normal((m_val,) + shape)
    steps = draw(st.integers(2, 5))
    return prob, X_val, y_val, steps


def _denominator_ok(prob: Problem, X_val: FloatArray, y_val: FloatArray, alphas: FloatArray) -> bool:
    """Eq. (16) is well conditioned at every step: ||y0~ - y1~||^2 >= 1e-3 ||y~ - y1~||^2 (refits)."""
    for tau in range(2, len(alphas) + 2):
        F, _ = reference.distill_refits(
            prob.X, prob.y, X_val, prob.lam, list(alphas[: tau - 2]) + [0.0], prob.ref_kernel, **prob.ref_kw
        )
        den = np.sum((F[-1] - F[0]) ** 2)
        if not den >= 1e-3 * np.sum((y_val - F[0]) ** 2) or not den > 1e-20:
            return False
    return True


def _quadratic_vertex_from_refits(
    prob: Problem, X_val: FloatArray, y_val: FloatArray, history: list[float]
) -> float:
    """argmin over alpha of the step's validation error, which is a quadratic in alpha: fit it
    exactly through refits at alpha = -1, 0, 1 and return the vertex (independent of eq. 16)."""
    errs = []
    for a in (-1.0, 0.0, 1.0):
        F, _ = reference.distill_refits(prob.X, prob.y, X_val, prob.lam, history + [a], prob.ref_kernel, **prob.ref_kw)
        errs.append(np.sum((y_val - F[-1]) ** 2))
    e_m, e_0, e_p = errs
    curvature = (e_p + e_m - 2 * e_0) / 2
    slope = (e_p - e_m) / 2
    return float(-slope / (2 * curvature))


@settings(max_examples=20)
@given(case=validation_problems(), clip=st.booleans())
def test_theorem44_optimal_alphas_vs_scipy_minimiser(case: tuple, clip: bool) -> None:
    """Algorithm 1 with eq. (16) equals scipy's minimiser of the validation error of refits (1e-6),
    and the vertex of the exact quadratic through three refits (1e-8); clip=True stays in [0, 1]."""
    prob, X_val, y_val, steps = case
    m = prob.model()
    a_star = m.optimal_alphas(X_val, y_val, steps=steps, clip=clip)
    assert a_star.shape == (steps - 1,) and np.all(np.isfinite(a_star))
    assume(_denominator_ok(prob, X_val, y_val, a_star))
    a_num = reference.alpha_star_numerical(
        prob.X, prob.y, X_val, y_val, prob.lam, steps, prob.ref_kernel, clip=clip, **prob.ref_kw
    )
    np.testing.assert_allclose(a_star, a_num, rtol=1e-6, atol=1e-6)
    if clip:
        assert np.all((a_star >= 0) & (a_star <= 1))
    else:
        for tau in range(2, steps + 1):
            vertex = _quadratic_vertex_from_refits(prob, X_val, y_val, list(a_star[: tau - 2]))
            assert abs(a_star[tau - 2] - vertex) <= 1e-8 * max(1.0, abs(vertex)), (tau, a_star, vertex)


def test_theorem44_closed_form_vs_dense_grid(rng: np.random.Generator) -> None:
    """alpha*(tau) sits within one grid spacing of the minimum of a dense grid of refits, and its
    validation error is no larger than the grid's best (Theorem 4.4, multi-output: Frobenius)."""
    X = np.linspace(0, 1, 11)[:, None]
    y = np.column_stack([np.sin(2 * np.pi * X[:, 0]), np.cos(2 * np.pi * X[:, 0])]) + 0.5 * rng.standard_normal((11, 2))
    X_val = np.linspace(0, 1, 41)[:, None]
    y_val = np.column_stack([np.sin(2 * np.pi * X_val[:, 0]), np.cos(2 * np.pi * X_val[:, 0])])
    lam, steps = 0.2, 4
    m = KernelSelfDistillation(gamma=80.0, lam=lam).fit(X, y)
    a_star = m.optimal_alphas(X_val, y_val, steps=steps)
    grid = np.linspace(-3.0, 4.0, 1401)  # spacing 5e-3
    Phi, Phiv = reference.feature_map(X, X_val, "rbf", gamma=80.0)
    y_prev = Phi @ reference.solve_problem1(Phi, y, y, 1.0, lam)
    for tau in range(2, steps + 1):
        errs = np.array(
            [np.sum((y_val - Phiv @ reference.solve_problem1(Phi, y, y_prev, a, lam)) ** 2) for a in grid]
        )
        a = a_star[tau - 2]
        assert grid[0] < a < grid[-1]
        assert abs(grid[np.argmin(errs)] - a) <= grid[1] - grid[0]
        err_star = np.sum((y_val - Phiv @ reference.solve_problem1(Phi, y, y_prev, a, lam)) ** 2)
        assert err_star <= errs.min() * (1 + 1e-12)
        y_prev = Phi @ reference.solve_problem1(Phi, y, y_prev, a, lam)
    # the footnote-11 observation that alpha* may leave [0, 1] is about the paper's data; here we
    # only require the unclipped values to be what clip=True clips, step by step
    clipped = m.optimal_alphas(X_val, y_val, steps=2, clip=True)
    assert clipped[0] == np.clip(a_star[0], 0.0, 1.0)


@settings(max_examples=15)
@given(case=validation_problems())
def test_optimal_path_equals_optimal_alphas_then_path(case: tuple) -> None:
    """``optimal_path`` (Algorithm 1 in one pass) equals ``optimal_alphas`` followed by ``path``."""
    prob, X_val, y_val, steps = case
    m = prob.model()
    a_star = m.optimal_alphas(X_val, y_val, steps=steps)
    a2, F = m.optimal_path(prob.Xq, X_val, y_val, steps=steps)
    np.testing.assert_array_equal(a2, a_star)
    assert_oracle(F, m.path(prob.Xq, steps=steps, alpha=a_star), prob.y, "optimal_path")


def test_theorem44_multi_output_is_frobenius(rng: np.random.Generator) -> None:
    """For y of shape (n, p), alpha* minimises the Frobenius validation error; p = 1 and (n,) agree."""
    X = rng.uniform(-1, 1, (15, 2))
    Y = rng.standard_normal((15, 3))
    X_val = rng.uniform(-1, 1, (9, 2))
    Y_val = rng.standard_normal((9, 3))
    m = KernelSelfDistillation(gamma=2.0, lam=0.1).fit(X, Y)
    a_star = m.optimal_alphas(X_val, Y_val, steps=4)
    a_num = reference.alpha_star_numerical(X, Y, X_val, Y_val, 0.1, 4, "rbf", gamma=2.0)
    np.testing.assert_allclose(a_star, a_num, rtol=1e-6, atol=1e-6)
    # p = 1 given as (n,) and as (n, 1) gives one answer
    a_1d = KernelSelfDistillation(gamma=2.0, lam=0.1).fit(X, Y[:, 0]).optimal_alphas(X_val, Y_val[:, 0], steps=4)
    a_2d = KernelSelfDistillation(gamma=2.0, lam=0.1).fit(X, Y[:, :1]).optimal_alphas(X_val, Y_val[:, :1], steps=4)
    np.testing.assert_allclose(a_1d, a_2d, rtol=1e-12)
    assert not np.allclose(a_1d, a_star)  # the other outputs matter


@pytest.mark.parametrize("clip", [False, True])
def test_theorem44_degenerate_far_validation_points_warn_not_nan(clip: bool, rng: np.random.Generator) -> None:
    """Validation points where the kernel vanishes: every alpha predicts 0 there, eq. (16) has a zero
    denominator; the documented answer is alpha* = 1 with a DegenerateAlphaWarning, never NaN."""
    X = rng.uniform(0, 1, (10, 1))
    y = rng.standard_normal(10)
    X_val = np.full((4, 1), 1e3)  # exp(-80 * 1e6) == 0 in float64
    m = KernelSelfDistillation(gamma=80.0, lam=0.2).fit(X, y)
    with pytest.warns(theory.DegenerateAlphaWarning, match="eq. 16"):
        a = m.optimal_alphas(X_val, np.ones(4), steps=3, clip=clip)
    np.testing.assert_array_equal(a, [1.0, 1.0])


def test_theorem44_degenerate_zero_targets_warn_not_nan() -> None:
    """y = 0: y^(1) = 0 is a fixed point of every step, so the alpha = 0 and first-step predictions
    coincide; alpha* is the documented 1.0 with a warning."""
    X = np.linspace(0, 1, 8)[:, None]
    m = KernelSelfDistillation(gamma=10.0, lam=0.5).fit(X, np.zeros(8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = m.optimal_alphas(X, np.ones(8), steps=4)
    assert [w.category for w in caught] == [theory.DegenerateAlphaWarning] * 3
    np.testing.assert_array_equal(a, [1.0, 1.0, 1.0])


def test_theorem44_optimal_alpha_may_leave_unit_interval(rng: np.random.Generator) -> None:
    """alpha* is a real number (footnote 9): with validation targets that are twice the training
    signal, the best mixture extrapolates beyond alpha = 1, and scipy agrees."""
    X = np.linspace(-1, 1, 20)[:, None]
    y = np.sin(3 * X[:, 0])
    X_val = np.linspace(-1, 1, 15)[:, None]
    y_val = 2.0 * np.sin(3 * X_val[:, 0])
    m = KernelSelfDistillation(gamma=5.0, lam=1.0).fit(X, y)
    a = m.optimal_alphas(X_val, y_val, steps=2)
    def val_err(t: float) -> float:  # refits of problem (1), not the engine
        F, _ = reference.distill_refits(X, y, X_val, 1.0, [t], "rbf", gamma=5.0)
        return float(np.sum((y_val - F[-1]) ** 2))

    res = optimize.minimize_scalar(val_err, bracket=(-10, 10), tol=1e-12)
    assert a[0] > 1.0
    assert abs(a[0] - res.x) <= 1e-6 * max(1.0, abs(res.x))


# ---------------------------------------------------------------------------- blocked scans of K
@settings(max_examples=15)
@given(prob=problems(outputs=(None, 1)), block=st.integers(1, 7), steps=st.integers(1, 5), data=st.data())
def test_blocked_gram_checks_match_refits(prob: Problem, block: int, steps: int, data: st.DataObject) -> None:
    """``fit`` checks K for symmetry and finiteness in row blocks (``sdlib.krr.estimator._BLOCK`` rows, 512 by
    default, so the random problems above use one block). With tiny blocks the multi-block scan
    runs on the same small problems: it must accept every symmetric K, and the path must still
    match the refits. (The per-step solves and the blocked Cholesky: tests/test_krr_threads.py.)"""
    import sdlib.krr.estimator as krr

    alpha = data.draw(alpha_args(steps))
    F_ref, Y_ref = prob.refits(theory.alpha_sequence(alpha, steps))
    saved = krr._BLOCK
    try:
        krr._BLOCK = block
        m = prob.model()
        F = m.path(prob.Xq, steps=steps, alpha=alpha)
        Y = m.train_path(steps=steps, alpha=alpha)
    finally:
        krr._BLOCK = saved
    assert_oracle(F, F_ref, prob.y, f"path with blocks of {block}")
    assert_oracle(Y, Y_ref, prob.y, f"train_path with blocks of {block}")


def test_path_at_n_above_one_block(rng: np.random.Generator) -> None:
    """n = 1,100 > 512: the default blocked solves against eq. (5) solved here step by step with a
    dense LU of K + lam I (numpy.linalg.solve), four steps with alphas inside and outside [0, 1]."""
    n, lam, gamma = 1100, 0.05, 3.0
    X = rng.uniform(-1, 1, (n, 2))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.standard_normal(n)
    Xq = rng.uniform(-1, 1, (5, 2))
    alphas = [0.3, -0.5, 1.5]
    K = pairwise_kernels(X, metric="rbf", gamma=gamma)
    Kq = pairwise_kernels(Xq, X, metric="rbf", gamma=gamma)
    Kl = K + lam * np.eye(n)
    c = np.linalg.solve(Kl, y)
    F_exp, Y_exp = [Kq @ c], [K @ c]
    for a in alphas:
        c = np.linalg.solve(Kl, a * y + (1 - a) * Y_exp[-1])
        F_exp.append(Kq @ c)
        Y_exp.append(K @ c)
    m = KernelSelfDistillation(gamma=gamma, lam=lam).fit(X, y)
    # cond(K + lam I) ~ n / lam ~ 2e4 here: 1e-9 relative is still ample
    assert_oracle(m.path(Xq, steps=4, alpha=alphas), np.array(F_exp), y, "path at n=1100")
    assert_oracle(m.train_path(steps=4, alpha=alphas), np.array(Y_exp), y, "train_path at n=1100")

"""Spectral filters (:mod:`sdlib.krr.spectral`) against independent routes.

* A filter's predictions against refits of problem (1) in the primal (self-distillation,
  :func:`sdlib.krr.reference.distill_refits`) and against scikit-learn's
  :class:`~sklearn.kernel_ridge.KernelRidge` (plain kernel ridge regression at any ``lam``).
* The oracle filter against a least-squares problem built here from numpy's eigendecomposition of
  scikit-learn's kernel matrix and solved by :func:`scipy.linalg.lstsq` (another LAPACK driver),
  and against every filter we can name (it must be at least as good).
* The searches over ``lam`` and fixed ``alpha`` against separate fits.

Eq. (13) divides by the eigenvalues of ``K``, so the random problems keep ``K`` well conditioned
(few points, RBF/Laplacian kernels, ``d_min >= 1e-6 d_max``): predictions agree to ``1e-8`` of the
targets' scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import linalg
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import pairwise_kernels

from sdlib import KernelSelfDistillation
from sdlib.krr import joint, reference
from sdlib.krr.spectral import SpectralFilters

FloatArray = NDArray[np.float64]
TOL = 1e-8


@dataclass
class Case:
    X: FloatArray
    y: FloatArray
    Xq: FloatArray
    yq: FloatArray
    lam: float
    kernel: str
    gamma: float

    def model(self, lam: float | None = None) -> KernelSelfDistillation:
        return KernelSelfDistillation(kernel=self.kernel, gamma=self.gamma,
                                      lam=self.lam if lam is None else lam).fit(self.X, self.y)

    def scale(self) -> float:
        return max(1.0, float(np.abs(self.y).max()))


@st.composite
def cases(draw: st.DrawFn, outputs: tuple[int | None, ...] = (None, 3)) -> Case:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, d, m = draw(st.integers(3, 12)), draw(st.integers(1, 3)), draw(st.integers(2, 30))
    p = draw(st.sampled_from(outputs))
    X, Xq = rng.uniform(-1, 1, (n, d)), rng.uniform(-1, 1, (m, d))
    w = rng.standard_normal((d, 1 if p is None else p))
    y = np.sin(2 * X @ w) + 0.3 * rng.standard_normal((n, w.shape[1]))
    yq = np.sin(2 * Xq @ w) + 0.3 * rng.standard_normal((m, w.shape[1]))
    if p is None:
        y, yq = y[:, 0], yq[:, 0]
    kernel = draw(st.sampled_from(["rbf", "laplacian"]))
    case = Case(X, y, Xq, yq, 10.0 ** draw(st.floats(-2.0, 0.5)), kernel, 10.0 ** draw(st.floats(0.0, 1.5)))
    d_K = np.linalg.eigvalsh(pairwise_kernels(X, metric=kernel, gamma=case.gamma))
    assume(d_K.min() >= 1e-6 * d_K.max())
    return case


@given(case=cases(), steps=st.integers(1, 6), data=st.data())
def test_distillation_filter_predicts_like_refits(case: Case, steps: int, data: st.DataObject) -> None:
    """The filter of tau steps (diagonal of B^(tau)) predicts f(x, beta^(tau)) (eq. 13) = refits."""
    alphas = data.draw(st.lists(st.floats(-2.0, 3.0), min_size=steps - 1, max_size=steps - 1))
    S = SpectralFilters(case.model())
    F_ref, Y_ref = reference.distill_refits(case.X, case.y, case.Xq, case.lam, alphas, case.kernel, gamma=case.gamma)
    h = S.distillation(alphas, steps)
    np.testing.assert_allclose(S.at(case.Xq).predict(h), F_ref[-1], rtol=0, atol=TOL * case.scale() * 3**steps)
    np.testing.assert_allclose(S.at(case.X).predict(h), Y_ref[-1], rtol=0, atol=TOL * case.scale() * 3**steps)
    # The filter is eq. (6)'s polynomial in a = d / (d + lam): sum_k c_k a^k.
    a = S.d / (S.d + case.lam)
    c = joint.coefficients(alphas)
    np.testing.assert_allclose(h, sum(c[k] * a ** (k + 1) for k in range(steps)), rtol=1e-9, atol=1e-12 * 3**steps)


@given(case=cases(), lam_exp=st.floats(-3.0, 1.0))
def test_krr_filter_predicts_like_kernel_ridge(case: Case, lam_exp: float) -> None:
    """The filter d / (d + lam') of a model fitted with another lam predicts KernelRidge(alpha=lam')."""
    lam = 10.0**lam_exp
    S = SpectralFilters(case.model())
    expected = KernelRidge(alpha=lam, kernel=case.kernel, gamma=case.gamma).fit(case.X, case.y).predict(case.Xq)
    np.testing.assert_allclose(S.at(case.Xq).predict(S.krr(lam)), expected, rtol=0, atol=TOL * case.scale())


@settings(max_examples=12)
@given(case=cases(), data=st.data())
def test_oracle_filter_is_the_least_squares_minimum(case: Case, data: st.DataObject) -> None:
    """The oracle's error equals the minimum of a least-squares problem built here, and no KRR,
    self-distillation or perturbed filter has a smaller error."""
    S = SpectralFilters(case.model())
    at = S.at(case.Xq, case.yq)
    h = at.oracle()
    err = at.error(h)
    # The filter is diagonal in the model's eigenbasis, which is unique only up to rotations within a
    # repeated eigenvalue: take that basis, after checking it diagonalises the kernel matrix built here.
    K = pairwise_kernels(case.X, metric=case.kernel, gamma=case.gamma)
    d, V = S.d, S.V
    np.testing.assert_allclose(K @ V, V * d, rtol=0, atol=1e-10 * max(1.0, float(np.abs(K).max())))
    y2, yq2 = case.y.reshape(len(case.y), -1), case.yq.reshape(len(case.yq), -1)
    P = pairwise_kernels(case.Xq, case.X, metric=case.kernel, gamma=case.gamma) @ V
    Q = np.concatenate([P * (V.T @ y2[:, j] / d) for j in range(y2.shape[1])])  # rows: output-major
    target = yq2.T.reshape(-1)
    # Same problem, other route: columns scaled to unit norm, pivoted QR (gelsy), same cut-off.
    norms = np.linalg.norm(Q, axis=0)
    sol, *_ = linalg.lstsq(Q / norms, target, cond=at.rcond, lapack_driver="gelsy")
    err_ref = float(np.sum((Q @ (sol / norms) - target) ** 2))
    total = float(np.sum(yq2**2))
    assert abs(err - err_ref) <= 1e-6 * err_ref + 1e-9 * total, (err, err_ref)
    # A stationary point: the normal equations of the column-scaled problem hold to round-off, which
    # grows with the size of the solution. They hold on the directions the cut-off keeps: along
    # singular directions below rcond the least-squares solution leaves a gradient by design.
    Qs, g = Q / norms, h * norms
    grad = Qs.T @ (Qs @ g - target)
    grad = grad[S.keep]  # directions with d_k ~ 0 have filter 0 by definition
    _, sv, Vt = np.linalg.svd(Qs[:, S.keep], full_matrices=False)
    kept = Vt[sv > at.rcond * sv[0]] @ grad
    scale = np.linalg.norm(Qs) * (np.linalg.norm(target) + np.linalg.norm(Qs) * np.linalg.norm(g))
    assert np.linalg.norm(kept) <= 1e-9 * scale, (np.linalg.norm(kept), scale)
    steps = data.draw(st.integers(1, 5))
    alphas = data.draw(st.lists(st.floats(-2.0, 3.0), min_size=steps - 1, max_size=steps - 1))
    others = [S.krr(10.0 ** data.draw(st.floats(-3.0, 1.0))), S.distillation(alphas, steps),
              h + 1e-3 * np.random.default_rng(0).standard_normal(h.shape)]
    for other in others:
        assert err <= at.error(other) * (1 + 1e-10) + 1e-12 * total


@settings(max_examples=15)
@given(case=cases())
def test_best_lam_and_best_fixed_alpha_match_separate_fits(case: Case) -> None:
    """best_lam: the smallest error of separate KernelRidge fits; best_fixed_alpha: of separate paths."""
    lams = np.geomspace(1e-3, 3.0, 7)
    S = SpectralFilters(case.model())
    at = S.at(case.Xq, case.yq)
    lam, err = S.best_lam(lams, at)
    errs = [np.sum((KernelRidge(alpha=v, kernel=case.kernel, gamma=case.gamma).fit(case.X, case.y).predict(case.Xq)
                    - case.yq) ** 2) for v in lams]
    assert abs(err - min(errs)) <= 1e-8 * max(1.0, min(errs))
    assert lam == lams[int(np.argmin(errs))] or abs(errs[int(np.argmin(errs))] - errs[list(lams).index(lam)]) <= 1e-8
    alphas = np.linspace(0.0, 1.0, 5)
    a, err_a = S.best_fixed_alpha(alphas, 4, at)
    m = case.model()
    errs_a = [np.sum((m.path(case.Xq, steps=4, alpha=v)[-1] - case.yq) ** 2) for v in alphas]
    assert abs(err_a - min(errs_a)) <= 1e-8 * max(1.0, min(errs_a))


def test_rank_deficient_kernel_drops_null_directions(rng: np.random.Generator) -> None:
    """A linear kernel on 2 features and 9 points has rank 2: seven eigenvalues are round-off. They
    are dropped (filter 0), and the KRR filter still predicts KernelRidge; the oracle stays finite."""
    X, Xq = rng.uniform(-1, 1, (9, 2)), rng.uniform(-1, 1, (6, 2))
    y = X @ [1.0, -2.0] + 0.1 * rng.standard_normal(9)
    S = SpectralFilters(KernelSelfDistillation(kernel="linear", lam=0.3).fit(X, y))
    assert S.keep.sum() == 2
    expected = KernelRidge(alpha=0.7, kernel="linear").fit(X, y).predict(Xq)
    np.testing.assert_allclose(S.at(Xq).predict(S.krr(0.7)), expected, atol=1e-10)
    h = S.at(Xq, Xq @ [1.0, -2.0]).oracle()
    assert np.all(np.isfinite(h)) and np.all(h[~S.keep] == 0)


def test_bad_input_is_named() -> None:
    X = np.linspace(0, 1, 5)[:, None]
    S = SpectralFilters(KernelSelfDistillation(gamma=3.0, lam=0.1).fit(X, np.sin(X[:, 0])))
    with pytest.raises(ValueError, match="y must have 5 rows"):
        S.at(X, np.ones(4))
    with pytest.raises(ValueError, match="a filter must be 5"):
        S.at(X).predict(np.ones(3))
    with pytest.raises(ValueError, match="no targets"):
        S.at(X).error(np.ones(5))
    with pytest.raises(ValueError, match="rtol"):
        SpectralFilters(KernelSelfDistillation(gamma=3.0).fit(X, X[:, 0]), rtol=2.0)

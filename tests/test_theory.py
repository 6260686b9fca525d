"""The formulas of :mod:`sdlib.krr.theory` (Section 4) against independent computations.

Routes used here, none of which calls the function under test:

* eq. (6)'s coefficients against the recursion ``y^(tau) = M (alpha y + (1 - alpha) y^(tau-1))``
  expanded as a polynomial in ``M = K (K + lam I)^-1`` with :class:`numpy.polynomial.Polynomial`;
* Lemma 4.2: the diagonal of ``B^(tau)`` three ways (the sum of eq. 11, the recursion of eq. 12,
  the engine's ``B_diag``) and a fourth, brute-force one: refit problem (1) on the ``n`` unit
  targets ``e_i`` (:func:`sdlib.krr.reference.distill_refits` with ``y = I_n``), which gives the matrix of
  ``y -> y^(tau)``, and read ``B^(tau) = V^T (that matrix) V`` (eq. 10);
* Theorem 4.3 (eqs. 14 and 15) against ratios and signs observed on ``B^(tau)``;
* Theorem 4.4 (eq. 16) against a least-squares solve; Theorem 4.5 against iterating eq. (12).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import Polynomial
from numpy.typing import NDArray
from sklearn.metrics.pairwise import pairwise_kernels

from sdlib import KernelSelfDistillation
from sdlib.krr import reference, theory

FloatArray = NDArray[np.float64]

lams = st.floats(-3.0, 2.0).map(lambda e: 10.0**e)
weights = st.floats(-2.0, 3.0)


@st.composite
def spectra(draw: st.DrawFn, min_size: int = 2, max_size: int = 12) -> FloatArray:
    """Distinct positive eigenvalues ``d`` in ``[1e-2, 1e2]``, ascending (Section 4.5's order)."""
    exps = draw(st.lists(st.floats(-2.0, 2.0), min_size=min_size, max_size=max_size, unique=True))
    d = np.sort(10.0 ** np.asarray(exps))
    return d


# ---------------------------------------------------------------------------- alpha_sequence, eta
def test_alpha_sequence_scalar_and_sequence() -> None:
    np.testing.assert_array_equal(theory.alpha_sequence(0.25, 4), [0.25, 0.25, 0.25])
    np.testing.assert_array_equal(theory.alpha_sequence([-1.0, 2.5], 3), [-1.0, 2.5])
    assert theory.alpha_sequence(0.7, 1).shape == (0,)
    assert theory.alpha_sequence(None, 3).tolist() == [0.0, 0.0]
    seq = [0.1, 0.2]
    out = theory.alpha_sequence(seq, 3)
    out[0] = 9.0
    assert seq == [0.1, 0.2]


@pytest.mark.parametrize(
    ("alpha", "steps", "match"),
    [
        (0.1, 0, r"steps must be an integer >= 1, got steps=0"),
        (0.1, -3, r"steps=-3"),
        (0.1, 2.5, r"steps=2.5"),
        (0.1, True, r"steps=True"),
        ([0.1, 0.2], 2, r"steps - 1 = 1 weights"),
        ([[0.1], [0.2]], 3, r"got shape \(2, 1\)"),
        ([0.1, float("nan")], 3, r"alpha must be finite, got alpha=\[0.1, nan\]"),
        (float("inf"), 3, r"alpha must be finite, got alpha=inf"),
    ],
)
def test_alpha_sequence_rejects(alpha: object, steps: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        theory.alpha_sequence(alpha, steps)  # type: ignore[arg-type]


@given(alphas=st.lists(weights, min_size=1, max_size=8), data=st.data())
def test_eta_is_the_product_of_one_minus_alpha(alphas: list[float], data: st.DataObject) -> None:
    """eta(i, tau) = prod_{j=i}^{tau} (1 - alpha^(j)), alpha^(j) = alphas[j - 2]; empty product 1."""
    tau = data.draw(st.integers(2, len(alphas) + 1))
    i = data.draw(st.integers(2, tau + 2))
    expected = 1.0
    for j in range(i, tau + 1):
        expected *= 1.0 - alphas[j - 2]
    assert theory.eta(alphas, i, tau) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_eta_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="tau <= 3, got i=2, tau=5"):
        theory.eta([0.1, 0.2], 2, 5)
    with pytest.raises(ValueError, match="i=1"):
        theory.eta([0.1, 0.2], 1, 3)


# ---------------------------------------------------------------------------- Theorem 4.1, eq. (6)
@given(alphas=st.lists(weights, min_size=0, max_size=9))
def test_eq6_coefficients_equal_the_expanded_recursion(alphas: list[float]) -> None:
    """eq. (6)'s coefficients equal those of y^(tau) = M (alpha^(tau) y + (1 - alpha^(tau)) y^(tau-1)),
    y^(1) = M y, expanded as a polynomial in M (exact for any real alpha, not only [0, 1))."""
    M = Polynomial([0.0, 1.0])
    poly = M  # y^(1) = M y
    for tau, a in enumerate(alphas, start=2):
        poly = M * (a + (1.0 - a) * poly)
        c = theory.path_coefficients(alphas[: tau - 1], tau)
        expected = np.zeros(tau + 1)
        expected[: poly.coef.size] = poly.coef
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(c, expected, rtol=0, atol=1e-12 * scale)
    np.testing.assert_array_equal(theory.path_coefficients([], 1), [0.0, 1.0])


def test_eq6_fixed_alpha_coefficients_sum() -> None:
    """With alpha = 1 every step is plain KRR (c = e_1); with alpha = 0, c = e_tau (Mobahi et al.)."""
    np.testing.assert_array_equal(theory.path_coefficients([1.0] * 4, 5), [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(theory.path_coefficients([0.0] * 4, 5), [0, 0, 0, 0, 0, 1])


# ---------------------------------------------------------------------------- Lemma 4.2, eqs. (10)-(12)
@given(d=spectra(), lam=lams, alphas=st.lists(weights, min_size=0, max_size=8))
def test_lemma42_recursion_eq12_equals_sum_eq11(d: FloatArray, lam: float, alphas: list[float]) -> None:
    """eq. (12)'s recursion (B_diag_path) equals eq. (11)'s sum (B_diag_sum) at every step."""
    path = theory.B_diag_path(d, lam, alphas)
    assert path.shape == (len(alphas) + 1, d.size)
    np.testing.assert_allclose(path[0], d / (d + lam), rtol=1e-14)
    for tau in range(1, len(alphas) + 2):
        s = theory.B_diag_sum(d, lam, alphas[: tau - 1])
        scale = max(1.0, float(np.abs(s).max()))
        np.testing.assert_allclose(path[tau - 1], s, rtol=0, atol=1e-12 * scale)


def test_A_diag_and_B_clip_tiny_negative_eigenvalues() -> None:
    """Tiny negative eigenvalues of K (round-off) count as 0: A = 0 there, never negative."""
    d = np.array([-1e-17, 0.0, 1.0])
    np.testing.assert_array_equal(theory.A_diag(d, 1.0), [0.0, 0.0, 0.5])
    assert np.all(theory.B_diag_path(d, 1.0, [0.3, 0.3])[:, :2] == 0.0)


@st.composite
def kernel_problems(draw: st.DrawFn) -> tuple[FloatArray, FloatArray, float, float]:
    n = draw(st.integers(2, 14))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.uniform(-1, 1, (n, draw(st.integers(1, 3))))
    y = rng.standard_normal(n)
    return X, y, draw(st.floats(-1.0, 1.5).map(lambda e: 10.0**e)), draw(lams)


@settings(max_examples=25)
@given(prob=kernel_problems(), steps=st.integers(1, 6), data=st.data())
def test_lemma42_engine_B_diag_equals_refits_in_eigenbasis(
    prob: tuple[FloatArray, FloatArray, float, float], steps: int, data: st.DataObject
) -> None:
    """diag B^(tau): engine (eigendecomposition) = eq. (11) = eq. (12) = V^T S^(tau) V from refits,
    where S^(tau) is the matrix of y -> y^(tau) obtained by refitting on the unit targets (eq. 10);
    and eq. (10) y^(tau) = V B V^T y equals train_path. Off-diagonals of V^T S V vanish."""
    X, y, gamma, lam = prob
    alpha = data.draw(st.one_of(weights, st.lists(weights, min_size=steps - 1, max_size=steps - 1)))
    alphas = theory.alpha_sequence(alpha, steps)
    m = KernelSelfDistillation(gamma=gamma, lam=lam).fit(X, y)
    B = m.B_diag(steps=steps, alpha=alpha)
    d, V = np.linalg.eigh(pairwise_kernels(X, metric="rbf", gamma=gamma))
    np.testing.assert_allclose(m.eigenvalues_, np.clip(d, 0, None), rtol=0, atol=1e-12 * d.max())
    scale = max(1.0, float(np.abs(B).max()))
    np.testing.assert_allclose(B, theory.B_diag_path(m.eigenvalues_, lam, alphas), rtol=0, atol=1e-13 * scale)
    _, S = reference.distill_refits(X, np.eye(len(y)), X[:0], lam, alphas, "rbf", gamma=gamma)
    Y = m.train_path(steps=steps, alpha=alpha)
    for tau in range(1, steps + 1):
        np.testing.assert_allclose(
            B[tau - 1], theory.B_diag_sum(m.eigenvalues_, lam, alphas[: tau - 1]), rtol=0, atol=1e-12 * scale
        )
        W = V.T @ S[tau - 1] @ V
        np.testing.assert_allclose(np.diag(W), B[tau - 1], rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(W - np.diag(np.diag(W)), 0.0, rtol=0, atol=1e-9 * scale)
        y_tau = V @ (B[tau - 1] * (V.T @ y))  # eq. (10)
        np.testing.assert_allclose(y_tau, Y[tau - 1], rtol=0, atol=1e-9 * scale * max(1, np.abs(y).max()))


@given(d=spectra(), lam=lams, alpha=st.floats(0.0, 0.99), steps=st.integers(1, 10))
def test_lemma42_bounds_and_strict_decrease(d: FloatArray, lam: float, alpha: float, steps: int) -> None:
    """For a fixed alpha in [0, 1): [B^(tau)]_kk in [0, 1] and strictly decreasing in tau (B^(0) = I).

    Strictness is asserted where the exact decrease is above round-off. From eq. (12),
    ``B^(tau) - B^(inf) = ((1 - alpha) a)^(tau-1) (a - B^(inf))``, so the exact step is
    ``B^(tau) - B^(tau-1) = ((1 - alpha) a)^(tau-2) (a - B^(inf)) ((1 - alpha) a - 1) < 0``.
    """
    B = theory.B_diag_path(d, lam, [alpha] * (steps - 1))
    full = np.vstack([np.ones(d.size), B])  # B^(0) = I
    assert np.all((B >= 0.0) & (B <= 1.0))
    diffs = np.diff(full, axis=0)
    assert np.all(diffs <= 0.0)
    a = d / (d + lam)
    b_inf = alpha * a / (1 - (1 - alpha) * a)
    tau = np.arange(2, steps + 1)[:, None]
    exact = np.vstack([a - 1.0, ((1 - alpha) * a) ** (tau - 2) * (a - b_inf) * ((1 - alpha) * a - 1)])
    visible = np.abs(exact) > 1e-12 * full[:-1]
    assert np.all(diffs[visible] < 0.0)
    np.testing.assert_allclose(diffs, exact, rtol=1e-6, atol=1e-14)


def test_lemma42_decrease_fails_outside_unit_interval() -> None:
    """The lemma needs alpha in [0, 1): with alpha = 2 the diagonal grows at step 2, with alpha = -2
    it leaves [0, 1] (a = 1/3, 1/2 here)."""
    B = theory.B_diag_path([0.5, 1.0], 1.0, [2.0] * 3)
    assert np.all(B[1] > B[0])
    B = theory.B_diag_path([0.5, 1.0], 1.0, [-2.0] * 3)
    assert B.min() < 0.0


# ---------------------------------------------------------------------------- Theorem 4.3, eqs. (14), (15)
def _pairs(d: FloatArray) -> tuple[FloatArray, FloatArray]:
    k, j = np.nonzero(d[:, None] > d[None, :] * (1 + 1e-6))
    return k, j


@given(d=spectra(), lam=lams, steps=st.integers(1, 8), alpha=st.sampled_from([0.0, 1.0]))
def test_theorem43_eq14_ratio_for_alpha_0_and_1(d: FloatArray, lam: float, steps: int, alpha: float) -> None:
    """eq. (14): [B]_kk / [B]_jj = ((1 + lam/d_j) / (1 + lam/d_k))^(tau or 1), for every d_k > d_j."""
    B = theory.B_diag_path(d, lam, [alpha] * (steps - 1))
    k, j = _pairs(d)
    for tau in range(1, steps + 1):
        observed = B[tau - 1][k] / B[tau - 1][j]
        predicted = theory.ratio_eq14(d[k], d[j], lam, tau, alpha)
        np.testing.assert_allclose(observed, predicted, rtol=1e-12 * tau)
        if alpha == 0.0:
            assert np.all(predicted > 1.0)  # R^(tau) > 1 and strictly increasing in tau (alpha = 0)


@settings(max_examples=20)
@given(prob=kernel_problems(), steps=st.integers(1, 6), alpha=st.sampled_from([0.0, 1.0]))
def test_theorem43_eq14_on_engine_B_diag(
    prob: tuple[FloatArray, FloatArray, float, float], steps: int, alpha: float
) -> None:
    """eq. (14) on the engine's B_diag of a fitted rbf model (pairs with d_j >= 1e-6 max d)."""
    X, y, gamma, lam = prob
    m = KernelSelfDistillation(gamma=gamma, lam=lam).fit(X, y)
    d = m.eigenvalues_
    B = m.B_diag(steps=steps, alpha=alpha)
    k, j = _pairs(d)
    keep = d[j] >= 1e-6 * d.max()
    k, j = k[keep], j[keep]
    for tau in range(1, steps + 1):
        np.testing.assert_allclose(
            B[tau - 1][k] / B[tau - 1][j], theory.ratio_eq14(d[k], d[j], lam, tau, alpha), rtol=1e-9 * tau
        )


@given(d=spectra(max_size=10), lam=lams, alpha=st.floats(0.01, 0.99), steps=st.integers(2, 10))
def test_theorem43_eq15_sign_rule_predicts_observed_sign(d: FloatArray, lam: float, alpha: float, steps: int) -> None:
    """eq. (15): sgn(R^(tau) - R^(tau-1)) predicted from step tau - 1 equals the observed sign, for all
    pairs d_k > d_j and tau = 2..steps; pairs whose observed change is within round-off are skipped."""
    B = theory.B_diag_path(d, lam, [alpha] * (steps - 1))
    A = theory.A_diag(d, lam)
    k, j = _pairs(d)
    for tau in range(2, steps + 1):
        R_now = B[tau - 1][k] / B[tau - 1][j]
        R_prev = B[tau - 2][k] / B[tau - 2][j]
        change = R_now - R_prev
        visible = np.abs(change) > 1e-9 * R_prev
        with np.errstate(divide="ignore", invalid="ignore"):
            predicted = theory.sign_rule_eq15(B[tau - 2][k], B[tau - 2][j], A[k], A[j], alpha)
        observed = np.sign(change).astype(int)
        np.testing.assert_array_equal(predicted[visible], observed[visible])


def test_theorem43_eq15_both_signs_occur() -> None:
    """For alpha in (0, 1) the ratio can decrease (the paper's case (b)): the rule predicts both signs,
    and they are observed; a check that the previous test is not vacuous."""
    d = np.geomspace(1e-2, 1e2, 9)
    lam, alpha, steps = 0.2, 0.25, 8
    B = theory.B_diag_path(d, lam, [alpha] * (steps - 1))
    A = theory.A_diag(d, lam)
    k, j = _pairs(d)
    signs = []
    for tau in range(2, steps + 1):
        pred = theory.sign_rule_eq15(B[tau - 2][k], B[tau - 2][j], A[k], A[j], alpha)
        R_prev = B[tau - 2][k] / B[tau - 2][j]
        change = B[tau - 1][k] / B[tau - 1][j] - R_prev
        visible = np.abs(change) > 1e-9 * R_prev
        np.testing.assert_array_equal(pred[visible], np.sign(change[visible]))
        signs.extend(np.sign(change[visible]).tolist())
    assert 1 in signs and -1 in signs


def test_ratio_eq14_rejects_other_alpha() -> None:
    with pytest.raises(ValueError, match=r"alpha=0.5"):
        theory.ratio_eq14(2.0, 1.0, 0.1, 3, 0.5)


# ---------------------------------------------------------------------------- Theorem 4.4, eq. (16)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(2, 30),
    p=st.sampled_from([None, 1, 4]),
    scale=st.floats(-3.0, 3.0).map(lambda e: 10.0**e),
)
def test_eq16_alpha_star_equals_least_squares(seed: int, m: int, p: int | None, scale: float) -> None:
    """eq. (16) is the least-squares weight of y~ - y0~ on y1~ - y0~ (Frobenius for p > 1)."""
    rng = np.random.default_rng(seed)
    shape = (m,) if p is None else (m, p)
    y_val, y1, y0 = (scale * rng.standard_normal(shape) for _ in range(3))
    a = theory.alpha_star(y_val, y1, y0)
    col = (y1 - y0).reshape(-1, 1)
    expected = np.linalg.lstsq(col, (y_val - y0).ravel(), rcond=None)[0][0]
    assert a == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # it is the minimiser: nudging it either way does not lower the error
    def err(t: float) -> float:
        return float(np.sum((y_val - (t * y1 + (1 - t) * y0)) ** 2))

    assert err(a) <= min(err(a - 1e-3), err(a + 1e-3))


def test_eq16_degenerate_returns_one_with_warning() -> None:
    y1 = np.array([1.0, 2.0, 3.0])
    with pytest.warns(theory.DegenerateAlphaWarning, match="zero denominator in eq. 16"):
        assert theory.alpha_star(np.zeros(3), y1, y1.copy()) == 1.0
    with pytest.warns(theory.DegenerateAlphaWarning):
        assert theory.alpha_star(np.ones(3), np.zeros(3), np.zeros(3)) == 1.0


def test_eq16_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"must have one shape, got \(3,\), \(3,\), \(2,\)"):
        theory.alpha_star(np.zeros(3), np.zeros(3), np.zeros(2))


# ---------------------------------------------------------------------------- Theorem 4.5, eq. (17)
@given(d=spectra(), lam=lams, alpha=st.floats(0.05, 1.0))
def test_theorem45_B_limit_is_fixed_point_and_limit_of_eq12(d: FloatArray, lam: float, alpha: float) -> None:
    """B^(inf) = D (D + lam/alpha I)^-1 is the limit of eq. (12): 2,000 iterations reach it."""
    B_inf = theory.B_diag_limit(d, lam, alpha)
    np.testing.assert_allclose(B_inf, d / (d + theory.limit_lam(lam, alpha)), rtol=1e-13)
    B = theory.B_diag_path(d, lam, [alpha] * 1999)
    np.testing.assert_allclose(B[-1], B_inf, rtol=1e-12, atol=1e-15)


@given(d=spectra(), lam=lams, alpha=st.floats(0.0, 1.0), steps=st.integers(2, 30))
def test_theorem45_rate_per_eigen_coordinate(d: FloatArray, lam: float, alpha: float, steps: int) -> None:
    """Each coordinate of B^(tau) - B^(inf) contracts by (1 - alpha) a_k per step (linear rate), the
    slowest being theory.convergence_rate; alpha = 0: B^(inf) = 0 (collapse to zero)."""
    B = theory.B_diag_path(d, lam, [alpha] * (steps - 1))
    B_inf = theory.B_diag_limit(d, lam, alpha)
    if alpha == 0.0:
        assert np.all(B_inf == 0.0)
    a = d / (d + lam)
    e = B - B_inf
    for tau in range(1, steps):
        np.testing.assert_allclose(e[tau], (1 - alpha) * a * e[tau - 1], rtol=1e-9, atol=1e-15)
    assert theory.convergence_rate(d, lam, alpha) == pytest.approx((1 - alpha) * a.max(), rel=1e-14)


@pytest.mark.parametrize(("lam", "alpha"), [(0.0, 0.5), (-1.0, 0.5), (float("nan"), 0.5), (1.0, 0.0), (1.0, 1.5)])
def test_limit_lam_rejects(lam: float, alpha: float) -> None:
    with pytest.raises(ValueError, match=r"lam=|alpha="):
        theory.limit_lam(lam, alpha)


@pytest.mark.parametrize("lam", [0.0, -0.1, float("inf"), float("nan")])
def test_spectral_functions_reject_bad_lam(lam: float) -> None:
    for fn in (lambda: theory.A_diag([1.0], lam), lambda: theory.B_diag_limit([1.0], lam, 0.5)):
        with pytest.raises(ValueError, match=r"lam must be a finite number > 0, got lam="):
            fn()


# ---------------------------------------------------------------------------- eq. (6) literally, eq. (13), Mobahi
def _problem(seed: int, n: int = 9, d_in: int = 2, gamma: float = 3.0) -> tuple[FloatArray, FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, (n, d_in))
    return X, rng.standard_normal(n), rng.uniform(-0.5, 1.5, (7, d_in))


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), lam=lams, alphas=st.lists(weights, min_size=0, max_size=6))
def test_eq6_path_equals_primal_refits(seed: int, lam: float, alphas: list[float]) -> None:
    """eq. (6) term by term (matrix powers, eta) equals refits of problem (1) in the primal, any real alpha."""
    X, y, _ = _problem(seed)
    K = pairwise_kernels(X, metric="rbf", gamma=3.0)
    _, refits = reference.distill_refits(X, y, X[:0], lam, alphas, "rbf", gamma=3.0)
    got = theory.eq6_path(K, y, lam, alphas)
    assert got.shape == refits.shape == (len(alphas) + 1, y.size)
    np.testing.assert_allclose(got, refits, rtol=0, atol=1e-8 * max(1.0, float(np.abs(refits).max())))


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), lam=lams, alphas=st.lists(weights, min_size=0, max_size=6))
def test_eq13_path_printed_and_stable_equal_refits(seed: int, lam: float, alphas: list[float]) -> None:
    """eq. (13) both ways equals refits at new points for a positive definite K (rbf, distinct inputs)."""
    X, y, Xq = _problem(seed)
    K = pairwise_kernels(X, metric="rbf", gamma=3.0)
    d, V = np.linalg.eigh(K)
    Kq = pairwise_kernels(Xq, X, metric="rbf", gamma=3.0)
    ref, _ = reference.distill_refits(X, y, Xq, lam, alphas, "rbf", gamma=3.0)
    scale = max(1.0, float(np.abs(ref).max()))
    stable = theory.eq13_path(Kq, d, V, y, lam, alphas, form="stable")
    np.testing.assert_allclose(stable, ref, rtol=0, atol=1e-8 * scale)
    if d[0] > 1e-8 * d[-1]:  # the printed D^-1 form loses digits as K nears singularity
        printed = theory.eq13_path(Kq, d, V, y, lam, alphas)
        np.testing.assert_allclose(printed, ref, rtol=0, atol=1e-6 * scale)


def test_eq13_printed_form_is_undefined_for_a_singular_kernel_matrix_and_stable_form_is_not() -> None:
    """Linear kernel on 8 points in R^2: K has rank 2. D^-1 does not exist; the (D + lam I)^-1 form
    still equals the refits (the oracle uses the exact finite feature map phi(x) = x)."""
    X, y, Xq = _problem(5, n=8)
    K = X @ X.T
    d, V = np.linalg.eigh(K)
    d = np.where(d <= 8 * np.finfo(float).eps * d[-1], 0.0, d)
    assert int(np.sum(d == 0)) == 6
    ref, _ = reference.distill_refits(X, y, Xq, 0.3, [0.25, 0.5], "linear")
    stable = theory.eq13_path(Xq @ X.T, d, V, y, 0.3, [0.25, 0.5], form="stable")
    np.testing.assert_allclose(stable, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
    assert not np.all(np.isfinite(theory.eq13_path(Xq @ X.T, d, V, y, 0.3, [0.25, 0.5])))
    with pytest.raises(ValueError, match="form="):
        theory.eq13_path(Xq @ X.T, d, V, y, 0.3, [], form="other")


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), c=st.lists(st.floats(-2.0, 1.0).map(lambda e: 10.0**e), min_size=1, max_size=6))
def test_mobahi_path_equals_rounds_of_kernel_ridge(seed: int, c: list[float]) -> None:
    """Mobahi et al.'s product form equals rounds of scikit-learn's KernelRidge (precomputed kernel),
    each round fitted on the previous round's training predictions with its own c_t."""
    from sklearn.kernel_ridge import KernelRidge

    X, y, Xq = _problem(seed)
    G = pairwise_kernels(X, metric="rbf", gamma=3.0)
    Gq = pairwise_kernels(Xq, X, metric="rbf", gamma=3.0)
    targets, expected = y, []
    for ct in c:
        krr = KernelRidge(alpha=ct, kernel="precomputed").fit(G, targets)
        expected.append(krr.predict(Gq))
        targets = krr.predict(G)
    got = theory.mobahi_path(Gq, G, y, c)
    scale = max(1.0, float(np.abs(expected).max()))
    tol = 1e-13 * np.linalg.cond(G) * scale  # the D^-1 form loses digits with the condition number of G
    np.testing.assert_allclose(got, np.array(expected), rtol=0, atol=tol)


def test_mobahi_path_is_eq13_with_alpha_zero_and_rejects_bad_input() -> None:
    """With c_t = lam for every round, round t is the paper's step tau = t + 1 with alpha = 0."""
    X, y, Xq = _problem(3)
    G = pairwise_kernels(X, metric="rbf", gamma=3.0)
    Gq = pairwise_kernels(Xq, X, metric="rbf", gamma=3.0)
    d, V = np.linalg.eigh(G)
    ours = theory.eq13_path(Gq, d, V, y, 0.2, [0.0] * 4)
    np.testing.assert_allclose(theory.mobahi_path(Gq, G, y, [0.2] * 5), ours, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"c must be a finite number > 0, got c=-1.0"):
        theory.mobahi_path(Gq, G, y, [0.2, -1.0])
    with pytest.raises(ValueError, match="at least one"):
        theory.mobahi_path(Gq, G, y, [])
    with pytest.raises(ValueError, match="positive definite"):
        theory.mobahi_path(Gq, np.zeros_like(G), y, [0.2])


# ---------------------------------------------------------------------------- oracles added for the chapters
@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), lam=lams, alpha=weights)
def test_minimise_bfgs_finds_both_minimisers(seed: int, lam: float, alpha: float) -> None:
    """BFGS on (1) lands on the normal equations' solution; BFGS on footnote 7's L~ lands on ridge
    regression on the weighted target, solved here by least squares on the augmented system."""
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((12, 5))
    y1, y2 = rng.standard_normal((2, 12))
    b1 = reference.minimise_bfgs(Phi, y1, y2, alpha, lam)
    np.testing.assert_allclose(b1, reference.solve_problem1(Phi, y1, y2, alpha, lam), rtol=0, atol=1e-5)
    t = alpha * y1 + (1 - alpha) * y2
    aug = np.vstack([Phi, np.sqrt(lam) * np.eye(5)])
    ridge = np.linalg.lstsq(aug, np.concatenate([t, np.zeros(5)]), rcond=None)[0]
    np.testing.assert_allclose(reference.minimise_bfgs(Phi, y1, y2, alpha, lam, "fn7"), ridge, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="objective="):
        reference.minimise_bfgs(Phi, y1, y2, alpha, lam, "other")


@given(seed=st.integers(0, 2**32 - 1), alpha=weights)
def test_objective_fn7_differs_from_objective1_by_the_expanded_constant(seed: int, alpha: float) -> None:
    """L - L~ = alpha (1 - alpha) / 2 ||y1 - y2||^2 for every beta (expanding the squares)."""
    rng = np.random.default_rng(seed)
    Phi = rng.standard_normal((6, 3))
    y1, y2 = rng.standard_normal((2, 6))
    const = alpha * (1 - alpha) / 2 * np.sum((y1 - y2) ** 2)
    for beta in rng.standard_normal((4, 3)):
        L = reference.objective1(Phi, beta, y1, y2, alpha, 0.1)
        diff = L - reference.objective_fn7(Phi, beta, y1, y2, alpha, 0.1)
        assert diff == pytest.approx(const, rel=1e-9, abs=1e-9)


def test_dual_refits_and_eq7_refits_agree_with_the_primal_refits_and_the_engine() -> None:
    X, y, Xq = _problem(11)
    alphas = [0.5, -0.3, 1.2]
    K = pairwise_kernels(X, metric="rbf", gamma=3.0)
    Kq = pairwise_kernels(Xq, X, metric="rbf", gamma=3.0)
    pq, tr = reference.dual_refits(K, y, 0.2, alphas, Kq)
    pq_ref, tr_ref = reference.distill_refits(X, y, Xq, 0.2, alphas, "rbf", gamma=3.0)
    np.testing.assert_allclose(pq, pq_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(tr, tr_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(reference.dual_refits(K, y, 0.2, alphas)[0], tr, rtol=0, atol=1e-12)
    # eq. (7)'s right-hand side, tau = 2..4, equals the engine's f(x, beta^(tau)) (eq. 5)
    rhs = reference.eq7_refits(X, y, Xq, 0.2, alphas, "rbf", gamma=3.0)
    engine = KernelSelfDistillation(gamma=3.0, lam=0.2).fit(X, y).path(Xq, steps=4, alpha=alphas)
    assert rhs.shape == (3, len(Xq))
    np.testing.assert_allclose(rhs, engine[1:], rtol=0, atol=1e-9)


def test_factorisation_counter_counts_real_calls_and_restores() -> None:
    """One Cholesky factorisation for the engine's whole path; one per step for the refits; the
    wrapped routines are restored after the block, also when it raises."""
    import scipy.linalg

    X, y, _ = _problem(2, n=20)
    K = pairwise_kernels(X, metric="rbf", gamma=3.0)
    with reference.FactorisationCounter() as engine:
        KernelSelfDistillation(gamma=3.0, lam=0.2).fit(X, y).train_path(steps=30, alpha=0.25)
    assert engine.total == 1 and engine.counts["scipy.linalg.cho_factor"] == 1
    with reference.FactorisationCounter() as refits:
        reference.dual_refits(K, y, 0.2, [0.25] * 29)
    assert refits.total == 30 and refits.counts["scipy.linalg.solve"] == 30
    with reference.FactorisationCounter() as direct:
        for _ in range(3):
            np.linalg.solve(K + np.eye(20), y)
        np.linalg.eigh(K)
    assert direct.counts["numpy.linalg.solve"] == 3 and direct.counts["numpy.linalg.eigh"] == 1
    solve, eigh = scipy.linalg.solve, np.linalg.eigh
    with pytest.raises(RuntimeError), reference.FactorisationCounter():
        raise RuntimeError("inside the block")
    assert scipy.linalg.solve is solve and np.linalg.eigh is eigh
    assert not hasattr(scipy.linalg.solve, "__wrapped__")

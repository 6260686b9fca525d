"""The oracle itself: :mod:`sdlib.krr.reference` against scikit-learn and scipy.

The engine's tests lean on ``reference.distill_refits``; these tests make sure the oracle solves the
right problem: its feature maps reproduce scikit-learn's kernels, ``solve_problem1`` is the minimiser
of the objective (1) (zero gradient, and scipy's general-purpose minimiser finds the same point),
the first step is scikit-learn's ``KernelRidge``, and ``alpha_star_numerical`` minimises the
validation error.
"""

from __future__ import annotations

from functools import partial
from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import optimize
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import pairwise_kernels

from sdlib.krr import reference

FloatArray = NDArray[np.float64]


def cauchy_kernel(x: FloatArray, z: FloatArray, gamma: float = 1.0) -> float:
    return float(1.0 / (1.0 + gamma * np.sum((x - z) ** 2)))


KERNEL_CASES = [
    ("rbf", {"gamma": 3.0}),
    ("rbf", {}),  # default gamma = 1 / n_features, as scikit-learn
    ("laplacian", {"gamma": 0.7}),
    ("linear", {}),
    ("polynomial", {"degree": 2, "gamma": 0.5, "coef0": 1.0}),
    ("polynomial", {"degree": 3, "gamma": 0.3, "coef0": 0.0}),
    ("poly", {"degree": 3}),
    ("cosine", {}),
]


@pytest.mark.parametrize(("kernel", "params"), KERNEL_CASES)
def test_feature_map_reproduces_sklearn_kernel(kernel: str, params: dict, rng: np.random.Generator) -> None:
    X = rng.uniform(-1, 1, (12, 3))
    Xq = rng.uniform(-1, 1, (5, 3))
    Phi, Phiq = reference.feature_map(X, Xq, kernel, **params)
    K = pairwise_kernels(X, metric=kernel, filter_params=True, **params)
    Kq = pairwise_kernels(Xq, X, metric=kernel, filter_params=True, **params)
    scale = max(1.0, np.abs(K).max())
    np.testing.assert_allclose(Phi @ Phi.T, K, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(Phiq @ Phi.T, Kq, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize(("d", "degree"), [(1, 2), (3, 2), (3, 3), (4, 3)])
def test_polynomial_feature_map_is_explicit_and_finite(d: int, degree: int, rng: np.random.Generator) -> None:
    """The polynomial kernel gets its finite monomial map: C(d + degree, degree) features whatever n."""
    X = rng.uniform(-1, 1, (30, d))
    Phi, _ = reference.feature_map(X, None, "polynomial", degree=degree, gamma=0.4, coef0=1.0)
    assert Phi.shape == (30, comb(d + degree, degree))
    Phi_lin, _ = reference.feature_map(X, None, "linear")
    np.testing.assert_array_equal(Phi_lin, X)


def test_feature_map_callable(rng: np.random.Generator) -> None:
    X = rng.uniform(-1, 1, (9, 2))
    Xq = rng.uniform(-1, 1, (4, 2))
    kern = partial(cauchy_kernel, gamma=2.0)
    Phi, Phiq = reference.feature_map(X, Xq, kern)
    np.testing.assert_allclose(Phiq @ Phi.T, pairwise_kernels(Xq, X, metric=kern), atol=1e-12)


@st.composite
def primal_problems(draw: st.DrawFn) -> tuple[FloatArray, FloatArray, FloatArray, float, float]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(2, 15))
    D = draw(st.integers(1, 8))
    p = draw(st.sampled_from([1, 3]))
    Phi = rng.standard_normal((n, D))
    y1 = rng.standard_normal((n, p))
    y2 = rng.standard_normal((n, p))
    return Phi, y1, y2, draw(st.floats(-2.0, 3.0)), 10.0 ** draw(st.floats(-3.0, 2.0))


@given(prob=primal_problems())
def test_solve_problem1_zeroes_the_gradient_of_objective1(prob: tuple) -> None:
    """The gradient of (1), Phi^T (alpha (f - y1) + (1 - alpha)(f - y2)) + lam beta, vanishes."""
    Phi, y1, y2, alpha, lam = prob
    beta = reference.solve_problem1(Phi, y1, y2, alpha, lam)
    f = Phi @ beta
    grad = Phi.T @ (alpha * (f - y1) + (1 - alpha) * (f - y2)) + lam * beta
    scale = max(1.0, np.abs(Phi.T @ (alpha * y1 + (1 - alpha) * y2)).max())
    np.testing.assert_allclose(grad, 0.0, atol=1e-10 * scale)


@settings(max_examples=15)
@given(prob=primal_problems())
def test_solve_problem1_is_scipys_minimiser(prob: tuple) -> None:
    """BFGS on objective (1) from beta = 0 finds the same minimum value (objective strictly convex
    in beta for any real alpha, since the Hessian is Phi^T Phi + lam I)."""
    Phi, y1, y2, alpha, lam = prob
    beta = reference.solve_problem1(Phi, y1, y2, alpha, lam)
    shape = beta.shape

    def fun(b: FloatArray) -> float:
        return reference.objective1(Phi, b.reshape(shape), y1, y2, alpha, lam)

    def jac(b: FloatArray) -> FloatArray:
        B = b.reshape(shape)
        f = Phi @ B
        return (Phi.T @ (alpha * (f - y1) + (1 - alpha) * (f - y2)) + lam * B).ravel()

    res = optimize.minimize(fun, np.zeros(beta.size), jac=jac, method="BFGS", options={"gtol": 1e-12})
    f_star = fun(beta.ravel())
    assert f_star <= res.fun + 1e-9 * max(1.0, abs(res.fun))


@given(prob=primal_problems())
def test_footnote7_weighted_target_objective_differs_by_a_constant(prob: tuple) -> None:
    """Footnote 7: (1) equals 1/2 ||f - (alpha y1 + (1 - alpha) y2)||^2 + lam/2 ||beta||^2 plus a
    constant. The constant (1) - L~ is alpha (1 - alpha) / 2 ||y1 - y2||^2 (checked at two random
    betas). The paper prints alpha (alpha - 1) ||y1 - y2||^2: -2 times that (read as L~ - (1), it
    lacks the factor 1/2). An erratum; the equivalence of the minimisers holds."""
    Phi, y1, y2, alpha, lam = prob
    rng = np.random.default_rng(0)
    t = alpha * y1 + (1 - alpha) * y2
    diffs = []
    for _ in range(2):
        beta = rng.standard_normal((Phi.shape[1], y1.shape[1]))
        tilde = 0.5 * np.sum((Phi @ beta - t) ** 2) + lam / 2 * np.sum(beta**2)
        diffs.append(reference.objective1(Phi, beta, y1, y2, alpha, lam) - tilde)
    const = alpha * (1 - alpha) / 2 * np.sum((y1 - y2) ** 2)
    scale = max(1.0, abs(const), np.sum(t**2))
    assert abs(diffs[0] - const) <= 1e-10 * scale and abs(diffs[1] - const) <= 1e-10 * scale
    paper = alpha * (alpha - 1) * np.sum((y1 - y2) ** 2)
    if abs(const) > 1e-6 * scale:
        assert abs(diffs[0] - paper) > 1e-6 * scale  # the printed constant is not the difference


@pytest.mark.parametrize(("kernel", "params"), KERNEL_CASES[:6])
def test_first_refit_is_sklearn_kernel_ridge(kernel: str, params: dict, rng: np.random.Generator) -> None:
    """Step 1 (alpha = 1, y1 = y2 = y) is KernelRidge with scikit-learn's alpha = the paper's lam."""
    X = rng.uniform(-1, 1, (14, 2))
    y = rng.standard_normal((14, 2))
    Xq = rng.uniform(-1, 1, (6, 2))
    F, Y = reference.distill_refits(X, y, Xq, 0.3, [], kernel, **params)
    krr = KernelRidge(alpha=0.3, kernel=kernel, **params).fit(X, y)
    np.testing.assert_allclose(F[0], krr.predict(Xq), atol=1e-10)
    np.testing.assert_allclose(Y[0], krr.predict(X), atol=1e-10)


def test_refits_with_alpha_one_repeat_the_first_fit(rng: np.random.Generator) -> None:
    X = rng.uniform(-1, 1, (10, 2))
    y = rng.standard_normal(10)
    F, Y = reference.distill_refits(X, y, X[:3], 0.5, [1.0] * 3, "rbf", gamma=2.0)
    assert F.shape == (4, 3) and Y.shape == (4, 10)
    np.testing.assert_allclose(F, np.broadcast_to(F[0], F.shape), atol=1e-12)


def test_refits_multi_output_is_columnwise(rng: np.random.Generator) -> None:
    X = rng.uniform(-1, 1, (10, 2))
    y = rng.standard_normal((10, 3))
    alphas = [0.3, -1.0, 2.0]
    F, Y = reference.distill_refits(X, y, X[:4], 0.1, alphas, "laplacian", gamma=1.0)
    for col in range(3):
        Fc, Yc = reference.distill_refits(X, y[:, col], X[:4], 0.1, alphas, "laplacian", gamma=1.0)
        np.testing.assert_allclose(F[..., col], Fc, atol=1e-12)
        np.testing.assert_allclose(Y[..., col], Yc, atol=1e-12)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(2, 4), clip=st.booleans())
def test_alpha_star_numerical_minimises_validation_error(seed: int, steps: int, clip: bool) -> None:
    """Each alpha*(tau) beats its neighbours +-1e-3 (or is the clipped bound), step by step."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (12, 1))
    y = np.sin(3 * X[:, 0]) + 0.3 * rng.standard_normal(12)
    X_val = rng.uniform(-1, 1, (8, 1))
    y_val = np.sin(3 * X_val[:, 0])
    lam = 0.1
    a_num = reference.alpha_star_numerical(X, y, X_val, y_val, lam, steps, "rbf", clip=clip, gamma=5.0)
    assert a_num.shape == (steps - 1,)
    if clip:
        assert np.all((a_num >= 0) & (a_num <= 1))
    for tau in range(2, steps + 1):
        hist = list(a_num[: tau - 2])

        def err(a: float, hist: list = hist) -> float:
            F, _ = reference.distill_refits(X, y, X_val, lam, hist + [a], "rbf", gamma=5.0)
            return float(np.sum((y_val - F[-1]) ** 2))

        a = a_num[tau - 2]
        for nb in (a - 1e-3, a + 1e-3):
            if not clip or 0.0 <= nb <= 1.0:
                assert err(a) <= err(nb) + 1e-14


# ------------------------------------------------------------------------------------------------
# Algorithm 1 and the grid searches by refits (the fit counts of Section 4.3), against brute force


def _val_problem(rng: np.random.Generator, n: int = 9, m: int = 7) -> tuple:
    X = rng.uniform(0, 1, (n, 1))
    y = np.sin(2 * np.pi * X[:, 0]) + 0.4 * rng.standard_normal(n)
    X_val = rng.uniform(0, 1, (m, 1))
    y_val = np.sin(2 * np.pi * X_val[:, 0])
    Phi, Phi_val = reference.feature_map(X, X_val, "rbf", gamma=20.0)
    return X, y, X_val, y_val, Phi, Phi_val


def _mse_of_sequence(X: FloatArray, y: FloatArray, X_val: FloatArray, y_val: FloatArray, lam: float,
                     seq: list[float]) -> float:
    """Validation MSE of the last step of ``seq``, by ``distill_refits`` (its own feature map)."""
    F, _ = reference.distill_refits(X, y, X_val, lam, seq, "rbf", gamma=20.0)
    return float(np.mean((y_val - F[-1]) ** 2))


@pytest.mark.parametrize("tau", [2, 3, 5])
def test_algorithm1_refits_is_the_numerical_greedy_minimiser(tau: int, rng: np.random.Generator) -> None:
    """alpha*(2..tau) of Algorithm 1 (eq. 16 on refits) equals scipy's minimiser over refits, step by
    step; the counter sees 2(tau - 1) + 1 fits; the returned predictions are those of step tau."""
    X, y, X_val, y_val, Phi, Phi_val = _val_problem(rng)
    counter = reference.FitCounter()
    a_alg1, val = reference.algorithm1_refits(Phi, Phi_val, y, y_val, 0.1, tau, counter)
    a_num = reference.alpha_star_numerical(X, y, X_val, y_val, 0.1, tau, "rbf", gamma=20.0)
    np.testing.assert_allclose(a_alg1, a_num, atol=1e-6)
    assert counter.fits == 2 * (tau - 1) + 1
    F, _ = reference.distill_refits(X, y, X_val, 0.1, list(a_alg1), "rbf", gamma=20.0)
    np.testing.assert_allclose(val, F[-1], atol=1e-10)
    a_clip, _ = reference.algorithm1_refits(Phi, Phi_val, y, y_val, 0.1, tau, clip=True)
    assert np.all((a_clip >= 0) & (a_clip <= 1))


def test_grid_search_refits_finds_the_best_fixed_alpha(rng: np.random.Generator) -> None:
    X, y, X_val, y_val, Phi, Phi_val = _val_problem(rng)
    grid, tau = np.linspace(0, 1, 6), 4
    counter = reference.FitCounter()
    a_best, mse = reference.grid_search_refits(Phi, Phi_val, y, y_val, 0.1, grid, tau, counter)
    brute = [_mse_of_sequence(X, y, X_val, y_val, 0.1, [a] * (tau - 1)) for a in grid]
    assert mse == pytest.approx(min(brute), rel=1e-9)
    assert _mse_of_sequence(X, y, X_val, y_val, 0.1, [a_best] * (tau - 1)) == pytest.approx(min(brute), rel=1e-9)
    assert counter.fits == len(grid) * (tau - 1) + 1


@pytest.mark.parametrize(("g", "tau"), [(1, 3), (3, 2), (3, 3), (4, 4)])
@pytest.mark.parametrize("share", [True, False])
def test_stepwise_grid_search_is_brute_force_over_every_sequence(g: int, tau: int, share: bool,
                                                                 rng: np.random.Generator) -> None:
    """The step-wise search returns the best of the g^(tau-1) sequences (each scored by an independent
    refit chain); its fit count is 1 + g + ... + g^(tau-1) with shared prefixes, 1 + (tau-1) g^(tau-1)
    without; it is never worse than the best fixed alpha, which is one of its sequences."""
    import itertools

    X, y, X_val, y_val, Phi, Phi_val = _val_problem(rng)
    grid = np.linspace(-0.5, 1.0, g)
    counter = reference.FitCounter()
    seq, mse, n_seq = reference.stepwise_grid_search_refits(Phi, Phi_val, y, y_val, 0.1, grid, tau, counter,
                                                            share_prefixes=share)
    brute = {s: _mse_of_sequence(X, y, X_val, y_val, 0.1, list(s)) for s in itertools.product(grid, repeat=tau - 1)}
    assert n_seq == len(brute) == g ** (tau - 1)
    assert mse == pytest.approx(min(brute.values()), rel=1e-9)
    assert _mse_of_sequence(X, y, X_val, y_val, 0.1, list(seq)) == pytest.approx(mse, rel=1e-9)
    expected = sum(g**i for i in range(tau)) if share else 1 + (tau - 1) * g ** (tau - 1)
    assert counter.fits == expected
    _, mse_fixed = reference.grid_search_refits(Phi, Phi_val, y, y_val, 0.1, grid, tau)
    assert mse <= mse_fixed + 1e-12


def test_stepwise_grid_search_refuses_bad_input(rng: np.random.Generator) -> None:
    _, y, _, y_val, Phi, Phi_val = _val_problem(rng)
    with pytest.raises(ValueError, match="tau=1"):
        reference.stepwise_grid_search_refits(Phi, Phi_val, y, y_val, 0.1, [0.5], 1)
    with pytest.raises(ValueError, match="alphas"):
        reference.stepwise_grid_search_refits(Phi, Phi_val, y, y_val, 0.1, [], 3)


@pytest.mark.parametrize(("kernel", "params", "alphas"), [
    ("rbf", {"gamma": 3.0}, [0.0, 0.0, 0.0]),
    ("rbf", {"gamma": 3.0}, [0.25, 0.25]),
    ("laplacian", {"gamma": 0.7}, [0.5, -0.3, 1.0, 0.2]),
])
def test_B_diag_refits_is_the_recursion_of_eq12(kernel: str, params: dict, alphas: list[float],
                                                rng: np.random.Generator) -> None:
    """diag B^(tau) read off refits of the eigenvectors equals the recursion (12) on the spectrum
    (theory.B_diag_path, which never refits), and the eigenvalues are those of scikit-learn's Gram."""
    from sdlib.krr import theory

    X = rng.uniform(-1, 1, (10, 2))
    d, B = reference.B_diag_refits(X, 0.3, alphas, kernel, **params)
    d_sk = np.linalg.eigvalsh(pairwise_kernels(X, metric=kernel, **params))
    np.testing.assert_allclose(d, d_sk, atol=1e-12)
    assert B.shape == (len(alphas) + 1, 10)
    np.testing.assert_allclose(B, theory.B_diag_path(d, 0.3, alphas), atol=1e-10)

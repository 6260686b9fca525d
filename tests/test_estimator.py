"""KernelSelfDistillation as a scikit-learn estimator: conventions, the API checks, and bad input.

* ``steps=1`` is scikit-learn's ``KernelRidge`` with ``alpha = lam`` (scikit-learn names the ridge
  penalty ``alpha``; the paper's ``alpha`` is the weight of the ground-truth targets);
* ``check_estimator`` passes for the default and for non-default configurations;
* every bad input raises ``ValueError`` (or ``NotFittedError``) whose message names the parameter and
  its value.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import pairwise_kernels
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from sdlib import KernelSelfDistillation
from sdlib.krr import reference
from sdlib.krr.kernels import KERNELS

FloatArray = NDArray[np.float64]


def cauchy_kernel(x: FloatArray, z: FloatArray, gamma: float = 1.0) -> float:
    return float(1.0 / (1.0 + gamma * np.sum((x - z) ** 2)))


@pytest.fixture
def data(rng: np.random.Generator) -> tuple[FloatArray, FloatArray, FloatArray]:
    X = rng.uniform(-1, 1, (15, 3))
    y = rng.standard_normal(15)
    Xq = rng.uniform(-1, 1, (4, 3))
    return X, y, Xq


@pytest.fixture
def fitted(data: tuple[FloatArray, FloatArray, FloatArray]) -> KernelSelfDistillation:
    X, y, _ = data
    return KernelSelfDistillation(gamma=2.0, lam=0.1, steps=3, alpha=0.3).fit(X, y)


# ---------------------------------------------------------------------------- scikit-learn checks
def test_check_estimator_default() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkipTestWarning)  # the array-API check needs SCIPY_ARRAY_API
        check_estimator(KernelSelfDistillation())


@parametrize_with_checks(
    [
        KernelSelfDistillation(steps=3, alpha=0.3),
        KernelSelfDistillation(kernel="laplacian", gamma=0.5, lam=0.01, steps=4, alpha=[0.5, -0.5, 1.5]),
    ]
)
def test_sklearn_compatible_non_default(estimator: KernelSelfDistillation, check: Any) -> None:
    check(estimator)


# ---------------------------------------------------------------------------- KernelRidge conventions
KRR_CASES = [
    ("rbf", {"gamma": 2.0}),
    ("rbf", {}),
    ("laplacian", {"gamma": 0.5}),
    ("linear", {}),
    ("polynomial", {"degree": 2, "gamma": 0.3, "coef0": 1.0}),
    ("polynomial", {}),
    ("sigmoid", {"gamma": 0.01, "coef0": 0.5}),
    ("cosine", {}),
]


@pytest.mark.parametrize(("kernel", "params"), KRR_CASES)
@pytest.mark.parametrize("lam", [1e-3, 0.2, 10.0])
@pytest.mark.parametrize("p", [None, 2])
def test_steps1_is_kernel_ridge(
    kernel: str, params: dict, lam: float, p: int | None, rng: np.random.Generator
) -> None:
    """steps=1 (any alpha) predicts as KernelRidge(alpha=lam, kernel=..., same kernel parameters)."""
    X = rng.uniform(-1, 1, (20, 3))
    y = rng.standard_normal(20 if p is None else (20, p))
    Xq = rng.uniform(-1, 1, (7, 3))
    ours = KernelSelfDistillation(kernel=kernel, lam=lam, steps=1, alpha=0.7, **params).fit(X, y)
    theirs = KernelRidge(alpha=lam, kernel=kernel, **params).fit(X, y)
    scale = max(1.0, np.abs(theirs.dual_coef_).max())
    np.testing.assert_allclose(ours.predict(Xq), theirs.predict(Xq), rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(ours.dual_coef_, theirs.dual_coef_, rtol=0, atol=1e-9 * scale)
    assert ours.predict(Xq).shape == theirs.predict(Xq).shape


def test_steps1_is_kernel_ridge_callable_kernel(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, Xq = data
    ours = KernelSelfDistillation(kernel=cauchy_kernel, kernel_params={"gamma": 3.0}, lam=0.05).fit(X, y)
    theirs = KernelRidge(alpha=0.05, kernel=cauchy_kernel, kernel_params={"gamma": 3.0}).fit(X, y)
    np.testing.assert_allclose(ours.predict(Xq), theirs.predict(Xq), atol=1e-10)


def test_precomputed_kernel_matches_named_kernel(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    """kernel='precomputed' takes K and kappa(Xq, X): the same path as the named kernel."""
    X, y, Xq = data
    K = pairwise_kernels(X, metric="rbf", gamma=2.0)
    Kq = pairwise_kernels(Xq, X, metric="rbf", gamma=2.0)
    pre = KernelSelfDistillation(kernel="precomputed", lam=0.1, steps=4, alpha=0.2).fit(K, y)
    named = KernelSelfDistillation(gamma=2.0, lam=0.1, steps=4, alpha=0.2).fit(X, y)
    np.testing.assert_allclose(pre.path(Kq), named.path(Xq), atol=1e-12)
    np.testing.assert_allclose(pre.predict(Kq), named.predict(Xq), atol=1e-12)


def test_predict_uses_own_steps_and_alpha_sequence(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    """predict = f(x, beta^(steps)) with the estimator's own step-wise alphas, as the oracle refits."""
    X, y, Xq = data
    alphas = [0.5, -0.5, 1.5]
    m = KernelSelfDistillation(gamma=2.0, lam=0.1, steps=4, alpha=alphas).fit(X, y)
    F_ref, _ = reference.distill_refits(X, y, Xq, 0.1, alphas, "rbf", gamma=2.0)
    np.testing.assert_allclose(m.predict(Xq), F_ref[-1], atol=1e-10)
    np.testing.assert_allclose(m.path(Xq), F_ref, atol=1e-10)
    assert m.path(Xq).shape == (4, 4)
    # clone keeps the parameters, refitting reproduces the predictions
    np.testing.assert_allclose(clone(m).fit(X, y).predict(Xq), m.predict(Xq), atol=1e-14)


def test_output_shapes(rng: np.random.Generator) -> None:
    X = rng.uniform(-1, 1, (10, 2))
    Xq = X[:3]
    for shape, tail in (((10,), ()), ((10, 1), (1,)), ((10, 3), (3,))):
        m = KernelSelfDistillation(lam=0.1).fit(X, rng.standard_normal(shape))
        assert m.predict(Xq).shape == (3,) + tail
        assert m.path(Xq, steps=5, alpha=0.2).shape == (5, 3) + tail
        assert m.train_path(steps=5, alpha=0.2).shape == (5, 10) + tail
        assert m.limit(Xq, alpha=0.2).shape == (3,) + tail
        assert m.B_diag(steps=5, alpha=0.2).shape == (5, 10)
        assert m.grid(Xq, [0.1, 1.0], [0.0, 0.5, 2.0], 4).shape == (2, 3, 4, 3) + tail


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan"), float("inf"), "abc", None])
def test_fit_rejects_bad_lam(lam: Any, data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, _ = data
    with pytest.raises(ValueError, match=rf"lam must be a finite number > 0, got lam={lam!r}"):
        KernelSelfDistillation(lam=lam).fit(X, y)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", ["X", "y"])
def test_fit_rejects_non_finite_data(bad: float, where: str, data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, _ = data
    X, y = X.copy(), y.copy()
    (X if where == "X" else y)[2] = bad
    word = "NaN" if np.isnan(bad) else "infinity"
    with pytest.raises(ValueError, match=rf"Input {where} contains {word}"):
        KernelSelfDistillation().fit(X, y)


def test_fit_rejects_mismatched_lengths(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, _ = data
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[15, 14\]"):
        KernelSelfDistillation().fit(X, y[:-1])


@pytest.mark.parametrize("steps", [0, -2, 2.5, "3", True])
def test_fit_rejects_bad_steps(steps: Any, data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, _ = data
    with pytest.raises(ValueError, match=rf"steps must be an integer >= 1, got steps={steps!r}"):
        KernelSelfDistillation(steps=steps).fit(X, y)


@pytest.mark.parametrize("steps", [0, 1.5])
def test_methods_reject_bad_steps(steps: Any, fitted: KernelSelfDistillation) -> None:
    Xq = fitted.X_fit_[:2]
    match = rf"steps={steps!r}"
    for call in (
        lambda: fitted.path(Xq, steps=steps),
        lambda: fitted.train_path(steps=steps),
        lambda: fitted.B_diag(steps=steps),
        lambda: fitted.optimal_alphas(Xq, np.zeros(2), steps=steps),
        lambda: fitted.grid(Xq, [0.1], [0.5], steps),
    ):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize(
    ("alpha", "match"),
    [
        ([0.1, 0.2, 0.3], r"alpha must be a scalar or a sequence of steps - 1 = 2 weights .* got shape \(3,\)"),
        ([0.1], r"steps - 1 = 2 weights"),
        ([0.1, float("nan")], r"alpha must be finite, got alpha=\[0.1, nan\]"),
        (float("nan"), r"alpha must be finite, got alpha=nan"),
    ],
)
def test_rejects_bad_alpha(alpha: Any, match: str, fitted: KernelSelfDistillation) -> None:
    X = fitted.X_fit_
    with pytest.raises(ValueError, match=match):
        KernelSelfDistillation(steps=3, alpha=alpha).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match=match):
        fitted.path(X[:2], steps=3, alpha=alpha)
    with pytest.raises(ValueError, match=match):
        fitted.train_path(steps=3, alpha=alpha)
    with pytest.raises(ValueError, match=match):
        fitted.B_diag(steps=3, alpha=alpha)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan")])
def test_limit_rejects_alpha_outside_unit_interval(alpha: float, fitted: KernelSelfDistillation) -> None:
    with pytest.raises(ValueError, match=rf"Theorem 4.5 needs alpha in \[0, 1\], got alpha={alpha!r}"):
        fitted.limit(fitted.X_fit_[:2], alpha=alpha)


def test_limit_needs_one_fixed_alpha(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    """Theorem 4.5 is about a fixed alpha: a step-wise sequence (the estimator's own) is an error;
    a scalar estimator alpha is used when none is passed."""
    X, y, Xq = data
    seq = KernelSelfDistillation(gamma=2.0, lam=0.1, steps=3, alpha=[0.2, 0.4]).fit(X, y)
    with pytest.raises(ValueError, match=r"one fixed alpha in \[0, 1\], got alpha=\[0.2, 0.4\]"):
        seq.limit(Xq)
    with pytest.raises(ValueError, match=r"one fixed alpha"):
        seq.limit(Xq, alpha=[0.2, 0.4])
    own = KernelSelfDistillation(gamma=2.0, lam=0.1, alpha=0.4).fit(X, y)
    np.testing.assert_array_equal(own.limit(Xq), own.limit(Xq, alpha=0.4))


def test_rejects_wrong_number_of_features(fitted: KernelSelfDistillation) -> None:
    bad = np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"Xq has 5 features, but the model was fitted with 3"):
        fitted.path(bad)
    with pytest.raises(ValueError, match=r"Xq has 5 features"):
        fitted.limit(bad, alpha=0.5)
    with pytest.raises(ValueError, match=r"Xq has 5 features"):
        fitted.grid(bad, [0.1], [0.5], 2)
    with pytest.raises(ValueError, match=r"X_val has 5 features, but the model was fitted with 3"):
        fitted.optimal_alphas(bad, np.zeros(2), steps=3)
    with pytest.raises(ValueError, match=r"X has 5 features, but KernelSelfDistillation is expecting 3"):
        fitted.predict(bad)


def test_rejects_non_finite_query(fitted: KernelSelfDistillation) -> None:
    bad = np.array([[0.0, np.nan, 0.0]])
    with pytest.raises(ValueError, match=r"Input Xq contains NaN"):
        fitted.path(bad)
    with pytest.raises(ValueError, match=r"Input X_val contains NaN"):
        fitted.optimal_alphas(bad, np.zeros(1))
    with pytest.raises(ValueError, match=r"Input y_val contains infinity"):
        fitted.optimal_alphas(fitted.X_fit_[:2], np.array([0.0, np.inf]))


@pytest.mark.parametrize(
    ("y_val_shape", "y_shape"),
    [((4, 2), (15,)), ((5,), (15,)), ((4,), (15, 2)), ((4, 3), (15, 2)), ((8,), (15, 2))],
)
def test_optimal_alphas_rejects_wrong_y_val(
    y_val_shape: tuple, y_shape: tuple, data: tuple[FloatArray, FloatArray, FloatArray], rng: np.random.Generator
) -> None:
    """y_val must be (m,) or (m, p) for m validation points and the p outputs of y, never reshaped
    from another layout (e.g. (2m,) for p = 2)."""
    X, _, _ = data
    m = KernelSelfDistillation(lam=0.1).fit(X, rng.standard_normal(y_shape))
    with pytest.raises(ValueError, match=r"y_val must have shape \(4, \d\) .*got"):
        m.optimal_alphas(X[:4], np.zeros(y_val_shape), steps=3)


def test_grid_rejects_bad_lams_and_alphas(fitted: KernelSelfDistillation) -> None:
    Xq = fitted.X_fit_[:2]
    with pytest.raises(ValueError, match=r"lams must be a finite number > 0, got lams=-1.0"):
        fitted.grid(Xq, [0.1, -1.0], [0.5], 2)
    with pytest.raises(ValueError, match=r"alphas must be finite, got alphas=\[0.5, nan\]"):
        fitted.grid(Xq, [0.1], [0.5, np.nan], 2)


@pytest.mark.parametrize(
    "call",
    [
        lambda m, X: m.predict(X),
        lambda m, X: m.path(X, steps=2),
        lambda m, X: m.train_path(steps=2),
        lambda m, X: m.limit(X, alpha=0.5),
        lambda m, X: m.B_diag(steps=2),
        lambda m, X: m.optimal_alphas(X, np.zeros(len(X)), steps=2),
        lambda m, X: m.grid(X, [0.1], [0.5], 2),
        lambda m, X: m.eigenvalues_,
    ],
)
def test_not_fitted(call: Any, data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, _, _ = data
    with pytest.raises(NotFittedError, match="KernelSelfDistillation instance is not fitted yet"):
        call(KernelSelfDistillation(), X)


def test_unknown_kernel_lists_valid_names(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, _ = data
    with pytest.raises(ValueError, match=r"unknown kernel='gaussian'; valid names: .*rbf") as info:
        KernelSelfDistillation(kernel="gaussian").fit(X, y)
    for name in KERNELS:
        assert name in str(info.value)


def test_indefinite_kernel_is_reported(rng: np.random.Generator) -> None:
    """A kernel for which K + lam I is not positive definite is an error naming lam and the kernel."""
    X = rng.uniform(-1, 1, (20, 3))
    with pytest.raises(ValueError, match=r"not positive definite \(lam=0.001\).*'sigmoid'"):
        KernelSelfDistillation(kernel="sigmoid", gamma=2.0, coef0=-1.0, lam=1e-3).fit(X, rng.standard_normal(20))


def test_callable_kernel_params_reach_the_kernel(data: tuple[FloatArray, FloatArray, FloatArray]) -> None:
    X, y, Xq = data
    a = KernelSelfDistillation(kernel=cauchy_kernel, kernel_params={"gamma": 3.0}, lam=0.05).fit(X, y)
    b = KernelSelfDistillation(kernel=partial(cauchy_kernel, gamma=3.0), lam=0.05).fit(X, y)
    c = KernelSelfDistillation(kernel=cauchy_kernel, lam=0.05).fit(X, y)
    np.testing.assert_allclose(a.predict(Xq), b.predict(Xq), atol=1e-14)
    assert not np.allclose(a.predict(Xq), c.predict(Xq))

"""GCV weights (:mod:`sdlib.krr.gcv`, ``optimal_alphas(method="gcv" | "gcv_joint")``) against brute force.

Oracles, none of which uses :mod:`sdlib.krr.gcv` or an eigendecomposition of ``K``:

* the smoother matrix ``S`` of any chain is built column by column from refits of problem (1) in
  the primal on the unit vectors (:func:`sdlib.krr.reference.solve_problem1` on an explicit feature
  map), and ``GCV = n ||(I - S) y||^2 / (n - tr S)^2`` is computed from it directly
  (``inf`` where ``tr S >= n``);
* greedy: each step's GCV, as a function of that step's weight given the earlier ones, is
  minimised by a dense scan over ``[-40, 40]`` and bounded Brent around the best scan point (the
  step's smoother is ``(1 - alpha) S(0) + alpha S(1)``, problem (1) being linear in its targets,
  so two refits give it for every alpha); our weight's GCV itself is recomputed by refits;
* joint: scipy's BFGS over the ``T - 1`` free coefficients of eq. (6) (the sum is 1), on the refit
  matrices of pure distillation, from several starts, never beats our minimum;
* leave-one-out: explicit refits without each point.

Tolerances. Problems: ``n <= 12`` points in ``[-1, 1]^2``, RBF kernel, ``lam`` in ``[0.02, 2]``,
so ``cond(K + lam I) <= 1 + n / lam <~ 1e3`` and refits agree with the closed form to ~1e-12
relative. GCV values are compared to ``1e-9`` relative. A minimiser is determined by the values
only to ``delta = sqrt(2 eps_f f / f'')`` with ``eps_f`` the relative accuracy of the brute-force
values; weights are compared to ``1e-5 (1 + sqrt(f / f''))`` (``eps_f <= 1e-10``, with margin).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import optimize

from sdlib import KernelSelfDistillation
from sdlib.krr import gcv, reference, theory

FloatArray = NDArray[np.float64]
RTOL = 1e-9


class Brute:
    """GCV of self-distillation chains from explicit refits on the unit vectors."""

    def __init__(self, X: FloatArray, y: FloatArray, lam: float, gamma: float) -> None:
        self.Phi, _ = reference.feature_map(X, X[:0], "rbf", gamma=gamma)
        self.y, self.lam, self.n = y, lam, X.shape[0]

    def smoother(self, alphas: list[float] | FloatArray) -> FloatArray:
        eye = np.eye(self.n)
        prev = self.Phi @ reference.solve_problem1(self.Phi, eye, eye, 1.0, self.lam)
        for a in alphas:
            prev = self.Phi @ reference.solve_problem1(self.Phi, eye, prev, float(a), self.lam)
        return prev

    def gcv_of(self, S: FloatArray) -> float:
        q = self.n - np.trace(S)
        if q <= 0:
            return np.inf
        r = self.y - S @ self.y
        return float(self.n * np.sum(r * r) / q**2)

    def gcv(self, alphas: list[float] | FloatArray) -> float:
        return self.gcv_of(self.smoother(alphas))

    def step_min(self, prev: list[float], bounds: tuple[float, float] = (-40.0, 40.0)) -> tuple[float, float]:
        # Problem (1)'s minimiser is linear in its targets alpha y + (1 - alpha) y_prev, so the
        # smoother of the step is (1 - alpha) S(0) + alpha S(1): two refits give it for every alpha.
        S0, S1 = self.smoother([*prev, 0.0]), self.smoother([*prev, 1.0])
        f = lambda a: self.gcv_of((1 - a) * S0 + a * S1)  # noqa: E731
        grid = np.linspace(bounds[0], bounds[1], 4001)
        vals = np.array([f(a) for a in grid])
        i = int(np.argmin(vals))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        res = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
        cands = [(float(res.x), float(res.fun)), (float(grid[i]), float(vals[i]))]
        return min(cands, key=lambda c: c[1])


@st.composite
def problems(draw: st.DrawFn, max_n: int = 12) -> tuple[FloatArray, FloatArray, float, float]:
    n = draw(st.integers(5, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    noise = draw(st.floats(0.0, 1.0))
    y = np.sin(3 * X[:, 0]) + X[:, 1] + noise * rng.normal(size=n)
    lam = draw(st.floats(0.02, 2.0))
    gamma = draw(st.floats(0.3, 3.0))
    return X, y, lam, gamma


def _model(X: FloatArray, y: FloatArray, lam: float, gamma: float) -> KernelSelfDistillation:
    return KernelSelfDistillation(lam=lam, gamma=gamma).fit(X, y)


def _alpha_tol(bf: Brute, prev: list[float], a: float) -> float:
    """``1e-5 (1 + sqrt(f / f''))`` with ``f''`` by a central difference of the refit GCV."""
    h = 1e-3 * (1 + abs(a))
    f0, fp, fm = bf.gcv([*prev, a]), bf.gcv([*prev, a + h]), bf.gcv([*prev, a - h])
    curv = max((fp - 2 * f0 + fm) / h**2, 1e-300)
    return 1e-5 * (1 + np.sqrt(f0 / curv))


@given(problems(), st.integers(2, 4), st.booleans())
def test_greedy_gcv_is_the_brute_force_minimum_step_by_step(prob, steps, clip) -> None:
    X, y, lam, gamma = prob
    with warnings.catch_warnings():
        warnings.simplefilter("error", gcv.GCVWarning)
        try:
            alphas = _model(X, y, lam, gamma).optimal_alphas(steps=steps, method="gcv", clip=clip)
        except gcv.GCVWarning:
            assume(False)  # no minimiser: covered by test_step_minimiser_*
    bf = Brute(X, y, lam, gamma)
    assert alphas.shape == (steps - 1,)
    prev: list[float] = []
    for a in alphas:
        ours = bf.gcv([*prev, a])
        a_bf, f_bf = bf.step_min(prev, (0.0, 1.0) if clip else (-40.0, 40.0))
        assert ours <= f_bf * (1 + RTOL), (prev, a, a_bf)
        if clip:
            assert 0.0 <= a <= 1.0
        # a minimum of the refit criterion: neither side is lower
        for side in (-1, 1):
            t = a + side * 1e-4 * (1 + abs(a))
            if not clip or 0.0 <= t <= 1.0:
                assert bf.gcv([*prev, t]) >= ours * (1 - RTOL)
        if abs(a_bf) < 39.0:
            assert abs(a - a_bf) <= _alpha_tol(bf, prev, a), (a, a_bf)
        prev.append(float(a))


@given(problems(max_n=10), st.integers(2, 4))
def test_joint_gcv_is_not_beaten_by_bfgs_over_refits(prob, steps) -> None:
    X, y, lam, gamma = prob
    m = _model(X, y, lam, gamma)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gcv.GCVWarning)
        res = m._gcv(steps, False, "gcv_joint")
    alphas = m.optimal_alphas(steps=steps, method="gcv_joint")
    np.testing.assert_array_equal(alphas, res.alphas)
    bf = Brute(X, y, lam, gamma)
    # pure-distillation smoothers M^k, k = 1..T, from refits; S(c) = sum_k c_k M^k with sum c = 1
    Ms = [bf.smoother(np.zeros(k - 1)) for k in range(1, steps + 1)]

    def f(free: FloatArray) -> float:
        c = np.concatenate([[1.0 - free.sum()], free])
        return bf.gcv_of(sum(ck * Mk for ck, Mk in zip(c, Ms, strict=True)))

    ours_refit = bf.gcv(res.alphas)
    # our weights' GCV by refits is the one we report, and the solver's own minimum
    assert ours_refit == pytest.approx(res.gcv, rel=1e-8)
    assume(np.isfinite(res.solver_gcv))
    greedy = bf.gcv(m.optimal_alphas(steps=steps, method="gcv")) if steps > 1 else np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gcv.GCVWarning)
        assert res.solver_gcv <= greedy * (1 + RTOL)
    starts = [np.zeros(steps - 1), np.full(steps - 1, 1.0 / steps),
              theory.path_coefficients(m.optimal_alphas(steps=steps, method="gcv"), steps)[2:]]
    for x0 in starts:
        r = optimize.minimize(f, x0, method="BFGS", options={"gtol": 1e-12})
        if np.isfinite(r.fun):
            assert res.solver_gcv <= r.fun * (1 + 1e-7) + 1e-12, (r.x, r.fun, res.solver_gcv)


@given(problems(max_n=10), st.integers(2, 4))
def test_joint_gcv_clipped_weights_in_unit_box_beat_slsqp(prob, steps) -> None:
    X, y, lam, gamma = prob
    m = _model(X, y, lam, gamma)
    alphas = m.optimal_alphas(steps=steps, method="gcv_joint", clip=True)
    assert np.all((alphas >= 0) & (alphas <= 1))
    bf = Brute(X, y, lam, gamma)
    ours = bf.gcv(alphas)
    greedy = bf.gcv(m.optimal_alphas(steps=steps, method="gcv", clip=True))
    assert ours <= greedy * (1 + 1e-8)
    for x0 in (np.full(steps - 1, 0.5), np.ones(steps - 1)):
        r = optimize.minimize(bf.gcv, x0, method="SLSQP", bounds=[(0, 1)] * (steps - 1),
                              options={"ftol": 1e-14, "maxiter": 500})
        assert ours <= r.fun * (1 + 1e-7), (r.x, r.fun, ours, alphas)


@given(st.integers(0, 2**32 - 1), st.integers(3, 30), st.booleans())
def test_step_minimiser_is_the_minimum_of_the_rational_function(seed, n, bounded) -> None:
    """(G2) against a dense scan of ``N(alpha) / Q(alpha)^2`` on ``tr S < n``, signs of ``w`` mixed."""
    rng = np.random.default_rng(seed)
    omega = rng.exponential(size=n)
    u = rng.uniform(0, 1, size=n)
    w = rng.normal(scale=0.5, size=n)
    bounds = (-3.0, 2.0) if bounded else None
    got = gcv.step_minimiser(omega, u, w, bounds)
    grid = np.linspace(-200, 200, 400_001) if bounds is None else np.linspace(*bounds, 100_001)
    H = u[None, :] + grid[:, None] * w[None, :]
    q = n - H.sum(axis=1)
    vals = np.where(q > 0, gcv.gcv_from_filter(omega, H), np.inf)
    if got is None:
        # no minimiser: the scan's best is at the edge of the scanned domain where tr S < n
        assert bounds is None
        i = int(np.argmin(vals))
        assert i in (0, grid.size - 1) or not np.isfinite(vals[i + 1]) or not np.isfinite(vals[i - 1])
        return
    a, f = got
    assert f == pytest.approx(float(gcv.gcv_from_filter(omega, u + a * w)), rel=1e-12)
    assert n - np.sum(u + a * w) > 0
    assert f <= vals.min() * (1 + 1e-12)
    if bounds is not None:
        assert bounds[0] <= a <= bounds[1]


def test_no_minimiser_is_reported() -> None:
    # the weight moves only a direction without signal: GCV = 0.5 / (1.5 - alpha / 2)^2 -> 0 as
    # alpha -> -inf, no minimiser; over a box, the end point
    omega, u, w = np.array([1.0, 0.0]), np.array([0.5, 0.0]), np.array([0.0, 0.5])
    assert gcv.step_minimiser(omega, u, w) is None
    a, f = gcv.step_minimiser(omega, u, w, (-1.0, 1.0))
    assert a == -1.0 and f == pytest.approx(2 * 0.25 / 2.0**2)


def test_krr_gcv_and_loo_against_explicit_refits() -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(11, 2))
    y = np.cos(2 * X[:, 0]) + 0.2 * rng.normal(size=11)
    lams = [0.03, 0.3, 3.0]
    m = _model(X, y, 1.0, 1.2)
    d, V = m._eigh()
    Phi, _ = reference.feature_map(X, X[:0], "rbf", gamma=1.2)
    for lam, g in zip(lams, gcv.krr_gcv(d, V.T @ y, lams), strict=True):
        S = Phi @ reference.solve_problem1(Phi, np.eye(11), np.eye(11), 1.0, lam)
        assert g == pytest.approx(Brute(X, y, lam, 1.2).gcv_of(S), rel=RTOL)
        loo = gcv.loo_residuals(V, y, theory.A_diag(d, lam))
        for i in range(11):
            keep = np.arange(11) != i
            Pk, Pi = reference.feature_map(X[keep], X[i:i + 1], "rbf", gamma=1.2)
            beta = reference.solve_problem1(Pk, y[keep], y[keep], 1.0, lam)
            assert loo[i] == pytest.approx(y[i] - (Pi @ beta)[0], rel=1e-8, abs=1e-10)


def test_multi_output_gcv_uses_the_frobenius_norm() -> None:
    rng = np.random.default_rng(5)
    X = rng.uniform(-1, 1, size=(10, 2))
    Y = np.column_stack([np.sin(3 * X[:, 0]), X[:, 1] ** 2]) + 0.3 * rng.normal(size=(10, 2))
    m = _model(X, Y, 0.2, 1.0)
    alphas = m.optimal_alphas(steps=3, method="gcv")
    bf = Brute(X, Y, 0.2, 1.0)
    a_bf, f_bf = bf.step_min([])
    assert bf.gcv(alphas[:1]) <= f_bf * (1 + RTOL)
    assert abs(alphas[0] - a_bf) <= _alpha_tol(bf, [], alphas[0])
    # the path with these weights is the estimator's own path
    a2, F = m.optimal_path(X[:4], steps=3, method="gcv")
    np.testing.assert_array_equal(a2, alphas)
    np.testing.assert_allclose(F, m.path(X[:4], steps=3, alpha=alphas), rtol=0, atol=0)


def test_validation_arrays_are_required_or_refused_with_a_one_line_error() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(8, 2))
    y = X[:, 0]
    m = _model(X, y, 0.5, 1.0)
    for method in ("greedy", "joint"):
        with pytest.raises(ValueError, match=f"method='{method}' needs validation data: X_val and y_val"):
            m.optimal_alphas(steps=3, method=method)
        with pytest.raises(ValueError, match="X_val and y_val must be given"):
            m.optimal_path(X, X, None, steps=3, method=method)
    for method in ("gcv", "gcv_joint"):
        with pytest.raises(ValueError, match=r"uses the training data only: pass X_val=None"):
            m.optimal_alphas(X, y, steps=3, method=method)
    with pytest.raises(ValueError, match="method must be one of"):
        m.optimal_alphas(steps=3, method="loo")
    with pytest.raises(ValueError, match="lam"):
        gcv.greedy_alphas(np.ones(3), np.ones(3), -1.0, 3)
    with pytest.raises(ValueError, match="z must have shape"):
        gcv.greedy_alphas(np.ones(3), np.ones(4), 1.0, 3)
    # the caller's arrays are not written to
    y0 = y.copy()
    m.optimal_alphas(steps=3, method="gcv_joint")
    np.testing.assert_array_equal(y, y0)

"""Jointly optimal weights (:mod:`sdlib.krr.joint`, ``optimal_alphas(method="joint")``) against oracles.

Oracles, none of which uses :mod:`sdlib.krr.joint`:

* the validation error of weights is always computed by refitting every step of problem (1) in the
  primal (:func:`sdlib.krr.reference.distill_refits`);
* scipy's generic optimisers over those refit errors: started at our weights they find nothing
  better (the point is a minimum); a Levenberg-Marquardt fit over eq. (6)'s coefficients of the
  refitted pure-distillation predictions never beats our error (an iterative optimiser may stop
  early, so it bounds the minimum from above only), and the exact least-squares minimum over those
  coefficients (an SVD solve of the same linear problem) equals it (the value is the minimum), to a
  tolerance that grows with the condition number of that least-squares problem;
* for weights in ``[0, 1]``: SLSQP over the box from several starts, and SLSQP over the simplex of
  coefficients;
* for the coordinate updates: the minimum of the exact quadratic through three refits.

Tolerance: errors agree to ``1e-6`` relative (plus ``1e-9 ||y_val||^2`` for errors near zero), the
issue's accuracy for a numerical optimum. Random problems: ``n <= 15`` points in ``[-1, 1]^d``,
``d <= 3``, RBF or Laplacian kernels, ``lam`` in ``[1e-2, 1]``, ``T <= 5`` steps, 1-d or 2-output
targets; ``cond(K + lam I) <~ 1e3``, so the refits agree with the engine to ~1e-12.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import optimize
from sklearn.exceptions import ConvergenceWarning

from sdlib import KernelSelfDistillation
from sdlib.krr import joint, reference, theory

FloatArray = NDArray[np.float64]
RTOL = 1e-6


@dataclass
class Case:
    X: FloatArray
    y: FloatArray
    X_val: FloatArray
    y_val: FloatArray
    lam: float
    kernel: str
    gamma: float
    steps: int

    def model(self) -> KernelSelfDistillation:
        return KernelSelfDistillation(kernel=self.kernel, gamma=self.gamma, lam=self.lam).fit(self.X, self.y)

    def features(self) -> tuple[FloatArray, FloatArray]:
        if not hasattr(self, "_features"):
            self._features = reference.feature_map(self.X, self.X_val, self.kernel, gamma=self.gamma)
        return self._features

    def refit_error(self, alphas: FloatArray) -> float:
        """Validation error (Frobenius) after len(alphas) + 1 steps, every step refitted (problem (1),
        as reference.distill_refits, with the feature map computed once)."""
        Phi, Phi_val = self.features()
        beta = reference.solve_problem1(Phi, self.y, self.y, 1.0, self.lam)
        for a in alphas:
            beta = reference.solve_problem1(Phi, self.y, Phi @ beta, float(a), self.lam)
        return float(np.sum((self.y_val - Phi_val @ beta) ** 2))

    def refit_chain(self) -> FloatArray:
        """Refitted validation predictions of pure distillation, steps 1..T (all alpha = 0)."""
        F, _ = reference.distill_refits(self.X, self.y, self.X_val, self.lam, [0.0] * (self.steps - 1),
                                        self.kernel, gamma=self.gamma)
        return F


@st.composite
def cases(draw: st.DrawFn, steps: tuple[int, int] = (2, 5)) -> Case:
    """y = sin(2 X w) + noise for training and validation; 1-d or two-output targets."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n, d, m = draw(st.integers(4, 15)), draw(st.integers(1, 3)), draw(st.integers(4, 12))
    p = draw(st.sampled_from([None, 2]))
    w = rng.standard_normal((d, 1 if p is None else p))
    X, X_val = rng.uniform(-1, 1, (n, d)), rng.uniform(-1, 1, (m, d))
    y = np.sin(2 * X @ w) + 0.3 * rng.standard_normal((n, w.shape[1]))
    y_val = np.sin(2 * X_val @ w) + 0.3 * rng.standard_normal((m, w.shape[1]))
    if p is None:
        y, y_val = y[:, 0], y_val[:, 0]
    kernel = draw(st.sampled_from(["rbf", "laplacian"]))
    gamma = 10.0 ** draw(st.floats(-0.5, 1.0))
    lam = 10.0 ** draw(st.floats(-2.0, 0.0))
    return Case(X, y, X_val, y_val, lam, kernel, gamma, draw(st.integers(*steps)))


def close(actual: float, expected: float, case: Case, rtol: float = RTOL) -> bool:
    return abs(actual - expected) <= rtol * expected + 1e-9 * float(np.sum(case.y_val**2))


def _coefficient_design(case: Case) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The refitted chain G (steps x m p), the validation targets and the design B of the linear
    least-squares problem over c (sum c = 1): residual = yv - G[0] - B u, c = (1 - sum u, u)."""
    G = case.refit_chain().reshape(case.steps, -1)
    return G, case.y_val.reshape(-1), (G[1:] - G[0]).T


def lstsq_minimum_over_coefficients(case: Case) -> tuple[float, float]:
    """The exact minimum of ||y_val - sum_k c_k g_{k-1}||^2 over c (sum c = 1), g from refits, by an
    SVD least-squares solve: ``(minimum, condition number of the column-scaled design)``. The
    residual is linear in c, so this is the minimum itself, not an iterate."""
    G, yv, B = _coefficient_design(case)
    scale = np.maximum(np.linalg.norm(B, axis=0), 1e-300)
    cond = float(np.linalg.cond(B / scale))
    u = np.linalg.lstsq(B / scale, yv - G[0], rcond=None)[0] / scale
    return float(np.sum((yv - G[0] - B @ u) ** 2)), cond


def close_to_minimum(err: float, minimum: float, cond: float, case: Case) -> bool:
    """err equals the least-squares minimum to RTOL plus the round-off of a backward-stable solve of
    a problem with condition ``cond`` (relative error ~ eps * cond in the residual, eps = 2.2e-16;
    a factor 100 for the refits behind G and the accumulation over m p entries)."""
    slack = 100 * np.finfo(float).eps * max(cond, 1.0) * float(np.sum(case.y_val**2))
    return abs(err - minimum) <= RTOL * minimum + 1e-9 * float(np.sum(case.y_val**2)) + slack


#: Condition number of the column-scaled least-squares design above which float64 does not determine
#: the joint minimum to RTOL: the columns (successive steps of pure distillation) are then nearly
#: collinear (e.g. all eigenvalues of K alike), the optimum needs weights of 1e6 and more, and every
#: evaluation of them, by refits or by any optimiser, carries errors of eps * cond. Seen at random
#: seeds: conditions up to 6e15, weights of -8e12. There only the weak properties are checked.
COND_DETERMINED = 1e6


def evaluation_slack(case: Case, alphas: FloatArray) -> float:
    """Round-off of a validation error evaluated at ``alphas``: the prediction is eq. (6)'s sum
    ``sum_k c_k g_k``, whose rounding is ~ eps sum_k |c_k| ||g_k|| (||g_k|| <~ ||y||); a factor
    100 for the refits and the accumulation."""
    c = joint.coefficients(alphas)
    scale = float(np.sum(case.y_val**2)) + float(np.sum(case.y**2))
    return 100 * np.finfo(float).eps * float(np.abs(c).sum()) * scale


def lm_minimum_over_coefficients(case: Case) -> tuple[float, float]:
    """Levenberg-Marquardt over c (sum c = 1) of ||y_val - sum_k c_k g_{k-1}||, g from refits:
    ``(value where it stopped, condition number of the column-scaled design)``. Its Jacobian is
    taken by finite differences and it may stop early: an upper bound of the minimum, no more."""
    G, yv, B = _coefficient_design(case)
    cond = float(np.linalg.cond(B / np.maximum(np.linalg.norm(B, axis=0), 1e-300)))

    def residual(u: FloatArray) -> FloatArray:
        return yv - np.concatenate([[1.0 - u.sum()], u]) @ G

    if yv.size < case.steps - 1:  # LM needs at least as many residuals as unknowns
        res = optimize.least_squares(residual, np.zeros(case.steps - 1), method="trf", xtol=1e-15,
                                     ftol=1e-15, gtol=1e-15)
    else:
        res = optimize.least_squares(residual, np.zeros(case.steps - 1), method="lm", xtol=1e-15,
                                     ftol=1e-15, gtol=1e-15)
    return 2.0 * float(res.cost), cond


# ---------------------------------------------------------------------------- the map alpha <-> c (eq. 6)
@given(alphas=st.lists(st.floats(-3.0, 3.0), min_size=0, max_size=8))
def test_coefficients_sum_to_one_and_invert(alphas: list[float]) -> None:
    """eq. (6): the coefficients sum to 1 and alphas_from_coefficients inverts them away from alpha = 1."""
    c = joint.coefficients(alphas)
    assert c.shape == (len(alphas) + 1,)
    assert abs(c.sum() - 1.0) <= 1e-12 * max(1.0, np.abs(c).sum())
    # They are theory.path_coefficients without the zero constant term (independent transcription).
    np.testing.assert_array_equal(c, theory.path_coefficients(alphas, len(alphas) + 1)[1:])
    assume(all(abs(1.0 - a) > 1e-2 for a in alphas))
    back = joint.alphas_from_coefficients(c)
    np.testing.assert_allclose(back, alphas, rtol=1e-9, atol=1e-9)


@given(alphas=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_unit_box_maps_into_the_simplex(alphas: list[float]) -> None:
    """Weights in [0, 1] give coefficients c >= 0 summing to 1, and back to weights in [0, 1]."""
    c = joint.coefficients(alphas)
    assert np.all(c >= 0)
    back = joint.alphas_from_coefficients(c)
    assert np.all((back >= -1e-12) & (back <= 1 + 1e-12))
    np.testing.assert_allclose(joint.coefficients(back), c, atol=1e-12)


def test_coefficients_of_one_vertex() -> None:
    """c = e_1 means alpha^(T) = 1 (a plain refit); the earlier weights do not matter and are 1."""
    np.testing.assert_array_equal(joint.alphas_from_coefficients([1.0, 0.0, 0.0]), [1.0, 1.0])
    with pytest.warns(RuntimeWarning, match="no weights give"):
        joint.alphas_from_coefficients([1.0, 1.0, -1.0])
    with pytest.raises(ValueError, match="sum to 1"):
        joint.alphas_from_coefficients([0.5, 0.2])


# ---------------------------------------------------------------------------- the joint optimum
@settings(max_examples=12)
@given(case=cases())
def test_joint_is_the_minimum_of_refit_errors(case: Case) -> None:
    """No generic optimiser over refits improves on the joint weights, the exact least-squares
    minimum over the coefficients of the refitted chain is the same error, and Levenberg-Marquardt
    (which may stop early) never ends below it; greedy is never better."""
    m = case.model()
    a_joint = m.optimal_alphas(case.X_val, case.y_val, steps=case.steps, method="joint")
    assert a_joint.shape == (case.steps - 1,)
    err_joint = case.refit_error(a_joint)
    a_greedy = m.optimal_alphas(case.X_val, case.y_val, steps=case.steps)
    slack = evaluation_slack(case, a_joint) + evaluation_slack(case, a_greedy)
    assert err_joint <= case.refit_error(a_greedy) * (1 + 1e-9) + 1e-12 + slack
    err_ls, cond = lstsq_minimum_over_coefficients(case)
    if cond > COND_DETERMINED:
        return  # the minimum is not determined in float64 (see COND_DETERMINED)
    assert close_to_minimum(err_joint, err_ls, cond, case), (err_joint, err_ls, cond)
    # LM bounds the minimum from above only: the joint weights are never worse than where it stops.
    err_lm, _ = lm_minimum_over_coefficients(case)
    assert err_joint <= err_lm * (1 + RTOL) + 1e-9 * float(np.sum(case.y_val**2)), (err_joint, err_lm)
    polished = optimize.minimize(case.refit_error, a_joint, method="Nelder-Mead",
                                 options={"xatol": 1e-10, "fatol": 1e-14, "maxfev": 150})
    assert polished.fun >= err_joint * (1 - RTOL) - 1e-9 * float(np.sum(case.y_val**2)) - slack


@settings(max_examples=8)
@given(case=cases(steps=(2, 4)))
def test_joint_with_clip_is_the_minimum_over_the_unit_box(case: Case) -> None:
    """clip=True: weights in [0, 1]; SLSQP over the box from greedy and random starts finds nothing
    better, SLSQP over the simplex of coefficients of the refitted chain reaches the same error."""
    m = case.model()
    a = m.optimal_alphas(case.X_val, case.y_val, steps=case.steps, clip=True, method="joint")
    assert np.all((a >= 0) & (a <= 1))
    err = case.refit_error(a)
    rng = np.random.default_rng(0)
    starts = [m.optimal_alphas(case.X_val, case.y_val, steps=case.steps, clip=True),
              *rng.uniform(0, 1, (2, case.steps - 1))]
    for x0 in starts:
        res = optimize.minimize(case.refit_error, x0, method="SLSQP", bounds=[(0.0, 1.0)] * (case.steps - 1),
                                options={"ftol": 1e-14, "maxiter": 500})
        assert res.fun >= err * (1 - RTOL) - 1e-9 * float(np.sum(case.y_val**2)), (res.fun, err)
    G = case.refit_chain().reshape(case.steps, -1)
    yv = case.y_val.reshape(-1)
    res = optimize.minimize(lambda c: float(np.sum((yv - c @ G) ** 2)), np.full(case.steps, 1.0 / case.steps),
                            method="SLSQP", bounds=[(0.0, 1.0)] * case.steps,
                            constraints=[{"type": "eq", "fun": lambda c: c.sum() - 1.0}],
                            options={"ftol": 1e-15, "maxiter": 1000})
    assert close(err, res.fun, case), (err, res.fun)


def test_joint_multi_output_uses_the_frobenius_norm(rng: np.random.Generator) -> None:
    """Three outputs share one set of weights; the error is the Frobenius norm (the sum over
    outputs): one output given as (n,) and as (n, 1) agree, and all three differ from one."""
    X, X_val = rng.uniform(-1, 1, (14, 2)), rng.uniform(-1, 1, (10, 2))
    W = rng.standard_normal((2, 3))
    Y, Y_val = np.sin(2 * X @ W) + 0.3 * rng.standard_normal((14, 3)), np.sin(2 * X_val @ W)
    case = Case(X, Y, X_val, Y_val, 0.1, "rbf", 2.0, 4)
    a = case.model().optimal_alphas(X_val, Y_val, steps=4, method="joint")
    err_ls, cond = lstsq_minimum_over_coefficients(case)
    assert close_to_minimum(case.refit_error(a), err_ls, cond, case)
    # the oracle the chapter uses: Levenberg-Marquardt through eq. (J2) and refits of every step; an
    # iterative optimiser, so it bounds the minimum from above (never below the joint weights)
    Phi, Phi_val = reference.feature_map(X, X_val, "rbf", gamma=2.0)
    counter = reference.FitCounter()
    a_num, err_num = reference.joint_alphas_numerical(Phi, Phi_val, Y, Y_val, 0.1, 4, counter)
    assert case.refit_error(a) <= err_num * (1 + RTOL) + 1e-9 * float(np.sum(Y_val**2)) and counter.fits > 4
    assert close(case.refit_error(a_num), err_num, case, rtol=1e-9)
    one = [KernelSelfDistillation(gamma=2.0, lam=0.1).fit(X, Y[:, :1] if two else Y[:, 0]).optimal_alphas(
        X_val, Y_val[:, :1] if two else Y_val[:, 0], steps=4, method="joint") for two in (False, True)]
    np.testing.assert_allclose(one[0], one[1], rtol=1e-10)
    assert not np.allclose(one[0], a)


@settings(max_examples=10)
@given(case=cases(), clip=st.booleans())
def test_optimal_path_joint_equals_alphas_then_path(case: Case, clip: bool) -> None:
    m = case.model()
    a = m.optimal_alphas(case.X_val, case.y_val, steps=case.steps, clip=clip, method="joint")
    a2, F = m.optimal_path(case.X, case.X_val, case.y_val, steps=case.steps, clip=clip, method="joint")
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(F, m.path(case.X, steps=case.steps, alpha=a))
    res = joint.joint_optimum(m, case.X_val, case.y_val, case.steps, clip=clip)
    np.testing.assert_array_equal(res.alphas, a)
    assert res.converged and res.solver == ("simplex" if clip else "lstsq")
    # the reported error is what the weights give on the engine's path, to the round-off of
    # evaluating weights whose coefficients may be huge (ill-conditioned designs)
    err_path = float(np.sum((m.path(case.X_val, steps=case.steps, alpha=a)[-1] - case.y_val) ** 2))
    assert abs(res.error - err_path) <= 1e-9 * err_path + 1e-9 * float(np.sum(case.y_val**2)) \
        + evaluation_slack(case, a), (res.error, err_path)


def test_joint_edge_cases(rng: np.random.Generator) -> None:
    """One step has no weights; validation points where the kernel vanishes give alpha = 1 (as the
    greedy rule), no NaN; an unknown method is an error naming it."""
    X, y = rng.uniform(0, 1, (8, 1)), rng.standard_normal(8)
    m = KernelSelfDistillation(gamma=80.0, lam=0.2).fit(X, y)
    assert m.optimal_alphas(X, y, steps=1, method="joint").shape == (0,)
    far = np.full((3, 1), 1e3)
    np.testing.assert_array_equal(m.optimal_alphas(far, np.ones(3), steps=4, method="joint"), [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="method=.*'jiont'"):
        m.optimal_alphas(X, y, steps=3, method="jiont")
    with pytest.raises(ValueError, match="method="):
        m.optimal_path(X, X, y, steps=3, method="Greedy")
    with pytest.raises(ValueError, match="y_val must have shape"):
        m.optimal_alphas(X, np.ones((8, 2)), steps=3, method="joint")


# ---------------------------------------------------------------------------- the simplex solver
@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), T=st.integers(1, 7), extra=st.integers(-3, 20))
def test_simplex_lstsq_vs_slsqp(seed: int, T: int, extra: int) -> None:
    """Least squares over the simplex: feasible, KKT, and no worse than SLSQP from three starts."""
    rng = np.random.default_rng(seed)
    M = max(1, T + extra)
    A = rng.standard_normal((M, T)) * 10.0 ** rng.uniform(-2, 1, T)
    y = 3 * rng.standard_normal(M)
    c, _ = joint.simplex_lstsq(A, y)
    assert np.all(c >= 0) and abs(c.sum() - 1) <= 1e-12

    def f(x: FloatArray) -> float:
        return float(np.sum((A @ x - y) ** 2))

    grad = A.T @ (A @ c - y)
    on = c > 0
    scale = np.linalg.norm(A, 2) * (np.linalg.norm(A, 2) + np.linalg.norm(y))
    assert np.ptp(grad[on]) <= 1e-8 * scale  # equal on the support
    assert np.all(grad[~on] >= grad[on].mean() - 1e-8 * scale)  # no better coordinate outside
    for x0 in [np.full(T, 1 / T), *rng.dirichlet(np.ones(T), 2)]:
        res = optimize.minimize(f, x0, method="SLSQP", bounds=[(0, 1)] * T,
                                constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                                options={"ftol": 1e-15, "maxiter": 1000})
        assert f(c) <= res.fun * (1 + 1e-9) + 1e-12 * float(y @ y)


# ---------------------------------------------------------------------------- coordinate descent
@settings(max_examples=8)
@given(case=cases(steps=(2, 4)), clip=st.booleans())
def test_coordinate_update_is_the_refit_quadratic_vertex(case: Case, clip: bool) -> None:
    """One sweep of coordinate descent: each weight is the minimiser of the exact quadratic through
    refits at alpha^(tau) = -1, 0, 1 (others fixed), clipped to [0, 1] if asked; errors never rise."""
    m = case.model()
    G = joint.chain_predictions(m, case.X_val, case.steps)
    start = m.optimal_alphas(case.X_val, case.y_val, steps=case.steps, clip=clip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = joint.coordinate_descent(G, case.y_val, start, clip=clip, max_sweeps=1)
        many = joint.coordinate_descent(G, case.y_val, start, clip=clip, max_sweeps=30)
    a = np.clip(start, 0, 1) if clip else start.copy()
    for j in range(case.steps - 1):
        errs = []
        for t in (-1.0, 0.0, 1.0):
            a[j] = t
            errs.append(case.refit_error(a))
        curvature = errs[2] + errs[0] - 2 * errs[1]
        assume(curvature > 1e-6 * max(errs))
        a[j] = -(errs[2] - errs[0]) / (2 * curvature)
        if clip:
            a[j] = min(max(a[j], 0.0), 1.0)
    np.testing.assert_allclose(one.alphas, a, rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(many.history) <= 1e-12 * many.history[0])
    best = joint.joint_optimum(m, case.X_val, case.y_val, case.steps, clip=clip).error
    assert many.error >= best * (1 - 1e-9) - 1e-12


def test_coordinate_descent_stalls_above_the_joint_optimum() -> None:
    """Section 4.5, T = 4: from greedy, coordinate descent meets a stopping rule of 1e-6 relative
    change per sweep while its error is still > 2% above the joint optimum, with alpha^(4) creeping
    towards 1 (why the joint optimum is computed from eq. (6)'s coefficients instead)."""
    from sdlib.experiments.examples import illustrative_example

    ex = illustrative_example()
    m = KernelSelfDistillation(gamma=ex.gamma, lam=ex.lam).fit(ex.X, ex.y)
    G = joint.chain_predictions(m, ex.X_grid, 4)
    start = m.optimal_alphas(ex.X_grid, ex.f_grid, steps=4)
    cd = joint.coordinate_descent(G, ex.f_grid, start, tol=1e-6, max_sweeps=1000)
    best = joint.joint_optimum(m, ex.X_grid, ex.f_grid, 4)
    assert cd.converged and cd.error > 1.02 * best.error
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        longer = joint.coordinate_descent(G, ex.f_grid, cd.alphas, tol=0.0, max_sweeps=200)
    assert cd.alphas[-1] < longer.alphas[-1] < 1.0 and longer.error > 1.02 * best.error
    with pytest.raises(ValueError, match="start must hold"):
        joint.coordinate_descent(G, ex.f_grid, [0.5])

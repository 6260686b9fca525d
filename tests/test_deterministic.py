"""The deterministic equivalents of one self-distillation step (sdlib.krr.deterministic), against
independent oracles.

* the fixed point (effective penalty) against the Marchenko-Pastur law for ``Sigma = I``, which is
  known in closed form, and against ``tr[(S + lam I)^-1] / p`` of a large sample;
* the analytic derivatives against finite differences of the two-penalty cross risk;
* the exact identity the module rests on (the student is ``d/dlam [lam (beta_0 - beta_star)]``) on
  a finite design, with explicit solves;
* ``A``, ``B``, ``C``, ``xi*`` and the optimal risk against a large Monte Carlo (n = 4000,
  p = 2000), with a tolerance from its standard error;
* the one-line errors of every input, and that no input is written to.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sdlib.krr import deterministic as de


def _design(p: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A diagonal covariance with a spread spectrum and one spike, and a signal of norm 1."""
    s = np.linspace(0.5, 2.0, p)
    s[-1] = 6.0
    beta = rng.normal(size=p) * np.sqrt(s)  # more energy on the large eigenvalues
    return np.diag(s), beta / np.linalg.norm(beta)


# ------------------------------------------------------------------------------ fixed point
@pytest.mark.parametrize("gamma", [0.25, 0.5, 2.0])
def test_effective_penalty_is_marchenko_pastur_for_identity(gamma: float) -> None:
    p = 400
    n = int(p / gamma)
    lams = np.geomspace(1e-3, 1e3, 25)
    k = de.effective_penalty(lams, np.ones(p), n)
    np.testing.assert_allclose(k, de.mp_effective_penalty(lams, gamma), rtol=1e-13)
    # lam (S + lam I)^-1 ~ kappa (I + kappa I)^-1: the Stieltjes transform of the MP law at -lam
    np.testing.assert_allclose(k / (lams * (1 + k)), de.mp_stieltjes(lams, gamma), rtol=1e-12)


def test_effective_penalty_solves_its_equation() -> None:
    rng = np.random.default_rng(1)
    s = np.r_[np.zeros(5), rng.gamma(0.5, 2.0, size=295)]  # with zero eigenvalues, p > n
    n = 150
    lams = np.geomspace(1e-4, 1e4, 40)
    k = de.effective_penalty(lams, s, n)
    residual = k * (1 - np.sum(s / (s + k[:, None]), axis=1) / n) - lams
    np.testing.assert_allclose(residual / lams, 0.0, atol=1e-12)
    assert np.all(k >= lams) and np.all(np.diff(k) > 0)
    np.testing.assert_allclose(de.effective_penalty(lams, np.zeros(3), 10), lams)  # S = 0: kappa = lam


def test_stieltjes_transform_against_a_large_sample() -> None:
    rng = np.random.default_rng(2)
    p, n = 1000, 2000
    X = rng.normal(size=(n, p))
    d = np.linalg.eigvalsh(X.T @ X / n)
    lams = np.array([0.05, 0.5, 5.0])
    emp = np.mean(1.0 / (d + lams[:, None]), axis=1)
    # fluctuations of a linear spectral statistic are O(1/p); the mean's bias is O(1/p) as well
    np.testing.assert_allclose(emp, de.mp_stieltjes(lams, p / n), rtol=20.0 / p)


# ------------------------------------------------------------------------------ derivatives
def test_abc_are_derivatives_of_the_cross_risk() -> None:
    rng = np.random.default_rng(3)
    Sigma, beta = _design(150, rng)
    n, sigma = 300, 0.7
    lams = np.array([0.01, 0.1, 1.0, 10.0])
    r = de.one_step(Sigma, beta, n, lams, sigma)
    h = 1e-4 * lams

    def F(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b * de.cross_risk(Sigma, beta, n, a, b, sigma)

    np.testing.assert_allclose(r.A, de.cross_risk(Sigma, beta, n, lams, lams, sigma), rtol=1e-13)
    # C = d/dlam_2 [lam_2 K(lam, lam_2)], B = d_1 d_2 [lam_1 lam_2 K]: central differences, O(h^2)
    C_fd = (F(lams, lams + h) - F(lams, lams - h)) / (2 * h) / lams
    B_fd = (F(lams + h, lams + h) - F(lams + h, lams - h) - F(lams - h, lams + h) + F(lams - h, lams - h)) / (4 * h * h)
    np.testing.assert_allclose(r.C, C_fd, rtol=1e-6)
    np.testing.assert_allclose(r.B, B_fd, rtol=1e-5)
    # the sign rule: A - C = -(lam / 2) R'(lam), R' by central differences
    R = lambda lam: de.one_step(Sigma, beta, n, lam, sigma).risk_teacher  # noqa: E731
    np.testing.assert_allclose(r.A - r.C, -lams / 2 * (R(lams + h) - R(lams - h)) / (2 * h), rtol=1e-6)


def test_student_is_the_derivative_of_the_teacher_at_finite_n() -> None:
    rng = np.random.default_rng(4)
    n, p, lam, h = 60, 40, 0.3, 1e-5
    X, beta = rng.normal(size=(n, p)), rng.normal(size=p)
    y = X @ beta + rng.normal(size=n)
    S = X.T @ X / n

    def e0(lam_: float) -> np.ndarray:
        return np.linalg.solve(S + lam_ * np.eye(p), X.T @ y / n) - beta

    b0 = e0(lam) + beta
    e1 = np.linalg.solve(S + lam * np.eye(p), S @ b0) - beta  # the student on the teacher's predictions
    deriv = ((lam + h) * e0(lam + h) - (lam - h) * e0(lam - h)) / (2 * h)
    np.testing.assert_allclose(deriv, e1, rtol=1e-7, atol=1e-8 * np.linalg.norm(e1))


def test_one_step_properties() -> None:
    rng = np.random.default_rng(5)
    Sigma, beta = _design(100, rng)
    r = de.one_step(Sigma, 2 * beta, 200, np.geomspace(1e-2, 1e2, 9), 1.0)
    np.testing.assert_allclose(r.risk(r.xi_star), r.risk_optimal, rtol=1e-12)
    np.testing.assert_allclose(r.risk(0.0), r.risk_teacher, rtol=1e-14)
    np.testing.assert_allclose(r.risk(1.0), r.risk_distilled, rtol=1e-14)
    np.testing.assert_allclose(r.alpha_star, 1 - r.xi_star)
    grid = np.linspace(-20, 20, 4001)[:, None]
    assert np.all(r.risk_optimal <= np.min(r.risk(grid), axis=0) + 1e-12)
    assert np.all(r.A + r.B - 2 * r.C > 0)
    assert r.xi_star[0] > 1 and r.xi_star[-1] < 0  # the sign regimes: under- and over-regularised


# ------------------------------------------------------------------------------ Monte Carlo
@pytest.mark.slow
def test_against_a_large_monte_carlo() -> None:
    """n = 4000, p = 2000, 4 designs; A, B, C averaged over the noise in closed form per design, so
    that only the design fluctuates. Tolerance: Student's t (3 degrees of freedom) at a two-sided
    family level of 1 % over the 15 comparisons (Bonferroni) times the standard error, plus 2/n of
    the value for the O(1/n) bias of a deterministic equivalent."""
    rng = np.random.default_rng(6)
    n, p, sigma, seeds = 4000, 2000, 1.0, 4
    Sigma, beta = _design(p, rng)
    s = np.diag(Sigma)
    lams = np.array([0.02, 0.3, 4.0])
    out = []
    for _ in range(seeds):
        X = rng.normal(size=(n, p)) * np.sqrt(s)
        d, V = np.linalg.eigh(X.T @ X / n)
        Sb = V.T @ (s[:, None] * V)  # Sigma in the eigenbasis of S
        vb = V.T @ beta
        rows = []
        for lam in lams:
            g = 1.0 / (d + lam)
            # in the eigenbasis of S: the bias parts of e0 = -lam R beta, e1 = (lam^2 R^2 - 2 lam R) beta;
            # the noise parts M X^T eps / n, covariance (sigma^2 / n) M S M, with M = R and R S R
            b0, b1 = -lam * g * vb, (-2 * lam * g + lam**2 * g**2) * vb
            m0, m1 = g, g * d * g
            q = sigma**2 / n
            A = b0 @ Sb @ b0 + q * np.sum(np.diag(Sb) * m0 * d * m0)
            B = b1 @ Sb @ b1 + q * np.sum(np.diag(Sb) * m1 * d * m1)
            C = b0 @ Sb @ b1 + q * np.sum(np.diag(Sb) * m0 * d * m1)
            rows.append([A, B, C, (A - C) / (A + B - 2 * C), sigma**2 + (A * B - C**2) / (A + B - 2 * C)])
        out.append(rows)
    out = np.array(out)  # (seed, lam, quantity)
    mean, se = out.mean(0), out.std(0, ddof=1) / np.sqrt(seeds)
    r = de.one_step(Sigma, beta, n, lams, sigma)
    th = np.stack([r.A, r.B, r.C, r.xi_star, r.risk_optimal], axis=1)
    t = stats.t.ppf(1 - 0.01 / (2 * th.size), df=seeds - 1)
    tol = t * se + 2.0 / n * np.abs(th)
    assert np.all(np.abs(mean - th) <= tol), (mean, th, tol)


# ------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda S, b: de.one_step(S, b, 0, 1.0, 1.0), "n must be an integer >= 1, got n=0"),
        (lambda S, b: de.one_step(S, b, 10.5, 1.0, 1.0), "n must be an integer >= 1, got n=10.5"),
        (lambda S, b: de.one_step(S, b, 10, -1.0, 1.0), r"lam must be finite numbers > 0, got lam=-1.0"),
        (lambda S, b: de.one_step(S, b, 10, [1.0, np.nan], 1.0), "lam must be finite numbers > 0"),
        (lambda S, b: de.one_step(S, b, 10, "x", 1.0), "lam must be finite numbers > 0, got lam='x'"),
        (lambda S, b: de.one_step(S, b, 10, 1.0, -0.5), "sigma must be a finite number >= 0, got sigma=-0.5"),
        (lambda S, b: de.one_step(S[:2], b, 10, 1.0, 1.0), r"Sigma must be a square p x p matrix, got .* \(2, 3\)"),
        (lambda S, b: de.one_step(S + np.triu(np.ones((3, 3)), 1), b, 10, 1.0, 1.0), "Sigma must be symmetric"),
        (lambda S, b: de.one_step(-S, b, 10, 1.0, 1.0), "Sigma must be positive semi-definite"),
        (lambda S, b: de.one_step(S * np.nan, b, 10, 1.0, 1.0), "Sigma must be finite"),
        (lambda S, b: de.one_step(S, b[:2], 10, 1.0, 1.0), r"beta_star must be a finite vector of length p = 3, got"),
        (lambda S, b: de.one_step(S, b, 10, 1.0, 1.0).risk(np.inf), "xi must be finite"),
        (lambda S, b: de.cross_risk(S, b, 10, 1.0, 0.0, 1.0), "lam2 must be finite numbers > 0, got lam2=0.0"),
        (lambda S, b: de.mp_stieltjes(1.0, 0.0), "gamma must be a finite number > 0, got gamma=0.0"),
        (lambda S, b: de.effective_penalty(1.0, [-1.0, 1.0], 5), "eigs must be a non-empty 1-d array"),
    ],
)
def test_errors_are_one_line_and_name_the_value(call, match: str) -> None:  # type: ignore[no-untyped-def]
    Sigma, beta = np.eye(3), np.ones(3)
    with pytest.raises(ValueError, match=match) as info:
        call(Sigma, beta)
    assert "\n" not in str(info.value)


def test_inputs_are_not_written() -> None:
    rng = np.random.default_rng(7)
    Sigma, beta = _design(20, rng)
    lams = np.array([0.1, 1.0])
    copies = Sigma.copy(), beta.copy(), lams.copy()
    r = de.one_step(Sigma, beta, 40, lams, 1.0)
    de.cross_risk(Sigma, beta, 40, lams, lams, 1.0)
    for a, b in zip((Sigma, beta, lams), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    assert r.lam is not lams

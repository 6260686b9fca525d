"""The real-data protocol (:mod:`sdlib.experiments.realdata`) against independent computations.

* the GCV and CV penalties are the minimisers of the criteria computed from explicit hat matrices
  and explicit fold refits (scikit-learn's ``KernelRidge``);
* the baseline's test MSE is scikit-learn's ``KernelRidge`` on the same standardised split;
* the paired intervals are scipy's one-sample t confidence intervals.
MSEs agree to ``1e-8`` relative: the chosen penalties give ``cond(K + lam I) <~ 1e4`` at
``n <= 250``, so two solvers differ by ~1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import rbf_kernel

from sdlib.experiments import realdata


def test_gcv_and_cv_penalties_are_the_minimisers_of_explicit_criteria() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Y = (np.sin(X[:, 0]) + 0.3 * rng.normal(size=40))[:, None]
    K = rbf_kernel(X, gamma=0.3)
    lams = np.geomspace(1e-2, 10, 13)
    gcv_vals = []
    for lam in lams:
        S = K @ np.linalg.inv(K + lam * np.eye(40))
        r = Y - S @ Y
        gcv_vals.append(40 * float(np.sum(r * r)) / (40 - np.trace(S)) ** 2)
    assert realdata.krr_lams_gcv(K, Y, lams) == lams[int(np.argmin(gcv_vals))]
    parts = np.array_split(np.random.default_rng(7).permutation(40), 4)
    cv = []
    for lam in lams:
        err = 0.0
        for part in parts:
            fit = np.setdiff1d(np.arange(40), part)
            m = KernelRidge(alpha=lam, kernel="precomputed").fit(K[np.ix_(fit, fit)], Y[fit])
            err += float(np.sum((m.predict(K[np.ix_(part, fit)]) - Y[part]) ** 2))
        cv.append(err)
    assert realdata.krr_lams_cv(K, Y, lams, 4, np.random.default_rng(7)) == lams[int(np.argmin(cv))]


def test_baseline_is_kernel_ridge_on_the_stated_split() -> None:
    ds = realdata.load("diabetes")
    out = realdata.run_split(ds, 3, steps=2, bad_factors=(10.0,))
    rng = np.random.default_rng(3)
    idx = rng.permutation(ds.X.shape[0])
    n = min(round(0.7 * ds.X.shape[0]), 250)
    D, test = idx[:n], idx[n:n + 500]
    mu, sd = ds.X[D].mean(axis=0), ds.X[D].std(axis=0)
    X, Y = (ds.X - mu) / sd, ds.Y - ds.Y[D].mean(axis=0)
    m = KernelRidge(alpha=out["lam GCV"], kernel="rbf", gamma=1.0 / X.shape[1]).fit(X[D], Y[D])
    mse = float(np.mean((m.predict(X[test]) - Y[test]) ** 2))
    assert out["KRR, lam by GCV"] == pytest.approx(mse, rel=1e-8)
    # the oracle penalty is never worse than any other penalty of plain KRR on the test set
    assert out["oracle: KRR, test-best lam"] <= min(out["KRR, lam by GCV"], out["KRR, lam by CV"])
    # the oracle weights are never worse on the test set than the GCV weights of the same teacher
    assert out["oracle: SD, test-optimal joint weights"] <= out["SD, alpha by GCV"] * (1 + 1e-9)


def test_paired_summary_is_the_t_interval_of_the_paired_ratios() -> None:
    rng = np.random.default_rng(1)
    recs = [{"data": "a", "KRR, lam by GCV": b, "other": b * (1 + e)}
            for b, e in zip(rng.uniform(1, 2, 12), rng.normal(0.05, 0.02, 12), strict=True)]
    got = realdata.paired_summary(recs).set_index("contender").loc["other"]
    rel = np.array([r["other"] / r["KRR, lam by GCV"] - 1 for r in recs])
    low, high = stats.t.interval(0.95, len(rel) - 1, loc=rel.mean(), scale=stats.sem(rel))
    assert got["mean"] == pytest.approx(rel.mean(), rel=1e-12)
    assert (got["low"], got["high"]) == pytest.approx((low, high), rel=1e-10)
    with pytest.raises(ValueError, match="baseline must be"):
        realdata.paired_summary(recs, baseline="nope")
    with pytest.raises(ValueError, match="name must be one of"):
        realdata.load("california_housing")

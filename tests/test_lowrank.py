"""The low-rank (Nyström) route of KernelSelfDistillation (``n_components=m``, :mod:`sdlib.krr.lowrank`).

Oracles, none of them the code under test:

* at ``m = n`` the Nyström kernel is ``K`` itself, so every method equals the exact engine's;
* at ``m < n`` the exact engine on the dense approximate kernel ``K~ = K_nm K_mm^+ K_mn``
  (``kernel="precomputed"``, a Cholesky solve of ``n x n``) gives every step, and the first step is
  also the subset-of-regressors solve ``K_qm (K_mn K_nm + lam K_mm)^-1 K_mn y`` and scikit-learn's
  ``Nystroem`` + ``Ridge`` on the same centres;
* blocked and unblocked passes agree, and the pass's peak memory is ``O(m^2 + block m)``.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import Ridge
from sklearn.metrics.pairwise import rbf_kernel

from sdlib import KernelSelfDistillation
from sdlib.krr import lowrank

FloatArray = NDArray[np.float64]

# most fits here are deliberately coarse (few centres); the warning itself is tested below
pytestmark = pytest.mark.filterwarnings("ignore::sdlib.krr.lowrank.LowRankWarning")

KW = dict(gamma=0.5, lam=0.1, steps=5, alpha=0.3)


def _data(rng: np.random.Generator, n: int, d: int = 3, p: int = 1):
    X = rng.normal(size=(n, d))
    f = np.stack([np.sin(X @ rng.normal(size=d)) for _ in range(p)], axis=1)
    y = f + 0.1 * rng.normal(size=f.shape)
    Xv = rng.normal(size=(60, d))
    yv = np.stack([np.sin(Xv @ rng.normal(size=d)) for _ in range(p)], axis=1)
    Xq = rng.normal(size=(40, d))
    if p == 1:
        y, yv = y[:, 0], yv[:, 0]
    return X, y, Xv, yv, Xq


def _rel(a: FloatArray, b: FloatArray) -> float:
    """Largest difference relative to the largest ``|b|`` (absolute where ``b`` is 0)."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(b)).max() or 1.0))


# The kernel matrices below have condition numbers up to ~1e9 (rbf, gamma 0.5, 200 points in 3-d):
# the exact engine's solves lose about that factor times eps, i.e. ~1e-7 at worst; the tolerances
# are that, with room.
TOL = 1e-6


def _methods():
    return {
        "path": lambda m, X, y, Xv, yv, Xq: m.path(Xq),
        "train_path": lambda m, X, y, Xv, yv, Xq: m.train_path(),
        "limit": lambda m, X, y, Xv, yv, Xq: m.limit(Xq, 0.4),
        "predict": lambda m, X, y, Xv, yv, Xq: m.predict(Xq),
        "greedy": lambda m, X, y, Xv, yv, Xq: m.optimal_alphas(Xv, yv, steps=6),
        "greedy_clip": lambda m, X, y, Xv, yv, Xq: m.optimal_alphas(Xv, yv, steps=6, clip=True),
        "joint": lambda m, X, y, Xv, yv, Xq: m.optimal_alphas(Xv, yv, steps=4, method="joint"),
        "optimal_path": lambda m, X, y, Xv, yv, Xq: m.optimal_path(Xq, Xv, yv, steps=6)[1],
        "grid": lambda m, X, y, Xv, yv, Xq: m.grid(Xq, [0.1, 1.0], [0.2, 0.5], 3),
        "B_diag": lambda m, X, y, Xv, yv, Xq: m.B_diag(),
        "eigenvalues": lambda m, X, y, Xv, yv, Xq: m.eigenvalues_,
        "gcv": lambda m, X, y, Xv, yv, Xq: m.optimal_alphas(steps=4, method="gcv"),
        "gcv_joint": lambda m, X, y, Xv, yv, Xq: m.optimal_alphas(steps=3, method="gcv_joint", clip=True),
    }


@pytest.fixture(scope="module", params=[1, 3], ids=["p1", "p3"])
def pair(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The exact engine and the low-rank route at m = n on one problem (fitted once per module)."""
    data = _data(np.random.default_rng(20211206), 200, p=request.param)
    X, y = data[0], data[1]
    exact = KernelSelfDistillation(**KW).fit(X, y)
    low = KernelSelfDistillation(n_components=200, random_state=0, **KW).fit(X, y)
    return exact, low, data


@pytest.mark.parametrize("name", sorted(_methods()))
def test_equals_exact_engine_at_m_equal_n(pair, name: str) -> None:  # type: ignore[no-untyped-def]
    exact, low, data = pair
    f = _methods()[name]
    a, b = f(low, *data), f(exact, *data)
    assert np.shape(a) == np.shape(b)
    assert _rel(a, b) < TOL, (name, _rel(a, b))


def _dense_approximation(X: FloatArray, Z: FloatArray, gamma: float):
    """``K~(A, B) = K_Am K_mm^+ K_mB`` with numpy's pseudo-inverse (an independent route)."""
    pinv = np.linalg.pinv(rbf_kernel(Z, Z, gamma=gamma), rcond=1e-13, hermitian=True)
    return lambda A, B: rbf_kernel(A, Z, gamma=gamma) @ pinv @ rbf_kernel(Z, B, gamma=gamma)


@pytest.mark.parametrize("centres", ["uniform", "leverage"])
def test_matches_the_dense_approximate_kernel(rng: np.random.Generator, centres: str) -> None:
    X, y, Xv, yv, Xq = _data(rng, 300)
    low = KernelSelfDistillation(n_components=40, random_state=3, centres=centres, **KW).fit(X, y)
    kt = _dense_approximation(X, low.components_, KW["gamma"])
    dense = KernelSelfDistillation(kernel="precomputed", lam=KW["lam"], steps=KW["steps"],
                                   alpha=KW["alpha"]).fit(kt(X, X), y)
    # K~ has rank 40 and condition number of K~ + lam I at most ~ n / lam: 1e-9 is far above rounding
    assert _rel(low.path(Xq), dense.path(kt(Xq, X))) < 1e-9
    assert _rel(low.train_path(), dense.train_path()) < 1e-9
    assert _rel(low.optimal_alphas(Xv, yv, steps=5), dense.optimal_alphas(kt(Xv, X), yv, steps=5)) < 1e-7
    assert _rel(low.limit(Xq, 0.5), dense.limit(kt(Xq, X), 0.5)) < 1e-9
    # GCV needs all n eigenvalues of K~ (n - 40 of them zero): the dense eigh has them to ~1e-13
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # K~ is singular: eigh's tiny negatives warn
        g_dense = dense.optimal_alphas(steps=4, method="gcv")
    assert _rel(low.optimal_alphas(steps=4, method="gcv"), g_dense) < 1e-6


def test_first_step_is_subset_of_regressors_and_nystroem_ridge(rng: np.random.Generator) -> None:
    X, y, Xv, yv, Xq = _data(rng, 500)
    lam, gamma, m = 0.1, 0.5, 50
    low = KernelSelfDistillation(n_components=m, random_state=7, gamma=gamma, lam=lam).fit(X, y)
    # the same centres as scikit-learn's Nystroem with the same random_state
    nys = Nystroem(gamma=gamma, n_components=m, random_state=7).fit(X)
    np.testing.assert_array_equal(low.component_indices_, nys.component_indices_)
    Z = low.components_
    Knm, Kmm, Kqm = rbf_kernel(X, Z, gamma=gamma), rbf_kernel(Z, Z, gamma=gamma), rbf_kernel(Xq, Z, gamma=gamma)
    sor = Kqm @ np.linalg.solve(Knm.T @ Knm + lam * Kmm, Knm.T @ y)
    assert _rel(low.predict(Xq), sor) < 1e-8
    ridge = Ridge(alpha=lam, fit_intercept=False, solver="cholesky").fit(nys.transform(X), y)
    assert _rel(low.predict(Xq), ridge.predict(nys.transform(Xq))) < 1e-8


def test_blocked_pass_equals_one_block_and_keeps_memory_small(rng: np.random.Generator,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, Xv, yv, Xq = _data(rng, 20_000, d=5)
    m = 100
    one = KernelSelfDistillation(n_components=m, random_state=1, **KW)
    monkeypatch.setattr(lowrank, "BLOCK_BYTES", 8 * m * X.shape[0])  # the whole data as one block
    ref = one.fit(X, y).path(Xq)
    monkeypatch.setattr(lowrank, "BLOCK_BYTES", 8 * m * 256)  # 256 rows per block
    tracemalloc.start()
    low = KernelSelfDistillation(n_components=m, random_state=1, **KW).fit(X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert _rel(low.path(Xq), ref) < 1e-10
    # the model's copy of X (n d) plus O(m^2 + block m) working arrays; an n x m array would be 16 MB
    budget = 8 * (X.size + 20 * (m * m + 256 * m)) + 2**20
    assert peak < budget < 8 * X.shape[0] * m, (peak, budget)
    tracemalloc.start()
    low.train_path()
    tp = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # the output (steps x n) and one block at a time
    assert tp < 8 * (5 * X.shape[0] + 20 * (m * m + 256 * m)) + 2**20, tp


def test_accuracy_improves_to_round_off_at_m_equal_n(rng: np.random.Generator) -> None:
    """The accuracy study at small n: alpha* and test-prediction errors against the exact engine."""
    X, y, Xv, yv, Xq = _data(rng, 240)
    kw = dict(gamma=0.5, lam=0.01, steps=4)
    exact = KernelSelfDistillation(**kw).fit(X, y)
    a_ex, f_ex = exact.optimal_path(Xq, Xv, yv)
    errs = []
    for m in (10, 240):
        low = KernelSelfDistillation(n_components=m, random_state=0, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lowrank.LowRankWarning)
            low.fit(X, y)
        a, f = low.optimal_path(Xq, Xv, yv)
        errs.append((float(np.abs(a - a_ex).max()), _rel(f, f_ex)))
    assert errs[1][0] < 1e-6 and errs[1][1] < 1e-6, errs
    assert errs[0][1] > 100 * errs[1][1], errs  # 10 centres are visibly coarse


def test_coarse_warning_and_diagnostics(rng: np.random.Generator) -> None:
    X, y, *_ = _data(rng, 400)
    with pytest.warns(lowrank.LowRankWarning, match=r"n_components=5 is too coarse for alpha\*"):
        low = KernelSelfDistillation(n_components=5, random_state=0, gamma=0.5, lam=1e-6).fit(X, y)
    nf = low.lowrank_
    # rbf has k(x, x) = 1: the trace estimate is exact, and the residual trace is that of K - K~
    assert nf.trace == pytest.approx(400.0)
    Z = low.components_
    Kt = rbf_kernel(X, Z, gamma=0.5) @ np.linalg.pinv(rbf_kernel(Z, Z, gamma=0.5)) @ rbf_kernel(Z, X, gamma=0.5)
    true_resid = 400.0 - float(np.trace(Kt))
    # 400 of 400 rows are sampled here (TRACE_SAMPLE >= n), so the estimate is exact
    assert nf.residual_trace == pytest.approx(true_resid, rel=1e-8)
    assert 0 < nf.captured < 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_components": 0}, r"n_components must be an integer >= 1 or None, got n_components=0"),
        ({"n_components": 2.5}, r"n_components=2.5"),
        ({"n_components": 50}, r"n_components=50 exceeds the number of training rows n=20"),
        ({"n_components": 5, "centres": "kmeans"},
         r"centres must be one of 'uniform', 'leverage', got centres='kmeans'"),
        ({"n_components": 5, "kernel": "precomputed"}, r"kernel='precomputed' has no low-rank route"),
    ],
)
def test_bad_parameters(rng: np.random.Generator, kwargs: dict, match: str) -> None:
    X = rng.normal(size=(20, 2))
    y = rng.normal(size=20)
    if kwargs.get("kernel") == "precomputed":
        X = rbf_kernel(X)
    with pytest.raises(ValueError, match=match):
        KernelSelfDistillation(**kwargs).fit(X, y)


def test_unsupported_methods_say_so(rng: np.random.Generator) -> None:
    X, y, Xv, yv, Xq = _data(rng, 50)
    low = KernelSelfDistillation(n_components=10, random_state=0, **KW).fit(X, y)
    with pytest.raises(ValueError, match=r"method must be one of .*, got method='nope'"):
        low.optimal_alphas(Xv, yv, method="nope")
    with pytest.raises(ValueError, match="uses the training data only"):
        low.optimal_alphas(Xv, yv, method="gcv")
    with pytest.raises(ValueError, match="has no low-rank route"):
        low._eigh()
    with pytest.raises(ValueError, match=r"y_val must have shape \(60, 1\)"):
        low.optimal_alphas(Xv, yv[:10])
    with pytest.raises(ValueError, match="features"):
        low.path(Xq[:, :2])


def test_inputs_are_not_written_and_seeds_repeat(rng: np.random.Generator) -> None:
    X, y, Xv, yv, Xq = _data(rng, 100)
    X0, y0 = X.copy(), y.copy()
    a = KernelSelfDistillation(n_components=20, random_state=5, **KW).fit(X, y)
    b = KernelSelfDistillation(n_components=20, random_state=5, **KW).fit(X, y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(a.path(Xq), b.path(Xq))
    X[:] = 0.0  # the model keeps its own copy
    np.testing.assert_array_equal(a.path(Xq), b.path(Xq))
    c = KernelSelfDistillation(n_components=20, random_state=6, **KW).fit(X0, y0)
    assert not np.array_equal(a.component_indices_, c.component_indices_)


def test_check_estimator_on_the_low_rank_route() -> None:
    """scikit-learn's API checks with ``n_components=10``, all but ``check_regressors_train``: that
    one asks for a training R^2 above 0.5 on 200 points, which 10 centres do not reach (an accuracy
    check of the approximation, not of the API); the test suite measures accuracy against m above.
    More centres would fail the checks that fit on fewer than m points (a clear ValueError)."""
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = check_estimator(KernelSelfDistillation(n_components=10, random_state=0, steps=3, alpha=0.5),
                              on_fail=None)
    failed = {r["check_name"] for r in res if r["status"] == "failed"}
    assert failed <= {"check_regressors_train"}, failed
    assert len(res) > 40

"""The engine's linear algebra (:mod:`sdlib.krr._blas`): the blocked Cholesky and the thread counts.

Oracles: the factor's backward error ``L L^T - A`` (which no wrong factor passes), scipy's
``cho_factor`` for the index of a failing minor, and eq. (5) solved here step by step with a dense
LU of ``K + lam I`` (:func:`numpy.linalg.solve`). The blocked route runs at large n only
(``BLOCKED_FROM``); here its sizes are made small so that it runs on small problems, with panels
and chunks that do not divide n. Thread counts are read with threadpoolctl inside the BLAS calls.

Conditioning: RBF kernels on ``[-1, 1]^2`` with ``n <= 300`` and ``lam >= 1e-2``, so
``cond(K + lam I) <= (n + lam) / lam <~ 3e4``; the backward error of a Cholesky factorisation is
``<~ n eps ||A||`` (tolerance ``50 n eps ||A||``), and the solves agree with LU to
``~cond * eps <~ 1e-11`` relative, inside ``1e-9``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from scipy import linalg
from sklearn.metrics.pairwise import rbf_kernel
from threadpoolctl import threadpool_info, threadpool_limits

from sdlib import KernelSelfDistillation
from sdlib.krr import _blas

EPS = np.finfo(float).eps


def _blas_threads() -> list[int]:
    return [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]


def _spd(n: int, lam: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.random.default_rng(seed).uniform(-1, 1, (n, 2))
    K = rbf_kernel(X, gamma=2.0)
    return X, K + lam * np.eye(n)


@pytest.fixture
def blocked_small(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The blocked route for every n, with 17-column panels and 40-column chunks."""
    monkeypatch.setattr(_blas, "BLOCKED_FROM", 1)
    monkeypatch.setattr(_blas, "PANEL", 17)
    monkeypatch.setattr(_blas, "CHUNK", 40)
    yield


@pytest.mark.parametrize(("n", "panel", "chunk"), [(1, 4, 4), (5, 8, 8), (64, 16, 16), (101, 7, 13),
                                                   (300, 64, 100), (300, 512, 4096)])
def test_blocked_cholesky_backward_error(n: int, panel: int, chunk: int) -> None:
    """``L L^T = A`` to ``50 n eps ||A||``, L lower triangular, the strict upper triangle untouched."""
    _, A0 = _spd(n, 1e-2, seed=n)
    A = np.asfortranarray(A0.copy())
    upper = np.triu(A, 1).copy()
    _blas._blocked_cholesky(A, panel, chunk)
    L = np.tril(A)
    assert np.all(np.diag(L) > 0)
    err = float(np.abs(L @ L.T - A0).max())
    assert err <= 50 * n * EPS * float(np.abs(A0).max()), f"backward error {err:.3e}"
    assert np.array_equal(np.triu(A, 1), upper)


def test_blocked_cholesky_matches_lapack_factor(blocked_small: None) -> None:
    """The factor is unique: the blocked route and LAPACK's potrf agree to the factor's
    conditioning (forward error <~ cond(A) eps ||L||), and the C-ordered input is used in place."""
    _, A0 = _spd(250, 1e-1, seed=3)
    ref, _ = linalg.cho_factor(A0, lower=True)
    A = np.array(A0, order="C")
    L = _blas.cholesky_inplace(A)
    assert np.shares_memory(L, A)
    cond = np.linalg.cond(A0)
    assert np.abs(np.tril(L) - np.tril(ref)).max() <= 10 * cond * EPS * np.abs(np.tril(ref)).max()


@pytest.mark.parametrize("bad", [0, 16, 17, 55, 199])
def test_blocked_cholesky_reports_the_failing_minor(blocked_small: None, bad: int) -> None:
    """A matrix whose leading minor ``bad + 1`` is the first not positive definite: the same index
    as LAPACK's (scipy's message), in the first panel, on a panel's edge and inside a later one."""
    _, A = _spd(200, 1e-2, seed=bad)
    A[bad, bad] = -1.0
    with pytest.raises(linalg.LinAlgError) as lapack:
        linalg.cho_factor(A.copy(), lower=True)
    with pytest.raises(linalg.LinAlgError) as ours:
        _blas.cholesky_inplace(np.asfortranarray(A.copy()))
    assert str(ours.value).split("-th")[0] == str(lapack.value).split("-th")[0] == str(bad + 1)


def _lu_path(K: np.ndarray, lam: float, y: np.ndarray, Kq: np.ndarray, alphas: list[float]):  # type: ignore[no-untyped-def]
    """Eq. (5) by a dense LU solve per step: predictions at the query points and on the training set."""
    Kl = K + lam * np.eye(K.shape[0])
    t, F, Y = y, [], []
    for tau in range(len(alphas) + 1):
        if tau:
            t = alphas[tau - 1] * y + (1 - alphas[tau - 1]) * Y[-1]
        c = np.linalg.solve(Kl, t)
        F.append(Kq @ c)
        Y.append(K @ c)
    return np.array(F), np.array(Y)


@pytest.mark.parametrize("outputs", [None, 3])
def test_fit_on_the_blocked_route_matches_lu_refits(blocked_small: None, outputs: int | None) -> None:
    """The estimator with the blocked factorisation: path and train_path against LU refits."""
    rng = np.random.default_rng(7)
    n, lam, gamma = 150, 0.05, 2.0
    X = rng.uniform(-1, 1, (n, 2))
    y = np.sin(3 * X[:, 0]) + 0.1 * rng.standard_normal(n)
    if outputs:
        y = np.stack([y * (j + 1) for j in range(outputs)], axis=1)
    Xq = rng.uniform(-1, 1, (6, 2))
    alphas = [0.3, -0.5, 1.5, 0.0]
    F_ref, Y_ref = _lu_path(rbf_kernel(X, gamma=gamma), lam, y, rbf_kernel(Xq, X, gamma=gamma), alphas)
    m = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=lam).fit(X, y)
    scale = max(1.0, float(np.abs(y).max()), float(np.abs(F_ref).max()))
    assert np.abs(m.path(Xq, steps=5, alpha=alphas) - F_ref).max() <= 1e-9 * scale
    assert np.abs(m.train_path(steps=5, alpha=alphas) - Y_ref).max() <= 1e-9 * scale


def test_indefinite_kernel_is_refused_on_the_blocked_route(blocked_small: None) -> None:
    """``fit`` turns the blocked route's LinAlgError into its ValueError, as for LAPACK's."""
    X = np.random.default_rng(0).uniform(-1, 1, (60, 2))
    with pytest.raises(ValueError, match="not positive definite"):
        KernelSelfDistillation(kernel="precomputed", lam=1e-3).fit(-rbf_kernel(X), np.zeros(60))


def _recording(calls: list[list[int]], fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(_blas_threads())
        return fn(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("outputs", [None, 2])
def test_per_step_solves_run_on_one_thread_and_restore(monkeypatch: pytest.MonkeyPatch, outputs: int | None) -> None:
    """With BLAS on 2 threads, every per-step solve (trsv for one output, trsm for several) runs on
    one thread, the factorisation on 2, and the 2 threads are back after every call."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (80, 2))
    y = np.sin(X[:, 0]) if outputs is None else rng.standard_normal((80, outputs))
    solves: list[list[int]] = []
    factor: list[list[int]] = []
    monkeypatch.setattr(_blas, "_trsv", _recording(solves, _blas._trsv))
    monkeypatch.setattr(linalg, "solve_triangular", _recording(solves, linalg.solve_triangular))
    monkeypatch.setattr(linalg, "cho_factor", _recording(factor, linalg.cho_factor))
    with threadpool_limits(2, user_api="blas"):
        m = KernelSelfDistillation(kernel="rbf", gamma=1.0, lam=0.1, steps=3, alpha=0.2).fit(X, y)
        assert _blas_threads() and set(_blas_threads()) == {2}
        m.optimal_path(X[:5], X[:20], y[:20], steps=4)
        m.train_path(steps=6, alpha=0.5)
        assert set(_blas_threads()) == {2}
    assert factor and all(set(c) == {2} for c in factor), factor
    # fit: 3 steps; optimal_path: 4 solves; train_path: 6 steps (two calls per solve for trsv/trsm)
    assert len(solves) == 2 * (3 + 4 + 6)
    assert all(set(c) == {1} for c in solves), solves

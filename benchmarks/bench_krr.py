"""How the cost of the closed-form engine grows with the work, idle and loaded, against baselines
timed in the same run and against its own limit.

    python benchmarks/bench_krr.py            # the full sweep (n up to 10,000, tau up to 1,000): about
                                              # 10 minutes on 2 CPU cores
    python benchmarks/bench_krr.py --sizes 1000 2000 5000 10000 20000   # adds n = 20,000 (about 25 min)
    python benchmarks/bench_krr.py --quick    # small sizes, a minute: checks the script runs

Writes ``benchmarks/results/krr.json`` (the committed result; ``--quick`` writes
``runs/bench/krr_quick.json``, which is never committed). A result in benchmarks/results/ is made
from a clean tree: from a tree with uncommitted changes the script stops, unless ``--allow-dirty``,
and then the file says ``"dirty": true`` and the book's Benchmarks page flags it.

1. Time against the number of training points n (1,000 ... 10,000; d = 10, 1,000 query and 500
   validation points) of
   * ``ours``: Algorithm 1's path over ``--steps`` (100) steps, alpha*(2..steps) and f(Xq,
     beta^(tau)) for every tau (:meth:`KernelSelfDistillation.optimal_path`), fit included;
   * ``kernelridge``: one scikit-learn ``KernelRidge`` fit and prediction on the same data;
   * ``authors`` (n <= ``--authors-max-n``, 5,000): the same path computed as the authors' toy
     notebook does it, with an explicit ``np.linalg.inv(K + lam I)`` at every step: the set-up and
     ``--authors-steps`` (2) steps are timed, and the time is *scaled* to ``--steps`` (set-up +
     steps x time per step), said so in the file as ``"authors_scaled": true``;
   * ``limit``: what no exact method can avoid: the kernel matrices (training, validation, query),
     one Cholesky factorisation of K + lam I (the engine's route: LAPACK ``potrf`` below
     ``sdlib.krr._blas.BLOCKED_FROM``), one GEMM for the predictions of every step, and ``steps`` times
     the per-step memory floor: one GEMV with an n x n matrix (a step reads the factor's triangle
     twice, n^2 values), the faster of one thread and all.
   Each size is measured twice: ``idle`` (the machine as it is: on a shared machine others' work
   shows in the load average recorded beside it) and ``loaded``, with one competing busy process
   that this script starts for that block and stops after it (and that stops itself after
   ``--busy-seconds`` in any case). ``ours`` and ``kernelridge`` alternate, ``--repeats`` pairs;
   the ratio reported is the median of the pairs' ratios (load affects both alike), the times the
   minimum. The slope of log(time) against log(n) is fitted by least squares over n >= 5,000,
   where the n^3 factorisation dominates (below, O(n^2) kernel evaluations and copies flatten it);
   the range is recorded (``slope_min_n``), and the slope over all sizes beside it.
2. Time against the number of steps tau (10 ... 1,000) at fixed n (2,000): ``ours`` for each tau,
   ``authors`` scaled from its measured time per step, and one ``kernelridge`` fit for reference;
   again with fitted slopes.
3. ``grid``: 20 lam x 10 alpha x 10 steps at n = 2,000 (500 query points) against one
   ``scipy.linalg.eigh`` of K (kernel matrix included in both), with scipy's default driver and
   with the divide-and-conquer driver the engine uses.
4. ``solves``: one step's solve with the factor at n = 5,000, idle and loaded (the median of 21):
   the engine's two ``trsv`` on one thread against its former blocked solve on every thread, two
   ``trsv`` on every thread and the memory floor (one GEMV), which is how the engine's was chosen.
5. Peak memory of ``ours`` and of ``kernelridge`` at the largest n (tracemalloc: numpy's
   allocations), in units of n^2 float64 values, and the largest n that 20 GB (20e9 bytes) holds
   at that peak.

The ``summary`` keeps the goals set for the engine, measured at n = 5,000 and at the largest n: path
<= 1.1 x KernelRidge idle and <= 1.5 x loaded, path <= 1.3 x the limit idle, authors >= 100 x ours
(at the largest n the authors' way is timed), grid <= 1.5 x eigh, memory <= 4 n^2.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import rbf_kernel
from threadpoolctl import threadpool_limits

from sdlib import KernelSelfDistillation
from sdlib.krr import _blas
from sdlib.provenance import git_commit, provenance, recomputing_argv, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "runs" / "bench" / "krr_quick.json"
FULL = {"sizes": (1000, 2000, 5000, 7000, 10000), "taus": (10, 30, 100, 300, 1000), "n_tau": 2000,
        "m": 1000, "v": 500, "grid_n": 2000, "grid_m": 500, "slope_min_n": 5000, "authors_max_n": 5000, "solve_n": 5000}
QUICK = {"sizes": (200, 400, 800), "taus": (5, 10, 20, 40), "n_tau": 300, "m": 100, "v": 50,
         "grid_n": 300, "grid_m": 50, "slope_min_n": 400, "authors_max_n": 800, "solve_n": 800}
MEMORY_BUDGET = 20e9  # bytes: "the largest n that fits in 20 GB"
#: A pure-Python loop on one core, ended by its own deadline (argv[1] seconds) if nobody stops it.
BUSY = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


class DirtyTreeError(RuntimeError):
    """The working tree has uncommitted changes and the result would go to benchmarks/results/."""


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _best(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            best[k] = min(best[k], _time(fn))
    return best


def _pairs(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """``repeats`` timings of a and of b, alternating which goes first."""
    ta, tb = [], []
    for r in range(repeats):
        if r % 2 == 0:
            ta.append(_time(a))
            tb.append(_time(b))
        else:
            tb.append(_time(b))
            ta.append(_time(a))
    return ta, tb


def _load() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


@contextmanager
def competing_process(seconds: float) -> Iterator[subprocess.Popen[bytes] | None]:
    """One busy process for the block (``None``: no competition), stopped after it; it also stops
    itself after ``seconds``, so that no run can leave it behind."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY, str(seconds)])
    try:
        time.sleep(0.5)  # let it take its core before the first timing
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - terminate is enough for a Python loop
            proc.kill()
            proc.wait()


def _data(n: int, m: int, v: int, d: int, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    w = rng.normal(size=d)

    def target(Z: np.ndarray) -> np.ndarray:
        return np.sin(Z @ w)

    y = target(X) + 0.3 * rng.normal(size=n)
    Xq = rng.uniform(-1, 1, size=(m, d))
    Xv = rng.uniform(-1, 1, size=(v, d))
    return X, y, Xq, Xv, target(Xv)


def authors_path(X, y, Xq, lam, gamma, alpha, steps):  # type: ignore[no-untyped-def]
    """The authors' toy-notebook computation (``SelfDistill.distill``), rewritten from its
    description: ``K_ridge = K inv(K + lam I)`` once, then per step a fresh explicit inverse for
    the query predictions and a product with ``K_ridge`` for the next targets.

    Returns the predictions, the seconds of the set-up and the seconds of each step.
    """
    t0 = time.perf_counter()
    n = len(y)
    K = rbf_kernel(X, gamma=gamma)
    K_ridge = K @ np.linalg.inv(K + lam * np.identity(n))
    setup = time.perf_counter() - t0
    y_prev = y
    preds, per_step = [], []
    for _ in range(steps):
        t1 = time.perf_counter()
        t = alpha * y + (1 - alpha) * y_prev
        K_func_ridge = rbf_kernel(Xq, X, gamma=gamma) @ np.linalg.inv(K + lam * np.identity(n))
        preds.append(K_func_ridge @ t)
        y_prev = K_ridge @ t
        per_step.append(time.perf_counter() - t1)
    return np.array(preds), setup, per_step


def fitted_slope(x: Sequence[float], t: Sequence[float]) -> float:
    """Least-squares slope of log(t) against log(x): the exponent p of t ~ x^p."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(t, float)), 1)[0])


def _models(n: int, m: int, v: int, d: int):  # type: ignore[no-untyped-def]
    X, y, Xq, Xv, yv = _data(n, m, v, d)
    lam, gamma = 1e-2, 1.0 / d

    def kernelridge() -> np.ndarray:
        return KernelRidge(alpha=lam, kernel="rbf", gamma=gamma).fit(X, y).predict(Xq)

    def ours(steps: int) -> Callable[[], object]:
        return lambda: KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=lam).fit(X, y).optimal_path(
            Xq, Xv, yv, steps=steps)

    return (X, y, Xq, Xv), lam, gamma, kernelridge, ours


def _limit_once(X: np.ndarray, Xq: np.ndarray, Xv: np.ndarray, lam: float, gamma: float,
                C: np.ndarray, x: np.ndarray) -> list[float]:
    n = X.shape[0]
    t0 = time.perf_counter()
    K = rbf_kernel(X, gamma=gamma)
    rbf_kernel(Xv, X, gamma=gamma)
    Kq = rbf_kernel(Xq, X, gamma=gamma)
    t_kernels = time.perf_counter() - t0
    K.flat[:: n + 1] += lam
    t0 = time.perf_counter()
    L = _blas.cholesky_inplace(K.T)  # the factor, in Fortran order, as the engine holds it
    t_factor = time.perf_counter() - t0
    t_gemm = _time(lambda: Kq @ C)
    with threadpool_limits(1, user_api="blas"):
        t_gemv1 = min(_time(lambda: L @ x) for _ in range(5))
    t_gemvall = min(_time(lambda: L @ x) for _ in range(5))
    return [t_kernels, t_factor, t_gemm, t_gemv1, t_gemvall]


def limit_parts(n: int, m: int, v: int, d: int, steps: int, repeats: int) -> dict[str, float]:
    """Seconds of what an exact path cannot avoid (the minimum over ``repeats``), and their sum."""
    X, _, Xq, Xv, _ = _data(n, m, v, d)
    x = np.random.default_rng(1).normal(size=n)
    C = np.random.default_rng(2).normal(size=(n, steps))
    runs = np.array([_limit_once(X, Xq, Xv, 1e-2, 1.0 / d, C, x) for _ in range(repeats)]).min(axis=0)
    names = ("kernel_matrices", "cholesky", "prediction_gemm", "gemv_one_thread", "gemv_all_threads")
    out = {k: float(t) for k, t in zip(names, runs, strict=True)}
    out["per_step_floor"] = min(out["gemv_one_thread"], out["gemv_all_threads"])
    out["limit"] = out["kernel_matrices"] + out["cholesky"] + out["prediction_gemm"] + steps * out["per_step_floor"]
    return out


def _condition(n: int, steps: int, m: int, v: int, d: int, repeats: int, loaded: bool, busy_seconds: float) -> dict:
    """One size under one condition: paired timings of ours and KernelRidge, and the limit."""
    (X, y, Xq, _), lam, gamma, kernelridge, ours = _models(n, m, v, d)
    load_start = _load()
    with competing_process(busy_seconds) if loaded else _nothing():
        t_ours, t_krr = _pairs(ours(steps), kernelridge, repeats)
        limit = limit_parts(n, m, v, d, steps, 1 if n > 5000 else min(repeats, 2))
    ratios = [a / b for a, b in zip(t_ours, t_krr, strict=True)]
    return {"ours": min(t_ours), "kernelridge": min(t_krr), "ours_all": t_ours, "kernelridge_all": t_krr,
            "ratio": float(np.median(ratios)), "ratios": ratios, "limit": limit,
            "ours_vs_limit": min(t_ours) / limit["limit"], "load_average": {"start": load_start, "end": _load()}}


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def bench_sizes(sizes: Sequence[int], steps: int, m: int, v: int, d: int, repeats: int, authors_steps: int,
                authors_max_n: int, slope_min_n: int, busy_seconds: float) -> dict:
    rows = []
    for n in sizes:
        idle = _condition(n, steps, m, v, d, repeats, False, busy_seconds)
        loaded = _condition(n, steps, m, v, d, repeats, True, busy_seconds)
        row: dict[str, Any] = {"n": n, "ours": idle["ours"], "kernelridge": idle["kernelridge"],
                               "authors": None, "authors_setup": None, "authors_per_step": None,
                               "idle": idle, "loaded": loaded}
        if n <= authors_max_n:
            (X, y, Xq, _), lam, gamma, _, _ = _models(n, m, v, d)
            _, setup, per = authors_path(X, y, Xq, lam, gamma, 0.25, authors_steps)
            per_step = float(np.mean(per))
            row.update(authors=setup + steps * per_step, authors_setup=setup, authors_per_step=per_step)
        rows.append(row)
        print(f"n = {n:5d}: ours / KernelRidge {idle['ratio']:.2f} idle (load {idle['load_average']['end'][0]:.1f}), "
              f"{loaded['ratio']:.2f} loaded (load {loaded['load_average']['end'][0]:.1f}); ours / limit "
              f"{idle['ours_vs_limit']:.2f} idle; ours {idle['ours']:.3g} s"
              + (f", authors {row['authors']:.3g} s (scaled)" if row["authors"] is not None else ""), flush=True)
    big = [r for r in rows if r["n"] >= slope_min_n]
    if len(big) < 2:  # too few sizes above the bound (a --sizes of small n): fit over all, and say so
        big, slope_min_n = rows, rows[0]["n"]
    authors_rows = [r for r in rows if r["authors"] is not None]

    def slopes(sel: list[dict]) -> dict[str, float]:
        ns = [r["n"] for r in sel]
        out = {k: fitted_slope(ns, [r[k] for r in sel]) for k in ("ours", "kernelridge")}
        out["ours_loaded"] = fitted_slope(ns, [r["loaded"]["ours"] for r in sel])
        out["kernelridge_loaded"] = fitted_slope(ns, [r["loaded"]["kernelridge"] for r in sel])
        out["limit"] = fitted_slope(ns, [r["idle"]["limit"]["limit"] for r in sel])
        return out

    fitted = slopes(big)
    if len(authors_rows) >= 2:
        fitted["authors"] = fitted_slope([r["n"] for r in authors_rows], [r["authors"] for r in authors_rows])
    return {
        "steps": steps, "m": m, "n_val": v, "d": d, "lam": 1e-2, "gamma": 1.0 / d,
        "authors_timed_steps": authors_steps, "authors_scaled": True, "authors_max_n": authors_max_n,
        "rows": rows,
        "slope_min_n": slope_min_n,
        "slopes": fitted,
        "slopes_all_sizes": slopes(rows),
        "authors_slope_sizes": [r["n"] for r in authors_rows],
    }


def bench_steps(taus: Sequence[int], n: int, m: int, v: int, d: int, repeats: int, authors_steps: int) -> dict:
    (X, y, Xq, _), lam, gamma, kernelridge, ours = _models(n, m, v, d)
    t_krr = _best({"kernelridge": kernelridge}, repeats)["kernelridge"]
    _, setup, per = authors_path(X, y, Xq, lam, gamma, 0.25, authors_steps)
    per_step = float(np.mean(per))
    rows = []
    for tau in taus:
        t = _best({"ours": ours(tau)}, repeats)["ours"]
        rows.append({"steps": tau, "ours": t, "authors": setup + tau * per_step})
        print(f"tau = {tau:5d} at n = {n}: ours {t:.3g} s, authors {rows[-1]['authors']:.3g} s (scaled)", flush=True)
    ts = [r["steps"] for r in rows]
    return {
        "n": n, "m": m, "n_val": v, "d": d, "kernelridge": t_krr, "authors_setup": setup,
        "authors_per_step": per_step, "authors_timed_steps": authors_steps, "authors_scaled": True, "rows": rows,
        "slopes": {k: fitted_slope(ts, [r[k] for r in rows]) for k in ("ours", "authors")},
    }


def agreement(n: int, m: int, d: int) -> float:
    """Largest difference between the authors' predictions and ours over 2 steps (fixed alpha)."""
    X, y, Xq, _, _ = _data(n, m, 1, d)
    lam, gamma = 1e-2, 1.0 / d
    model = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=lam).fit(X, y)
    ref, _, _ = authors_path(X, y, Xq, lam, gamma, 0.25, 2)
    return float(np.max(np.abs(model.path(Xq, steps=2, alpha=0.25) - ref)))


def _former_blocked_solve(L: np.ndarray, blocks: list[tuple[int, int, np.ndarray]], t: np.ndarray) -> np.ndarray:
    """The engine's earlier per-step solve (the baseline): block substitution, the off-diagonal
    panels through ``gemv`` on every thread, 512-column diagonal blocks through ``trsv``."""
    n = t.shape[0]
    w = t.copy()
    for s, e, D in blocks:
        w[s:e] = _blas._trsv(D, w[s:e], lower=1)
        if e < n:
            w[e:] -= L[e:, s:e] @ w[s:e]
    for s, e, D in reversed(blocks):
        if e < n:
            w[s:e] -= L[e:, s:e].T @ w[e:]
        w[s:e] = _blas._trsv(D, w[s:e], lower=1, trans=1)
    return w


def bench_solves(n: int, repeats: int, busy_seconds: float) -> dict[str, Any]:
    """Milliseconds of one step's solve with the factor at ``n`` (median of ``repeats``), idle and
    with one competing busy process: the engine's choice (two ``trsv`` on one thread) against the
    former blocked solve on every thread, two ``trsv`` on every thread, and the memory floor."""
    X, *_ = _data(n, 1, 1, 10)
    K = rbf_kernel(X, gamma=0.1)
    K.flat[:: n + 1] += 1e-2
    L = _blas.cholesky_inplace(K.T)
    edges = [*range(0, n, 512), n]
    blocks = [(s, e, np.asfortranarray(L[s:e, s:e])) for s, e in zip(edges[:-1], edges[1:], strict=True)]
    t = np.random.default_rng(3).normal(size=n)

    def one_thread(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with _blas.one_thread():
                return fn()
        return run

    cases = {"engine_two_trsv_one_thread": one_thread(lambda: _blas.cho_solve_vector(L, t)),
             "former_blocked_all_threads": lambda: _former_blocked_solve(L, blocks, t),
             "two_trsv_all_threads": lambda: _blas.cho_solve_vector(L, t),
             "floor_gemv_one_thread": one_thread(lambda: L @ t),
             "floor_gemv_all_threads": lambda: L @ t}
    diff = float(np.abs(_former_blocked_solve(L, blocks, t) - _blas.cho_solve_vector(L, t)).max())
    out: dict[str, Any] = {"n": n, "repeats": repeats, "max_abs_diff_former_vs_engine": diff}
    for name, loaded in (("idle", False), ("loaded", True)):
        load_start = _load()
        times: dict[str, list[float]] = {k: [] for k in cases}
        with competing_process(busy_seconds) if loaded else _nothing():
            for _ in range(repeats):
                for k, fn in cases.items():
                    times[k].append(_time(fn))
        out[name] = {**{k: 1e3 * float(np.median(v)) for k, v in times.items()},
                     "load_average": {"start": load_start, "end": _load()}}
    print(f"one solve at n = {n:,}: engine {out['idle']['engine_two_trsv_one_thread']:.1f} ms idle, "
          f"{out['loaded']['engine_two_trsv_one_thread']:.1f} ms loaded; former blocked "
          f"{out['idle']['former_blocked_all_threads']:.1f} / {out['loaded']['former_blocked_all_threads']:.1f} ms",
          flush=True)
    return out


def peak_memory(n: int, m: int, v: int, d: int, steps: int) -> dict[str, float]:
    """Peak of numpy's allocations during ``ours`` and during ``kernelridge`` at ``n``, in n^2 float64
    values, and the largest n that :data:`MEMORY_BUDGET` bytes hold at that peak."""
    _, _, _, kernelridge, ours = _models(n, m, v, d)
    out: dict[str, float] = {}
    for name, fn in (("ours", ours(steps)), ("kernelridge", kernelridge)):
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out[name] = peak / (8.0 * n * n)
        out[f"{name}_largest_n_in_20GB"] = int(np.sqrt(MEMORY_BUDGET / peak) * n)
    return out


def bench_grid(n: int, m: int, d: int, n_lam: int, n_alpha: int, steps: int, repeats: int) -> dict:
    X, y, Xq, _, _ = _data(n, m, 1, d, seed=1)
    gamma = 1.0 / d
    lams = np.logspace(-3, 1, n_lam)
    alphas = np.linspace(0.0, 0.9, n_alpha)

    def baseline() -> object:
        return linalg.eigh(rbf_kernel(X, gamma=gamma))

    def baseline_evd() -> object:
        return linalg.eigh(rbf_kernel(X, gamma=gamma), driver="evd")

    def ours() -> np.ndarray:
        model = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=float(lams[0])).fit(X, y)
        return model.grid(Xq, lams, alphas, steps)

    t = _best({"eigh_of_K": baseline, "eigh_of_K_evd": baseline_evd, "ours_grid": ours}, repeats)
    return {
        "sizes": {"n": n, "m": m, "d": d, "lams": n_lam, "alphas": n_alpha, "steps": steps},
        "seconds": t,
        "grid_vs_eigh": t["ours_grid"] / t["eigh_of_K"],
        "grid_vs_eigh_evd": t["ours_grid"] / t["eigh_of_K_evd"],
    }


def _shaping(argv: Sequence[str]) -> list[str]:
    """``argv`` without the options that do not change the numbers (where to write, dirty or not)."""
    return recomputing_argv(argv)


def _blas_threads() -> int | None:
    """Threads of the BLAS/LAPACK library numpy uses (the timings depend on them)."""
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def tree_is_dirty() -> bool:
    """Uncommitted changes to tracked files (as :func:`sdlib.provenance.git_commit` marks them)."""
    commit = git_commit(ROOT)
    return commit is None or commit.endswith("+dirty")


def summary(sizes: dict, grid: dict, memory: dict) -> dict[str, dict[str, Any]]:
    rows = sizes["rows"]
    top = rows[-1]
    n, steps = top["n"], sizes["steps"]
    mid = next((r for r in rows if r["n"] >= 5000), top)
    authors = [r for r in rows if r["authors"] is not None][-1]
    goals: dict[str, tuple[str, str, float, float]] = {}
    # keys without n, so that the book's page can name them: "_small" is the first n >= 5,000
    for r, tag in ([(mid, "_small"), (top, "")] if mid is not top else [(top, "")]):
        k = r["n"]
        goals[f"path_vs_kernelridge_idle{tag}"] = (
            f"the alpha* path over {steps} steps / one KernelRidge fit, idle (load "
            f"{r['idle']['load_average']['end'][0]:.1f}), n = {k:,}", "<=", 1.1, r["idle"]["ratio"])
        goals[f"path_vs_kernelridge_loaded{tag}"] = (
            f"the same, with one competing busy process (load {r['loaded']['load_average']['end'][0]:.1f}), n = {k:,}",
            "<=", 1.5, r["loaded"]["ratio"])
    goals["path_vs_limit_idle"] = (
        f"the alpha* path / its limit (kernels + one Cholesky + one GEMM + {steps} x one GEMV), idle, n = {n:,}",
        "<=", 1.3, top["idle"]["ours_vs_limit"])
    goals["authors_vs_path"] = (
        f"the authors' per-step inverse (scaled) / the alpha* path, n = {authors['n']:,}", ">=", 100.0,
        authors["authors"] / authors["ours"])
    goals["grid_vs_eigh"] = (
        f"the grid of {grid['sizes']['lams']} lam x {grid['sizes']['alphas']} alpha x {grid['sizes']['steps']} steps "
        f"/ one eigh of K, n = {grid['sizes']['n']:,}", "<=", 1.5, grid["grid_vs_eigh"])
    goals["grid_vs_eigh_same_driver"] = (
        "the same grid / one eigh of K with the engine's LAPACK driver (evd)", "<=", 1.5, grid["grid_vs_eigh_evd"])
    goals["peak_memory_n2_float64"] = (
        f"peak memory of the path, in n^2 float64 values, n = {n:,}", "<=", 4.0, memory["ours"])
    return {k: {"label": label, "ratio": v, "goal": f"{op} {g}", "met": bool(v <= g if op == "<=" else v >= g)}
            for k, (label, op, g, v) in goals.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: check that the script runs")
    ap.add_argument("--repeats", type=int, default=3, help="timing pairs per size and condition")
    ap.add_argument("--steps", type=int, default=100, help="steps tau of the path in the sweep over n")
    ap.add_argument("--authors-steps", type=int, default=2, help="steps of the authors' way actually timed")
    ap.add_argument("--authors-max-n", type=int, default=None, metavar="N",
                    help="largest n at which the authors' way is timed (default 5000)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, metavar="N",
                    help="training sizes n of the first sweep (default 1000 2000 5000 7000 10000)")
    ap.add_argument("--taus", type=int, nargs="+", default=None, metavar="TAU",
                    help="numbers of steps of the second sweep (default 10 30 100 300 1000)")
    ap.add_argument("--n-tau", type=int, default=None, metavar="N", help="n of the sweep over steps (default 2000)")
    ap.add_argument("--busy-seconds", type=float, default=900.0,
                    help="the competing process stops itself after this many seconds (default 900)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write into benchmarks/results/ from a tree with uncommitted changes (flagged)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output JSON (default benchmarks/results/krr.json; with --quick runs/bench/krr_quick.json)")
    args = ap.parse_args(argv)
    for name in ("repeats", "steps", "authors_steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    target = (args.out or (QUICK_OUT if args.quick else RESULTS / "krr.json")).resolve()
    commit = git_commit(ROOT)
    dirty = commit is None or commit.endswith("+dirty")
    committed = RESULTS.resolve() in target.parents
    if dirty and committed and not args.allow_dirty:
        print(f"bench_krr.py: error: the working tree has uncommitted changes (git status), and {target} is a "
              "committed result: commit first, or pass --allow-dirty (the result is then flagged), or --out "
              "elsewhere", file=sys.stderr)
        return 2
    cfg = dict(QUICK if args.quick else FULL)
    for key, value in (("sizes", args.sizes), ("taus", args.taus), ("n_tau", args.n_tau),
                       ("authors_max_n", args.authors_max_n)):
        if value is not None:
            if min(value if isinstance(value, list) else [value]) < 2:
                ap.error(f"--{key.replace('_', '-')} must be >= 2, got {value}")
            cfg[key] = tuple(sorted(value)) if isinstance(value, list) else value
    if cfg["authors_max_n"] < cfg["sizes"][0]:
        ap.error(f"--authors-max-n {cfg['authors_max_n']} is below the smallest size {cfg['sizes'][0]}")
    repeats = 1 if args.quick else args.repeats
    # a SIGTERM unwinds like an exception, so that the competing process is stopped with this one
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(timezone.utc)
    load_start = _load()
    t0 = time.perf_counter()
    sizes = bench_sizes(cfg["sizes"], args.steps, cfg["m"], cfg["v"], 10, repeats, args.authors_steps,
                        cfg["authors_max_n"], cfg["slope_min_n"], args.busy_seconds)
    steps = bench_steps(cfg["taus"], cfg["n_tau"], cfg["m"], cfg["v"], 10, repeats, args.authors_steps)
    grid = bench_grid(cfg["grid_n"], cfg["grid_m"], 10, 20, 10, 10, repeats)
    memory = peak_memory(cfg["sizes"][-1], cfg["m"], cfg["v"], 10, args.steps)
    solves = bench_solves(cfg["solve_n"], 5 if args.quick else 21, args.busy_seconds)
    given = list(argv if argv is not None else sys.argv[1:])
    out = {
        "benchmark": "krr",
        "title": "Closed-form self-distillation against KernelRidge, its limit and the authors' per-step inverse",
        # The command that recomputes this file (the options that shape the numbers), and the exact one.
        "command": " ".join(["python", "benchmarks/bench_krr.py", *_shaping(given)]),
        "argv": ["benchmarks/bench_krr.py", *given],
        "quick": args.quick,
        "dirty": dirty,
        "summary": summary(sizes, grid, memory),
        "comparison": {
            "what": "the alpha* path / one KernelRidge fit and prediction (median of paired runs), idle and "
                    "with one competing busy process, with the load average (1 min) at the end of each block",
            "rows": [{"n": r["n"],
                      "idle": {"ratio": r["idle"]["ratio"], "load": r["idle"]["load_average"]["end"][0],
                               "vs_limit": r["idle"]["ours_vs_limit"]},
                      "loaded": {"ratio": r["loaded"]["ratio"], "load": r["loaded"]["load_average"]["end"][0],
                                 "vs_limit": r["loaded"]["ours_vs_limit"]}} for r in sizes["rows"]],
        },
        "sizes": sizes,
        "steps": steps,
        "grid": grid,
        "solves": solves,
        "memory": {"n": cfg["sizes"][-1], "peak_n2_float64": memory["ours"], "budget_bytes": MEMORY_BUDGET,
                   "budget_gb": MEMORY_BUDGET / 1e9,
                   **{k: v for k, v in memory.items() if k != "ours"}},
        "blas_threads": _blas_threads(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": {"start": load_start, "end": _load()},
        "authors_at": (lambda a: {"n": a["n"], "seconds": a["authors"], "setup": a["authors_setup"],
                                  "per_step": a["authors_per_step"], "ours": a["ours"],
                                  "ratio": a["authors"] / a["ours"]})(
            [r for r in sizes["rows"] if r["authors"] is not None][-1]),
        "authors_note": (f"the authors' way was timed for {args.authors_steps} steps (after its set-up) and scaled "
                         f"to the number of steps, at n <= {cfg['authors_max_n']:,}"),
        "authors_vs_ours_max_abs_diff_2_steps": agreement(cfg["sizes"][0], cfg["m"], 10),
        "provenance": provenance(
            started=started, seconds=time.perf_counter() - t0,
            parameters={"quick": args.quick, "repeats": repeats, "steps": args.steps,
                        "authors_steps": args.authors_steps, "busy_seconds": args.busy_seconds,
                        **{k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}},
            seed=0,
        ),
    }
    out["provenance"]["git_commit"] = commit  # at the start: this file, being written, is not the tree's
    write_json_atomic(target, out)
    for k, s in out["summary"].items():
        print(f"{k:36s} {s['ratio']:9.3g}  goal {s['goal']:8s} {'met' if s['met'] else 'NOT met'}")
    print(f"slopes in n (n >= {sizes['slope_min_n']:,}):", {k: round(v, 2) for k, v in sizes["slopes"].items()},
          "in tau:", {k: round(v, 2) for k, v in steps["slopes"].items()})
    print(out["authors_note"] + ("; made from a tree with uncommitted changes (dirty)" if dirty else ""))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

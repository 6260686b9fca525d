"""The exact engine at large n, end to end: ``fit`` and ``optimal_path`` at n = 40,000, with peak memory.

    python benchmarks/bench_krr_large.py              # n = 40,000: about 13 GB and 10-20 minutes on 2 cores
    python benchmarks/bench_krr_large.py --n 12000    # a smaller run (writes runs/bench/krr_large_12000.json)

Not a test: it needs ``1.25 x 8 n^2`` bytes of free memory (about 16 GB at n = 40,000) and stops
before it starts if ``/proc/meminfo`` shows less. One process: the kernel matrix of d = 10 inputs,
its Cholesky factor in place (by blocks at this n, ``sdlib.krr._blas``: OpenBLAS's threaded ``potrf``
overflows a buffer there and crashed ``fit`` at this n), then Algorithm 1 over ``--steps`` steps
with ``--v`` validation and ``--m`` query points (``optimal_path``), timed apart.

Recorded: the seconds of ``fit`` and of ``optimal_path``; the peak of numpy's allocations
(tracemalloc) and the peak resident memory of the process (``ru_maxrss``, interpreter and libraries
included), both in units of ``n^2`` float64 values; the largest n that 20 GB (``20e9`` bytes) holds
at that peak; the load average at the start and at the end (the machine may be shared); and, as a
check of the factor that shares nothing with it, the relative residual
``||(K + lam I) c - y|| / (||K + lam I||_1 ||c||)`` of the first step's solve, with ``K`` evaluated
again by row blocks (``--no-check`` skips it). The default writes
``benchmarks/results/krr_large.json`` (from a clean tree; ``--allow-dirty`` flags the result).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

# the same rule for the recorded command as bench_krr.py (a script beside this one)
from bench_krr import _shaping
from sklearn.metrics.pairwise import rbf_kernel

from sdlib import KernelSelfDistillation
from sdlib.krr import _blas
from sdlib.provenance import git_commit, provenance, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MEMORY_BUDGET = 20e9  # bytes: "the largest n that fits in 20 GB"
GOAL_PEAK_N2 = 1.2


def _available_bytes() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _blas_threads() -> int | None:
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def _data(n: int, m: int, v: int, d: int, seed: int = 0):  # type: ignore[no-untyped-def]
    # the same problem as benchmarks/bench_krr.py
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    w = rng.normal(size=d)
    y = np.sin(X @ w) + 0.3 * rng.normal(size=n)
    Xq = rng.uniform(-1, 1, size=(m, d))
    Xv = rng.uniform(-1, 1, size=(v, d))
    return X, y, Xq, Xv, np.sin(Xv @ w)


def residual_check(model: KernelSelfDistillation, X: np.ndarray, y: np.ndarray, gamma: float, lam: float,
                   rows: int = 2048) -> float:
    """``||(K + lam I) c - y||_inf / (||K + lam I||_inf ||c||_inf)`` for ``c = (K + lam I)^-1 y`` from the
    factor; ``K`` is evaluated again, ``rows`` rows at a time (a backward-stable solve gives ~n eps)."""
    c = model._solve(y.reshape(-1, 1))[:, 0]
    r = np.empty_like(y)
    norm = 0.0
    for s in range(0, X.shape[0], rows):
        Kb = rbf_kernel(X[s:s + rows], X, gamma=gamma)
        r[s:s + rows] = Kb @ c + lam * c[s:s + rows] - y[s:s + rows]
        norm = max(norm, float(np.abs(Kb).sum(axis=1).max()) + lam)
    return float(np.abs(r).max() / (norm * np.abs(c).max()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40000, help="training points (default 40,000)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--m", type=int, default=1000, help="query points")
    ap.add_argument("--v", type=int, default=500, help="validation points")
    ap.add_argument("--no-check", action="store_true", help="skip the residual check of the factor")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write into benchmarks/results/ from a tree with uncommitted changes (flagged)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output JSON (default benchmarks/results/krr_large.json for n = 40,000, else "
                         "runs/bench/krr_large_N.json)")
    args = ap.parse_args(argv)
    n, d, lam, gamma = args.n, 10, 1e-2, 0.1
    default = RESULTS / "krr_large.json" if n == 40000 else ROOT / "runs" / "bench" / f"krr_large_{n}.json"
    target = (args.out or default).resolve()
    commit = git_commit(ROOT)
    dirty = commit is None or commit.endswith("+dirty")
    if dirty and RESULTS.resolve() in target.parents and not args.allow_dirty:
        print(f"bench_krr_large.py: error: the working tree has uncommitted changes, and {target} is a committed "
              "result: commit first, or pass --allow-dirty (the result is then flagged), or --out elsewhere",
              file=sys.stderr)
        return 2
    need = 1.25 * 8.0 * n * n
    free = _available_bytes()
    if free is not None and free < need:
        print(f"bench_krr_large.py: not started: {free / 1e9:.1f} GB available, n = {n:,} needs about "
              f"{need / 1e9:.1f} GB", file=sys.stderr)
        return 3
    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    X, y, Xq, Xv, yv = _data(n, args.m, args.v, d)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    tracemalloc.start()
    t = time.perf_counter()
    model = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=lam).fit(X, y)
    t_fit = time.perf_counter() - t
    print(f"fit: {t_fit:.1f} s", flush=True)
    t = time.perf_counter()
    alphas, F = model.optimal_path(Xq, Xv, yv, steps=args.steps)
    t_path = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    print(f"optimal_path ({args.steps} steps): {t_path:.1f} s", flush=True)
    n2 = 8.0 * n * n
    residual = None if args.no_check else residual_check(model, X, y, gamma, lam)
    load_end = os.getloadavg()
    peak_n2, rss_n2 = peak / n2, rss / n2
    out: dict[str, Any] = {
        "benchmark": "krr_large",
        "title": f"fit + optimal_path at n = {n:,} in one process: time and peak memory",
        "command": " ".join(["python", "benchmarks/bench_krr_large.py",
                             *_shaping(list(argv if argv is not None else sys.argv[1:]))]),
        "dirty": dirty,
        "n": n, "d": d, "m": args.m, "n_val": args.v, "steps": args.steps, "lam": lam, "gamma": gamma,
        "factorisation": {"route": "blocked" if n >= _blas.BLOCKED_FROM else "lapack potrf",
                          "blocked_from": _blas.BLOCKED_FROM, "panel": _blas.PANEL, "chunk": _blas.CHUNK},
        "seconds": {"fit": t_fit, "optimal_path": t_path, "total": t_fit + t_path},
        "peak_memory_n2_float64": {"numpy_tracemalloc": peak_n2, "process_rss": rss_n2,
                                   "process_rss_before_fit": rss0 / n2},
        "largest_n_in_20GB": {"budget_bytes": MEMORY_BUDGET,
                              "numpy_tracemalloc": int(np.sqrt(MEMORY_BUDGET / (8.0 * peak_n2))),
                              "process_rss": int(np.sqrt(MEMORY_BUDGET / (8.0 * rss_n2)))},
        "residual_check": residual,
        "alphas_first": alphas[:5].tolist(),
        "predictions_finite": bool(np.isfinite(F).all()),
        "summary": {
            "peak_memory_n2_float64": {"label": f"peak of numpy's allocations, fit + optimal_path, in n^2 float64 "
                                                f"values, n = {n:,}", "ratio": peak_n2,
                                       "goal": f"<= {GOAL_PEAK_N2}", "met": bool(peak_n2 <= GOAL_PEAK_N2)},
            "process_peak_rss_n2_float64": {"label": "peak resident memory of the whole process, same units",
                                            "ratio": rss_n2, "goal": f"<= {GOAL_PEAK_N2}",
                                            "met": bool(rss_n2 <= GOAL_PEAK_N2)},
        },
        "blas_threads": _blas_threads(),
        "load_average": {"start": load_start, "end": load_end},
        "memory_available_at_start_bytes": free,
        "provenance": provenance(started=started, seconds=time.perf_counter() - t0,
                                 parameters={"n": n, "d": d, "m": args.m, "v": args.v, "steps": args.steps,
                                             "lam": lam, "gamma": gamma, "check": not args.no_check},
                                 seed=0),
    }
    if dirty:
        out["provenance"]["git_commit"] = commit
    write_json_atomic(target, out)
    print(f"peak memory: numpy {peak_n2:.3f} n^2, process {rss_n2:.3f} n^2 (goal <= {GOAL_PEAK_N2}); residual "
          f"{residual}; load {load_start[0]:.1f} -> {load_end[0]:.1f}")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

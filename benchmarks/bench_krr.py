"""How the cost of the closed-form engine grows with the work, against baselines timed in the same run.

    python benchmarks/bench_krr.py            # the full sweep (n up to 8,000, tau up to 1,000): of the
                                              # order of an hour on 2 CPU cores (n = 8,000 dominates)
    python benchmarks/bench_krr.py --quick    # small sizes, a minute: checks the script runs

Writes ``benchmarks/results/krr.json`` (the committed result; ``--quick`` writes
``runs/bench/krr_quick.json``, which is never committed). A result in benchmarks/results/ is made
from a clean tree: from a tree with uncommitted changes the script stops, unless ``--allow-dirty``,
and then the file says ``"dirty": true`` and the book's Benchmarks page flags it.

1. Time against the number of training points n (500 ... 8,000; d = 10, 1,000 query and 500
   validation points) of
   * ``ours``: Algorithm 1's path over ``--steps`` (100) steps, alpha*(2..steps) and f(Xq,
     beta^(tau)) for every tau (:meth:`KernelSelfDistillation.optimal_path`), fit included;
   * ``kernelridge``: one scikit-learn ``KernelRidge`` fit and prediction on the same data;
   * ``authors``: the same path computed as the authors' toy notebook does it, with an explicit
     ``np.linalg.inv(K + lam I)`` at every step: the set-up and ``--authors-steps`` (2) steps are
     timed, and the time is *scaled* to ``--steps`` (set-up + steps x time per step), said so in the
     file as ``"authors_scaled": true``.
   The slope of log(time) against log(n), fitted by least squares over the sizes, is reported for
   each (3 for a cost dominated by an n^3 factorisation).
2. Time against the number of steps tau (10 ... 1,000) at fixed n (2,000): ``ours`` for each tau,
   ``authors`` scaled from its measured time per step, and one ``kernelridge`` fit for reference;
   again with fitted slopes.
3. ``grid``: 20 lam x 10 alpha x 10 steps at n = 2,000 (500 query points) against one
   ``scipy.linalg.eigh`` of K (kernel matrix included in both), with scipy's default driver and
   with the divide-and-conquer driver the engine uses.
4. Peak memory of ``ours`` at the largest n (tracemalloc: numpy's allocations), in units of n^2
   float64 values.

Every time is the minimum over ``--repeats`` runs; the baseline and ours alternate so that load on
the machine affects both alike. The ``summary`` keeps the goals set for the engine (path <= 1.5 x
KernelRidge, authors >= 100 x ours, grid <= 1.5 x eigh, memory <= 4 n^2), measured at the largest n.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import rbf_kernel

from sdlib import KernelSelfDistillation
from sdlib.provenance import git_commit, provenance, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "runs" / "bench" / "krr_quick.json"
FULL = {"sizes": (500, 1000, 2000, 4000, 8000), "taus": (10, 30, 100, 300, 1000), "n_tau": 2000,
        "m": 1000, "v": 500, "grid_n": 2000, "grid_m": 500}
QUICK = {"sizes": (200, 400, 800), "taus": (5, 10, 20, 40), "n_tau": 300, "m": 100, "v": 50,
         "grid_n": 300, "grid_m": 50}


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

    return (X, y, Xq), lam, gamma, kernelridge, ours


def bench_sizes(sizes: Sequence[int], steps: int, m: int, v: int, d: int, repeats: int, authors_steps: int) -> dict:
    rows = []
    for n in sizes:
        (X, y, Xq), lam, gamma, kernelridge, ours = _models(n, m, v, d)
        t = _best({"kernelridge": kernelridge, "ours": ours(steps)}, repeats)
        _, setup, per = authors_path(X, y, Xq, lam, gamma, 0.25, authors_steps)
        per_step = float(np.mean(per))
        rows.append({"n": n, "ours": t["ours"], "kernelridge": t["kernelridge"], "authors": setup + steps * per_step,
                     "authors_setup": setup, "authors_per_step": per_step})
        print(f"n = {n:5d}: ours {t['ours']:.3g} s, KernelRidge {t['kernelridge']:.3g} s, "
              f"authors {rows[-1]['authors']:.3g} s (scaled)", flush=True)
    ns = [r["n"] for r in rows]
    return {
        "steps": steps, "m": m, "n_val": v, "d": d, "lam": 1e-2, "gamma": 1.0 / d,
        "authors_timed_steps": authors_steps, "authors_scaled": True,
        "rows": rows,
        "slopes": {k: fitted_slope(ns, [r[k] for r in rows]) for k in ("ours", "kernelridge", "authors")},
    }


def bench_steps(taus: Sequence[int], n: int, m: int, v: int, d: int, repeats: int, authors_steps: int) -> dict:
    (X, y, Xq), lam, gamma, kernelridge, ours = _models(n, m, v, d)
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


def peak_memory(n: int, m: int, v: int, d: int, steps: int) -> float:
    """Peak of numpy's allocations during ``ours`` at ``n``, in n^2 float64 values."""
    _, _, _, _, ours = _models(n, m, v, d)
    tracemalloc.start()
    ours(steps)()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / (8.0 * n * n)


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
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith(("--out=", "--allow-dirty")):
            out.append(a)
    return out


def _blas_threads() -> int | None:
    """Threads of the BLAS/LAPACK library numpy uses (the timings depend on them)."""
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def tree_is_dirty() -> bool:
    """Uncommitted changes to tracked files (as :func:`sdlib.provenance.git_commit` marks them)."""
    commit = git_commit(ROOT)
    return commit is None or commit.endswith("+dirty")


def summary(sizes: dict, grid: dict, memory: float) -> dict[str, dict[str, Any]]:
    top = sizes["rows"][-1]
    n, steps = top["n"], sizes["steps"]
    goals = {
        "path_vs_kernelridge": (f"the alpha* path over {steps} steps / one KernelRidge fit, n = {n:,}", "<=", 1.5,
                                top["ours"] / top["kernelridge"]),
        "authors_vs_path": (f"the authors' per-step inverse (scaled) / the alpha* path, n = {n:,}", ">=", 100.0,
                            top["authors"] / top["ours"]),
        "grid_vs_eigh": (f"the grid of {grid['sizes']['lams']} lam x {grid['sizes']['alphas']} alpha x "
                         f"{grid['sizes']['steps']} steps / one eigh of K, n = {grid['sizes']['n']:,}", "<=", 1.5,
                         grid["grid_vs_eigh"]),
        "grid_vs_eigh_same_driver": ("the same grid / one eigh of K with the engine's LAPACK driver (evd)", "<=",
                                     1.5, grid["grid_vs_eigh_evd"]),
        "peak_memory_n2_float64": (f"peak memory of the path, in n^2 float64 values, n = {n:,}", "<=", 4.0, memory),
    }
    return {k: {"label": label, "ratio": v, "goal": f"{op} {g}", "met": bool(v <= g if op == "<=" else v >= g)}
            for k, (label, op, g, v) in goals.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: check that the script runs")
    ap.add_argument("--repeats", type=int, default=3, help="runs per timing; the minimum is kept")
    ap.add_argument("--steps", type=int, default=100, help="steps tau of the path in the sweep over n")
    ap.add_argument("--authors-steps", type=int, default=2, help="steps of the authors' way actually timed")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, metavar="N",
                    help="training sizes n of the first sweep (default 500 1000 2000 4000 8000)")
    ap.add_argument("--taus", type=int, nargs="+", default=None, metavar="TAU",
                    help="numbers of steps of the second sweep (default 10 30 100 300 1000)")
    ap.add_argument("--n-tau", type=int, default=None, metavar="N", help="n of the sweep over steps (default 2000)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write into benchmarks/results/ from a tree with uncommitted changes (flagged)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output JSON (default benchmarks/results/krr.json; with --quick runs/bench/krr_quick.json)")
    args = ap.parse_args(argv)
    for name in ("repeats", "steps", "authors_steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    target = (args.out or (QUICK_OUT if args.quick else RESULTS / "krr.json")).resolve()
    dirty = tree_is_dirty()
    committed = RESULTS.resolve() in target.parents
    if dirty and committed and not args.allow_dirty:
        print(f"bench_krr.py: error: the working tree has uncommitted changes (git status), and {target} is a "
              "committed result: commit first, or pass --allow-dirty (the result is then flagged), or --out "
              "elsewhere", file=sys.stderr)
        return 2
    cfg = dict(QUICK if args.quick else FULL)
    for key, value in (("sizes", args.sizes), ("taus", args.taus), ("n_tau", args.n_tau)):
        if value is not None:
            if min(value if isinstance(value, list) else [value]) < 2:
                ap.error(f"--{key.replace('_', '-')} must be >= 2, got {value}")
            cfg[key] = tuple(sorted(value)) if isinstance(value, list) else value
    repeats = 1 if args.quick else args.repeats
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    sizes = bench_sizes(cfg["sizes"], args.steps, cfg["m"], cfg["v"], 10, repeats, args.authors_steps)
    steps = bench_steps(cfg["taus"], cfg["n_tau"], cfg["m"], cfg["v"], 10, repeats, args.authors_steps)
    grid = bench_grid(cfg["grid_n"], cfg["grid_m"], 10, 20, 10, 10, repeats)
    memory = peak_memory(cfg["sizes"][-1], cfg["m"], cfg["v"], 10, args.steps)
    given = list(argv if argv is not None else sys.argv[1:])
    out = {
        "benchmark": "krr",
        "title": "Closed-form self-distillation against KernelRidge and against the authors' per-step inverse",
        # The command that recomputes this file (the options that shape the numbers), and the exact one.
        "command": " ".join(["python", "benchmarks/bench_krr.py", *_shaping(given)]),
        "argv": ["benchmarks/bench_krr.py", *given],
        "quick": args.quick,
        "dirty": dirty,
        "summary": summary(sizes, grid, memory),
        "sizes": sizes,
        "steps": steps,
        "grid": grid,
        "memory": {"n": cfg["sizes"][-1], "peak_n2_float64": memory},
        "blas_threads": _blas_threads(),
        "authors_note": (f"the authors' way was timed for {args.authors_steps} steps (after its set-up) and scaled "
                         "to the number of steps"),
        "authors_vs_ours_max_abs_diff_2_steps": agreement(cfg["sizes"][0], cfg["m"], 10),
        "provenance": provenance(
            started=started, seconds=time.perf_counter() - t0,
            parameters={"quick": args.quick, "repeats": repeats, "steps": args.steps,
                        "authors_steps": args.authors_steps, **{k: list(v) if isinstance(v, tuple) else v
                                                                for k, v in cfg.items()}},
            seed=0,
        ),
    }
    write_json_atomic(target, out)
    for k, s in out["summary"].items():
        print(f"{k:26s} {s['ratio']:9.3g}  goal {s['goal']:8s} {'met' if s['met'] else 'NOT met'}")
    print("slopes in n:", {k: round(v, 2) for k, v in sizes["slopes"].items()},
          "in tau:", {k: round(v, 2) for k, v in steps["slopes"].items()})
    print(out["authors_note"] + ("; made from a tree with uncommitted changes (dirty)" if dirty else ""))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

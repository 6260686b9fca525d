"""The low-rank (Nyström) route of KernelSelfDistillation at scale, and its accuracy against m.

    python benchmarks/bench_lowrank.py                 # scale (n = 1e5, 1e6) + Fashion-MNIST + accuracy
    python benchmarks/bench_lowrank.py --parts accuracy --out benchmarks/results/lowrank_accuracy.json
    python benchmarks/bench_lowrank.py --parts dask --dask-n 10000000   # the 2-worker LocalCluster run
    python benchmarks/bench_lowrank.py --quick         # small sizes, a minute: checks the script runs

Writes ``benchmarks/results/lowrank.json`` (``--quick``: ``runs/bench/lowrank_quick.json``, never
committed); parts already in the file and not rerun are kept. Every timed run is a fresh Python
process (so that its peak resident memory, ``ru_maxrss``, is its own) and records
``os.getloadavg()`` before and after: the machine is shared, and others' work shows there.

Parts:

* ``scale``: d = 10 (the toy target of ``bench_krr.py``), m = 1,000 uniform centres, 1,000 query and
  1,000 validation points: ``ours`` is ``fit`` + ``optimal_path`` over 100 steps (alpha* of every
  step and the predictions of every step), against ``sklearn``: one ``Nystroem(n_components=m)`` fit
  and transform + ``Ridge(alpha=lam)`` fit + predict at the same m. ``sklearn`` holds the n x m
  features (8 n m bytes, twice while it transforms), so it runs only where that fits
  (``--sklearn-max-n``); above, the file says why it was not run.
* ``fmnist``: Fashion-MNIST (d = 784, one-hot targets p = 10), 55,000 training and 5,000
  validation images as Section 5 splits them (split seed 0), the test set as queries: the same two.
* ``accuracy``: against the exact engine at n <= 20,000 (d = 10, gamma = 0.1, lam = 0.01, 20
  steps): for m from 125 up to ``--accuracy-max-m`` (and m = n where n is small enough), uniform and
  leverage-score centres: max |alpha* - alpha*_exact| over the steps, the relative error of the
  last step's test predictions, the test MSE of both, and the diagnostics of the fit (smallest
  retained eigenvalue / lam, estimated trace(K - K~) / lam).
* ``dask``: ``--dask-n`` rows (d = 10) generated chunk by chunk on a 2-worker LocalCluster (never
  whole in memory), the same path + alpha* as ``scale``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "runs" / "bench" / "lowrank_quick.json"
FULL = {"sizes": (100_000, 1_000_000), "m": 1000, "steps": 100, "q": 1000, "v": 1000,
        "sklearn_max_n": 300_000, "accuracy_n": (4000, 20_000), "accuracy_max_m": 4000,
        "fmnist_m": 1000, "dask_n": 10_000_000}
QUICK = {"sizes": (5000, 20_000), "m": 200, "steps": 20, "q": 200, "v": 200, "sklearn_max_n": 20_000,
         "accuracy_n": (600,), "accuracy_max_m": 600, "fmnist_m": 200, "dask_n": 50_000}
D, LAM, GAMMA = 10, 1e-2, 0.1
TARGETS = {"n1e6_seconds": 90.0, "n1e6_peak_gb": 2.0, "ratio_vs_sklearn": 1.5, "dask_seconds": 900.0}


def toy(n: int, d: int = D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``y = sin(x . w) + 0.3 noise`` on ``[-1, 1]^d`` (``bench_krr.py``'s target), ``w`` fixed by seed 0."""
    w = np.random.default_rng(0).normal(size=d)
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    return X, np.sin(X @ w) + 0.3 * rng.normal(size=n)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu() -> float:
    """CPU seconds of this process (user + system): on a loaded machine, the work beside the wall time."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return float(r.ru_utime + r.ru_stime)


def _peak_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: kilobytes


# ------------------------------------------------------------------------------------ one timed run
def _fmnist(n_val: int = 5000):  # type: ignore[no-untyped-def]
    from sdlib.nn.data import load_data

    b = load_data("fashion_mnist", n_val=n_val, split_seed=0)

    def xy(s):  # type: ignore[no-untyped-def]
        X = s.x.reshape(len(s), -1).numpy().astype(np.float64) / 255.0
        return X, np.eye(10)[s.y.numpy()]

    return xy(b.train), xy(b.val), xy(b.test)


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement, in this (fresh) process: ``spec["what"]`` is ``ours`` or ``sklearn``."""
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge

    from sdlib import KernelSelfDistillation

    if spec["data"] == "fmnist":
        (X, y), (Xv, yv), (Xq, _) = _fmnist()
        gamma = spec["gamma"]
    else:
        X, y = toy(spec["n"])
        Xv, yv = toy(spec["v"], seed=1)
        Xq, _ = toy(spec["q"], seed=2)
        gamma = GAMMA
    m, steps = spec["m"], spec["steps"]
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(limits=spec.get("blas_threads"), user_api="blas")
    base = _peak_bytes()
    load0 = _load()
    cpu0 = _cpu()
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    if spec["what"] == "ours":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = KernelSelfDistillation(gamma=gamma, lam=LAM, n_components=m, random_state=0).fit(X, y)
        alphas, F = model.optimal_path(Xq, Xv, yv, steps=steps)
        out["alpha_star_last"] = float(alphas[-1])
        out["warnings"] = sorted({type(w.message).__name__ for w in caught})
        out["captured_trace"] = model.lowrank_.captured
    else:
        nys = Nystroem(gamma=gamma, n_components=m, random_state=0).fit(X)
        F = Ridge(alpha=LAM, fit_intercept=False).fit(nys.transform(X), y).predict(nys.transform(Xq))
    seconds = time.perf_counter() - t0
    limit.unregister()
    out.update(seconds=seconds, cpu_seconds=_cpu() - cpu0, blas_threads=spec.get("blas_threads"),
               peak_rss_bytes=_peak_bytes(),
               rss_before_bytes=base, data_bytes=int(X.nbytes),
               load_before=load0, load_after=_load(), n=int(X.shape[0]), d=int(X.shape[1]), m=m,
               shape=list(np.shape(F)))
    return out


def _spawn(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    env = dict(os.environ)
    try:
        r = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                           timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "load_after": _load()}
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1][:300],
                "load_after": _load()}
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_scale(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    rows = []
    for n in cfg["sizes"]:
        spec = {"data": "toy", "n": n, "m": cfg["m"], "steps": cfg["steps"], "q": cfg["q"], "v": cfg["v"],
                "blas_threads": cfg["blas_threads"]}
        row: dict[str, Any] = {"n": n, "ours": _spawn({**spec, "what": "ours"}, timeout)}
        if n <= cfg["sklearn_max_n"]:
            row["sklearn"] = _spawn({**spec, "what": "sklearn"}, timeout)
        else:
            row["sklearn"] = {"skipped": f"n x m features need {16 * n * cfg['m'] / 1e9:.0f} GB while transforming "
                                         f"(n > --sklearn-max-n {cfg['sklearn_max_n']})"}
        if "seconds" in row["ours"] and "seconds" in row["sklearn"]:
            row["ratio"] = row["ours"]["seconds"] / row["sklearn"]["seconds"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"m": cfg["m"], "steps": cfg["steps"], "q": cfg["q"], "v": cfg["v"], "d": D, "lam": LAM,
            "gamma": GAMMA, "rows": rows}


def bench_fmnist(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    from sdlib.errors import DataMissingError

    try:
        _fmnist()
    except (DataMissingError, FileNotFoundError, ImportError) as e:
        return {"skipped": f"Fashion-MNIST not found ({type(e).__name__}: {str(e).splitlines()[0][:200]})"}
    gamma = 1.0 / 784 / 0.1  # 1 / (d * mean pixel variance ~ 0.1): distances of order one
    spec = {"data": "fmnist", "m": cfg["fmnist_m"], "steps": cfg["steps"], "gamma": gamma,
            "blas_threads": cfg["blas_threads"]}
    row = {"ours": _spawn({**spec, "what": "ours"}, timeout), "sklearn": _spawn({**spec, "what": "sklearn"}, timeout)}
    if "seconds" in row["ours"] and "seconds" in row["sklearn"]:
        row["ratio"] = row["ours"]["seconds"] / row["sklearn"]["seconds"]
    print(json.dumps(row), flush=True)
    return {"gamma": gamma, "lam": LAM, **row}


# ------------------------------------------------------------------------------------ accuracy
def bench_accuracy(cfg: dict[str, Any], steps: int = 20) -> dict[str, Any]:
    from sdlib import KernelSelfDistillation
    from sdlib.krr import lowrank

    out = []
    for n in cfg["accuracy_n"]:
        X, y = toy(n)
        Xv, yv = toy(1000, seed=1)
        Xq, _ = toy(2000, seed=2)
        w = np.random.default_rng(0).normal(size=D)
        fq = np.sin(Xq @ w)  # noise-free test targets
        kw = dict(gamma=GAMMA, lam=LAM, steps=steps)
        t0 = time.perf_counter()
        a_ex, F_ex = KernelSelfDistillation(**kw).fit(X, y).optimal_path(Xq, Xv, yv)
        t_exact = time.perf_counter() - t0
        ms = [m for m in (125, 250, 500, 1000, 2000, 4000, 8000) if m <= min(cfg["accuracy_max_m"], n)]
        if n <= max(cfg["accuracy_max_m"], 4000) and n not in ms:
            ms.append(n)
        rows = []
        for centres in ("uniform", "leverage"):
            for m in ms:
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", lowrank.LowRankWarning)
                    model = KernelSelfDistillation(n_components=m, random_state=0, centres=centres, **kw).fit(X, y)
                a, F = model.optimal_path(Xq, Xv, yv)
                nf = model.lowrank_
                rows.append({
                    "centres": centres, "m": m, "seconds": time.perf_counter() - t0,
                    "alpha_error_max": float(np.abs(a - a_ex).max()),
                    "prediction_error": float(np.linalg.norm(F[-1] - F_ex[-1]) / np.linalg.norm(F_ex[-1])),
                    "test_mse": float(np.mean((F[-1] - fq) ** 2)),
                    "s2_min_over_lam": float(nf.s2[0] / LAM), "residual_trace_over_lam": nf.residual_trace / LAM,
                    "captured_trace": nf.captured, "warned": bool(caught), "load": _load()})
                print(json.dumps({"n": n, **rows[-1]}), flush=True)
        out.append({"n": n, "steps": steps, "exact_seconds": t_exact, "alpha_exact": a_ex.tolist(),
                    "exact_test_mse": float(np.mean((F_ex[-1] - fq) ** 2)), "rows": rows})
    return {"d": D, "lam": LAM, "gamma": GAMMA, "sizes": out}


# ------------------------------------------------------------------------------------ dask
def bench_dask(cfg: dict[str, Any]) -> dict[str, Any]:
    import dask.array as da

    from sdlib import KernelSelfDistillation
    from sdlib.sweeps.sweep import dask_client

    n, m = cfg["dask_n"], cfg["m"]
    chunk = min(n, 250_000)
    w = np.random.default_rng(0).normal(size=D)

    def gen(block_id: tuple[int, ...], rows: int) -> np.ndarray:
        # each chunk from its own seed: X and y of one chunk together, never the whole array
        rng = np.random.default_rng([7, block_id[0]])
        X = rng.uniform(-1, 1, size=(rows, D))
        return np.concatenate([X, (np.sin(X @ w) + 0.3 * rng.normal(size=rows))[:, None]], axis=1)

    sizes = [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    blocks = [da.from_delayed(__import__("dask").delayed(gen)((i,), s), shape=(s, D + 1), dtype=float)
              for i, s in enumerate(sizes)]
    XY = da.concatenate(blocks, axis=0)
    X, y = XY[:, :D], XY[:, D]
    Xv, yv = toy(cfg["v"], seed=1)
    Xq, _ = toy(cfg["q"], seed=2)
    load0 = _load()
    with dask_client(workers=2) as client:
        t0 = time.perf_counter()
        model = KernelSelfDistillation(gamma=GAMMA, lam=LAM, n_components=m, random_state=0).fit(X, y)
        alphas, F = model.optimal_path(Xq, Xv, yv, steps=cfg["steps"])
        seconds = time.perf_counter() - t0
        workers = len(client.scheduler_info()["workers"])
    return {"n": n, "m": m, "chunk_rows": chunk, "workers": workers, "seconds": seconds, "load_before": load0,
            "load_after": _load(), "alpha_star_last": float(alphas[-1]), "client_peak_rss_bytes": _peak_bytes()}


# ------------------------------------------------------------------------------------ summary
def summary(res: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    scale = res.get("scale")
    if scale:
        for row in scale["rows"]:
            if "ratio" in row:
                goals[f"ratio_vs_sklearn_n{row['n']}"] = {
                    "label": f"path + alpha* / one Nystroem + Ridge, n = {row['n']:,}", "value": row["ratio"],
                    "goal": f"<= {TARGETS['ratio_vs_sklearn']}", "met": row["ratio"] <= TARGETS["ratio_vs_sklearn"]}
            if row["n"] == 1_000_000 and "seconds" in row["ours"]:
                o = row["ours"]
                goals["n1e6_seconds"] = {"label": "path + alpha* at n = 1,000,000, seconds", "value": o["seconds"],
                                         "goal": f"<= {TARGETS['n1e6_seconds']}",
                                         "met": o["seconds"] <= TARGETS["n1e6_seconds"], "load": o["load_after"]}
                gb = o["peak_rss_bytes"] / 1e9
                goals["n1e6_peak_gb"] = {"label": "peak resident memory at n = 1,000,000, GB", "value": gb,
                                         "goal": f"<= {TARGETS['n1e6_peak_gb']}", "met": gb <= TARGETS["n1e6_peak_gb"]}
    fm = res.get("fmnist")
    if fm and "ratio" in fm:
        goals["ratio_vs_sklearn_fmnist"] = {"label": "path + alpha* / one Nystroem + Ridge, Fashion-MNIST",
                                            "value": fm["ratio"], "goal": f"<= {TARGETS['ratio_vs_sklearn']}",
                                            "met": fm["ratio"] <= TARGETS["ratio_vs_sklearn"]}
    dk = res.get("dask")
    if dk and "seconds" in dk:
        goals["dask_seconds"] = {"label": f"path + alpha* at n = {dk['n']:,} on a 2-worker LocalCluster, seconds",
                                 "value": dk["seconds"], "goal": f"<= {TARGETS['dask_seconds']}",
                                 "met": dk["seconds"] <= TARGETS["dask_seconds"] and dk["n"] >= 10_000_000}
    return goals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="small sizes: check that the script runs")
    ap.add_argument("--parts", nargs="+", default=["scale", "fmnist", "accuracy"],
                    choices=["scale", "fmnist", "accuracy", "dask"], help="what to run (default: all but dask)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, metavar="N", help="n of the scale part")
    ap.add_argument("--accuracy-n", type=int, nargs="+", default=None, metavar="N", help="n of the accuracy part")
    ap.add_argument("--accuracy-max-m", type=int, default=None, metavar="M")
    ap.add_argument("--sklearn-max-n", type=int, default=None, metavar="N")
    ap.add_argument("--dask-n", type=int, default=None, metavar="N")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per timed run")
    ap.add_argument("--blas-threads", type=int, default=None, metavar="T",
                    help="BLAS threads of every timed run, both methods (default: the library's; on a "
                         "machine loaded beyond its cores one thread is faster)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return 0
    cfg = dict(QUICK if args.quick else FULL)
    cfg["blas_threads"] = args.blas_threads
    for key in ("sizes", "accuracy_n", "accuracy_max_m", "sklearn_max_n", "dask_n"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    target = (args.out or (QUICK_OUT if args.quick else RESULTS / "lowrank.json")).resolve()
    from sdlib.provenance import provenance, write_json_atomic

    old: dict[str, Any] = json.loads(target.read_text()) if target.exists() else {}
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    res = {k: old[k] for k in ("scale", "fmnist", "accuracy", "dask") if k in old}
    load0 = _load()
    if "scale" in args.parts:
        res["scale"] = bench_scale(cfg, args.timeout)
    if "fmnist" in args.parts:
        res["fmnist"] = bench_fmnist(cfg, args.timeout)
    if "accuracy" in args.parts:
        res["accuracy"] = bench_accuracy(cfg)
    if "dask" in args.parts:
        res["dask"] = bench_dask(cfg)
    out = {"benchmark": "lowrank", "quick": args.quick, "load_average": {"start": load0, "end": _load()},
           "cpus": os.cpu_count(), **res, "summary": summary(res),
           "provenance": provenance(started=started, seconds=time.perf_counter() - t0,
                                    parameters={"argv": list(argv if argv is not None else sys.argv[1:]), **cfg},
                                    seed=0)}
    if old.get("provenance") and set(res) - set(args.parts):
        out["kept_from_earlier_run"] = {"parts": sorted(set(res) - set(args.parts)),
                                        "provenance": old["provenance"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, out)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed and memory of the empirical NTK Gram matrix, as ratios against a baseline timed in the same run.

    python benchmarks/bench_ntk.py            # the issue's size (n = 256, d = 10, depth 2, width 1024)
    python benchmarks/bench_ntk.py --quick    # small sizes, seconds: checks the script runs

Writes ``benchmarks/results/ntk.json`` (``ntk_quick.json`` with --quick) with every time, ratio,
memory figure, goal and the provenance block.

The network is :func:`sdlib.ntk.ntk_mlp` with 10 inputs, 2 hidden layers of width 1024, one output
and no biases: 10 * 1024 + 1024^2 + 1024 = 1,059,840 parameters, so the whole Jacobian of
n = 256 outputs would take 2.2 GB in float64. Three ways to its Gram matrix ``J J^T``:

* ``loop`` (the baseline): one ``torch.autograd.grad`` per output, the rows stacked into the whole
  Jacobian, then one product ``J @ J.T``;
* ``func_jacobian``: :func:`sdlib.ntk.empirical_ntk` with ``method="jacobian"``: ``torch.func``
  (``vmap`` over ``jacrev``) per block of inputs, every parameter's per-input gradient contracted
  block by block;
* ``func_auto``: the same with ``method="auto"`` (the default): for each dense layer, ``jacrev``
  gives the derivative of the output with respect to the layer's output and the layer's input is
  returned alongside, and the layer's block of ``J J^T`` is their exact factorisation
  ``w^2 <delta, delta'> <a, a'>``, with no per-input copy of the weight matrix.

Ratios: ``loop`` time / each ``func`` time (goal >= 10). All three Gram matrices must agree (largest
difference relative to the largest entry, reported). Each method runs in a fresh process (spawned)
after a warm-up on 4 inputs; its peak memory is the growth of the process's peak resident set size
(``ru_maxrss``) during the timed call, reported with the size of the Gram matrix itself. The memory
scaling runs ``func_auto`` and ``func_jacobian`` at several ``n`` with a fixed block budget: the
peak minus the Gram matrix should not grow with ``n``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sdlib.provenance import provenance, write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 2.0**20


def _rss_bytes() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_bytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # Linux reports KiB


def _loop_gram(model: Any, X: Any) -> Any:
    """The baseline: one autograd.grad per output, the whole Jacobian, one product."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(X.shape[0]):
        out = model(X[i : i + 1]).sum()
        grads = torch.autograd.grad(out, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    J = torch.stack(rows)
    return (J @ J.T).numpy()


def _child(method: str, n: int, d: int, width: int, depth: int, block_bytes: int, threads: int,
           queue: Any) -> None:
    import torch

    from sdlib import ntk

    torch.set_num_threads(threads)
    model = ntk.ntk_mlp(d, width, depth, seed=0)
    X = torch.as_tensor(np.random.default_rng(0).normal(size=(n, d)))

    def run(Z: Any) -> np.ndarray:
        if method == "loop":
            return _loop_gram(model, Z)
        return ntk.empirical_ntk(model, Z, method=method.removeprefix("func_"), max_block_bytes=block_bytes)

    run(X[:4])  # warm-up: lazy initialisation of torch.func and of the BLAS threads
    base_peak, base_rss = _peak_bytes(), _rss_bytes()
    t0 = time.perf_counter()
    G = run(X)
    seconds = time.perf_counter() - t0
    grew = max(_peak_bytes() - max(base_peak, base_rss), 0.0)
    queue.put({"seconds": seconds, "peak_growth_bytes": grew, "gram": G})


def measure(method: str, n: int, d: int, width: int, depth: int, block_bytes: int, threads: int) -> dict:
    """Run one method in a fresh (spawned) process, so that its peak memory is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, n, d, width, depth, block_bytes, threads, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{method} at n={n} failed with exit code {proc.exitcode}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds), to check the script runs")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each torch.func method (min taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the machine's cores)")
    parser.add_argument("--block-mib", type=float, default=128.0, help="block budget of empirical_ntk in MiB")
    parser.add_argument("--out", type=Path, default=None, help="result file (default benchmarks/results/ntk.json)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.block_mib <= 0:
        parser.error("--repeats and --threads must be >= 1 and --block-mib > 0")
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    if args.quick:
        n, d, width, depth, scaling_n = 32, 10, 128, 2, [16, 32, 64]
    else:
        n, d, width, depth, scaling_n = 256, 10, 1024, 2, [128, 256, 512]
    block = int(args.block_mib * MIB)
    n_params = d * width + (depth - 1) * width * width + width
    shape = {"n": n, "d": d, "width": width, "depth": depth, "outputs": 1, "biases": False,
             "n_params": n_params, "whole_jacobian_bytes": n * n_params * 8, "gram_bytes": n * n * 8}

    runs: dict[str, dict] = {}
    print(f"loop of torch.autograd.grad, n={n} ...", flush=True)
    runs["loop"] = measure("loop", n, d, width, depth, block, args.threads)
    for method in ("func_jacobian", "func_auto"):
        best = None
        for _ in range(args.repeats):
            print(f"{method}, n={n} ...", flush=True)
            r = measure(method, n, d, width, depth, block, args.threads)
            best = r if best is None or r["seconds"] < best["seconds"] else best
        runs[method] = best
    ref = runs["loop"]["gram"]
    scale = float(np.abs(ref).max())
    timing = {}
    for name, r in runs.items():
        timing[name] = {"seconds": round(r["seconds"], 4), "peak_growth_mib": round(r["peak_growth_bytes"] / MIB, 1),
                        "max_rel_diff_vs_loop": float(np.abs(r["gram"] - ref).max() / scale)}
    ratios = {f"loop_over_{m}": round(runs["loop"]["seconds"] / runs[m]["seconds"], 2)
              for m in ("func_jacobian", "func_auto")}

    scaling = {}
    for method in ("func_auto", "func_jacobian"):
        rows = []
        for m in scaling_n:
            print(f"memory scaling: {method}, n={m} ...", flush=True)
            r = measure(method, m, d, width, depth, block, args.threads)
            gram = m * m * 8
            rows.append({"n": m, "seconds": round(r["seconds"], 4),
                         "peak_growth_mib": round(r["peak_growth_bytes"] / MIB, 1), "gram_mib": round(gram / MIB, 3),
                         "peak_minus_gram_mib": round((r["peak_growth_bytes"] - gram) / MIB, 1)})
        scaling[method] = rows

    result = {
        "benchmark": "empirical NTK Gram matrix: torch.func in blocks vs a loop of torch.autograd.grad",
        "quick": args.quick,
        "shape": shape,
        "block_budget_mib": args.block_mib,
        "threads": args.threads,
        "timing": timing,
        "ratios": ratios,
        "goals": {"loop_over_func_auto": ">= 10", "loop_over_func_jacobian": ">= 10 (issue's goal; reported)",
                  "peak_minus_gram": "does not grow with n"},
        "memory_scaling": scaling,
        "summary": (f"n={n}, {n_params:,} parameters: loop {timing['loop']['seconds']:.2f} s, "
                    f"torch.func (jacobian) {timing['func_jacobian']['seconds']:.2f} s "
                    f"(x{ratios['loop_over_func_jacobian']}), torch.func (auto) "
                    f"{timing['func_auto']['seconds']:.2f} s (x{ratios['loop_over_func_auto']})"),
        "provenance": provenance(started=started, seconds=time.perf_counter() - t_start,
                                 parameters={**shape, "repeats": args.repeats, "block_mib": args.block_mib,
                                             "threads": args.threads}, seed=0),
    }
    out = args.out or RESULTS / ("ntk_quick.json" if args.quick else "ntk.json")
    write_json_atomic(out, result)
    print(result["summary"])
    for method, rows in scaling.items():
        print(method, "peak - Gram (MiB) by n:", {r["n"]: r["peak_minus_gram_mib"] for r in rows})
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

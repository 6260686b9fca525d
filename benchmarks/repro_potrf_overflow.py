"""Reproduce OpenBLAS's threaded ``potrf`` overrunning its buffer at large n (not a test, not a benchmark).

    python benchmarks/repro_potrf_overflow.py --route fit-potrf   # fit with LAPACK potrf, n = 40,000
    python benchmarks/repro_potrf_overflow.py --route bare         # rbf_kernel + scipy cho_factor only
    python benchmarks/repro_potrf_overflow.py --route fit          # fit as shipped (blocked above BLOCKED_FROM)

Each route runs in a child process (a segmentation fault ends the child, not this script), which
needs about ``8 n^2`` bytes (13 GB at n = 40,000); the script stops before it starts if
``/proc/meminfo`` shows less than 1.25 times that. It prints the child's exit status (``-11``: a
segmentation fault) and its seconds; ``--seconds`` bounds the child (default 900: a completed
``potrf`` at n = 40,000 on 2 idle cores takes about 5 minutes).

What was seen here (2 cores, scipy's OpenBLAS 0.3.30 with the Haswell kernels): ``fit-potrf``
crashed in ``dgemm_otcopy_HASWELL`` <- ``inner_thread`` <- ``dsyrk_thread_LN`` <-
``dpotrf_L_parallel`` (gdb), writing at the 4 MiB-aligned end of a buffer; ``bare`` completed in
the two runs tried (the write past the buffer lands in mapped memory or not, depending on what the
process allocated before). Whether it crashes depends on the memory layout; that it overruns does
not (``sdlib.krr._blas`` explains the arithmetic). ``fit`` completes.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def child(route: str, n: int) -> None:
    faulthandler.enable()
    import numpy as np
    from scipy import linalg
    from sklearn.metrics.pairwise import rbf_kernel

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(n, 10))
    if route == "bare":
        K = rbf_kernel(X, gamma=0.1)
        K.flat[:: n + 1] += 1e-2
        linalg.cho_factor(K.T, lower=True, overwrite_a=True, check_finite=False)
        return
    from sdlib import KernelSelfDistillation
    from sdlib.krr import _blas

    if route == "fit-potrf":
        _blas.BLOCKED_FROM = n + 1  # the route before the fix: LAPACK potrf on every core
    KernelSelfDistillation(kernel="rbf", gamma=0.1, lam=1e-2).fit(X, np.sin(X @ rng.normal(size=10)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--route", choices=("bare", "fit-potrf", "fit"), default="fit-potrf")
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--seconds", type=float, default=900.0, help="the child is stopped after this long")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.route, args.n)
        return 0
    need = 1.25 * 8.0 * args.n**2
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        free = next(float(x.split()[1]) * 1024 for x in meminfo if x.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        free = None
    if free is not None and free < need:
        print(f"not started: {free / 1e9:.1f} GB available, n = {args.n:,} needs about {need / 1e9:.1f} GB",
              file=sys.stderr)
        return 3
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", "--route", args.route, "--n", str(args.n)],
                              timeout=args.seconds, capture_output=True, text=True)
        status: int | str = proc.returncode
        tail = proc.stderr.strip().splitlines()[-6:]
    except subprocess.TimeoutExpired:
        status, tail = f"still running after {args.seconds:.0f} s (stopped)", []
    print(json.dumps({"route": args.route, "n": args.n, "exit_status": status,
                      "segmentation_fault": status == -11, "seconds": round(time.perf_counter() - t0, 1),
                      "load_average": os.getloadavg(), "stderr_tail": tail}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

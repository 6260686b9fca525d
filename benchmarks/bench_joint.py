"""Speed of the jointly optimal weights (sdlib.krr.joint) against a generic optimiser over refits.

    python benchmarks/bench_joint.py            # n = 2,000, T = 10 (~5-10 minutes on 2 shared cores)
    python benchmarks/bench_joint.py --quick    # n = 300: checks that the script runs

Writes ``benchmarks/results/joint.json`` (with --quick ``runs/bench/joint_quick.json``): every time,
error, evaluation count, the ratio against its goal and the provenance block.

The problem: ``n`` training points in ``[-1, 1]^5``, targets ``sin(x w) + 0.3 noise``, ``v`` noisy
validation points, RBF kernel, a teacher with a large penalty (``lam = 1``) so that the weights
matter, ``T`` steps. Every contender starts from the raw data (kernel matrices included):

* ``ours``: ``KernelSelfDistillation.fit`` (one Cholesky factor) and ``sdlib.krr.joint.joint_optimum``:
  ``T`` solves with the factor, then a least-squares problem in the ``T`` coefficients of eq. (6).
* ``refits`` (the baseline of the goal): scipy's Levenberg-Marquardt (``least_squares(method="lm")``,
  finite-difference Jacobian, settings ``LM_OPTIONS``), a generic optimiser, over the validation residual computed by
  refitting the ``T`` steps with :func:`sdlib.krr.reference.dual_refits` -- each step a fresh
  ``scipy.linalg.solve(K + lam I, t, assume_a="pos")`` (a Cholesky factorisation per refit, as a
  from-scratch fit does). It works in the coefficients
  ``c`` of eq. (6) (mapped to weights by eq. J2 before refitting) from ``c = e_1`` (plain KRR):
  over the weights themselves generic optimisers stall where a weight reaches 1 and do not find this
  optimum (see ``alpha_space`` below). It must reach our error to 1e-6 relative.
* ``refits_shared_factor``: the same optimiser with refits that reuse one Cholesky factor
  (``cho_solve``): a generous baseline, reported for context.
* ``alpha_space``: Levenberg-Marquardt over the weights, from the greedy weights, with
  shared-factor refits and at most ``--alpha-evals`` evaluations: its time and how far above the
  joint optimum it ends.
* ``coordinate_descent``: ours, closed-form coordinate updates over the weights (the direct route)
  from the greedy weights, stopping rule 1e-6 relative per sweep or ``--cd-sweeps`` sweeps: its time
  and how far above the joint optimum it ends.

Goal: ``refits`` time / ``ours`` time >= 100 at n = 2,000, T = 10, measured in one run. Ours is
the minimum over ``--repeats`` runs before and ``--repeats`` runs after the baselines (all kept in
``seconds_all``); the baselines run once (they take minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg, optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import rbf_kernel

from sdlib import KernelSelfDistillation
from sdlib.krr import joint, reference
from sdlib.provenance import git_commit, provenance, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_OUT = ROOT / "runs" / "bench" / "joint_quick.json"
FULL = {"n": 2000, "v": 500, "d": 5, "steps": 10, "gamma": 0.5, "lam": 1.0}
QUICK = {"n": 300, "v": 100, "d": 5, "steps": 6, "gamma": 0.5, "lam": 1.0}
GOAL = 100.0


def data(n: int, v: int, d: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    X, X_val = rng.uniform(-1, 1, (n, d)), rng.uniform(-1, 1, (v, d))
    y = np.sin(X @ w) + 0.3 * rng.normal(size=n)
    y_val = np.sin(X_val @ w) + 0.3 * rng.normal(size=v)
    return X, y, X_val, y_val


def ours(X, y, X_val, y_val, cfg) -> joint.JointResult:  # type: ignore[no-untyped-def]
    model = KernelSelfDistillation(gamma=cfg["gamma"], lam=cfg["lam"]).fit(X, y)
    return joint.joint_optimum(model, X_val, y_val, cfg["steps"])


def coordinate_descent(X, y, X_val, y_val, cfg, max_sweeps: int) -> joint.JointResult:  # type: ignore[no-untyped-def]
    model = KernelSelfDistillation(gamma=cfg["gamma"], lam=cfg["lam"]).fit(X, y)
    G = joint.chain_predictions(model, X_val, cfg["steps"])
    start = model.optimal_alphas(X_val, y_val, steps=cfg["steps"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return joint.coordinate_descent(G, y_val, start, tol=1e-6, max_sweeps=max_sweeps)


class Refits:
    """Validation residual after T steps, every step refitted (eqs. 3-5 in the dual), counted.

    Fresh refits are :func:`sdlib.krr.reference.dual_refits` (a dense ``scipy.linalg.solve`` per step);
    shared-factor refits solve with one Cholesky factor of ``K + lam I`` computed up front.
    """

    def __init__(self, X, y, X_val, y_val, cfg, shared_factor: bool) -> None:  # type: ignore[no-untyped-def]
        self.K = rbf_kernel(X, gamma=cfg["gamma"])
        self.K_val = rbf_kernel(X_val, X, gamma=cfg["gamma"])
        self.lam = cfg["lam"]
        self.factor = linalg.cho_factor(self.K + self.lam * np.eye(len(y))) if shared_factor else None
        self.y, self.y_val = y, y_val
        self.evaluations = self.refits = 0

    def residual_alphas(self, alphas: np.ndarray) -> np.ndarray:
        self.evaluations += 1
        self.refits += len(alphas) + 1
        if self.factor is None:
            preds, _ = reference.dual_refits(self.K, self.y, self.lam, alphas, self.K_val)
            return self.y_val - preds[-1]
        c = linalg.cho_solve(self.factor, self.y)
        for a in alphas:
            c = linalg.cho_solve(self.factor, a * self.y + (1.0 - a) * (self.K @ c))
        return self.y_val - self.K_val @ c

    def residual_coefficients(self, u: np.ndarray) -> np.ndarray:
        c = np.concatenate([[1.0 - u.sum()], u])
        return self.residual_alphas(joint.alphas_from_coefficients(c))


#: Levenberg-Marquardt settings, tuned for the baseline (fewest evaluations that still reach the
#: optimum to 1e-6 at n = 2,000, T = 10): scipy's default finite-difference step (~1.5e-8 relative)
#: is below the round-off of a chain of refits and stops LM ~1e-3 above the optimum; tolerances
#: tighter than 1e-10 only add evaluations.
LM_OPTIONS = {"method": "lm", "diff_step": 1e-3, "xtol": 1e-10, "ftol": 1e-10, "gtol": 1e-15}


def lm(fun, x0: np.ndarray, max_nfev: int | None = None) -> tuple[float, Any]:  # type: ignore[no-untyped-def]
    res = optimize.least_squares(fun, x0, max_nfev=max_nfev, **LM_OPTIONS)
    return 2.0 * float(res.cost), res


def run_baseline(X, y, X_val, y_val, cfg, shared_factor: bool) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    r = Refits(X, y, X_val, y_val, cfg, shared_factor)
    err, res = lm(r.residual_coefficients, np.zeros(cfg["steps"] - 1))
    return {"seconds": time.perf_counter() - t0, "error": err, "evaluations": r.evaluations,
            "refits": r.refits, "status": int(res.status), "lm_options": LM_OPTIONS}


def run_alpha_space(X, y, X_val, y_val, cfg, max_evals: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    start = KernelSelfDistillation(gamma=cfg["gamma"], lam=cfg["lam"]).fit(X, y).optimal_alphas(
        X_val, y_val, steps=cfg["steps"])
    r = Refits(X, y, X_val, y_val, cfg, shared_factor=True)
    # scipy's max_nfev leaves out the T - 1 evaluations of each finite-difference Jacobian.
    err, res = lm(r.residual_alphas, start, max_nfev=max(1, max_evals // cfg["steps"]))
    return {"seconds": time.perf_counter() - t0, "error": err, "evaluations": r.evaluations,
            "refits": r.refits, "status": int(res.status), "alphas": res.x.tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: check that the script runs")
    ap.add_argument("--repeats", type=int, default=3, help="runs of ours; the minimum is kept")
    ap.add_argument("--cd-sweeps", type=int, default=3000, help="most sweeps of coordinate descent")
    ap.add_argument("--alpha-evals", type=int, default=200,
                    help="most evaluations over the weights (about; Jacobians included)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write into benchmarks/results/ from a tree with uncommitted changes (flagged)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output JSON (default benchmarks/results/joint.json; "
                         "with --quick runs/bench/joint_quick.json)")
    args = ap.parse_args(argv)
    for name in ("repeats", "cd_sweeps", "alpha_evals"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    target = (args.out or (QUICK_OUT if args.quick else RESULTS / "joint.json")).resolve()
    commit = git_commit(ROOT)
    dirty = commit is None or commit.endswith("+dirty")
    if dirty and RESULTS.resolve() in target.parents and not args.allow_dirty:
        print(f"bench_joint.py: error: the working tree has uncommitted changes (git status), and {target} is a "
              "committed result: commit first, or pass --allow-dirty (the result is then flagged), or --out "
              "elsewhere", file=sys.stderr)
        return 2
    cfg = dict(QUICK if args.quick else FULL)
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter()
    X, y, X_val, y_val = data(cfg["n"], cfg["v"], cfg["d"])

    times: list[float] = []

    def time_ours() -> joint.JointResult:
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = ours(X, y, X_val, y_val, cfg)
            times.append(time.perf_counter() - t0)
        return res

    best = time_ours()
    t0 = time.perf_counter()
    cd = coordinate_descent(X, y, X_val, y_val, cfg, args.cd_sweeps)
    t_cd = time.perf_counter() - t0
    fresh = run_baseline(X, y, X_val, y_val, cfg, shared_factor=False)
    shared = run_baseline(X, y, X_val, y_val, cfg, shared_factor=True)
    alpha_space = run_alpha_space(X, y, X_val, y_val, cfg, args.alpha_evals)
    time_ours()  # again after the baselines, so that a change of load on the machine shows
    t_ours = min(times)

    def excess(err: float) -> float:
        return err / best.error - 1.0

    ratio = fresh["seconds"] / t_ours
    same = abs(excess(fresh["error"])) <= 1e-6
    out = {
        "benchmark": "joint",
        "title": "Jointly optimal weights: least squares in eq. (6)'s coefficients against a generic optimiser "
                 "over refits",
        "command": " ".join(["python", "benchmarks/bench_joint.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "dirty": dirty,
        "summary": {"refits_vs_ours": {
            "label": f"jointly optimal weights: a generic optimiser over refits / sdlib.krr.joint, n = {cfg['n']:,}, "
                     f"T = {cfg['steps']}",
            "ratio": ratio, "goal": f">= {GOAL:g}", "met": bool(ratio >= GOAL and same), "same_optimum": same}},
        "config": cfg,
        "ours": {"seconds": t_ours, "seconds_all": times, "error": best.error, "solves": cfg["steps"],
                 "max_abs_alpha": float(np.abs(best.alphas).max())},
        "refits": {**fresh, "relative_excess_error": excess(fresh["error"])},
        "refits_shared_factor": {**shared, "relative_excess_error": excess(shared["error"]),
                                 "ratio_vs_ours": shared["seconds"] / t_ours},
        "alpha_space": {**alpha_space, "relative_excess_error": excess(alpha_space["error"])},
        "coordinate_descent": {"seconds": t_cd, "sweeps": cd.iterations, "converged": cd.converged,
                               "error": cd.error, "relative_excess_error": excess(cd.error)},
        "provenance": provenance(started=started, seconds=time.perf_counter() - t_start,
                                 parameters={**cfg, "repeats": args.repeats, "cd_sweeps": args.cd_sweeps,
                                             "alpha_evals": args.alpha_evals, "quick": args.quick},
                                 seed=0),
    }
    write_json_atomic(target, out)
    print(f"ours (fit + joint_optimum)        {t_ours:9.3f} s  error {best.error:.6g}")
    print(f"LM over c, fresh refits           {fresh['seconds']:9.3f} s  {fresh['evaluations']} evaluations, "
          f"{fresh['refits']} refits, excess {excess(fresh['error']):.1e}")
    print(f"LM over c, shared-factor refits   {shared['seconds']:9.3f} s  ratio {shared['seconds'] / t_ours:.3g}")
    print(f"LM over alpha (capped)            {alpha_space['seconds']:9.3f} s  "
          f"excess {excess(alpha_space['error']):.1e}")
    print(f"coordinate descent                {t_cd:9.3f} s  {cd.iterations} sweeps, excess {excess(cd.error):.1e}")
    met = out["summary"]["refits_vs_ours"]["met"]
    print(f"refits_vs_ours {ratio:9.3g}  goal >= {GOAL:g}  {'met' if met else 'NOT met'}"
          + ("" if same else " (baseline did not reach the same optimum)"))
    print(("made from a tree with uncommitted changes (dirty); " if dirty else "") + f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

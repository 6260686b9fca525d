"""The rate at which a network approaches its kernels as it widens, and the committed width sweep.

:func:`width_exponent` and :func:`width_fit`: the slope of ``log gap`` against ``log width`` with
intervals (the lazy regime predicts ``-1/2``, Lee et al. 2019). :func:`width_sweep` measures the gaps
of :func:`~sdlib.ntk.compare.compare_with_kernels` on the data of Section 4.5 for every (width, seed);
:func:`write_width_sweep` writes them with their provenance (``python -m sdlib.ntk``), and
:func:`load_width_sweep` reads them back (more seeds and widths than a chapter's default run affords).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sdlib.experiments.examples import illustrative_example
from sdlib.ntk.analytic import ReLUNTK
from sdlib.ntk.compare import compare_with_kernels
from sdlib.ntk.networks import ntk_mlp
from sdlib.ntk.threads import few_torch_threads, torch_threads
from sdlib.provenance import git_commit, provenance, write_bytes_atomic

__all__ = ["width_exponent", "width_fit", "width_sweep", "write_width_sweep", "load_width_sweep", "SWEEP_KIND",
           "main"]

FloatArray = NDArray[np.float64]


def width_exponent(widths: ArrayLike, gaps: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares slope of ``log gap`` against ``log width`` with its ``level`` confidence interval.

    Each (width, gap) pair is one point (several seeds give several points per width); the interval
    is ``slope +- t_{(1+level)/2, N-2} * stderr`` (scipy's ``linregress``). Returns
    ``(slope, low, high)``; the lazy regime predicts a slope of ``-1/2`` for the distance between a
    width-``w`` network and the infinite-width kernel (Lee et al. 2019).
    """
    from scipy import stats

    w = np.asarray(widths, dtype=float).ravel()
    g = np.asarray(gaps, dtype=float).ravel()
    if w.shape != g.shape or w.size < 3:
        raise ValueError(f"widths and gaps must have one shape with >= 3 points, got {w.shape} and {g.shape}")
    if np.any(w <= 0) or np.any(g <= 0) or not np.all(np.isfinite(g)):
        raise ValueError("widths and gaps must be finite and > 0 for a log-log fit")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    fit = stats.linregress(np.log(w), np.log(g))
    half = stats.t.ppf((1 + level) / 2, w.size - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _slope_t(x: FloatArray, y: FloatArray, level: float, degree: int = 1) -> tuple[float, float, float]:
    """Leading coefficient of a least-squares polynomial of ``degree`` in ``x`` with its t interval."""
    from scipy import stats

    A = np.vander(x, degree + 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = x.size - degree - 1
    resid = y - A @ coef
    s2 = float(resid @ resid) / dof
    se = math.sqrt(s2 * float(np.linalg.inv(A.T @ A)[0, 0]))
    half = float(stats.t.ppf((1 + level) / 2, dof)) * se
    return float(coef[0]), float(coef[0] - half), float(coef[0] + half)


def width_fit(widths: ArrayLike, gaps: ArrayLike, *, level: float = 0.95, n_boot: int = 4000,
              seed: int = 0) -> dict[str, Any]:
    """The rate at which a gap shrinks with the width, with intervals that respect the design.

    The design is ``k`` widths with several seeds each. The seeds of one width are replicates of
    that width's mean, not of a straight line: if the mean of ``log gap`` is not linear in
    ``log w`` over the widths, treating every (width, seed) point as an independent observation of
    one line (:func:`width_exponent`) understates the uncertainty of the slope. Returned:

    ``points``
        ``(slope, low, high)`` of :func:`width_exponent` (every point independent), for comparison.
    ``means``
        the least-squares slope through the per-width means of ``log gap`` against ``log w``, with
        its Student-t interval on ``k - 2`` degrees of freedom: the residuals include both the
        seeds' noise and any departure from a line.
    ``bootstrap``
        a percentile interval of the same slope with the seeds of each width resampled (with
        replacement, ``n_boot`` times): the seeds' noise alone, given the widths.
    ``curvature``
        the coefficient of ``(log w)^2`` of a quadratic through the per-width means, with its t
        interval on ``k - 3`` degrees of freedom (NaN for fewer than four widths); an interval that
        excludes 0 says the log-log relation bends and no single rate describes these widths.
    ``local``
        the slopes between consecutive widths' means.

    ``widths``, ``mean_log_gap`` and ``n_seeds`` (per width) describe the design.
    """
    w = np.asarray(widths, dtype=float).ravel()
    g = np.asarray(gaps, dtype=float).ravel()
    if w.shape != g.shape:
        raise ValueError(f"widths and gaps must have one shape, got {w.shape} and {g.shape}")
    if np.any(w <= 0) or np.any(g <= 0) or not np.all(np.isfinite(g)) or not np.all(np.isfinite(w)):
        raise ValueError("widths and gaps must be finite and > 0 for a log-log fit")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got n_boot={n_boot!r}")
    uw = np.unique(w)
    if uw.size < 3:
        raise ValueError(f"a slope with an interval needs >= 3 distinct widths, got widths={uw.tolist()}")
    lx = np.log(uw)
    groups = [np.log(g[w == u]) for u in uw]
    means = np.array([grp.mean() for grp in groups])
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    A = np.vander(lx, 2)
    pinv = np.linalg.pinv(A)
    for b in range(n_boot):
        m_b = np.array([rng.choice(grp, size=grp.size).mean() for grp in groups])
        boot[b] = (pinv @ m_b)[0]
    s_means = _slope_t(lx, means, level)
    lo_b, hi_b = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    curv = _slope_t(lx, means, level, degree=2) if uw.size >= 4 else (float("nan"),) * 3
    return {"widths": uw, "n_seeds": np.array([grp.size for grp in groups]), "mean_log_gap": means,
            "points": width_exponent(w, g, level), "means": s_means,
            "bootstrap": (s_means[0], float(lo_b), float(hi_b)), "curvature": curv,
            "local": np.diff(means) / np.diff(lx)}


#: ``kind`` of a width-sweep results file (:func:`write_width_sweep`).
SWEEP_KIND = "sdlib.ntk/width_sweep"


@few_torch_threads
def width_sweep(widths: list[int], seeds: list[int], *, depth: int = 1, sigma_b: float = 1.0,
                lam: float = 0.2, alpha: float = 0.25, steps: int = 3, max_iter: int = 150,
                n_grid: int = 101, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The gaps of :class:`~sdlib.ntk.compare.KernelComparison` for every (width, seed) on the data of Section 4.5.

    Per record: ``width``, ``seed``, ``gap_empirical`` (network vs its linearisation),
    ``gap_analytic`` (network vs the analytic NTK), ``kernel_gap`` (empirical vs analytic NTK),
    ``start_error``, ``grad_max`` and ``seconds``. Without validation data (no ``alpha-hat``).
    """
    ex = illustrative_example(n_grid)
    kernel = ReLUNTK(depth=depth, sigma_b=sigma_b)
    out = []
    for w in widths:
        for seed in seeds:
            t0 = time.perf_counter()
            r = compare_with_kernels(ntk_mlp(1, int(w), depth, sigma_b=sigma_b, seed=int(seed)), ex.X, ex.y,
                                     ex.X_grid, kernel, lam=lam, alpha=alpha, steps=steps, max_iter=max_iter)
            out.append({"width": int(w), "seed": int(seed), "gap_empirical": r.gap_empirical,
                        "gap_analytic": r.gap_analytic, "kernel_gap": r.kernel_gap,
                        "start_error": r.start_error, "grad_max": r.network.grad_max,
                        "seconds": time.perf_counter() - t0})
            if progress is not None:
                progress(f"width {w}, seed {seed}: {out[-1]['seconds']:.1f} s")
    return out


def write_width_sweep(path: str, *, widths: list[int], seeds: list[int], overwrite: bool = False,
                      **params: Any) -> dict[str, Any]:
    """Run :func:`width_sweep` and write its records with their provenance to ``path`` (JSON).

    An existing file is kept unless ``overwrite``; the file appears whole or not at all.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists: pass overwrite=True (--overwrite) to replace it")
    started = datetime.now(timezone.utc)
    # the tree's commit when the run starts: edits made while it runs do not belong to it
    commit = git_commit()
    t0 = time.perf_counter()
    records = width_sweep(widths, seeds, progress=lambda m: print(m, flush=True), **params)
    parameters = {"widths": list(map(int, widths)), "seeds": list(map(int, seeds)), **params}
    doc = {"kind": SWEEP_KIND, "parameters": parameters, "results": {"records": records},
           "provenance": {**provenance(started=started, seconds=time.perf_counter() - t0, parameters=parameters,
                                       seed=list(map(int, seeds))),
                          "git_commit": commit, "torch_threads": torch_threads()}}
    write_bytes_atomic(target, (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def load_width_sweep(path: str) -> dict[str, Any]:
    """A file of :func:`write_width_sweep`; an error if it is something else."""
    with open(path, encoding="utf8") as fh:
        doc = json.load(fh)
    if doc.get("kind") != SWEEP_KIND:
        raise ValueError(f"{path} is not a width-sweep file (kind={doc.get('kind')!r}, expected {SWEEP_KIND!r})")
    return doc


def main(argv: list[str] | None = None) -> int:
    """``python -m sdlib.ntk --out FILE --widths W... --seeds S...``: :func:`write_width_sweep`."""
    ap = argparse.ArgumentParser(prog="python -m sdlib.ntk", description="Write a width sweep of the NTK "
                                 "chapter (network vs kernels on the data of Section 4.5) with its provenance.")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--widths", type=int, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--max-iter", type=int, default=150)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    write_width_sweep(a.out, widths=a.widths, seeds=a.seeds, max_iter=a.max_iter, overwrite=a.overwrite)
    return 0

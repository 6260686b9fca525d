"""Reading Section 5 results (``results.json`` written by :func:`sdlib.nn.graph.train`) and
summarising them for Figure 5, the tables and the verdict; numpy and scipy only (no torch), so the
book can show committed runs without torch installed.

The verdict's statistics (:func:`paired_comparison`): at each step tau >= 2 the best fixed alpha is
the fixed-alpha chain with the highest mean *validation* accuracy over seeds (the split alpha-hat is
estimated on), and it is scored with alpha-hat's chain on the *test* split, which neither choice has
seen; per seed the difference (alpha-hat minus best fixed) is paired (same seed, same first model,
same test images), and its mean gets a Student-t confidence interval with n - 1 degrees of freedom
(:func:`t_interval`): at ``level`` (95 %) for the tests of a difference, and at ``2 level - 1``
(90 %) for the equivalence test (two one-sided tests at 5 %, :func:`sdlib.chapters.claims.ci_within`). The
paired t-test and the Wilcoxon signed-rank test of a zero difference are reported beside them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RESULTS_KIND", "load_run", "find_runs", "largest_run", "run_size", "curves", "alpha_hat_table",
           "best_fixed", "fit_counts", "fits_alpha_hat", "fits_grid", "t_interval", "per_seed",
           "paired_comparison", "training_seconds", "paper_fits"]

RESULTS_KIND = "sdlib.nn/section5"


def fits_alpha_hat(tau: int) -> int:
    """Fits of the alpha-hat chain up to step ``tau`` (Algorithm 1): ``2(tau - 1) + 1``."""
    return 2 * (tau - 1) + 1


def fits_grid(tau: int, g: int) -> int:
    """Fits of a grid search over ``g`` fixed alphas up to step ``tau``: ``g(tau - 1) + 1``."""
    return g * (tau - 1) + 1


def paper_fits(tau: int = 5, g: int = 10) -> int:
    """Fits per seed of the paper's Figure 5: the grid over ``g`` fixed alphas and the alpha-hat chain
    sharing one first model, ``g(tau - 1) + 1 + 2(tau - 1)``."""
    return fits_grid(tau, g) + fits_alpha_hat(tau) - 1


def training_seconds(doc: dict[str, Any]) -> float:
    """Training seconds of every fit of a run, each fit once (the first model of a seed is recorded
    in every chain; alpha-hat's alpha = 0 fits are in ``helper_records``), summed. Unlike the
    provenance's wall time, this includes fits trained by earlier, resumed sessions."""
    res = doc["results"]
    fits = {(r["seed"], "first" if r["step"] == 1 else r["chain"], r["step"]): r["seconds"] for r in res["records"]}
    return float(sum(fits.values()) + sum(r["seconds"] for r in res["helper_records"]))


def load_run(path: str | Path) -> dict[str, Any]:
    """One ``results.json``; an error if it is not a Section 5 run."""
    path = Path(path)
    with open(path) as fh:
        doc = json.load(fh)
    if doc.get("kind") != RESULTS_KIND:
        raise ValueError(
            f"{path} is not a Section 5 results file (kind={doc.get('kind')!r}, expected {RESULTS_KIND!r})")
    doc["_path"] = str(path)
    return doc


def committed_run(rel: str | Path) -> Path:
    """The folder of a run committed to the companion's repository, ``rel`` from its root (e.g.
    ``results/section5/NAME``): looked for from the working folder up (the book, the runner and
    Colab's set-up cell run the chapters in ``notebooks/``), then beside the package (a clone or an
    editable install). The package alone does not hold the committed runs: without the repository
    this raises FileNotFoundError saying what to do."""
    rel = Path(rel)
    here = Path.cwd().resolve()
    roots = [here, *list(here.parents)[:2], Path(__file__).resolve().parents[2]]
    for root in roots:
        if (root / rel / "results.json").is_file():
            return root / rel
    raise FileNotFoundError(
        f"the committed run {rel.as_posix()}/results.json is part of the companion's repository, not of the "
        "package sdlib: clone the repository and run this notebook in its notebooks/ folder, or set "
        "results_dir to a run of your own (python -m sdlib train -f CONFIG -o OUTDIR)")


def find_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every Section 5 ``results.json`` below ``root`` (other files are skipped)."""
    out = []
    for p in sorted(Path(root).rglob("results.json")):
        try:
            out.append(load_run(p))
        except (ValueError, json.JSONDecodeError, OSError):
            continue
    return out


def run_size(doc: dict[str, Any]) -> int:
    """Training images processed by the run: ``n_train x epochs x fits``."""
    res, par = doc["results"], doc["parameters"]
    fits = len({(r["seed"], r["chain"], r["step"]) for r in res["records"] if not r["shared_first"]})
    fits += len(res["helper_records"]) + len(par["seeds"])
    return int(res["n_train"]) * int(par["epochs"]) * fits


def largest_run(root: str | Path) -> dict[str, Any] | None:
    """The run below ``root`` that processed the most training images, or None if there is none."""
    runs = find_runs(root)
    return max(runs, key=run_size) if runs else None


def _chains(doc: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for r in doc["results"]["records"]:
        if r["chain"] not in seen:
            seen.append(r["chain"])
    return seen


def t_interval(x: Any, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student-t confidence interval at ``level`` for the mean of ``x``
    (``n - 1`` degrees of freedom; NaN bounds for fewer than two values)."""
    from scipy import stats

    a = np.asarray(x, dtype=float).ravel()
    m = float(a.mean())
    if a.size < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, a.size - 1) * a.std(ddof=1) / np.sqrt(a.size))
    return m, m - half, m + half


def per_seed(doc: dict[str, Any], chain: str, step: int, metric: str) -> np.ndarray:
    """``metric`` of ``chain`` at ``step`` for each seed, in the order of the run's seeds."""
    recs = {r["seed"]: r[metric] for r in doc["results"]["records"] if r["chain"] == chain and r["step"] == step}
    return np.array([recs[s] for s in doc["parameters"]["seeds"]], dtype=float)


def curves(doc: dict[str, Any], metric: str = "val_acc", level: float = 0.95) -> dict[str, dict[str, np.ndarray]]:
    """Per chain: ``steps``, and ``mean``, ``min``, ``max`` of ``metric`` over seeds at each step, and
    ``lo``, ``hi``: the t-interval of the mean at ``level`` (:func:`t_interval`)."""
    out = {}
    recs = doc["results"]["records"]
    for chain in _chains(doc):
        steps = sorted({r["step"] for r in recs if r["chain"] == chain})
        vals = [per_seed(doc, chain, s, metric) for s in steps]
        ci = np.array([t_interval(v, level) for v in vals])
        out[chain] = {"steps": np.array(steps), "mean": ci[:, 0], "lo": ci[:, 1], "hi": ci[:, 2],
                      "min": np.array([np.min(v) for v in vals]), "max": np.array([np.max(v) for v in vals])}
    return out


def paired_comparison(doc: dict[str, Any], *, select: str = "val_acc", score: str = "test_acc",
                      level: float = 0.95) -> list[dict[str, Any]]:
    """Per step tau >= 2: the best fixed alpha chosen on ``select`` (mean over seeds), and the
    seed-paired difference of ``score`` (alpha-hat minus that chain) with its t-interval.

    Rows: ``step``, ``best_chain``, ``best_alpha``, ``n`` (seeds), ``diff`` (per seed), ``mean``,
    ``lo``, ``hi`` (the interval at ``level``), ``lo_tost``, ``hi_tost`` (at ``2 level - 1``, for
    the equivalence test), ``sd``, ``p_t`` (paired t-test of a zero mean difference, two-sided),
    ``p_wilcoxon`` (Wilcoxon signed-rank test, two-sided, exact for small n; NaN if every difference
    is zero), ``n_below`` and ``n_above`` (seeds with a negative and a positive difference),
    ``alpha_hat_score`` and ``best_score`` (means), ``oracle_chain`` (the fixed chain best on
    ``score`` itself: the biased choice, shown for comparison)."""
    from scipy import stats

    if not 0.5 < level < 1:
        raise ValueError(f"level must be in (0.5, 1) (the equivalence test uses 2 level - 1), got level={level!r}")
    recs = doc["results"]["records"]
    fixed = [c for c in _chains(doc) if c.startswith("alpha=")]
    rows = []
    for step in sorted({r["step"] for r in recs if r["step"] >= 2}):
        best = max(fixed, key=lambda c: per_seed(doc, c, step, select).mean())
        oracle = max(fixed, key=lambda c: per_seed(doc, c, step, score).mean())
        a, b = per_seed(doc, "alpha_hat", step, score), per_seed(doc, best, step, score)
        d = a - b
        m, lo, hi = t_interval(d, level)
        _, lo_t, hi_t = t_interval(d, 2 * level - 1)
        nan = float("nan")
        p_t = float(stats.ttest_1samp(d, 0.0).pvalue) if d.size > 1 else nan
        p_w = float(stats.wilcoxon(d).pvalue) if d.size > 1 and np.any(d != 0) else nan
        rows.append({"step": step, "best_chain": best, "best_alpha": float(best.split("=")[1]), "n": int(d.size),
                     "diff": d, "mean": m, "lo": lo, "hi": hi, "lo_tost": lo_t, "hi_tost": hi_t,
                     "p_t": p_t, "p_wilcoxon": p_w, "n_below": int((d < 0).sum()), "n_above": int((d > 0).sum()),
                     "sd": float(d.std(ddof=1)) if d.size > 1 else 0.0,
                     "alpha_hat_score": float(a.mean()), "best_score": float(b.mean()), "oracle_chain": oracle})
    return rows


def alpha_hat_table(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """alpha-hat per step: one row per step with each seed's value, mean, min, max."""
    recs = [r for r in doc["results"]["records"] if r["chain"] == "alpha_hat" and r["alpha_hat"] is not None]
    rows = []
    for s in sorted({r["step"] for r in recs}):
        vals = {f"seed {r['seed']}": r["alpha_hat"] for r in recs if r["step"] == s}
        v = np.array(list(vals.values()))
        rows.append({"step": s, **vals, "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())})
    return rows


def best_fixed(doc: dict[str, Any], metric: str = "val_acc", step: int | None = None) -> dict[str, Any]:
    """The fixed-alpha chain with the highest mean ``metric`` over seeds at ``step`` (default: the
    last), next to the alpha-hat chain at that step: chain, alpha, and mean val/test accuracy."""
    recs = doc["results"]["records"]
    step = max(r["step"] for r in recs) if step is None else step

    def mean(chain: str, key: str) -> float:
        return float(np.mean([r[key] for r in recs if r["chain"] == chain and r["step"] == step]))

    fixed = [c for c in _chains(doc) if c.startswith("alpha=")]
    best = max(fixed, key=lambda c: mean(c, metric))
    return {"step": step, "best_chain": best, "best_alpha": float(best.split("=")[1]),
            "best_val_acc": mean(best, "val_acc"), "best_test_acc": mean(best, "test_acc"),
            "best_train_acc": mean(best, "train_acc"),
            "alpha_hat_val_acc": mean("alpha_hat", "val_acc"), "alpha_hat_test_acc": mean("alpha_hat", "test_acc"),
            "alpha_hat_train_acc": mean("alpha_hat", "train_acc"),
            "first_val_acc": float(np.mean([r["val_acc"] for r in recs if r["step"] == 1])),
            "first_test_acc": float(np.mean([r["test_acc"] for r in recs if r["step"] == 1]))}


def fit_counts(doc: dict[str, Any]) -> dict[str, Any]:
    """Fits and training seconds per seed up to the last step: alpha-hat chain against the grid search
    over the run's fixed alphas (``g`` of them). Fits are counted from the records, not assumed."""
    res, par = doc["results"], doc["parameters"]
    recs, helpers = res["records"], res["helper_records"]
    tau = max(r["step"] for r in recs)
    g = len(par["alphas"])
    seeds = par["seeds"]
    ah_fits, grid_fits, ah_sec, grid_sec = [], [], [], []
    for s in seeds:
        first = [r for r in recs if r["seed"] == s and r["step"] == 1][0]
        ah = [r for r in recs if r["seed"] == s and r["chain"] == "alpha_hat" and r["step"] > 1]
        hp = [r for r in helpers if r["seed"] == s]
        grid = [r for r in recs if r["seed"] == s and r["chain"].startswith("alpha=") and r["step"] > 1]
        ah_fits.append(1 + len(ah) + len(hp))
        grid_fits.append(1 + len(grid))
        ah_sec.append(first["seconds"] + sum(r["seconds"] for r in ah) + sum(r["seconds"] for r in hp))
        grid_sec.append(first["seconds"] + sum(r["seconds"] for r in grid))
    return {"steps": tau, "g": g, "alpha_hat_fits": int(np.max(ah_fits)), "grid_fits": int(np.max(grid_fits)),
            "alpha_hat_fits_formula": fits_alpha_hat(tau), "grid_fits_formula": fits_grid(tau, g),
            "alpha_hat_seconds": float(np.mean(ah_sec)), "grid_seconds": float(np.mean(grid_sec))}

"""Reading Section 5 results (``results.json`` written by :func:`sdlib.nn.chains.run_experiment`)
and summarising them for Figure 5 and the tables; numpy only (no torch), so the book can show
committed runs without torch installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RESULTS_KIND", "load_run", "find_runs", "largest_run", "run_size", "curves", "alpha_hat_table",
           "best_fixed", "fit_counts", "fits_alpha_hat", "fits_grid"]

RESULTS_KIND = "sdlib.nn/section5"


def fits_alpha_hat(tau: int) -> int:
    """Fits of the alpha-hat chain up to step ``tau`` (Algorithm 1): ``2(tau - 1) + 1``."""
    return 2 * (tau - 1) + 1


def fits_grid(tau: int, g: int) -> int:
    """Fits of a grid search over ``g`` fixed alphas up to step ``tau``: ``g(tau - 1) + 1``."""
    return g * (tau - 1) + 1


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


def curves(doc: dict[str, Any], metric: str = "val_acc") -> dict[str, dict[str, np.ndarray]]:
    """Per chain: ``steps``, and ``mean``, ``min``, ``max`` of ``metric`` over seeds at each step."""
    recs = doc["results"]["records"]
    out = {}
    for chain in _chains(doc):
        steps = sorted({r["step"] for r in recs if r["chain"] == chain})
        vals = [[r[metric] for r in recs if r["chain"] == chain and r["step"] == s] for s in steps]
        out[chain] = {"steps": np.array(steps), "mean": np.array([np.mean(v) for v in vals]),
                      "min": np.array([np.min(v) for v in vals]), "max": np.array([np.max(v) for v in vals])}
    return out


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

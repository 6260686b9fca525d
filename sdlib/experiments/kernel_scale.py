"""The kernel twin of Section 5: Fashion-MNIST as one-hot regression with an RBF kernel.

The images (scaled to ``[0, 1]``, flattened to 784 numbers) and splits are those of Section 5's
network stand-in (:func:`sdlib.nn.data.load_data`: a validation split held out of the training set
with ``split_seed``, the test set only scored); the targets are the one-hot labels, as in eq. (18),
and the prediction of a class is the largest output. For every seed (the network's seeds; here they
draw the Nyström centres, ``random_state``):

* ``alpha*(tau)`` (eq. 16, Algorithm 1) on the validation split, ``tau = 2..steps``;
* the test and validation accuracy and squared error of every step of the ``alpha*`` chain and of
  the chains with fixed ``alpha`` on a grid.

The records have the fields of Section 5's (``seed``, ``chain`` = ``"alpha_hat"`` or
``"alpha=A"``, ``step``, ``alpha``, ``alpha_hat``, ``val_acc``, ``test_acc``), so that the
functions of :mod:`sdlib.nn.results` that compare chains (``paired_comparison``, ``curves``) read
them as they read a network run; the kernel's ``alpha_hat`` is the exact ``alpha*`` of eq. (16).

``gamma`` defaults to the median heuristic ``1 / median ||x - x'||^2`` (1,000 training images), and
``lam`` to the one of ``lams`` with the least validation error of step 1 (plain kernel ridge
regression: nothing of self-distillation is tuned by it). :func:`run_study` writes the result with
its provenance (:mod:`sdlib.provenance`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sdlib.krr.estimator import KernelSelfDistillation
from sdlib.provenance import provenance, write_json_atomic

__all__ = ["load_fashion", "median_gamma", "study", "run_study"]

FloatArray = NDArray[np.float64]
LAMS = (0.01, 0.1, 1.0, 10.0)
KIND = "sdlib/kernel_scale"


def load_fashion(n_train: int | None, n_val: int, n_test: int | None, split_seed: int = 0,
                 data_dir: str | Path | None = None) -> dict[str, FloatArray]:
    """Section 5's splits as float arrays: ``X_*`` (N, 784) in [0, 1], ``Y_*`` one-hot (N, 10), ``y_*`` labels."""
    from sdlib.nn.data import load_data

    b = load_data("fashion_mnist", data_dir, n_train=n_train, n_val=n_val, n_test=n_test, split_seed=split_seed)
    out: dict[str, FloatArray] = {}
    for name, s in (("train", b.train), ("val", b.val), ("test", b.test)):
        labels = s.y.numpy()
        out[f"X_{name}"] = s.x.reshape(len(s), -1).numpy().astype(np.float64) / 255.0
        out[f"Y_{name}"] = np.eye(10)[labels]
        out[f"y_{name}"] = labels
    return out


def median_gamma(X: FloatArray, seed: int = 0, sample: int = 1000) -> float:
    """``1 / median ||x - x'||^2`` over pairs of ``sample`` rows drawn with ``seed``."""
    idx = np.random.default_rng(seed).choice(X.shape[0], size=min(sample, X.shape[0]), replace=False)
    S = X[idx]
    sq = (S * S).sum(1)
    D = sq[:, None] + sq[None, :] - 2.0 * S @ S.T
    return float(1.0 / np.median(D[np.triu_indices(len(S), 1)]))


def _scores(F: FloatArray, Y: FloatArray, y: NDArray[np.int64]) -> tuple[list[float], list[float]]:
    """Accuracy and mean squared error (per image, summed over the 10 outputs) of every step in ``F``."""
    acc = [float(np.mean(f.argmax(1) == y)) for f in F]
    mse = [float(np.mean(np.sum((f - Y) ** 2, axis=1))) for f in F]
    return acc, mse


def study(data: dict[str, FloatArray], *, seeds: Sequence[int], steps: int, alphas: Sequence[float],
          n_components: int | None, gamma: float, lams: Sequence[float] = LAMS) -> dict[str, Any]:
    """The ``alpha*`` chain and the fixed-``alpha`` chains for every seed (see the module's docstring).

    ``n_components=None`` is the exact kernel, whose fit has no seed: it runs once (the first seed).
    """
    Xtr, Ytr = data["X_train"], data["Y_train"]
    records: list[dict[str, Any]] = []
    fits: list[dict[str, Any]] = []
    lam: float | None = None
    for seed in (seeds if n_components is not None else seeds[:1]):  # the exact kernel has no seed
        t0 = time.perf_counter()
        model = KernelSelfDistillation(gamma=gamma, lam=float(lam or lams[0]), n_components=n_components,
                                       random_state=int(seed)).fit(Xtr, Ytr)
        if lam is None:
            # lam by the validation error of step 1 (kernel ridge regression) on the first seed, one grid
            G = model.grid(data["X_val"], lams, [0.0], 1)[:, 0, 0]
            lam = float(lams[int(np.argmin([np.sum((g - data["Y_val"]) ** 2) for g in G]))])
            model.set_params(lam=lam).fit(Xtr, Ytr)
        a_star = model.optimal_alphas(data["X_val"], data["Y_val"], steps=steps)
        scores: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
        for split in ("val", "test"):
            X, Y, y = data[f"X_{split}"], data[f"Y_{split}"], data[f"y_{split}"]
            scores[split] = {"alpha_hat": _scores(model.path(X, steps, a_star), Y, y)}
            grid = model.grid(X, [lam], alphas, steps)[0]  # every fixed alpha from one eigenbasis
            for a, g in zip(alphas, grid, strict=True):
                scores[split][f"alpha={a}"] = _scores(g, Y, y)
        seconds = time.perf_counter() - t0
        for chain in scores["val"]:
            for t in range(steps):
                fixed = chain != "alpha_hat"
                records.append({
                    "seed": int(seed), "chain": chain, "step": t + 1,
                    "alpha": 1.0 if t == 0 else (float(chain.split("=")[1]) if fixed else float(a_star[t - 1])),
                    "alpha_hat": None if (fixed or t == 0) else float(a_star[t - 1]),
                    "val_acc": scores["val"][chain][0][t], "test_acc": scores["test"][chain][0][t],
                    "val_mse": scores["val"][chain][1][t], "test_mse": scores["test"][chain][1][t]})
        fit = {"seed": int(seed), "lam": lam, "seconds": seconds}
        if n_components is not None:
            fit.update(captured_trace=model.lowrank_.captured, s2_min_over_lam=float(model.lowrank_.s2[0] / lam),
                       residual_trace_over_lam=model.lowrank_.residual_trace / lam)
        fits.append(fit)
    return {"records": records, "fits": fits, "lam": lam}


def run_study(out: str | Path, *, n_train: int | None = 4000, n_val: int = 1000, n_test: int | None = None,
              seeds: Sequence[int] = tuple(range(8)), steps: int = 3,
              alphas: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8), n_components: int | None = 1000,
              split_seed: int = 0, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Load the data, run :func:`study`, write ``out`` (JSON with provenance) atomically; return it."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    data = load_fashion(n_train, n_val, n_test, split_seed, data_dir)
    gamma = median_gamma(data["X_train"], split_seed)
    res = study(data, seeds=seeds, steps=steps, alphas=alphas, n_components=n_components, gamma=gamma)
    params = {"dataset": "fashion_mnist", "n_train": int(data["X_train"].shape[0]), "n_val": n_val,
              "n_test": int(data["X_test"].shape[0]), "split_seed": split_seed, "seeds": list(seeds),
              "steps": steps, "alphas": list(alphas), "n_components": n_components, "gamma": gamma,
              "lams": list(LAMS), "kernel": "rbf"}
    res.update(dataset="fashion_mnist", n_train=params["n_train"], n_val=n_val, n_test=params["n_test"])
    doc = {"kind": KIND, "parameters": params, "results": res,
           "provenance": provenance(started=started, seconds=time.perf_counter() - t0, parameters=params,
                                    seed=list(seeds))}
    write_json_atomic(out, doc)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sdlib.experiments.kernel_scale OUT.json [--n-train N] [--m M|--exact] [--seeds ...]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sdlib.experiments.kernel_scale", description=run_study.__doc__)
    ap.add_argument("out", type=Path, help="result file (JSON), written through a temporary name")
    ap.add_argument("--n-train", type=int, default=4000, help="training images (0: all the split leaves)")
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--m", type=int, default=1000, help="Nyström centres")
    ap.add_argument("--exact", action="store_true", help="the exact kernel instead of --m centres")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)
    if a.out.exists():
        ap.error(f"{a.out} exists: a finished result is not replaced (remove it first)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    run_study(a.out, n_train=a.n_train or None, n_val=a.n_val, seeds=a.seeds, steps=a.steps,
              n_components=None if a.exact else a.m, data_dir=a.data_dir)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

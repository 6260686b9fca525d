"""Self-distillation against tuned kernel ridge regression on bundled real data sets (beyond the paper).

The protocol of the book's chapter *Real data* (``notebooks/real_data.md``), one random split at a
time, so that a chapter can run many splits and pair them:

1. Split the data at random into a fitting set ``D`` (``train_frac`` of the points, at most
   ``n_max``) and a test set (the rest, at most ``n_test_max``). Standardise the inputs with the
   mean and deviation of ``D``; centre the targets at their mean on ``D`` (kernel ridge regression
   here has no intercept). The test set is used for scoring and by the oracles only.
2. Methods that use ``D`` alone: kernel ridge regression (KRR) with ``lam`` by GCV and by
   ``folds``-fold cross-validation (both over the grid ``lams``); self-distillation (``steps``
   steps) from the GCV-tuned teacher with weights by GCV (:mod:`sdlib.krr.gcv`, greedy and joint).
3. Methods that need a hold-out set split ``D`` once more into ``D'`` (``1 - val_frac``) and a
   validation set ``V``: the model is fitted on ``D'`` only (fewer points), its teacher's ``lam``
   chosen by GCV on ``D'``; Algorithm 1's ``alpha*`` (eq. 16) and the jointly optimal weights
   (:mod:`sdlib.krr.joint`) on ``V``. Plain KRR on ``D'`` is the reference for the cost of the smaller
   training set.
4. Oracles (they use the test targets; bounds, not methods): KRR with the test-best ``lam`` on the
   grid, and the test-optimal joint weights for the GCV-tuned teacher.
5. A penalty chosen badly on purpose: teachers at ``lam_GCV * factor`` for each of
   ``bad_factors``, plain and distilled (GCV weights, hold-out ``alpha*``, oracle weights).

Scores are test mean squared errors (Frobenius for one-hot targets, divided by the number of
entries). Everything here is closed form: one eigendecomposition per fit and per fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import linalg, stats
from sklearn import datasets
from sklearn.metrics.pairwise import rbf_kernel

from sdlib.krr import _blas, gcv, theory
from sdlib.krr.estimator import KernelSelfDistillation

__all__ = ["DATASETS", "Dataset", "krr_lams_cv", "krr_lams_gcv", "load", "paired_summary", "run_split",
           "split_scores"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Dataset:
    """A bundled data set: inputs ``X`` (m, d), targets ``Y`` (m, p), and what the targets are."""

    name: str
    X: FloatArray
    Y: FloatArray
    target: str


def _onehot(labels: NDArray[np.int_]) -> FloatArray:
    return np.eye(int(labels.max()) + 1)[labels]


def _diabetes() -> Dataset:
    X, y = datasets.load_diabetes(return_X_y=True)
    return Dataset("diabetes", X, y[:, None], "disease progression (regression)")


def _digits(cls: int = 3) -> Dataset:
    X, y = datasets.load_digits(return_X_y=True)
    return Dataset("digits", X, (y == cls).astype(float)[:, None], f"indicator of the digit {cls} (one vs rest)")


def _wine() -> Dataset:
    X, y = datasets.load_wine(return_X_y=True)
    return Dataset("wine", X, _onehot(y), "one-hot cultivar (3 outputs)")


def _breast_cancer() -> Dataset:
    X, y = datasets.load_breast_cancer(return_X_y=True)
    return Dataset("breast_cancer", X, y.astype(float)[:, None], "indicator of benign (binary)")


def _iris() -> Dataset:
    X, y = datasets.load_iris(return_X_y=True)
    return Dataset("iris", X, _onehot(y), "one-hot species (3 outputs)")


def _linnerud() -> Dataset:
    X, Y = datasets.load_linnerud(return_X_y=True)
    return Dataset("linnerud", X, Y, "three physiological measurements (3 outputs)")


#: The data sets that ship with scikit-learn (no download), by name.
DATASETS: dict[str, Callable[[], Dataset]] = {
    "diabetes": _diabetes, "digits": _digits, "wine": _wine, "breast_cancer": _breast_cancer,
    "iris": _iris, "linnerud": _linnerud,
}


def load(name: str) -> Dataset:
    """The bundled data set ``name`` (a key of :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"name must be one of {sorted(DATASETS)}, got name={name!r}")
    return DATASETS[name]()


def _spectral(K: FloatArray, Y: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    d, V = linalg.eigh(K, check_finite=False, driver="evd")
    return np.clip(d, 0.0, None), V, V.T @ Y


def krr_lams_gcv(K: FloatArray, Y: FloatArray, lams: FloatArray) -> float:
    """The ``lam`` of the grid with the least GCV of kernel ridge regression (:func:`sdlib.krr.gcv.krr_gcv`)."""
    d, _, z = _spectral(K, Y)
    return float(lams[int(np.argmin(gcv.krr_gcv(d, z, lams)))])


def krr_lams_cv(K: FloatArray, Y: FloatArray, lams: FloatArray, folds: int, rng: np.random.Generator) -> float:
    """The ``lam`` of the grid with the least ``folds``-fold cross-validated squared error."""
    n = K.shape[0]
    parts = np.array_split(rng.permutation(n), folds)
    err = np.zeros(lams.size)
    for part in parts:
        fit = np.setdiff1d(np.arange(n), part)
        d, V, z = _spectral(K[np.ix_(fit, fit)], Y[fit])
        P = K[np.ix_(part, fit)] @ V
        for i, lam in enumerate(lams):
            err[i] += float(np.sum((P @ (z / (d + lam)[:, None]) - Y[part]) ** 2))
    return float(lams[int(np.argmin(err))])


def _mse(F: FloatArray, Y: FloatArray) -> float:
    return float(np.mean((F.reshape(Y.shape) - Y) ** 2))


def run_split(data: Dataset, seed: int, **options: object) -> dict[str, float]:
    """Test MSE of every contender on one random split: :func:`split_scores` on one BLAS thread.

    The fits are small (``n <= n_max``): on threads that share busy cores, BLAS's synchronisation
    costs far more than it gains (ten times the run time on a loaded 2-core machine).
    """
    with _blas.one_thread():
        return split_scores(data, seed, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Split:
    """One random split, standardised on its training part ``D`` (``D'`` and ``V`` inside it)."""

    XD: FloatArray
    YD: FloatArray
    Xt: FloatArray
    Yt: FloatArray
    Dp: NDArray[np.intp]
    V: NDArray[np.intp]
    gamma: float

    def model(self, X: FloatArray, Y: FloatArray, lam: float) -> KernelSelfDistillation:
        return KernelSelfDistillation(gamma=self.gamma, lam=lam).fit(X, Y)


def _make_split(data: Dataset, rng: np.random.Generator, gamma_scale: float, train_frac: float,
                n_max: int, n_test_max: int, val_frac: float) -> _Split:
    if not 0 < train_frac < 1 or not 0 < val_frac < 1:
        raise ValueError(f"train_frac and val_frac must be in (0, 1), got {train_frac!r}, {val_frac!r}")
    m = data.X.shape[0]
    idx = rng.permutation(m)
    n = min(int(round(train_frac * m)), n_max)
    D, test = idx[:n], idx[n:n + n_test_max]
    mu, sd = data.X[D].mean(axis=0), data.X[D].std(axis=0)
    sd[sd == 0] = 1.0
    X = (data.X - mu) / sd
    Y = data.Y - data.Y[D].mean(axis=0)
    nv = int(round(val_frac * n))
    # D' and V as positions within D (D is random already)
    return _Split(X[D], Y[D], X[test], Y[test], np.arange(nv, n), np.arange(nv), gamma_scale / X.shape[1])


def _krr_contenders(sp: _Split, lams: FloatArray, folds: int, rng: np.random.Generator,
                    out: dict[str, float]) -> tuple[float, float]:
    """KRR with lam by GCV and by CV, and the oracle lam: every lam from one eigendecomposition."""
    K = rbf_kernel(sp.XD, gamma=sp.gamma)
    lam_gcv = krr_lams_gcv(K, sp.YD, lams)
    lam_cv = krr_lams_cv(K, sp.YD, lams, folds, rng)
    lam_p = krr_lams_gcv(K[np.ix_(sp.Dp, sp.Dp)], sp.YD[sp.Dp], lams)
    out.update({"lam GCV": lam_gcv, "lam CV": lam_cv, "lam GCV on D'": lam_p})
    d, Vec, z = _spectral(K, sp.YD)
    P = rbf_kernel(sp.Xt, sp.XD, gamma=sp.gamma) @ Vec
    test_mse = np.array([_mse(P @ (z / (d + lam)[:, None]), sp.Yt) for lam in lams])
    out["KRR, lam by GCV"] = float(test_mse[int(np.flatnonzero(lams == lam_gcv)[0])])
    out["KRR, lam by CV"] = float(test_mse[int(np.flatnonzero(lams == lam_cv)[0])])
    out["oracle: KRR, test-best lam"] = float(test_mse.min())
    return lam_gcv, lam_p


def _sd_contenders(sp: _Split, lam_gcv: float, lam_p: float, steps: int, n_gcv: Callable[[], int],
                   out: dict[str, float]) -> None:
    """Self-distillation at lam by GCV: weights by GCV, by a hold-out split, and the oracle."""
    teacher = sp.model(sp.XD, sp.YD, lam_gcv)
    for method in ("gcv", "gcv_joint"):
        before = n_gcv()
        a, F = teacher.optimal_path(sp.Xt, steps=steps, method=method)
        out[f"SD, alpha by {method.upper().replace('_', ' ')}"] = _mse(F[-1], sp.Yt)
        out[f"alpha {method} (last)"] = float(a[-1])
        out[f"alpha: {method} warned"] = float(n_gcv() > before)
    a, F = teacher.optimal_path(sp.Xt, sp.Xt, sp.Yt, steps=steps, method="joint")
    out["oracle: SD, test-optimal joint weights"] = _mse(F[-1], sp.Yt)
    held = sp.model(sp.XD[sp.Dp], sp.YD[sp.Dp], lam_p)
    out["KRR on D', lam by GCV"] = _mse(held.predict(sp.Xt), sp.Yt)
    for method, label in (("greedy", "SD on D', Algorithm 1 alpha* on V"),
                          ("joint", "SD on D', joint weights on V")):
        a, F = held.optimal_path(sp.Xt, sp.XD[sp.V], sp.YD[sp.V], steps=steps, method=method)
        out[label] = _mse(F[-1], sp.Yt)
    out["alpha* (last)"] = float(a[-1])


def _bad_lam_contenders(sp: _Split, lam_gcv: float, lam_p: float, factor: float, steps: int,
                        n_gcv: Callable[[], int], out: dict[str, float]) -> None:
    """The same contenders at a penalty chosen badly on purpose: ``factor`` times the GCV choice."""
    tag = f"lam = {factor:g} x lam_GCV"
    bad = sp.model(sp.XD, sp.YD, lam_gcv * factor)
    out[f"KRR, {tag}"] = _mse(bad.predict(sp.Xt), sp.Yt)
    before = n_gcv()
    a, F = bad.optimal_path(sp.Xt, steps=steps, method="gcv")
    out[f"alpha: gcv warned, {tag}"] = float(n_gcv() > before)
    out[f"SD, {tag}, alpha by GCV"] = _mse(F[-1], sp.Yt)
    out[f"alpha gcv, {tag} (last)"] = float(a[-1])
    a, F = bad.optimal_path(sp.Xt, sp.Xt, sp.Yt, steps=steps, method="joint")
    out[f"oracle: SD, {tag}, test-optimal joint weights"] = _mse(F[-1], sp.Yt)
    bad_p = sp.model(sp.XD[sp.Dp], sp.YD[sp.Dp], lam_p * factor)
    a, F = bad_p.optimal_path(sp.Xt, sp.XD[sp.V], sp.YD[sp.V], steps=steps, method="greedy")
    out[f"SD on D', {tag}, Algorithm 1 alpha* on V"] = _mse(F[-1], sp.Yt)
    out[f"alpha*, {tag} (last)"] = float(a[-1])


def split_scores(
    data: Dataset,
    seed: int,
    *,
    gamma_scale: float = 1.0,
    steps: int = 4,
    lams: FloatArray | None = None,
    train_frac: float = 0.7,
    n_max: int = 250,
    n_test_max: int = 500,
    val_frac: float = 0.25,
    folds: int = 5,
    bad_factors: tuple[float, ...] = (1e-2, 1e2),
) -> dict[str, float]:
    """Test MSE of every contender on one random split (the protocol of the module docstring).

    RBF kernel ``exp(-gamma ||x - x'||^2)`` with ``gamma = gamma_scale / d`` on standardised inputs.
    Returns ``{contender: test MSE}`` plus the chosen penalties and weights (keys starting with
    ``"lam "`` / ``"alpha "``).
    """
    rng = np.random.default_rng(seed)
    sp = _make_split(data, rng, gamma_scale, train_frac, n_max, n_test_max, val_frac)
    lams = np.geomspace(1e-4, 1e2, 49) if lams is None else np.asarray(lams, dtype=float)
    out: dict[str, float] = {}
    lam_gcv, lam_p = _krr_contenders(sp, lams, folds, rng, out)
    # GCV without a minimiser (GCVWarning: that step keeps alpha = 1, or the joint rule falls back
    # on the greedy one) and degenerate eq. (16) are counted, not printed 100 times
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gcv.GCVWarning)
        warnings.simplefilter("always", theory.DegenerateAlphaWarning)

        def n_gcv() -> int:
            return sum(issubclass(w.category, gcv.GCVWarning) for w in caught)

        _sd_contenders(sp, lam_gcv, lam_p, steps, n_gcv, out)
        for factor in bad_factors:
            _bad_lam_contenders(sp, lam_gcv, lam_p, factor, steps, n_gcv, out)
    out["alpha: eq. (16) degenerate"] = float(
        sum(issubclass(w.category, theory.DegenerateAlphaWarning) for w in caught))
    return out


def paired_summary(records: list[dict[str, float | str]], baseline: str = "KRR, lam by GCV",
                   level: float = 0.95) -> pd.DataFrame:
    """Seed-paired relative differences ``MSE / MSE(baseline) - 1`` per data set and contender.

    ``records`` are :func:`run_split` results with a ``"data"`` entry. Columns: ``data``,
    ``contender``, ``mean`` (over splits), ``low``/``high`` (the two-sided Student-t interval at
    ``level`` over the splits), ``splits``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    df = pd.DataFrame(records)
    if baseline not in df.columns:
        raise ValueError(f"baseline must be a contender of the records, got baseline={baseline!r}")
    contenders = [c for c in df.columns if c != "data" and not c.startswith(("lam ", "alpha"))]
    rows = []
    for name, part in df.groupby("data", sort=False):
        rel = part[contenders].div(part[baseline], axis=0) - 1.0
        k = len(part)
        half = stats.t.ppf(0.5 + level / 2, k - 1) * rel.std(ddof=1) / np.sqrt(k)
        for c in contenders:
            rows.append({"data": name, "contender": c, "mean": rel[c].mean(),
                         "low": rel[c].mean() - half[c], "high": rel[c].mean() + half[c], "splits": k})
    return pd.DataFrame(rows)

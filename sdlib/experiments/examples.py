"""The data of the paper's illustrative example (Section 4.5), in one place.

Inputs ``X = {0, 0.1, ..., 1.0}``; targets ``sin(2 pi x)`` plus Gaussian noise of standard deviation
0.5: the same eleven values as Mobahi, Farajtabar and Bartlett (2020), whose example the paper
follows. The kernel is ``exp(-gamma ||x - x'||^2)`` with ``gamma = 80`` (the paper prints
``gamma = 1/80``: the bandwidth written the other way round; see the book's errata), ``lam = 0.2``.
The quality of a fit is its mean squared error against the noiseless ``sin(2 pi x)`` on the grid
``0, 0.01, ..., 1.00``, which also serves as the validation set of ``alpha*`` (Algorithm 1).

Beside the data, the measurements that the chapter ``notebooks/illustrative_example.md`` reads the
paper's sentences with: the three cases of Figure 2 (:func:`three_cases`), the engine against the
oracle refits (:func:`oracle_errors`), the authors' published losses (:data:`PUBLISHED_LOSSES`,
:func:`losses`), step changes and convergence of ``alpha*`` (:func:`step_changes`,
:func:`converged_at`), other validation sets for case (c) (:func:`validation_sets`,
:func:`case_c_by_validation`), case (a) at real steps and fits of similar quality
(:class:`RealStepsA`), and the erratum's share of explained variance (:func:`explained_share`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PAPER_SETTING", "PUBLISHED_LOSSES", "PUBLISHED_SOURCES", "TARGETS", "Cases", "IllustrativeExample",
    "RealStepsA", "case_c_by_validation", "case_titles", "changed_setting", "converged_at", "explained_share",
    "illustrative_example", "limit_distances", "listing", "losses", "oracle_errors", "refit_error", "rms",
    "step_changes", "three_cases", "validation_sets",
]

#: The eleven noisy targets of Section 4.5, in the order of ``X = 0, 0.1, ..., 1.0``.
TARGETS = (
    0.38476636465198066, 1.2333967683416893, 1.33232242218057, 0.69201594888895180,
    -0.29756145531871736, -0.24189291901377769, -0.7964485769175675, -0.9616480167034174,
    -0.49672509509916934, -0.3469066003991437, 0.5589512650600734,
)


@dataclass(frozen=True)
class IllustrativeExample:
    """Section 4.5's problem: training data, the evaluation grid and the paper's kernel and ``lam``."""

    X: NDArray[np.float64]        # (11, 1) training inputs
    y: NDArray[np.float64]        # (11,) noisy targets
    X_grid: NDArray[np.float64]   # (101, 1) evaluation / validation inputs
    f_grid: NDArray[np.float64]   # (101,) the noiseless sin(2 pi x) on the grid
    gamma: float = 80.0
    lam: float = 0.2

    def mse(self, predictions: NDArray[np.float64]) -> NDArray[np.float64]:
        """Mean squared error against ``sin(2 pi x)`` on the grid, over the last axis."""
        return np.mean((np.asarray(predictions) - self.f_grid) ** 2, axis=-1)


def illustrative_example(n_grid: int = 101) -> IllustrativeExample:
    """The data of Section 4.5 (see the module docstring); ``n_grid`` points on ``[0, 1]``."""
    if isinstance(n_grid, bool) or not isinstance(n_grid, (int, np.integer)) or n_grid < 2:
        raise ValueError(f"n_grid must be an integer >= 2, got n_grid={n_grid!r}")
    X = np.linspace(0.0, 1.0, len(TARGETS))[:, None]
    X_grid = np.linspace(0.0, 1.0, int(n_grid))[:, None]
    return IllustrativeExample(X=X, y=np.array(TARGETS), X_grid=X_grid, f_grid=np.sin(2 * np.pi * X_grid[:, 0]))


# ------------------------------------------------------------------------------------------------
# The paper's setting and the authors' published numbers

#: The setting of Section 4.5 (with the erratum's ``gamma = 80``): the defaults of the chapter's
#: parameters of the same names. A rerun that changes one of them is no longer the paper's example,
#: and its figures and captions say so (:func:`changed_setting`).
PAPER_SETTING: dict[str, Any] = {"gamma": 80.0, "lam": 0.2, "alpha_b": 0.25, "steps": 6, "n_grid": 101}

#: Losses printed by the authors (``toy_example.ipynb`` and its README, commit cb20d6c): MSE against
#: ``sin(2 pi x)`` on the 101 grid points of steps 1-6 and of the limit, for a fixed ``alpha``,
#: keyed by ``(source, alpha)``. The README's column is headed ``alpha = 0.25``; its text and its
#: numbers are those of ``alpha = 0.35``.
PUBLISHED_LOSSES: dict[tuple[str, float], tuple[str, ...]] = {
    ("notebook", 0.0): ("0.16477", "0.15076", "0.14915", "0.15561", "0.16735", "0.18251", "0.49505"),
    ("notebook", 0.25): ("0.16477", "0.15309", "0.14958", "0.14903", "0.14946", "0.15011", "0.15250"),
    ("README", 0.35): ("0.16477", "0.15424", "0.15089", "0.14983", "0.14954", "0.14948", "0.14959"),
}
#: Where each source of :data:`PUBLISHED_LOSSES` is.
PUBLISHED_SOURCES = {"notebook": "the authors' toy_example.ipynb", "README": "the authors' README"}


def changed_setting(**values: Any) -> dict[str, tuple[Any, Any]]:
    """The parameters of :data:`PAPER_SETTING` among ``values`` that differ from the paper's:
    ``{name: (paper's value, this run's value)}`` (empty at the paper's setting)."""
    unknown = sorted(set(values) - set(PAPER_SETTING))
    if unknown:
        raise ValueError(f"not a parameter of the paper's setting: {unknown}; known: {sorted(PAPER_SETTING)}")
    return {k: (PAPER_SETTING[k], v) for k, v in values.items() if not _same(PAPER_SETTING[k], v)}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return float(a) == float(b)
    return bool(a == b)


# ------------------------------------------------------------------------------------------------
# The three cases of Figure 2


@dataclass(frozen=True)
class Cases:
    """Section 4.5's three cases on one fitted model: (a) ``alpha = 0``, (b) a fixed ``alpha_b``,
    (c) the step-wise optimal ``alpha*(tau)`` of eq. (16) (Algorithm 1), validated on the grid."""

    alphas: dict[str, NDArray[np.float64]]   # alpha^(2..steps) per case
    paths: dict[str, NDArray[np.float64]]    # (steps, m) fits on the grid per case
    mse: dict[str, NDArray[np.float64]]      # (steps,) MSE against sin(2 pi x) per case
    limits: dict[str, NDArray[np.float64]]   # (m,) limit of Theorem 4.5 per case
    a_star: NDArray[np.float64]              # alpha*(2..steps_long), unclipped
    a_star_clip: NDArray[np.float64]         # the same, clipped to [0, 1] (footnote 11)

    @property
    def alpha_inf(self) -> float:
        """``alpha*(inf)``: the weight of the last of the long run's steps."""
        return float(self.a_star[-1])


def three_cases(model: Any, ex: IllustrativeExample, *, alpha_b: float, steps: int, steps_long: int) -> Cases:
    """The fits, errors and limits of the three cases (``model``: a fitted
    :class:`~sdlib.krr.estimator.KernelSelfDistillation`); ``alpha*`` over ``steps_long`` steps."""
    a_star = model.optimal_alphas(ex.X_grid, ex.f_grid, steps=steps_long)
    a_clip = model.optimal_alphas(ex.X_grid, ex.f_grid, steps=steps_long, clip=True)
    alphas = {"a": np.zeros(steps - 1), "b": np.full(steps - 1, float(alpha_b)), "c": a_star[: steps - 1]}
    paths = {k: model.path(ex.X_grid, steps=steps, alpha=a) for k, a in alphas.items()}
    fixed = {"a": 0.0, "b": float(alpha_b), "c": float(np.clip(a_star[-1], 0.0, 1.0))}
    limits = {k: model.limit(ex.X_grid, alpha=a) for k, a in fixed.items()}
    return Cases(alphas, paths, {k: ex.mse(P) for k, P in paths.items()}, limits, a_star, a_clip)


def oracle_errors(model: Any, ex: IllustrativeExample, cases: Cases, *, steps: int,
                  steps_long: int) -> dict[str, float]:
    """Largest relative differences of the engine from :mod:`sdlib.krr.reference` (refits of
    problem (1) in the primal, ``alpha*`` by a scalar minimiser, no eq. (16)): ``"alpha_star"``
    (clipped and not), and per case ``"a"``, ``"b"``, ``"c"`` the fits on the grid and at the
    training points (case (c) with the minimiser's weights)."""
    from sdlib.krr import reference

    fit = {"X": ex.X, "y": ex.y, "lam": model.lam, "gamma": model.gamma}
    val = {"X_val": ex.X_grid, "y_val": ex.f_grid, "steps": steps_long}
    a_ref = reference.alpha_star_numerical(**val, **fit)
    a_clip_ref = reference.alpha_star_numerical(**val, **fit, clip=True)
    out = {"alpha_star": max(reference.rel_err(cases.a_star, a_ref), reference.rel_err(cases.a_star_clip, a_clip_ref))}
    for k, alphas in cases.alphas.items():
        P_ref, T_ref = reference.distill_refits(Xq=ex.X_grid, alphas=a_ref[: steps - 1] if k == "c" else alphas, **fit)
        T = model.train_path(steps=steps, alpha=alphas)
        out[k] = max(reference.rel_err(cases.paths[k], P_ref), reference.rel_err(T, T_ref))
    return out


def losses(model: Any, ex: IllustrativeExample, alpha: float, steps: int = 6) -> NDArray[np.float64]:
    """MSE against ``sin(2 pi x)`` of steps ``1..steps`` with a fixed ``alpha``, then of the limit
    (Theorem 4.5): the rows of the authors' published tables (:data:`PUBLISHED_LOSSES`)."""
    P = model.path(ex.X_grid, steps=steps, alpha=np.full(steps - 1, float(alpha)))
    return np.append(ex.mse(P), ex.mse(model.limit(ex.X_grid, alpha=float(alpha))))


def step_changes(P: ArrayLike) -> NDArray[np.float64]:
    """RMS over the grid of ``f^(tau) - f^(tau-1)`` for ``tau = 2, 3, ...`` (the steps are the
    second-to-last axis of ``P``)."""
    return np.sqrt(np.mean(np.diff(np.asarray(P, dtype=float), axis=-2) ** 2, axis=-1))


def converged_at(a: ArrayLike, tol: float) -> int:
    """First step ``T`` with ``|alpha*(t) - alpha*(last)| <= tol`` for every ``t >= T``; ``a`` holds
    ``alpha*(2), alpha*(3), ...`` (footnote 11's "converges at tau = 4")."""
    a = np.asarray(a, dtype=float).ravel()
    if a.size == 0:
        raise ValueError("converged_at needs at least one weight alpha*(2), got an empty array")
    bad = np.flatnonzero(np.abs(a - a[-1]) > float(tol))
    return int(bad[-1]) + 3 if bad.size else 2


def validation_sets(ex: IllustrativeExample, *, n_noisy: int, seed: int, sd: float = 0.5) -> dict[str, tuple[Any, Any]]:
    """Validation sets for ``alpha*`` (case (c)): the noiseless sine on the grid (the chapter's),
    ``n_noisy`` noisy samples of it on the grid (noise of the training data's ``sd``, seeds from
    ``seed``), and the training points themselves."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[Any, Any]] = {"sine (this book)": (ex.X_grid, ex.f_grid)}
    for i in range(int(n_noisy)):
        out[f"noisy {i + 1}"] = (ex.X_grid, ex.f_grid + rng.normal(0.0, sd, ex.f_grid.size))
    out["training points"] = (ex.X, ex.y)
    return out


def case_c_by_validation(model: Any, ex: IllustrativeExample, sets: dict[str, tuple[Any, Any]], *,
                         steps: int) -> dict[str, dict[str, float]]:
    """Case (c) with ``alpha*`` from each validation set, scored against the noiseless sine: the
    first two weights, the step of smallest error, the largest later change relative to step 2's,
    and the error at step 2."""
    out = {}
    for name, (Xv, yv) in sets.items():
        a = model.optimal_alphas(Xv, yv, steps=steps)
        P = model.path(ex.X_grid, steps=steps, alpha=a)
        ch, err = step_changes(P), ex.mse(P)
        out[name] = {"alpha*(2)": float(a[0]), "alpha*(3)": float(a[1]), "best step": int(np.argmin(err)) + 1,
                     "later change / step 2's": float(ch[1:].max() / ch[0]), "MSE at step 2": float(err[1])}
    return out


# ------------------------------------------------------------------------------------------------
# Case (a) at real steps, and fits of similar quality


class RealStepsA:
    """Case (a) (``alpha = 0``) at a real step ``tau0 >= 1``, where eq. (12) gives
    ``B^(tau0) = A^tau0``; from a numpy eigendecomposition of ``K``, independent of the engine.

    ``quality(tau0, "train")`` is the training MSE ``(1/n) sum_k ((1 - a_k^tau0) z_k)^2`` with
    ``z = V^T y``; ``quality(tau0, "sin")`` the MSE against ``sin(2 pi x)`` on the grid.
    """

    def __init__(self, ex: IllustrativeExample, *, gamma: float, lam: float) -> None:
        from sdlib.krr import theory
        from sdlib.krr.kernels import kernel_matrix

        self.ex = ex
        self.d, self.V = np.linalg.eigh(kernel_matrix(ex.X, None, "rbf", gamma=gamma))
        self.z = self.V.T @ ex.y
        self.lam = float(lam)
        self.a = theory.A_diag(self.d, lam)
        self._KV = kernel_matrix(ex.X_grid, ex.X, "rbf", gamma=gamma) @ self.V

    def quality(self, tau0: float, on: str) -> float:
        if on == "train":
            return float(np.mean(((1 - self.a**tau0) * self.z) ** 2))
        if on != "sin":
            raise ValueError(f"on must be 'train' or 'sin', got on={on!r}")
        return float(self.ex.mse(self._KV @ (self.a ** (tau0 - 1) / (self.d + self.lam) * self.z)))

    def best_step(self, hi: float) -> float:
        """The real ``tau0`` in ``[1, hi]`` of smallest error against the sine."""
        from scipy import optimize

        return float(optimize.minimize_scalar(self.quality, bounds=(1, hi), args=("sin",), method="bounded").x)

    def smaller_share(self, model: Any, alphas: ArrayLike, *, steps: int, on: str, lo: float,
                      hi: float) -> tuple[NDArray[np.float64], int]:
        """Per ``k``, the share of matched pairs with ``[B]_kk`` of case (a) smaller: for each fixed
        ``alpha`` and step ``t = 2..steps`` of ``model``, the real ``tau0`` in ``[lo, hi]`` at which
        case (a) has the same ``quality(., on)``; pairs without such a ``tau0`` are skipped. Returns
        ``(share per k, number of pairs)``."""
        from scipy import optimize

        def gap(tau0: float, target: float) -> float:
            return self.quality(tau0, on) - target

        smaller, pairs = np.zeros(self.z.size), 0
        for alpha in np.asarray(alphas, dtype=float).ravel():
            B = model.B_diag(steps=steps, alpha=alpha)
            P = model.path(self.ex.X_grid, steps=steps, alpha=alpha)
            for t in range(1, steps):
                target = np.mean(((1 - B[t]) * self.z) ** 2) if on == "train" else self.ex.mse(P[t])
                if gap(lo, target) * gap(hi, target) > 0:
                    continue  # case (a) never fits this well (or this badly) on this side
                tau0 = optimize.brentq(gap, lo, hi, args=(target,))
                smaller, pairs = smaller + (self.a**tau0 < B[t]), pairs + 1
        return smaller / max(pairs, 1), pairs


def explained_share(ex: IllustrativeExample, *, gamma: float, lam: float,
                    steps: int) -> tuple[float, NDArray[np.float64]]:
    """Share of the variance of ``sin(2 pi x)`` that the best of ``steps`` steps of case (a)
    explains, ``1 - min MSE / mean(sin^2)``, and that path (the erratum on ``gamma``)."""
    from sdlib.krr.estimator import KernelSelfDistillation

    m = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=lam).fit(ex.X, ex.y)
    P = m.path(ex.X_grid, steps=steps, alpha=0.0)
    return float(1 - ex.mse(P).min() / np.mean(ex.f_grid**2)), P


def case_titles(alpha_b: float) -> dict[str, str]:
    """Panel titles of the three cases (matplotlib mathtext)."""
    return {"a": r"(a) $\alpha = 0$", "b": rf"(b) $\alpha = {float(alpha_b):g}$",
            "c": r"(c) step-wise $\alpha^{\star(\tau)}$"}


def rms(v: ArrayLike) -> float:
    """Root mean square of the entries of ``v`` (a fit's size on the grid)."""
    return float(np.sqrt(np.mean(np.asarray(v, dtype=float) ** 2)))


def limit_distances(model: Any, ex: IllustrativeExample, alphas: ArrayLike) -> NDArray[np.float64]:
    """RMS over the grid of ``f(., beta^(inf)) - f(., beta^(1))`` for each fixed ``alpha``
    (Theorem 4.5's limit against the first fit)."""
    f1 = model.path(ex.X_grid, steps=1, alpha=0.0)[0]
    return np.array([rms(model.limit(ex.X_grid, alpha=float(a)) - f1) for a in np.asarray(alphas).ravel()])


def listing(indices: ArrayLike, offset: int = 0) -> str:
    """The distinct ``indices + offset`` as text for the prose (``"1, 2, 3"``; ``"none"``)."""
    return ", ".join(str(int(i) + offset) for i in np.unique(np.asarray(indices, dtype=int))) or "none"


def refit_error(ex: IllustrativeExample, path: ArrayLike, *, gamma: float, lam: float) -> float:
    """Largest relative difference of a case (a) path on the grid (``(steps, m)``) from refits of
    problem (1) with the same ``gamma`` and ``lam`` (:func:`sdlib.krr.reference.distill_refits`)."""
    from sdlib.krr import reference

    path = np.asarray(path, dtype=float)
    P_ref, _ = reference.distill_refits(ex.X, ex.y, ex.X_grid, lam, np.zeros(path.shape[0] - 1), gamma=gamma)
    return reference.rel_err(path, P_ref)

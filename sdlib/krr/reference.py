"""Brute-force oracles: self-distillation refitted step by step, each step solving problem (1).

Nothing here shares code with :mod:`sdlib.krr.estimator`. Each step minimises the objective (1)

    alpha/2 ||Phi beta - y_1||^2 + (1 - alpha)/2 ||Phi beta - y_2||^2 + lam/2 ||beta||^2

*in the primal*, over the weights ``beta`` of an explicit finite feature map ``Phi``, by solving
its normal equations ``(alpha + 1 - alpha) Phi^T Phi beta + lam beta = Phi^T (alpha y_1 +
(1 - alpha) y_2)`` with a general LU solver (the Hessian ``Phi^T Phi + lam I`` is positive definite
for every real alpha, so the minimiser exists for alpha outside [0, 1] too).

Feature maps: ``linear`` is ``phi(x) = x``; ``polynomial`` with integer degree is the weighted
monomial map whose inner product is ``(gamma <x, x'> + coef0)^degree``; any other kernel gets the
exact map on the finite set of points involved (training and query points together): the rows of
``U S^(1/2)`` for the eigendecomposition ``U S U^T`` of their joint Gram matrix, which reproduces
``kappa`` on that set exactly (to rounding).

Used by the tests and notebooks, never by the engine. Slow on purpose: clarity over speed.

Longer than 500 lines because it is one idea, the independent oracle: the feature maps, the primal
refits and the numerical minimisers share their checks, and kept together they stay visibly apart
from the engine they check.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from math import factorial

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg, optimize

from sdlib.krr.kernels import kernel_matrix

__all__ = [
    "FitCounter",
    "algorithm1_refits",
    "grid_search_refits",
    "rel_err",
    "feature_map",
    "solve_problem1",
    "distill_refits",
    "objective1",
    "alpha_star_numerical",
]

FloatArray = NDArray[np.float64]


def _polynomial_features(
    X: FloatArray, gamma: float, coef0: float, degree: int
) -> FloatArray:
    """Explicit map with ``<phi(x), phi(x')> = (gamma <x, x'> + coef0)^degree``.

    Multinomial expansion over the ``d + 1`` coordinates ``(sqrt(gamma) x, sqrt(coef0))``.
    """
    Z = np.hstack([np.sqrt(gamma) * X, np.full((X.shape[0], 1), np.sqrt(coef0))])
    cols = []
    for combo in itertools.combinations_with_replacement(range(Z.shape[1]), degree):
        counts = np.bincount(combo, minlength=Z.shape[1])
        coeff = factorial(degree) / np.prod([factorial(int(c)) for c in counts])
        cols.append(np.sqrt(coeff) * np.prod(Z[:, list(combo)], axis=1))
    return np.column_stack(cols)


def feature_map(
    X: ArrayLike,
    Xq: ArrayLike | None = None,
    kernel: str = "rbf",
    **params: float,
) -> tuple[FloatArray, FloatArray]:
    """Explicit features ``(Phi(X), Phi(Xq))`` for the kernel (see the module docstring)."""
    X = np.asarray(X, float)
    Xq = X[:0] if Xq is None else np.asarray(Xq, float)
    gamma = params.get("gamma")
    gamma = 1.0 / X.shape[1] if gamma is None else float(gamma)
    if kernel == "linear":
        return X.copy(), Xq.copy()
    degree = params.get("degree", 3)
    if kernel in ("polynomial", "poly") and float(degree).is_integer() and degree >= 0:
        coef0 = float(params.get("coef0", 1))
        if coef0 >= 0:
            Z = _polynomial_features(np.vstack([X, Xq]), gamma, coef0, int(degree))
            return Z[: X.shape[0]], Z[X.shape[0] :]
    allX = np.vstack([X, Xq])
    G = kernel_matrix(allX, None, kernel, gamma=gamma, **{
        k: v for k, v in params.items() if k in ("degree", "coef0")
    })
    s, U = np.linalg.eigh((G + G.T) / 2)
    Z = U * np.sqrt(np.clip(s, 0.0, None))
    return Z[: X.shape[0]], Z[X.shape[0] :]


def objective1(
    Phi: FloatArray, beta: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
) -> float:
    """The self-distillation objective (1), Frobenius norms for multi-output targets."""
    f = Phi @ beta
    return float(
        alpha / 2 * np.sum((f - y1) ** 2)
        + (1 - alpha) / 2 * np.sum((f - y2) ** 2)
        + lam / 2 * np.sum(beta**2)
    )


def solve_problem1(
    Phi: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
) -> FloatArray:
    """``argmin_beta`` of (1) in the primal: the zero of its gradient, by LU (not Cholesky)."""
    D = Phi.shape[1]
    H = alpha * Phi.T @ Phi + (1 - alpha) * Phi.T @ Phi + lam * np.eye(D)
    g = alpha * Phi.T @ y1 + (1 - alpha) * Phi.T @ y2
    return linalg.solve(H, g, assume_a="gen")


def distill_refits(
    X: ArrayLike,
    y: ArrayLike,
    Xq: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    kernel: str = "rbf",
    **params: float,
) -> tuple[FloatArray, FloatArray]:
    """Self-distillation by refitting, eqs. (3)-(5): ``(f(Xq, beta^(tau)), y^(tau))`` for all tau.

    ``alphas`` are ``alpha^(2..tau)``; returns arrays of shape ``(tau, m[, p])`` and
    ``(tau, n[, p])``.
    """
    Phi, Phiq = feature_map(X, Xq, kernel, **params)
    y = np.asarray(y, float)
    return _refit_chain(lambda y_prev, alpha: solve_problem1(Phi, y, y_prev, alpha, lam), Phi, Phiq, y, alphas)


def _refit_chain(solve: Callable[[FloatArray, float], FloatArray], A: FloatArray, Aq: FloatArray,
                 y: FloatArray, alphas: Sequence[float] | FloatArray) -> tuple[FloatArray, FloatArray]:
    """The chain of eqs. (3)-(5) by refits: ``w = solve(y^(tau-1), alpha^(tau))`` at every step, with
    training predictions ``A w`` and query predictions ``Aq w`` (primal: features; dual: kernels)."""
    preds, trains = [], []
    y_prev = y
    for tau in range(len(alphas) + 1):
        alpha = 1.0 if tau == 0 else float(alphas[tau - 1])  # step 1: both targets are y
        w = solve(y_prev, alpha)
        y_prev = A @ w
        trains.append(y_prev)
        preds.append(Aq @ w)
    return np.array(preds), np.array(trains)


def alpha_star_numerical(
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    steps: int,
    kernel: str = "rbf",
    clip: bool = False,
    **params: float,
) -> FloatArray:
    """``alpha*(2..steps)`` by :func:`scipy.optimize.minimize_scalar` of the validation error.

    Each candidate alpha is evaluated by refitting the step from scratch (problem (1)), given the
    earlier steps' minimisers: the greedy definition of Theorem 4.4, without eq. (16).
    """
    Phi, Phiv = feature_map(X, X_val, kernel, **params)
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    y_prev = Phi @ solve_problem1(Phi, y, y, 1.0, lam)
    out = []
    for _ in range(2, steps + 1):

        def val_err(alpha: float, y_prev: FloatArray = y_prev) -> float:
            beta = solve_problem1(Phi, y, y_prev, alpha, lam)
            return float(np.sum((y_val - Phiv @ beta) ** 2))

        # The validation error is a convex quadratic in alpha: bracket widely, then refine.
        res = optimize.minimize_scalar(val_err, bracket=(-10.0, 10.0), tol=1e-14)
        a = float(res.x)
        if clip:
            a = float(np.clip(a, 0.0, 1.0))
        out.append(a)
        y_prev = Phi @ solve_problem1(Phi, y, y_prev, a, lam)
    return np.array(out)


def rel_err(a: ArrayLike, b: ArrayLike) -> float:
    """Largest entry of ``|a - b|`` relative to the largest entry of ``|b|`` (the yardstick)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"rel_err needs arrays of one shape, got {a.shape} and {b.shape}")
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


class FitCounter:
    """:func:`solve_problem1` (problem (1) in the primal) that counts how often it is called."""

    def __init__(self) -> None:
        self.fits = 0

    def __call__(
        self, Phi: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
    ) -> FloatArray:
        self.fits += 1
        return solve_problem1(Phi, y1, y2, alpha, lam)


def algorithm1_refits(
    Phi: FloatArray,
    Phi_val: FloatArray,
    y: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    tau: int,
    fit: FitCounter | None = None,
    clip: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """Algorithm 1 carried out with refits of problem (1): ``(alpha*(2..tau), validation preds of step tau)``.

    Each step fits the ``alpha = 0`` student, takes eq. (16) of its validation predictions, and
    refits with ``alpha*``: ``2(tau - 1) + 1`` calls of ``fit`` in all.
    """
    from sdlib.krr.theory import alpha_star  # the formula under test: eq. (16) itself

    fit = FitCounter() if fit is None else fit
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    beta = fit(Phi, y, y, 1.0, lam)  # step 1 (any alpha^(1))
    y_prev, val1 = Phi @ beta, Phi_val @ beta
    val, alphas = val1, []
    for _ in range(2, tau + 1):
        beta0 = fit(Phi, y, y_prev, 0.0, lam)
        a = alpha_star(y_val, val1, Phi_val @ beta0)
        a = float(np.clip(a, 0.0, 1.0)) if clip else a
        beta = fit(Phi, y, y_prev, a, lam)
        y_prev, val = Phi @ beta, Phi_val @ beta
        alphas.append(a)
    return np.array(alphas), val


def grid_search_refits(
    Phi: FloatArray,
    Phi_val: FloatArray,
    y: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    tau: int,
    fit: FitCounter | None = None,
) -> tuple[float, float]:
    """Best fixed alpha on a grid for ``tau`` steps by refits: ``(alpha, validation MSE)``.

    One shared first fit, then ``tau - 1`` refits per grid value: ``g(tau - 1) + 1`` calls of ``fit``.
    """
    fit = FitCounter() if fit is None else fit
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    beta1 = fit(Phi, y, y, 1.0, lam)
    best = (float("nan"), float("inf"))
    for a in alphas:
        y_prev, beta = Phi @ beta1, beta1
        for _ in range(2, tau + 1):
            beta = fit(Phi, y, y_prev, float(a), lam)
            y_prev = Phi @ beta
        err = float(np.mean((y_val - Phi_val @ beta) ** 2))
        best = (float(a), err) if err < best[1] else best
    return best


def B_diag_refits(
    X: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    kernel: str = "rbf",
    **params: float,
) -> tuple[FloatArray, FloatArray]:
    """Eigenvalues ``d`` of ``K`` (ascending) and ``diag B^(1..tau)`` of eq. (10), by refits.

    Self-distillation is linear in the targets and, by eq. (10), ``y^(tau) = V B^(tau) V^T y``
    with ``K = V D V^T``. Distilling the eigenvectors themselves (the ``n`` columns of ``V`` as
    ``n`` outputs) therefore gives ``V B^(tau)``, and ``V^T`` of it is ``B^(tau)``. ``alphas`` are
    ``alpha^(2..tau)``; returns ``(d, B)`` with ``B`` of shape ``(tau, n)``.
    """
    X = np.asarray(X, float)
    G = kernel_matrix(X, None, kernel, **params)
    d, V = np.linalg.eigh((G + G.T) / 2)
    _, VB = distill_refits(X, V, X[:0], lam, alphas, kernel, **params)
    return d, np.array([np.diag(V.T @ VB_t) for VB_t in VB])


def stepwise_grid_search_refits(
    Phi: FloatArray,
    Phi_val: FloatArray,
    y: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    tau: int,
    fit: FitCounter | None = None,
    share_prefixes: bool = True,
) -> tuple[FloatArray, float, int]:
    """Grid search over every sequence ``alpha^(2..tau)`` of grid values, by refits of problem (1).

    The search of Section 4.3 "if alpha is not fixed across distillation steps": each of the
    ``g^(tau - 1)`` sequences of the ``g`` grid values is scored by the validation MSE of its step
    ``tau``. Returns ``(best alpha^(2..tau), its validation MSE, number of sequences scored)``; ties
    go to the first sequence in lexicographic order of the grid.

    With ``share_prefixes`` (depth first) sequences that begin alike share their refits:
    ``1 + g + g^2 + ... + g^(tau - 1)`` calls of ``fit``. Without, every sequence is refitted from
    the shared first fit: ``1 + (tau - 1) g^(tau - 1)`` calls.
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)) or tau < 2:
        raise ValueError(f"tau must be an integer >= 2, got tau={tau!r}")
    grid = [float(a) for a in np.asarray(alphas, float).ravel()]
    if not grid:
        raise ValueError("alphas must hold at least one grid value, got an empty grid")
    fit = FitCounter() if fit is None else fit
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)
    beta1 = fit(Phi, y, y, 1.0, lam)
    best_seq: tuple[float, ...] = ()
    best_mse = float("inf")
    n_scored = 0

    def score(seq: tuple[float, ...], beta: FloatArray) -> None:
        nonlocal best_seq, best_mse, n_scored
        err = float(np.mean((y_val - Phi_val @ beta) ** 2))
        n_scored += 1
        if err < best_mse:
            best_seq, best_mse = seq, err

    def descend(prefix: tuple[float, ...], y_prev: FloatArray) -> None:
        for a in grid:
            beta = fit(Phi, y, y_prev, a, lam)
            if len(prefix) + 1 == tau - 1:
                score(prefix + (a,), beta)
            else:
                descend(prefix + (a,), Phi @ beta)

    if share_prefixes:
        descend((), Phi @ beta1)
    else:
        for seq in itertools.product(grid, repeat=tau - 1):
            y_prev, beta = Phi @ beta1, beta1
            for a in seq:
                beta = fit(Phi, y, y_prev, a, lam)
                y_prev = Phi @ beta
            score(seq, beta)
    return np.array(best_seq, float), best_mse, n_scored


__all__ += ["B_diag_refits", "stepwise_grid_search_refits"]


def objective_fn7(
    Phi: FloatArray, beta: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float
) -> float:
    """Footnote 7's weighted-target objective ``L~``.

    ``1/2 ||Phi beta - (alpha y1 + (1 - alpha) y2)||^2 + lam/2 ||beta||^2``.
    """
    t = alpha * np.asarray(y1, float) + (1 - alpha) * np.asarray(y2, float)
    return float(0.5 * np.sum((Phi @ beta - t) ** 2) + lam / 2 * np.sum(np.asarray(beta) ** 2))


def minimise_bfgs(
    Phi: FloatArray, y1: FloatArray, y2: FloatArray, alpha: float, lam: float, objective: str = "eq1"
) -> FloatArray:
    """``argmin_beta`` of objective (1) (``objective="eq1"``) or of footnote 7's ``L~`` (``"fn7"``).

    A numerical minimiser that uses no closed form: :func:`scipy.optimize.minimize` (BFGS, exact
    gradient, gradient tolerance ``1e-12``) from ``beta = 0``, in the primal.
    """
    if objective not in ("eq1", "fn7"):
        raise ValueError(f"objective must be 'eq1' or 'fn7', got objective={objective!r}")
    y1 = np.asarray(y1, float)
    y2 = np.asarray(y2, float)
    t = alpha * y1 + (1 - alpha) * y2
    if objective == "eq1":
        def fun(beta: FloatArray) -> float:
            return objective1(Phi, beta, y1, y2, alpha, lam)

        def jac(beta: FloatArray) -> FloatArray:
            f = Phi @ beta
            return alpha * Phi.T @ (f - y1) + (1 - alpha) * Phi.T @ (f - y2) + lam * beta
    else:
        def fun(beta: FloatArray) -> float:
            return objective_fn7(Phi, beta, y1, y2, alpha, lam)

        def jac(beta: FloatArray) -> FloatArray:
            return Phi.T @ (Phi @ beta - t) + lam * beta

    res = optimize.minimize(fun, np.zeros(Phi.shape[1]), jac=jac, method="BFGS",
                            options={"gtol": 1e-12, "maxiter": 10_000})
    return np.asarray(res.x, float)


def dual_refits(
    K: ArrayLike,
    y: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    Kq: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Eq. (5) step by step, as one computes it without Theorem 4.1: ``(Kq c^(tau), K c^(tau))``.

    Every step solves ``(K + lam I) c^(tau) = alpha^(tau) y + (1 - alpha^(tau)) y^(tau-1)`` from
    scratch with a dense solver (:func:`scipy.linalg.solve`, one Cholesky factorisation per step).
    ``alphas`` are ``alpha^(2..tau)``; ``Kq = kappa(Xq, X)`` (default ``K``). Returns arrays of
    shape ``(tau, m[, p])`` and ``(tau, n[, p])``.
    """
    K = np.asarray(K, float)
    y = np.asarray(y, float)
    Kq = K if Kq is None else np.asarray(Kq, float)
    H = K + lam * np.eye(K.shape[0])
    return _refit_chain(lambda y_prev, a: linalg.solve(H, a * y + (1 - a) * y_prev, assume_a="pos"), K, Kq, y, alphas)


def eq7_refits(
    X: ArrayLike,
    y: ArrayLike,
    Xq: ArrayLike,
    lam: float,
    alphas: Sequence[float] | FloatArray,
    kernel: str = "rbf",
    **params: float,
) -> FloatArray:
    """Right-hand side of eq. (7) by refits, for ``tau = 2..len(alphas) + 1``: shape ``(tau - 1, m)``.

    ``alpha^(tau) f(x, beta^(1)) + (1 - alpha^(tau)) f(x, beta^(tau)_{alpha=0})``, where
    ``beta^(tau)_{alpha=0}`` refits step ``tau`` with ``alpha^(tau)`` replaced by 0 after the given
    ``alpha^(2..tau-1)`` (two runs of :func:`distill_refits` per step).
    """
    alphas = [float(a) for a in alphas]
    first, _ = distill_refits(X, y, Xq, lam, [], kernel, **params)
    out = []
    for tau in range(2, len(alphas) + 2):
        zero, _ = distill_refits(X, y, Xq, lam, alphas[: tau - 2] + [0.0], kernel, **params)
        a = alphas[tau - 2]
        out.append(a * first[0] + (1 - a) * zero[-1])
    return np.array(out)


class FactorisationCounter:
    """Counts the dense ``O(n^3)`` linear-algebra calls made inside a ``with`` block.

    Wraps, for the duration of the block, the factorisations, general solves, inverses and
    eigendecompositions of :mod:`scipy.linalg` and :mod:`numpy.linalg` listed in ``ROUTINES``
    (triangular solves and products with a stored factor are not counted: they are ``O(n^2)``).
    Calls made through the module attribute (``linalg.cho_factor(...)``,
    ``np.linalg.solve(...)``) are counted, which is how :mod:`sdlib` and this module call them; a
    name imported directly (``from scipy.linalg import solve``) before the block is not.
    ``counts`` maps ``"scipy.linalg.cho_factor"`` etc. to the number of calls, ``total`` sums them.
    """

    ROUTINES = {
        "scipy.linalg": ("cho_factor", "cholesky", "lu_factor", "lu", "solve", "inv", "eigh", "qr", "svd"),
        "numpy.linalg": ("cholesky", "solve", "inv", "eigh", "qr", "svd", "lstsq"),
    }

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._saved: list[tuple[object, str, object]] = []

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __enter__(self) -> FactorisationCounter:
        modules = {"scipy.linalg": linalg, "numpy.linalg": np.linalg}
        for mod_name, names in self.ROUTINES.items():
            module = modules[mod_name]
            for name in names:
                original = getattr(module, name)
                key = f"{mod_name}.{name}"
                self.counts.setdefault(key, 0)

                def counted(*args, _f=original, _key=key, **kwargs):  # type: ignore[no-untyped-def]
                    self.counts[_key] += 1
                    return _f(*args, **kwargs)

                self._saved.append((module, name, original))
                setattr(module, name, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        while self._saved:
            module, name, original = self._saved.pop()
            setattr(module, name, original)


__all__ += ["objective_fn7", "minimise_bfgs", "dual_refits", "eq7_refits", "FactorisationCounter"]


def joint_alphas_numerical(
    Phi: FloatArray,
    Phi_val: FloatArray,
    y: ArrayLike,
    y_val: ArrayLike,
    lam: float,
    steps: int,
    fit: FitCounter | None = None,
) -> tuple[FloatArray, float]:
    """Jointly optimal ``alpha^(2..steps)`` by a generic optimiser over refits: ``(alphas, error)``.

    scipy's Levenberg-Marquardt (:func:`scipy.optimize.least_squares`, finite-difference Jacobian)
    minimises the validation residual after ``steps`` steps (Frobenius norm), every evaluation
    refitting every step with ``fit`` (problem (1) in the primal). It searches the coefficients
    ``c`` of eq. (6), which sum to one, from ``c = (1, 0, ..., 0)`` (plain kernel ridge regression),
    and turns each ``c`` into weights by ``alpha^(steps) = c_1``, ``alpha^(steps-k) = c_{k+1} /
    (1 - c_1 - ... - c_k)`` (written out here, not imported); over the weights themselves such
    optimisers stall where a weight reaches 1. ``error`` is the sum of squared validation errors of
    the returned weights, refitted once more.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got steps={steps!r}")
    fit = FitCounter() if fit is None else fit
    y = np.asarray(y, float)
    y_val = np.asarray(y_val, float)

    def weights(u: FloatArray) -> FloatArray:
        c = np.concatenate([[1.0 - u.sum()], u])
        out, rest = np.ones(steps - 1), 1.0
        for k in range(steps - 1):  # out[steps - 2 - k] is alpha^(steps - k)
            if rest == 0.0:
                break  # the earlier weights do not enter; keep them at 1
            out[steps - 2 - k] = c[k] / rest
            rest -= c[k]
        return out

    def residual(u: FloatArray) -> FloatArray:
        beta = fit(Phi, y, y, 1.0, lam)
        for a in weights(u):
            beta = fit(Phi, y, Phi @ beta, float(a), lam)
        return (y_val - Phi_val @ beta).ravel()

    method = "lm" if y_val.size >= steps - 1 else "trf"  # LM needs as many residuals as unknowns
    res = optimize.least_squares(residual, np.zeros(steps - 1), method=method, xtol=1e-15, ftol=1e-15,
                                 gtol=1e-15)
    return weights(res.x), float(np.sum(residual(res.x) ** 2))


__all__ += ["joint_alphas_numerical"]

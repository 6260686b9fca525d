"""Self-distillation as a spectral filter, and the best diagonal filter (beyond the paper).

In the eigenbasis ``K = V D V^T`` (Section 4.2) the training predictions of every self-distilled
model of Theorem 4.1 are ``y^(tau) = V diag(h) V^T y`` with ``h`` the diagonal of ``B^(tau)``
(eq. 10), and its predictions at any ``x`` are ``f(x) = kappa(x, X) V D^-1 diag(h) V^T y``
(eq. 13). We call ``h`` the *filter*: one factor per eigenvector of ``K``.

* Kernel ridge regression with penalty ``lam'`` has ``h = d / (d + lam')`` (eq. 9).
* ``tau`` steps with weights ``alpha^(2..tau)`` at penalty ``lam`` have ``h = sum_k c_k a^k`` with
  ``a = d / (d + lam)`` and the coefficients ``c`` of eq. (6) (:func:`sdlib.krr.joint.coefficients`):
  a polynomial ``p(a)`` of degree ``tau`` with ``p(0) = 0`` and ``p(1) = 1``.
* Any vector ``h`` defines a predictor of the same form. The *oracle filter* minimises the error
  on given data over every ``h`` (a linear least-squares problem); no choice of ``alpha``, of
  ``tau`` or of ``lam`` can do better on that data.

Eq. (13) divides by the eigenvalues. Directions with ``d_k <= rtol * d_max`` (default
``rtol = n * eps``, numpy's rank tolerance) are below round-off: their filter entries are fixed to 0
and they are left out of the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_array, check_is_fitted

from sdlib.krr import joint, theory

if TYPE_CHECKING:  # pragma: no cover
    from sdlib.krr.estimator import KernelSelfDistillation

__all__ = ["FilterData", "SpectralFilters", "compare_weights"]

FloatArray = NDArray[np.float64]


class SpectralFilters:
    """The filters of a fitted :class:`~sdlib.krr.estimator.KernelSelfDistillation` in the eigenbasis of ``K``.

    Uses the model's (cached) eigendecomposition of ``K``; ``lam`` is the model's penalty. Filters
    are vectors ``h`` of length ``n``, one entry per eigenvalue (ascending); :meth:`at` gives the
    predictions and errors of any filter on a data set.
    """

    def __init__(self, model: KernelSelfDistillation, rtol: float | None = None) -> None:
        check_is_fitted(model)
        self._model = model
        d, V = model._eigh()
        self.d: FloatArray = d
        self.V: FloatArray = V
        self.lam: float = model._lam
        self._y_1d = model._y_1d
        self.z: FloatArray = V.T @ model.y_fit_  # (n, p): eq. (13)'s z = V^T y
        n = d.shape[0]
        rtol = n * np.finfo(float).eps if rtol is None else float(rtol)
        if not 0 <= rtol < 1:
            raise ValueError(f"rtol must be in [0, 1), got rtol={rtol!r}")
        #: Directions kept (``d_k > rtol * d_max``); the others have filter 0.
        self.keep: NDArray[np.bool_] = d > rtol * max(float(d.max()), 0.0)

    # ------------------------------------------------------------------ filters
    def krr(self, lam: float) -> FloatArray:
        """Filter of kernel ridge regression with penalty ``lam``: ``d / (d + lam)`` (eq. 9)."""
        return self._clean(theory.A_diag(self.d, lam))

    def distillation(self, alphas: ArrayLike, steps: int | None = None) -> FloatArray:
        """Filter of ``steps`` steps with weights ``alpha^(2..steps)`` at the model's ``lam``: the
        diagonal of ``B^(steps)`` (eqs. 11-12). ``alphas`` is one weight or ``steps - 1`` weights."""
        alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
        if steps is None:
            steps = alphas.shape[0] + 1
        a = theory.alpha_sequence(alphas if alphas.shape[0] != 1 else float(alphas[0]), steps)
        return self._clean(theory.B_diag_path(self.d, self.lam, a)[-1])

    def _clean(self, h: FloatArray) -> FloatArray:
        h = np.asarray(h, dtype=float).copy()
        h[~self.keep] = 0.0
        return h

    # ------------------------------------------------------------------ data
    def basis(self, X: ArrayLike) -> FloatArray:
        """``P = kappa(X, X_train) V``, shape ``(m, n)``: eq. (13)'s ``D p(x)`` for every row ``x``."""
        X = self._model._check_query(X, "X")
        return self._model._kernel(X, self._model.X_fit_) @ self.V

    def at(self, X: ArrayLike, y: ArrayLike | None = None) -> FilterData:
        """Predictions of every filter at the inputs ``X`` (and errors against ``y``): a :class:`FilterData`."""
        P = self.basis(X)
        scale = np.zeros_like(self.d)
        scale[self.keep] = 1.0 / self.d[self.keep]
        # Q[i, j, k] = P[i, k] z[k, j] / d[k]: the prediction for output j at x_i is (Q h)[i, j].
        Q = P[:, None, :] * (self.z * scale[:, None]).T[None, :, :]
        if y is not None:
            y = check_array(y, dtype=np.float64, ensure_2d=False, input_name="y")
            if y.reshape(y.shape[0], -1).shape != Q.shape[:2]:
                raise ValueError(
                    f"y must have {Q.shape[0]} rows (as X) and {Q.shape[1]} output(s), got y.shape={y.shape}"
                )
        return FilterData(Q, self.keep, self._y_1d, None if y is None else y.reshape(Q.shape[:2]))

    def best_lam(self, lams: ArrayLike, data: FilterData) -> tuple[float, float]:
        """The penalty in ``lams`` whose kernel ridge regression has the least error on ``data``:
        ``(lam, error)``."""
        lams = np.atleast_1d(np.asarray(lams, dtype=float))
        if lams.size == 0:
            raise ValueError("lams must hold at least one penalty")
        errs = [data.error(self.krr(lam)) for lam in lams.tolist()]
        i = int(np.argmin(errs))
        return float(lams[i]), float(errs[i])

    def best_fixed_alpha(self, alphas: ArrayLike, steps: int, data: FilterData) -> tuple[float, float]:
        """The fixed weight in ``alphas`` with the least error on ``data`` after ``steps`` steps:
        ``(alpha, error)``."""
        alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
        if alphas.size == 0:
            raise ValueError("alphas must hold at least one weight")
        errs = [data.error(self.distillation(a, steps)) for a in alphas.tolist()]
        i = int(np.argmin(errs))
        return float(alphas[i]), float(errs[i])


class FilterData:
    """Predictions ``Q h`` of any filter ``h`` at fixed inputs, and errors against fixed targets.

    Made by :meth:`SpectralFilters.at`. ``Q`` has shape ``(m, p, n)``; errors are sums of squares
    over the ``m x p`` targets (Frobenius norm).
    """

    #: Relative singular-value cut-off of :meth:`oracle`.
    rcond: float = 1e-10

    def __init__(self, Q: FloatArray, keep: NDArray[np.bool_], y_1d: bool, y: FloatArray | None) -> None:
        self.Q = Q
        self.keep = keep
        self.y = y
        self._y_1d = y_1d
        self._Qf = Q.reshape(-1, Q.shape[2])

    def _check_filter(self, h: ArrayLike) -> FloatArray:
        h = np.asarray(h, dtype=float)
        if h.shape != (self.Q.shape[2],) or not np.all(np.isfinite(h)):
            raise ValueError(f"a filter must be {self.Q.shape[2]} finite numbers, got shape {h.shape}")
        return h

    def _targets(self) -> FloatArray:
        if self.y is None:
            raise ValueError("these data have no targets: pass y to SpectralFilters.at(X, y)")
        return self.y

    def predict(self, h: ArrayLike) -> FloatArray:
        """Predictions of the filter ``h``: ``(m[, p])`` (eq. 13)."""
        F = self.Q @ self._check_filter(h)
        return F[:, 0] if self._y_1d else F

    def error(self, h: ArrayLike) -> float:
        """Sum of squared errors of the filter ``h`` against the targets."""
        r = self._Qf @ self._check_filter(h) - self._targets().reshape(-1)
        return float(r @ r)

    def mse(self, h: ArrayLike) -> float:
        """Mean squared error of the filter ``h``: :meth:`error` over the number of target entries."""
        return self.error(h) / self._targets().size

    def oracle(self) -> FloatArray:
        """The filter with the least error against the targets, over every ``h``.

        A linear least-squares problem in ``h``: one column per kept direction, one row per target
        entry. The columns are scaled to unit norm first, so that a direction the targets barely
        touch (small ``|z_k|``) is not mistaken for round-off; columns that are exactly zero get
        ``h_k = 0``. Singular values below ``rcond`` (``1e-10``) times the largest count as zero:
        combinations of directions that the data cannot tell apart above round-off are not used
        (otherwise the "best" filter would fit rounding errors with entries of size ``1e15``).
        Where several filters attain the minimum, the one of least scaled norm.
        """
        A = self._Qf[:, self.keep]
        norms = np.linalg.norm(A, axis=0)
        live = norms > 0
        sol, *_ = np.linalg.lstsq(A[:, live] / norms[live], self._targets().reshape(-1), rcond=self.rcond)
        h_keep = np.zeros(A.shape[1])
        h_keep[live] = sol / norms[live]
        h = np.zeros(self.Q.shape[2])
        h[self.keep] = h_keep
        return h


def compare_weights(
    model: KernelSelfDistillation,
    X_val: ArrayLike,
    y_val: ArrayLike,
    steps: Sequence[int],
    grid: ArrayLike,
    data: Mapping[str, FilterData],
    select: str = "val",
) -> list[dict[str, Any]]:
    """Three ways to choose the weights, for each number of steps ``T`` in ``steps``.

    ``"greedy"``: Algorithm 1 (eq. 16); ``"joint"``: the joint optimum (:mod:`sdlib.krr.joint`); ``"grid"``:
    the fixed ``alpha`` in ``grid`` with the least error on ``data[select]`` (the validation data,
    which must hold the targets ``y_val`` at ``X_val``). One record per ``(T, choice)`` with the
    weights, the filter (:meth:`SpectralFilters.distillation`) and its mean squared error on each
    data set of ``data`` (keys ``"mse_<name>"``).
    """
    if select not in data:
        raise ValueError(f"select={select!r} must name one of the data sets {sorted(data)}")
    S = SpectralFilters(model)
    records = []
    for T in steps:
        choices = {
            "greedy": model.optimal_alphas(X_val, y_val, steps=T),
            "joint": joint.joint_optimum(model, X_val, y_val, T).alphas,
            "grid": np.full(T - 1, S.best_fixed_alpha(grid, T, data[select])[0]),
        }
        for name, alphas in choices.items():
            h = S.distillation(alphas, T)
            records.append({"steps": int(T), "choice": name, "alphas": alphas, "filter": h,
                            **{f"mse_{k}": v.mse(h) for k, v in data.items()}})
    return records

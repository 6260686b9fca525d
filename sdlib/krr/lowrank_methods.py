"""The methods of :class:`~sdlib.krr.estimator.KernelSelfDistillation` with ``n_components=m``.

The estimator dispatches here when it has a Nyström kernel; everything is computed by the array
functions of :mod:`sdlib.krr.lowrank`. This module knows the estimator only by the attributes it
uses (:class:`LowRankModel`, a structural type), so the arrow points one way: the estimator imports
this module, never the reverse.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.utils.validation import check_array, check_is_fitted

from sdlib.krr import gcv, joint, theory
from sdlib.krr.kernels import check_kernel, check_kernel_params
from sdlib.krr.lowrank import (
    CENTRES,
    Kern,
    LowRankWarning,
    NystromFit,
    gcv_spectrum,
    gram_sums,
    greedy_alphas,
    is_dask,
    make_kernel,
    nystrom_fit,
    predict_coefficients,
    step_coefficients,
)

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(est: Any, *args: Any, **kw: Any) -> Any:
        return est._validate_data(*args, **kw)

FloatArray = NDArray[np.float64]


class LowRankModel(Protocol):
    """What these functions read and set on the estimator (its parameters and fitted state)."""

    kernel: Any
    gamma: Any
    degree: Any
    coef0: Any
    kernel_params: Any
    lam: Any
    alpha: Any
    steps: int
    n_components: Any
    centres: Any
    random_state: Any
    X_fit_: Any
    n_features_in_: int
    lowrank_: NystromFit
    components_: Any
    component_indices_: Any
    coef_: Any
    _lam: float
    _y_1d: bool

    def _check_query(self, Xq: Any, name: str = ...) -> Any: ...
    def _validate_X(self, X: Any, reset: bool = ...) -> Any: ...
    def _shape_out(self, A: FloatArray) -> FloatArray: ...
    def _steps_alphas(self, steps: int | None, alpha: Any) -> FloatArray: ...

def _check_n_components(m: Any, n: int) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"n_components must be an integer >= 1 or None, got n_components={m!r}")
    if m > n:
        raise ValueError(f"n_components={m!r} exceeds the number of training rows n={n}")
    return int(m)


def _as_float(a: Any, name: str) -> Any:
    if is_dask(a):
        if a.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-d or 2-d, got {name}.ndim={a.ndim}")
        return a.astype(np.float64)
    return check_array(a, dtype=np.float64, ensure_2d=False, input_name=name)


def _kern_of(model: LowRankModel) -> Kern:
    return make_kernel(model.kernel, model.gamma, model.degree, model.coef0, model.kernel_params)


def fit(model: LowRankModel, X: Any, y: Any) -> LowRankModel:
    """:meth:`~sdlib.krr.estimator.LowRankModel.fit` with ``n_components``: :func:`nystrom_fit`."""
    check_kernel(model.kernel)
    if model.kernel == "precomputed":
        raise ValueError("n_components needs the kernel of the inputs; kernel='precomputed' has no "
                         "low-rank route (use n_components=None)")
    check_kernel_params(model.kernel, model.gamma, model.degree, model.coef0)
    lam = theory.check_lam(model.lam)
    alphas = theory.alpha_sequence(model.alpha, model.steps)
    if model.centres not in CENTRES:
        raise ValueError(f"centres must be one of {', '.join(map(repr, CENTRES))}, got centres={model.centres!r}")
    if is_dask(X) or is_dask(y):
        X, y = _as_float(X, "X"), _as_float(y, "y")
        if X.ndim != 2 or y.shape[0] != X.shape[0]:
            raise ValueError(f"X must be 2-d with as many rows as y, got X.shape={X.shape}, y.shape={y.shape}")
        model.n_features_in_ = int(X.shape[1])
        # dask arrays are not written to in place; a numpy X beside a dask y is copied
        model.X_fit_ = X if is_dask(X) else np.array(X, dtype=np.float64, copy=True)
    else:
        X, y = _validate_data(model, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        model.X_fit_ = np.array(X, dtype=np.float64, copy=True)
    m = _check_n_components(model.n_components, int(X.shape[0]))
    model._y_1d = y.ndim == 1
    Y = y.reshape(y.shape[0], -1) if not is_dask(y) else y
    kern = _kern_of(model)
    nf = nystrom_fit(model.X_fit_, Y, m, kern, lam, model.random_state, model.centres)
    model._lam = lam
    model.lowrank_ = nf
    model.components_ = nf.centres
    model.component_indices_ = nf.indices
    s2_min = float(nf.s2[0]) if nf.rank else 0.0
    if nf.rank < nf.n and s2_min > lam:
        warnings.warn(
            f"n_components={m} is too coarse for alpha*: the smallest retained eigenvalue "
            f"{s2_min:.3g} exceeds lam={lam!r}, so the directions with eigenvalues near lam (where the "
            "steps differ, eqs. 12-16) are all cut off; raise n_components", LowRankWarning, stacklevel=3)
    g = step_coefficients(nf.s2, lam, alphas)[-1]
    #: predict(X) = k(X, components_) @ coef_
    model.coef_ = model._shape_out(nf.M @ (g[:, None] * nf.z))
    return model


def _query(model: LowRankModel, Xq: Any, name: str = "Xq") -> Any:
    check_is_fitted(model)
    if is_dask(Xq):
        if Xq.ndim != 2 or Xq.shape[1] != model.n_features_in_:
            raise ValueError(f"{name} must be 2-d with {model.n_features_in_} features, got {name}.shape={Xq.shape}")
        return Xq.astype(np.float64)
    return model._check_query(Xq, name)


def _out(model: LowRankModel, F: Any) -> Any:
    return F[..., 0] if model._y_1d else F


def predict(model: LowRankModel, X: Any) -> Any:
    """``f(X, beta^(steps))`` on the Nyström kernel, by row blocks (lazily for a dask ``X``)."""
    check_is_fitted(model)
    X = _query(model, X, "X") if is_dask(X) else model._validate_X(X, reset=False)
    alphas = theory.alpha_sequence(model.alpha, model.steps)
    g = step_coefficients(model.lowrank_.s2, model._lam, alphas)[-1:]
    return _out(model, predict_coefficients(model.lowrank_, X, g, _kern_of(model))[0])


def path(model: LowRankModel, Xq: Any, steps: int | None = None, alpha: Any = None) -> Any:
    """``f(Xq, beta^(tau))``, ``tau = 1..steps``, on the Nyström kernel: ``(steps, q[, p])``."""
    Xq = _query(model, Xq)
    g = step_coefficients(model.lowrank_.s2, model._lam, model._steps_alphas(steps, alpha))
    return _out(model, predict_coefficients(model.lowrank_, Xq, g, _kern_of(model)))


def train_path(model: LowRankModel, steps: int | None = None, alpha: Any = None) -> Any:
    """Fitted values ``y^(tau)`` at the training inputs (eq. 6 on ``K~``), ``(steps, n[, p])``, by blocks.

    On ``K~`` the training prediction of a step equals its prediction at the training inputs.
    """
    check_is_fitted(model)
    g = step_coefficients(model.lowrank_.s2, model._lam, model._steps_alphas(steps, alpha))
    return _out(model, predict_coefficients(model.lowrank_, model.X_fit_, g, _kern_of(model)))


def limit(model: LowRankModel, Xq: Any, alpha: float | None = None) -> Any:
    """Theorem 4.5 on the Nyström kernel: kernel ridge regression with ``lam / alpha``."""
    Xq = _query(model, Xq)
    alpha = model.alpha if alpha is None else alpha
    if np.ndim(alpha) != 0:
        raise ValueError(f"Theorem 4.5 needs one fixed alpha in [0, 1], got alpha={alpha!r}")
    alpha = float(alpha)
    if not np.isfinite(alpha) or not 0 <= alpha <= 1:
        raise ValueError(f"Theorem 4.5 needs alpha in [0, 1], got alpha={alpha!r}")
    nf = model.lowrank_
    if alpha == 0:
        g = np.zeros((1, nf.rank))
    else:
        g = (1.0 / (nf.s2 + theory.limit_lam(model._lam, alpha)))[None]
    return _out(model, predict_coefficients(nf, Xq, g, _kern_of(model))[0])


def eigenvalues(model: LowRankModel) -> FloatArray:
    """The ``r`` non-zero eigenvalues ``s^2`` of ``K~`` (ascending); the other ``n - r`` are 0."""
    check_is_fitted(model)
    return model.lowrank_.s2


def B_diag(model: LowRankModel, steps: int | None = None, alpha: Any = None) -> FloatArray:
    """Diagonals of ``B^(1..steps)`` (eqs. 11-12) at the ``r`` eigenvalues of ``K~``: ``(steps, r)``
    (the filters of its ``n - r`` zero eigenvalues are 0)."""
    return theory.B_diag_path(eigenvalues(model), model._lam, model._steps_alphas(steps, alpha))


def _validation_sums(model: LowRankModel, X_val: Any, y_val: Any) -> tuple[FloatArray, FloatArray, float]:
    X_val = _query(model, X_val, "X_val")
    y_val = _as_float(y_val, "y_val")
    p = model.lowrank_.z.shape[1]
    if y_val.shape[0] != X_val.shape[0] or (y_val.size // max(y_val.shape[0], 1)) != p:
        raise ValueError(
            f"y_val must have shape ({X_val.shape[0]}, {p}) to match X_val and the training targets, "
            f"got y_val.shape={y_val.shape}")
    nf = model.lowrank_
    return gram_sums(X_val, y_val, nf.centres, nf.M, _kern_of(model))


def _greedy(model: LowRankModel, X_val: Any, y_val: Any, steps: int | None,
            clip: bool) -> tuple[FloatArray, FloatArray]:
    steps = model.steps if steps is None else steps
    theory.alpha_sequence(0.0, steps)  # validates steps
    Q, R, yy = _validation_sums(model, X_val, y_val)
    return greedy_alphas(model.lowrank_, Q, R, yy, model._lam, steps, clip)


_METHODS = ("greedy", "joint", "gcv", "gcv_joint")


def _method(method: Any, X_val: Any, y_val: Any) -> str:
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, got method={method!r}")
    if method.startswith("gcv"):
        if X_val is not None or y_val is not None:
            raise ValueError(f"method={method!r} uses the training data only: pass X_val=None and y_val=None")
    elif X_val is None or y_val is None:
        raise ValueError(f"method={method!r} needs validation data: X_val and y_val must be given")
    return method




def optimal_alphas(model: LowRankModel, X_val: Any, y_val: Any, steps: int | None = None,
                   clip: bool = False, method: str = "greedy") -> FloatArray:
    """Greedy ``alpha*`` (Algorithm 1, eq. 16) from ``r x r`` validation sums, the joint optimum
    (:func:`sdlib.krr.joint.joint_optimum`, through :meth:`path` at ``X_val``), or GCV on ``K~``
    (:mod:`sdlib.krr.gcv`, :func:`gcv_spectrum`)."""
    if _method(method, X_val, y_val).startswith("gcv"):
        check_is_fitted(model)
        d, z = gcv_spectrum(model.lowrank_)
        choose = gcv.greedy_alphas if method == "gcv" else gcv.joint_alphas
        return choose(d, z, model._lam, model.steps if steps is None else steps, clip=clip).alphas
    if method == "joint":
        if is_dask(X_val) or is_dask(y_val):
            X_val, y_val = np.asarray(X_val), np.asarray(y_val)
        return joint.joint_optimum(model, X_val, y_val, steps, clip=clip).alphas
    return _greedy(model, X_val, y_val, steps, clip)[0]


def optimal_path(model: LowRankModel, Xq: Any, X_val: Any, y_val: Any, steps: int | None = None,
                 clip: bool = False, method: str = "greedy") -> tuple[FloatArray, Any]:
    """``(alpha*(2..steps), f(Xq, beta^(tau)) for tau = 1..steps)`` on the Nyström kernel."""
    Xq = _query(model, Xq)
    if _method(method, X_val, y_val) != "greedy":
        alphas = optimal_alphas(model, X_val, y_val, steps, clip, method)
        return alphas, path(model, Xq, alphas.shape[0] + 1, alphas)
    alphas, g = _greedy(model, X_val, y_val, steps, clip)
    return alphas, _out(model, predict_coefficients(model.lowrank_, Xq, g, _kern_of(model)))


def grid(model: LowRankModel, Xq: Any, lams: ArrayLike, alphas: ArrayLike, steps: int) -> Any:
    """:meth:`~sdlib.krr.estimator.LowRankModel.grid` on the Nyström kernel (``K~`` does not depend on
    ``lam``): ``(len(lams), len(alphas), steps, q[, p])``."""
    Xq = _query(model, Xq)
    lams = np.atleast_1d(np.asarray(lams, dtype=float))
    alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
    for lam in lams.tolist():
        theory.check_lam(lam, "lams")
    if not np.all(np.isfinite(alphas)):
        raise ValueError(f"alphas must be finite, got alphas={alphas.tolist()!r}")
    theory.alpha_sequence(0.0, steps)
    s2 = model.lowrank_.s2
    g = np.stack([step_coefficients(s2, lam, np.full(steps - 1, a)) for lam in lams for a in alphas])
    F = predict_coefficients(model.lowrank_, Xq, g.reshape(-1, s2.shape[0]), _kern_of(model))
    F = F.reshape((lams.size, alphas.size, steps) + F.shape[1:])
    return _out(model, F)


def unsupported(name: str) -> None:
    raise ValueError(f"{name} has no low-rank route: it needs the exact kernel matrix (n_components=None)")


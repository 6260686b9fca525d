"""Self-distillation of kernel ridge regression in closed form (Sections 3-4 of the paper).

One factorisation serves every step. With ``R = (K + lam I)^-1`` and the targets of step ``tau``

    t^(1) = y,    t^(tau) = alpha^(tau) y + (1 - alpha^(tau)) y^(tau-1)            (eqs. 3-5)

the dual coefficients are ``c^(tau) = R t^(tau)`` and the training predictions are
``y^(tau) = K c^(tau) = t^(tau) - lam c^(tau)``: a step needs one pair of triangular solves with the
Cholesky factor of ``K + lam I`` and nothing else of size ``n^2``. Predictions at query points are
one matrix product ``kappa(Xq, X) [c^(1) ... c^(tau)]`` at the end. Spectral quantities
(``B^(tau)``, many ``lam`` at once) use the eigendecomposition of ``K``, computed on demand and
cached, with ``(D + lam I)^-1`` forms only.

Longer than 500 lines because it is one class, scikit-learn's estimator: every public method
validates its arguments, then dispatches to the exact engine here or to the Nyström one
(:mod:`sdlib.krr.lowrank_methods`); the numerics live in :mod:`sdlib.krr.theory`,
:mod:`sdlib.krr.joint`, :mod:`sdlib.krr.gcv` and :mod:`sdlib.krr._blas`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import linalg
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_array, check_is_fitted

from sdlib.krr import _blas, gcv, joint, lowrank_methods, theory
from sdlib.krr.kernels import KernelSpec, check_kernel, check_kernel_params, kernel_matrix

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _validate_data = None

__all__ = ["KernelSelfDistillation", "IndefiniteKernelWarning"]

_BLOCK = 512  # rows per block of the scans of K (_check_gram), so that no second n x n array is made


FloatArray = NDArray[np.float64]

#: Relative asymmetry ``max|K - K^T| / max|K|`` above which a Gram matrix is refused: far above the
#: rounding of a kernel evaluated in float64 (a few ulps), far below a kernel that is not symmetric.
_ASYMMETRY_TOL = 1e-10
#: Eigenvalues of K below ``-_NEGATIVE_TOL * max|d|`` make it indefinite (a warning); the rounding
#: of ``eigh`` is about ``n eps max|d|``, and the negatives within it are clipped to 0.
_NEGATIVE_TOL = 1e-8


class IndefiniteKernelWarning(RuntimeWarning):
    """The kernel matrix has clearly negative eigenvalues: the paper's Section 4 assumes ``K >= 0``."""


def _check_gram(K: FloatArray, kernel: Any) -> None:
    """Refuse a Gram matrix that is not finite or not symmetric (the Cholesky reads one triangle
    and would silently solve with another matrix), naming the largest asymmetry; row blocks, so
    no second ``n x n`` array."""
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"the kernel matrix must be square, got shape {K.shape} (kernel={kernel!r})")
    n = K.shape[0]
    asym, scale = 0.0, 0.0
    for s in range(0, n, _BLOCK):
        rows = K[s:s + _BLOCK]
        if not np.isfinite(rows).all():
            i, j = np.argwhere(~np.isfinite(rows))[0]
            raise ValueError(
                f"the kernel matrix is not finite: K[{s + i}, {j}]={float(rows[i, j])!r} (kernel={kernel!r})")
        asym = max(asym, float(np.abs(rows - K[:, s:s + _BLOCK].T).max(initial=0.0)))
        scale = max(scale, float(np.abs(rows).max(initial=0.0)))
    if asym > _ASYMMETRY_TOL * scale:
        raise ValueError(
            f"the kernel matrix is not symmetric: max|K - K^T| = {asym:.3g} (max|K| = {scale:.3g}, "
            f"kernel={kernel!r}); give a symmetric kernel, e.g. (K + K.T) / 2")


#: Ways to choose the weights ``alpha^(2..steps)`` (``optimal_alphas``): from validation data
#: (``"greedy"``, ``"joint"``) or from the training data alone by GCV (:mod:`sdlib.krr.gcv`).
METHODS = ("greedy", "joint", "gcv", "gcv_joint")
_GCV_METHODS = ("gcv", "gcv_joint")


def _check_method(method: str) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got method={method!r}")
    return method


def _check_val(method: str, X_val: Any, y_val: Any) -> None:
    """GCV uses the training data only; the other methods need both validation arrays."""
    if method in _GCV_METHODS:
        if X_val is not None or y_val is not None:
            raise ValueError(f"method={method!r} uses the training data only: pass X_val=None and y_val=None")
    elif X_val is None or y_val is None:
        raise ValueError(f"method={method!r} needs validation data: X_val and y_val must be given "
                         f"(got X_val={'None' if X_val is None else 'an array'}, "
                         f"y_val={'None' if y_val is None else 'an array'})")


class KernelSelfDistillation(RegressorMixin, BaseEstimator):
    """Kernel ridge regression self-distilled for ``steps`` steps with weights ``alpha``.

    Step 1 is kernel ridge regression on ``y``; step ``tau >= 2`` refits on
    ``alpha^(tau) y + (1 - alpha^(tau)) y^(tau-1)`` (problem (1), minimiser (2), recursion (3)-(5)).

    Parameters
    ----------
    kernel : str or callable, default="rbf"
        Kernel name as in :func:`sklearn.metrics.pairwise.pairwise_kernels` (``"rbf"`` is
        ``exp(-gamma ||x - x'||^2)``), ``"precomputed"``, or a callable.
    gamma, degree, coef0 : float
        Kernel parameters with scikit-learn's meaning; ``gamma=None`` is ``1 / n_features``.
    kernel_params : dict, optional
        Extra keyword arguments for a callable kernel.
    lam : float, default=1.0
        The paper's ridge penalty lambda > 0. Note: scikit-learn's ``KernelRidge`` calls this
        ``alpha``; here ``alpha`` is the paper's weight of the ground-truth targets.
    steps : int, default=1
        Number of steps ``tau`` used by :meth:`predict` (1 = plain kernel ridge regression).
    alpha : float or sequence of float, default=0.0
        The paper's weight ``alpha^(2..steps)`` of the ground-truth targets: one value for every
        step, or ``steps - 1`` values. Any real number is allowed (Theorem 4.4).
    n_components : int, optional
        ``None`` (default): the exact engine on ``K``. An integer ``m``: every method on the
        Nyström kernel of ``m`` centres (:mod:`sdlib.krr.lowrank`): ``O(n m^2)`` time, ``O(m^2)`` memory
        and numpy or ``dask.array`` inputs. Choosing ``m``: the steps differ from plain ridge
        regression only in the directions with eigenvalues near ``lam`` (eqs. 12-16), so ``m`` must
        reach them: a :class:`~sdlib.krr.lowrank.LowRankWarning` says when the smallest retained
        eigenvalue is still above ``lam``; ``lowrank_.residual_trace / lam`` (estimated
        ``trace(K - K~)``) small means every step is close to the exact one; otherwise refit with
        ``2 m`` and keep ``m`` once ``alpha*`` stops moving (the accuracy against ``m`` is measured
        in ``benchmarks/bench_lowrank.py``).
    random_state : int, RandomState or None
        Seeds the centres (scikit-learn's convention; the uniform centres are those of
        :class:`sklearn.kernel_approximation.Nystroem` with the same ``random_state``).
    centres : {"uniform", "leverage"}, default="uniform"
        Uniformly sampled centres, or sampled by approximate ridge leverage scores at ``lam``
        (:func:`sdlib.krr.lowrank.select_centres`; a second pass over the data).

    Attributes
    ----------
    X_fit_ : ndarray (n, d)
        Training inputs.
    dual_coef_ : ndarray (n,) or (n, p)
        ``c^(steps) = (K + lam I)^-1 t^(steps)``, so that ``predict(Xq) = kappa(Xq, X) dual_coef_``.
    n_features_in_ : int
    """

    def __init__(
        self,
        kernel: KernelSpec = "rbf",
        *,
        gamma: float | None = None,
        degree: float = 3,
        coef0: float = 1,
        kernel_params: dict[str, Any] | None = None,
        lam: float = 1.0,
        steps: int = 1,
        alpha: float | ArrayLike = 0.0,
        n_components: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        centres: str = "uniform",
    ) -> None:
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.kernel_params = kernel_params
        self.lam = lam
        self.steps = steps
        self.alpha = alpha
        self.n_components = n_components
        self.random_state = random_state
        self.centres = centres

    # ------------------------------------------------------------------ scikit-learn plumbing
    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.kernel == "precomputed"
        tags.target_tags.multi_output = True
        return tags

    def _kernel(self, X: FloatArray, Y: FloatArray | None = None) -> FloatArray:
        return kernel_matrix(
            X,
            Y,
            self.kernel,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
            kernel_params=self.kernel_params,
        )

    def _validate_X(self, X: ArrayLike, reset: bool) -> FloatArray:
        if _validate_data is not None:
            return _validate_data(self, X, reset=reset, dtype=np.float64)
        return self._validate_data(X, reset=reset, dtype=np.float64)  # pragma: no cover

    # ------------------------------------------------------------------ fitting
    def fit(self, X: ArrayLike, y: ArrayLike) -> KernelSelfDistillation:
        """Factorise ``K + lam I`` once and compute ``c^(steps)`` for :meth:`predict`.

        The first fit is eq. (2) with ``y_1 = y_2 = y``; later steps follow eqs. (3)-(5). ``X`` (a
        precomputed ``K``) and ``y`` are copied, never written to. A kernel matrix that is not
        finite or not symmetric, and a non-finite ``gamma``, ``degree`` or ``coef0`` (or a
        ``gamma <= 0`` for ``rbf``, ``laplacian``, ``chi2``), raise ``ValueError`` naming the value.
        """
        check_kernel_params(self.kernel, self.gamma, self.degree, self.coef0)
        if self.n_components is not None:
            return lowrank_methods.fit(self, X, y)
        check_kernel(self.kernel)
        lam = theory.check_lam(self.lam)
        if _validate_data is not None:
            X, y = _validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        else:  # pragma: no cover
            X, y = self._validate_data(X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        alphas = theory.alpha_sequence(self.alpha, self.steps)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        # the model's own copy: a caller's later edit of X (a precomputed K) cannot change it
        self.X_fit_ = np.array(X, dtype=np.float64, copy=True)
        self.y_fit_ = np.array(y, dtype=np.float64, copy=True).reshape(y.shape[0], -1)
        K = self._kernel(self.X_fit_)  # a new array, never X_fit_ itself (kernel_matrix copies)
        _check_gram(K, self.kernel)
        K.flat[:: K.shape[0] + 1] += lam
        # Cholesky in place: the factor replaces K, so the fit holds one n x n array.
        try:
            # K is symmetric and C-ordered, so K.T is the same matrix in Fortran order: factorising
            # it in place avoids LAPACK's copy (by blocks for large n: sdlib.krr._blas, OpenBLAS's defect).
            self._cho = (_blas.cholesky_inplace(K.T), True)
        except linalg.LinAlgError as err:
            raise ValueError(
                f"K + lam I is not positive definite (lam={self.lam!r}); the kernel "
                f"{self.kernel!r} may be indefinite"
            ) from err
        self._lam = lam
        self._eig: tuple[FloatArray, FloatArray] | None = None
        C, _ = self._dual_path(alphas)
        self.dual_coef_ = self._shape_out(C[-1])
        return self

    def _solve(self, T: FloatArray) -> FloatArray:
        """``(K + lam I)^-1 T`` by two triangular solves with the Cholesky factor, on one thread.

        A step is bound by reading the factor from memory; on several threads its calls wait for
        each other, and far longer when another process holds a core (``benchmarks/bench_krr.py``).
        A single right-hand side goes to BLAS ``trsv`` directly (LAPACK's ``potrs`` takes a slower
        blocked path for one column); several (multi-output targets) to one BLAS-3 solve each way.
        """
        L = self._cho[0]
        with _blas.one_thread():
            if T.ndim == 1 or T.shape[1] == 1:
                return _blas.cho_solve_vector(L, T.reshape(-1)).reshape(T.shape)
            z = linalg.solve_triangular(L, T, lower=True, check_finite=False)
            return linalg.solve_triangular(L, z, lower=True, trans="T", check_finite=False, overwrite_b=True)

    def _shape_out(self, A: FloatArray) -> FloatArray:
        # (..., n, 1) -> (..., n) for a 1-d target, as scikit-learn estimators return.
        return A[..., 0] if self._y_1d else A

    def _dual_path(self, alphas: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Dual coefficients ``c^(tau)`` and training predictions ``y^(tau)``, ``tau = 1..steps``.

        Eq. (5) step by step, with ``y^(tau) = t^(tau) - lam c^(tau)`` (eq. 9:
        ``K (K + lam I)^-1 = I - lam (K + lam I)^-1``) instead of a product with ``K``.
        """
        y = self.y_fit_
        steps = alphas.shape[0] + 1
        C = np.empty((steps,) + y.shape)
        Y = np.empty((steps,) + y.shape)
        t = y
        with _blas.one_thread():  # sequential steps bound by memory: see _solve
            for tau in range(steps):
                if tau:
                    a = alphas[tau - 1]
                    t = a * y + (1.0 - a) * Y[tau - 1]
                C[tau] = self._solve(t)
                np.subtract(t, self._lam * C[tau], out=Y[tau])
        return C, Y

    # ------------------------------------------------------------------ public API
    def _steps_alphas(self, steps: int | None, alpha: Any) -> FloatArray:
        steps = self.steps if steps is None else steps
        alpha = self.alpha if alpha is None else alpha
        return theory.alpha_sequence(alpha, steps)

    def _check_query(self, Xq: ArrayLike, name: str = "Xq") -> FloatArray:
        check_is_fitted(self)
        Xq = check_array(Xq, dtype=np.float64, input_name=name)
        if self.kernel != "precomputed" and Xq.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {Xq.shape[1]} features, but the model was fitted with "
                f"{self.n_features_in_}"
            )
        return Xq

    def predict(self, X: ArrayLike) -> FloatArray:
        """``f(x, beta^(steps))`` (eq. 5) with the estimator's own ``steps`` and ``alpha``."""
        if self.n_components is not None:
            return lowrank_methods.predict(self, X)
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._kernel(X, self.X_fit_) @ self.dual_coef_

    def path(self, Xq: ArrayLike, steps: int | None = None, alpha: Any = None) -> FloatArray:
        """``f(Xq, beta^(tau))`` for ``tau = 1..steps`` (eqs. 5 and 7), shape ``(steps, m[, p])``.

        ``alpha`` is one weight for every step or the ``steps - 1`` weights ``alpha^(2..steps)``;
        defaults are the estimator's ``steps`` and ``alpha``.
        """
        if self.n_components is not None:
            return lowrank_methods.path(self, Xq, steps, alpha)
        Xq = self._check_query(Xq)
        C, _ = self._dual_path(self._steps_alphas(steps, alpha))
        return self._shape_out(self._predict_duals(Xq, C))

    def _predict_duals(self, Xq: FloatArray, C: FloatArray) -> FloatArray:
        # One GEMM for every step: (m, n) @ (n, steps*p).
        steps, n, p = C.shape
        F = self._kernel(Xq, self.X_fit_) @ C.transpose(1, 0, 2).reshape(n, steps * p)
        return F.reshape(-1, steps, p).transpose(1, 0, 2)

    def train_path(self, steps: int | None = None, alpha: Any = None) -> FloatArray:
        """Training-set predictions ``y^(tau)`` of eq. (6), ``tau = 1..steps``: ``(steps, n[, p])``."""
        if self.n_components is not None:
            return lowrank_methods.train_path(self, steps, alpha)
        check_is_fitted(self)
        _, Y = self._dual_path(self._steps_alphas(steps, alpha))
        return self._shape_out(Y)

    def limit(self, Xq: ArrayLike, alpha: float | None = None) -> FloatArray:
        """``f(x, beta^(inf))`` of Theorem 4.5 for a fixed ``alpha`` in ``[0, 1]``, shape ``(m[, p])``.

        The fixed point of eqs. (3)-(5) has dual coefficients ``(K + lam/alpha I)^-1 y``, i.e. the
        limit is kernel ridge regression with ``lam / alpha`` (eq. 17) at every ``x``; this equals
        the theorem's ``alpha f(x, beta^(1)) + (1 - alpha) f(x, gamma^(inf))``. ``alpha = 0`` gives
        the zero function.
        """
        if self.n_components is not None:
            return lowrank_methods.limit(self, Xq, alpha)
        Xq = self._check_query(Xq)
        alpha = self.alpha if alpha is None else alpha
        if np.ndim(alpha) != 0:
            raise ValueError(f"Theorem 4.5 needs one fixed alpha in [0, 1], got alpha={alpha!r}")
        alpha = float(alpha)
        if not np.isfinite(alpha) or not 0 <= alpha <= 1:
            raise ValueError(f"Theorem 4.5 needs alpha in [0, 1], got alpha={alpha!r}")
        if alpha == 0:
            return self._shape_out(np.zeros((Xq.shape[0], self.y_fit_.shape[1])))
        d, V = self._eigh()
        lam_inf = theory.limit_lam(self._lam, alpha)
        coef = V @ ((V.T @ self.y_fit_) / (d + lam_inf)[:, None])
        return self._shape_out(self._kernel(Xq, self.X_fit_) @ coef)

    def _eigh(self) -> tuple[FloatArray, FloatArray]:
        """Eigendecomposition of ``K`` (eigenvalues ascending, tiny negatives clipped to 0; clearly
        negative ones, of an indefinite kernel, kept with an :class:`IndefiniteKernelWarning`)."""
        if self.n_components is not None:
            lowrank_methods.unsupported("the eigenvectors of K (SpectralFilters, GCV)")
        check_is_fitted(self)
        if self._eig is None:
            K = self._kernel(self.X_fit_)
            # Divide and conquer ("evd") is the fastest LAPACK driver for the whole spectrum; K.T
            # is K in Fortran order, so LAPACK works in place.
            d, V = linalg.eigh(K.T, overwrite_a=True, check_finite=False, driver="evd")
            tol = _NEGATIVE_TOL * float(np.abs(d).max(initial=0.0))
            if d.size and d[0] < -tol:
                # clipping these would make the spectral forms (limit, B_diag, grid) disagree with
                # the path, which solves with K itself: keep them, and say so
                warnings.warn(
                    f"the kernel matrix is indefinite: its smallest eigenvalue is {d[0]:.6g} (largest "
                    f"{d[-1]:.6g}, kernel={self.kernel!r}); Section 4 assumes a positive semi-definite "
                    "kernel, and the spectral quantities use these negative eigenvalues as they are",
                    IndefiniteKernelWarning, stacklevel=3)
                d = np.where(d > -tol, np.maximum(d, 0.0), d)
            else:
                d = np.clip(d, 0.0, None)
            self._eig = (d, V)
        return self._eig

    @property
    def eigenvalues_(self) -> FloatArray:
        """Eigenvalues ``d_1 <= ... <= d_n`` of ``K`` (Section 4.2), computed on first use."""
        if self.n_components is not None:
            return lowrank_methods.eigenvalues(self)
        return self._eigh()[0]

    def B_diag(self, steps: int | None = None, alpha: Any = None) -> FloatArray:
        """Diagonals of ``B^(1..steps)`` (eqs. 11-12), eigenvalues ascending: ``(steps, n)``."""
        if self.n_components is not None:
            return lowrank_methods.B_diag(self, steps, alpha)
        alphas = self._steps_alphas(steps, alpha)
        return theory.B_diag_path(self.eigenvalues_, self._lam, alphas)

    def optimal_alphas(
        self,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        steps: int | None = None,
        clip: bool = False,
        method: str = "greedy",
    ) -> FloatArray:
        """Optimal weights ``alpha^(2..steps)`` for the validation error: ``(steps-1,)``.

        ``method="greedy"`` (default): Algorithm 1 and eq. (16), as in the paper: ``alpha*(tau)``
        minimises the validation error of step ``tau`` given the earlier ``alpha*``. With
        ``clip=True`` each is clipped to ``[0, 1]`` before the next step uses it (footnotes 9 and
        11). A zero denominator in eq. (16) gives ``alpha* = 1`` with a warning (see
        :func:`sdlib.krr.theory.alpha_star`).

        ``method="joint"`` (beyond the paper): the weights that minimise the validation error after
        ``steps`` steps jointly, over all reals (``clip=False``) or over ``[0, 1]`` (``clip=True``),
        from the coefficients of eq. (6) by least squares (:func:`sdlib.krr.joint.joint_optimum`); a
        global optimum. Its weights can be far outside ``[0, 1]``.

        ``method="gcv"`` and ``method="gcv_joint"`` (beyond the paper: it has no criterion without
        a hold-out set) take no validation data (``X_val = y_val = None``): the training
        predictions of step ``tau`` are the linear smoother ``S = V B^(tau) V^T`` (eq. 10), and
        ``alpha`` minimises generalised cross-validation ``GCV = n ||(I - S) y||^2 / (n - tr S)^2``
        (Craven & Wahba 1979; Golub, Heath & Wahba 1979) in closed form from the
        eigendecomposition of ``K``: ``"gcv"`` greedily, each step given the earlier weights (as
        Algorithm 1), ``"gcv_joint"`` for the smoother after ``steps`` steps over all weights
        jointly; ``clip=True`` minimises over ``[0, 1]``. See :mod:`sdlib.krr.gcv`.

        Multi-output targets use the Frobenius norm.
        """
        if self.n_components is not None:
            return lowrank_methods.optimal_alphas(self, X_val, y_val, steps, clip, method)
        _check_val(_check_method(method), X_val, y_val)
        if method in _GCV_METHODS:
            return self._gcv(steps, clip, method).alphas
        if method == "joint":
            return joint.joint_optimum(self, X_val, y_val, steps, clip=clip).alphas
        alphas, _ = self._optimal_dual_path(X_val, y_val, steps, clip)
        return alphas

    def optimal_path(
        self,
        Xq: ArrayLike,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        steps: int | None = None,
        clip: bool = False,
        method: str = "greedy",
    ) -> tuple[FloatArray, FloatArray]:
        """Optimal weights and the path: ``(alpha^(2..steps), f(Xq, beta^(tau)) for tau = 1..steps)``.

        The same as ``a = optimal_alphas(X_val, y_val, steps, clip, method)`` followed by
        ``path(Xq, steps, a)``. For ``method="greedy"`` (Algorithm 1) at half the cost: the step
        with ``alpha*`` is eq. (7), ``c^(tau) = alpha* c^(1) + (1 - alpha*) c^(tau)_{alpha=0}``, and
        needs no solve of its own. ``method="gcv"``/``"gcv_joint"`` take no validation data.
        """
        if self.n_components is not None:
            return lowrank_methods.optimal_path(self, Xq, X_val, y_val, steps, clip, method)
        Xq = self._check_query(Xq)
        _check_val(_check_method(method), X_val, y_val)
        if method in ("joint",) + _GCV_METHODS:
            alphas = self.optimal_alphas(X_val, y_val, steps, clip=clip, method=method)
            return alphas, self.path(Xq, steps=alphas.shape[0] + 1, alpha=alphas)
        alphas, C = self._optimal_dual_path(X_val, y_val, steps, clip)
        return alphas, self._shape_out(self._predict_duals(Xq, C))

    def _gcv(self, steps: int | None, clip: bool, method: str) -> gcv.GCVResult:
        """GCV weights from the cached eigendecomposition of ``K`` (:mod:`sdlib.krr.gcv`)."""
        check_is_fitted(self)
        steps = self.steps if steps is None else steps
        d, V = self._eigh()
        choose = gcv.greedy_alphas if method == "gcv" else gcv.joint_alphas
        return choose(d, V.T @ self.y_fit_, self._lam, steps, clip=clip)

    def _optimal_dual_path(
        self, X_val: ArrayLike, y_val: ArrayLike, steps: int | None, clip: bool
    ) -> tuple[FloatArray, FloatArray]:
        X_val = self._check_query(X_val, "X_val")
        y_val = check_array(y_val, dtype=np.float64, ensure_2d=False, input_name="y_val")
        y_val = y_val.reshape(y_val.shape[0], -1)
        if y_val.shape != (X_val.shape[0], self.y_fit_.shape[1]):
            raise ValueError(
                f"y_val must have shape ({X_val.shape[0]}, {self.y_fit_.shape[1]}) to match X_val "
                f"and the training targets, got y_val.shape={y_val.shape}"
            )
        steps = self.steps if steps is None else steps
        theory.alpha_sequence(0.0, steps)  # validates steps
        K_val = self._kernel(X_val, self.X_fit_)
        y = self.y_fit_
        C = np.empty((steps,) + y.shape)
        C[0] = self._solve(y)
        y1 = y - self._lam * C[0]
        val1 = K_val @ C[0]
        y_prev = y1
        out = np.empty(steps - 1)
        # one thread for the sequential steps (the solves and the product with K_val): see _solve
        with warnings.catch_warnings(), _blas.one_thread():
            warnings.simplefilter("always", theory.DegenerateAlphaWarning)
            for tau in range(1, steps):
                c0 = self._solve(y_prev)
                a = theory.alpha_star(y_val, val1, K_val @ c0)
                if clip:
                    a = float(np.clip(a, 0.0, 1.0))
                out[tau - 1] = a
                # Eq. (7) for the duals and for the training predictions y^(tau).
                np.multiply(1.0 - a, c0, out=C[tau])
                C[tau] += a * C[0]
                y_prev = a * y1 + (1.0 - a) * (y_prev - self._lam * c0)
        return out, C

    def grid(
        self,
        Xq: ArrayLike,
        lams: ArrayLike,
        alphas: ArrayLike,
        steps: int,
    ) -> FloatArray:
        """``f(Xq, beta^(tau))`` for every ``lam`` in ``lams``, fixed ``alpha`` in ``alphas`` and
        ``tau = 1..steps`` from one eigendecomposition of ``K``: shape
        ``(len(lams), len(alphas), steps, m[, p])``.

        Eq. (13): ``f(x, beta^(tau)) = kappa(x, X) V (D + lam I)^-1 T^(tau) V^T y`` with the
        diagonal targets ``T^(1) = I`` and ``T^(tau) = alpha I + (1 - alpha) B^(tau-1)``.
        """
        if self.n_components is not None:
            return lowrank_methods.grid(self, Xq, lams, alphas, steps)
        Xq = self._check_query(Xq)
        lams = np.atleast_1d(np.asarray(lams, dtype=float))
        alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
        for lam in lams.tolist():  # Python floats, so that the message shows lams=-1.0
            theory.check_lam(lam, "lams")
        if not np.all(np.isfinite(alphas)):
            raise ValueError(f"alphas must be finite, got alphas={alphas.tolist()!r}")
        theory.alpha_sequence(0.0, steps)
        d, V = self._eigh()
        if d.size and d[0] + lams.min() <= 0:   # an indefinite K: (D + lam I)^-1 must exist
            raise ValueError(f"K + lam I is not positive definite for lams={float(lams.min())!r}: the smallest "
                             f"eigenvalue of K is {float(d[0])!r}")
        P = self._kernel(Xq, self.X_fit_) @ V  # (m, n)
        z = V.T @ self.y_fit_  # (n, p)
        W = np.empty((lams.size, alphas.size, steps, d.size))
        for i, lam in enumerate(lams):
            inv = 1.0 / (d + lam)
            for j, alpha in enumerate(alphas):
                B = theory.B_diag_path(d, lam, np.full(steps - 1, alpha))
                W[i, j, 0] = inv
                W[i, j, 1:] = inv * (alpha + (1.0 - alpha) * B[:-1])
        # One GEMM per output column: (P diag(z_j)) W^T, (m, n) x (n, L*A*S).
        Wf = W.reshape(-1, d.size)
        F = np.empty(W.shape[:3] + (Xq.shape[0], z.shape[1]))
        for j in range(z.shape[1]):
            F[..., j] = ((P * z[:, j]) @ Wf.T).T.reshape(W.shape[:3] + (Xq.shape[0],))
        return self._shape_out(F)

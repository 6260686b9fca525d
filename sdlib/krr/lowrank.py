"""Self-distillation on a low-rank (Nyström) kernel: every closed form in ``m`` numbers.

With ``m`` centres ``Z`` (rows of the training inputs) and ``N = K_mm^(-1/2)`` (the symmetric
pseudo-inverse square root), the Nyström features of the training inputs are ``C = K_nm N``
(``n x r``, ``r <= m`` the numerical rank of ``K_mm``) and the kernel is replaced by
``K~ = C C^T``. Write ``C^T C = W diag(s^2) W^T`` (an ``r x r`` eigendecomposition) and
``U = C W diag(1/s)``, so that ``K~ = U diag(s^2) U^T``: the ``s^2`` are the non-zero eigenvalues of
``K~``, and every formula of Section 4 holds with them in place of the ``d_k`` of ``K`` (the other
``n - r`` eigenvalues are 0, and so are their filters). With ``z = W^T C^T y`` (``r x p``):

* kernel ridge regression (eq. 2) on ``K~`` has the training predictions
  ``U diag(s^2 / (s^2 + lam)) U^T y`` and the predictions
  ``f(x) = k(x, Z) N W diag(1 / (s^2 + lam)) z`` (the primal form of ``K~``'s dual solution:
  ``C^T (C C^T + lam I)^-1 = (C^T C + lam I)^-1 C^T``);
* step ``tau`` of eqs. (3)-(5) has ``f(x, beta^(tau)) = k(x, Z) M diag(g^(tau)) z`` with
  ``M = N W`` and ``g^(1) = 1 / (s^2 + lam)``, ``g^(tau) = (alpha I + (1 - alpha) B^(tau-1)) / (s^2 + lam)``,
  where ``B^(tau)`` is the diagonal of eq. (12) at the eigenvalues ``s^2`` (as eq. 13 for ``K``);
* ``alpha*`` (eq. 16) needs only the validation Gram sums ``P^T P`` and ``P^T y_val`` of
  ``P = k(X_val, Z) M`` (``r x r`` and ``r x p``), after which each step costs ``O(r^2 p)``;
* the limit (Theorem 4.5) is kernel ridge regression with ``lam / alpha``: ``g = 1 / (s^2 + lam/alpha)``.

Nothing of size ``n x m`` is ever formed: one pass over the data accumulates ``C^T C`` and
``C^T y`` by row blocks (``O(m^2 + block m)`` memory, ``O(n m^2)`` time), on ``dask.array`` inputs as
a reduction over chunks on the workers of the current ``distributed`` client. Predictions at any
inputs (the training inputs included, :func:`train_path`) are blocked the same way.

The functions here work on arrays; :mod:`sdlib.krr.lowrank_methods` turns them into the methods of
:class:`sdlib.krr.estimator.KernelSelfDistillation` with ``n_components=m``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg
from scipy.linalg import blas
from sklearn.utils import check_random_state

from sdlib.krr import _blas, theory
from sdlib.krr.kernels import kernel_matrix

__all__ = [
    "CENTRES",
    "LowRankWarning",
    "NystromFit",
    "is_dask",
    "select_centres",
    "nystrom_fit",
    "gram_sums",
    "predict_coefficients",
    "step_coefficients",
    "greedy_alphas",
    "gcv_spectrum",
]

FloatArray = NDArray[np.float64]

#: Ways to choose the centres: uniformly at random (scikit-learn's ``Nystroem`` rule, the default)
#: or by approximate ridge leverage scores.
CENTRES = ("uniform", "leverage")
#: Bytes of one kernel block ``k(X_block, Z)`` (and its features): rows per block = this / (8 m).
BLOCK_BYTES = 32 * 2**20
#: Training rows sampled (uniformly) to estimate the trace of ``K - K~`` (``residual_trace``).
TRACE_SAMPLE = 1000


class LowRankWarning(UserWarning):
    """The Nyström approximation is too coarse for the quantities asked of it (see :class:`NystromFit`)."""


def is_dask(a: Any) -> bool:
    """True for a ``dask.array.Array`` (without importing dask when it is not in use)."""
    return type(a).__module__.split(".")[0] == "dask" and hasattr(a, "chunks")


def block_rows(m: int) -> int:
    """Rows per block so that a block of ``m`` kernel values per row stays near :data:`BLOCK_BYTES`."""
    return max(64, BLOCK_BYTES // (8 * max(int(m), 1)))


Kern = Callable[[FloatArray, FloatArray], FloatArray]


def make_kernel(kernel: Any, gamma: Any, degree: Any, coef0: Any, kernel_params: Any) -> Kern:
    """``k(X, Y)`` with fixed parameters, picklable (it travels to dask workers)."""
    return functools.partial(_kernel, kernel=kernel, gamma=gamma, degree=degree, coef0=coef0,
                             kernel_params=kernel_params)


def _kernel(X: FloatArray, Y: FloatArray, **kw: Any) -> FloatArray:
    return kernel_matrix(np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64), **kw)


# ---------------------------------------------------------------------------------------- passes
def _chunk_sums(X: FloatArray, Y: FloatArray, Z: FloatArray, P: FloatArray, kern: Kern,
                block: int) -> tuple[FloatArray, FloatArray, float]:
    """``(F^T F, F^T Y, ||Y||^2)`` with ``F = k(X, Z) P`` accumulated over row blocks of ``X``.

    ``F^T F`` by BLAS ``syrk`` (half the flops of a product), in a Fortran array updated in place.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(X.shape[0], -1)
    r = P.shape[1]
    G = np.zeros((r, r), order="F")
    b = np.zeros((r, Y.shape[1]))
    yy = 0.0
    for s in range(0, X.shape[0], block):
        F = kern(X[s:s + block], Z) @ P  # (block, r)
        # F.T is Fortran-ordered: syrk reads it without a copy and adds F^T F to G's upper triangle
        G = blas.dsyrk(1.0, F.T, beta=1.0, c=G, trans=0, lower=0, overwrite_c=1)
        b += F.T @ Y[s:s + block]
        yy += float(np.sum(Y[s:s + block] ** 2))
    G = np.triu(G)
    return G + np.triu(G, 1).T, b, yy


def _add(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def gram_sums(X: Any, Y: Any, Z: FloatArray, P: FloatArray, kern: Kern,
              block: int | None = None) -> tuple[FloatArray, FloatArray, float]:
    """``(F^T F, F^T Y, ||Y||^2)`` for ``F = k(X, Z) P``, without forming ``F`` (``n x r``).

    numpy inputs: one loop over row blocks. dask inputs: the same sums per chunk on the workers of
    the current ``distributed`` client (or dask's default scheduler), added pairwise in a tree.
    """
    block = block_rows(Z.shape[0]) if block is None else block
    if not (is_dask(X) or is_dask(Y)):
        return _chunk_sums(X, Y, Z, P, kern, block)
    import dask
    import dask.array as da

    X = da.asarray(X).rechunk({1: -1})
    Y = da.asarray(Y)
    Y = Y.reshape(Y.shape[0], -1).rechunk({0: X.chunks[0], 1: -1})
    Zd, Pd = dask.delayed(Z, pure=True), dask.delayed(P, pure=True)
    parts = [dask.delayed(_chunk_sums, pure=True)(x, y, Zd, Pd, kern, block)
             for x, y in zip(X.to_delayed().ravel(), Y.to_delayed().ravel(), strict=True)]
    while len(parts) > 1:  # a tree, so that no worker adds all the chunks' sums alone
        parts = [dask.delayed(_add)(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    (G, b, yy), = dask.compute(parts[0])
    return G, b, float(yy)


def _features_times(X: FloatArray, Z: FloatArray, MR: FloatArray, kern: Kern, block: int) -> FloatArray:
    """``k(X, Z) MR`` by row blocks of ``X``: ``(len(X), MR.shape[1])``."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[0], MR.shape[1]))
    for s in range(0, X.shape[0], block):
        out[s:s + block] = kern(X[s:s + block], Z) @ MR
    return out


def features_times(X: Any, Z: FloatArray, M: FloatArray, R: FloatArray, kern: Kern,
                   block: int | None = None) -> Any:
    """``k(X, Z) M R`` by row blocks; lazily, chunk by chunk, for a dask array ``X`` (a dask array)."""
    block = block_rows(Z.shape[0]) if block is None else block
    MR = M @ R
    if not is_dask(X):
        return _features_times(X, Z, MR, kern, block)
    import dask.array as da

    X = da.asarray(X).rechunk({1: -1})
    return X.map_blocks(_features_times, Z, MR, kern, block, dtype=np.float64,
                        chunks=(X.chunks[0], (MR.shape[1],)))


def _eigh(A: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``eigh`` of an ``m x m`` matrix on one BLAS thread: divide and conquer (``evd``), the fastest
    driver for the whole spectrum; on a shared machine threaded LAPACK waits for busy cores far
    longer than it computes (measured: 26 s wall for 2 s of CPU at m = 1,000 under load 12)."""
    with _blas.one_thread():
        return linalg.eigh(A, check_finite=False, driver="evd")


# ---------------------------------------------------------------------------------------- centres
def _rows(X: Any, idx: NDArray[np.intp]) -> FloatArray:
    rows = X[idx]
    if is_dask(rows):
        rows = rows.compute()
    return np.array(rows, dtype=np.float64)


def _inv_sqrt(Kmm: FloatArray) -> FloatArray:
    """Symmetric pseudo-inverse square root of ``K_mm``: ``V_r diag(e_r^(-1/2))``, ``m x r``.

    Eigenvalues at or below ``m eps e_max`` (numpy's rank rule) are below round-off and dropped:
    their directions would be amplified noise (scikit-learn's ``Nystroem`` clips them at ``1e-12``).
    """
    e, V = _eigh(Kmm)
    keep = e > Kmm.shape[0] * np.finfo(float).eps * max(float(e[-1]), 0.0)
    if not keep.any():
        raise ValueError("the kernel matrix of the centres is zero: no low-rank approximation exists")
    return V[:, keep] / np.sqrt(e[keep])


def leverage_scores(X: Any, Z: FloatArray, N: FloatArray, G: FloatArray, lam: float, kern: Kern,
                    block: int | None = None) -> Any:
    """Ridge leverage scores of ``K~ = C C^T``: ``l_i = c_i^T (C^T C + lam I)^-1 c_i`` (rows ``c_i``).

    These are the diagonal of ``K~ (K~ + lam I)^-1`` (eq. 9's smoother); lazily for a dask ``X``.
    """
    w, V = _eigh(G)
    R = V / np.sqrt(np.clip(w, 0.0, None) + lam)  # c_i^T R R^T c_i = l_i
    block = block_rows(Z.shape[0]) if block is None else block

    def scores(Xb: FloatArray) -> FloatArray:
        F = _features_times(Xb, Z, N @ R, kern, block)
        return np.einsum("ij,ij->i", F, F)

    if is_dask(X):
        import dask.array as da

        X = da.asarray(X).rechunk({1: -1})
        return X.map_blocks(scores, drop_axis=1, dtype=np.float64)
    return scores(X)


def select_centres(X: Any, m: int, kern: Kern, random_state: Any = None, method: str = "uniform",
                   lam: float | None = None) -> NDArray[np.intp]:
    """Indices of ``m`` training rows to serve as centres.

    ``"uniform"``: the first ``m`` of ``check_random_state(random_state).permutation(n)``, exactly
    the rows scikit-learn's :class:`~sklearn.kernel_approximation.Nystroem` picks for the same
    ``random_state``. ``"leverage"``: ``m`` rows drawn without replacement with probabilities
    proportional to the ridge leverage scores at ``lam`` (:func:`leverage_scores`) of a uniform
    Nyström approximation with ``m`` centres (a pilot pass): the sampling of Alaoui and Mahoney
    (2015) and Musco and Musco (2017), whose guarantees need ``m`` of the order of the effective
    dimension ``sum_k d_k / (d_k + lam)`` (times a log) rather than of the coherence of ``K``. The
    draw is the Gumbel top-``m`` rule (equivalent to sequential weighted sampling without
    replacement), so it works chunk by chunk on dask arrays.
    """
    n = int(X.shape[0])
    rng = check_random_state(random_state)
    idx = rng.permutation(n)[:m]
    if method == "uniform":
        return idx
    Z = _rows(X, idx)
    N = _inv_sqrt(kern(Z, Z))
    G, _, _ = gram_sums(X, np.zeros((n, 1)) if not is_dask(X) else _zeros_like_rows(X), Z, N, kern)
    scores = leverage_scores(X, Z, N, G, float(lam), kern)
    if is_dask(scores):
        import dask.array as da

        u = da.from_array(rng.random_sample(n), chunks=scores.chunks)
        keys = da.log(da.maximum(scores, 1e-300)) - da.log(-da.log(u))
        return np.asarray(da.argtopk(keys, m).compute(), dtype=np.intp)
    keys = np.log(np.maximum(scores, 1e-300)) - np.log(-np.log(rng.random_sample(n)))
    return np.argpartition(-keys, m - 1)[:m].astype(np.intp)


def _zeros_like_rows(X: Any) -> Any:
    import dask.array as da

    return da.zeros((X.shape[0], 1), chunks=(X.chunks[0], 1))


# ---------------------------------------------------------------------------------------- the fit
@dataclass(frozen=True)
class NystromFit:
    """A Nyström approximation ``K~ = C C^T`` of the training kernel in its eigenbasis.

    Attributes
    ----------
    centres : (m, d) the rows ``Z``; ``indices`` their rows in the training data.
    M : (m, r) ``N W``: ``k(x, Z) M`` are the coordinates of ``x`` in the eigenbasis of ``K~``.
    s2 : (r,) eigenvalues of ``K~`` (ascending, clipped at 0), the ``d_k`` of Section 4.2.
    z : (r, p) ``W^T C^T y``: the targets in that basis.
    n : number of training rows; ``yy`` is ``||y||^2``.
    residual_trace : an estimate of ``trace(K - K~)`` from :data:`TRACE_SAMPLE` uniformly sampled
        training rows (``n`` times their mean of ``k(x, x) - ||c(x)||^2``), and ``trace`` the same
        estimate of ``trace(K)``. ``K - K~`` is positive semi-definite, so ``||K - K~|| <=
        trace(K - K~)``: when ``residual_trace / lam`` is small, every step's filter (and
        ``alpha*``) moves by about that relative amount at most; when it is large there is no
        such guarantee (the bound is loose, so check ``alpha*`` against a larger ``m``).
    """

    centres: FloatArray
    indices: NDArray[np.intp]
    M: FloatArray
    s2: FloatArray
    z: FloatArray
    n: int
    yy: float
    residual_trace: float
    trace: float

    @property
    def rank(self) -> int:
        return int(self.s2.shape[0])

    @property
    def captured(self) -> float:
        """Estimated share of ``trace(K)`` that ``K~`` keeps: ``1 - residual_trace / trace``."""
        return 1.0 - self.residual_trace / self.trace if self.trace > 0 else float("nan")


def nystrom_fit(X: Any, Y: Any, m: int, kern: Kern, lam: float, random_state: Any = None,
                method: str = "uniform", block: int | None = None) -> NystromFit:
    """One pass over ``(X, Y)`` (numpy or dask arrays): centres, ``C^T C``, ``C^T Y``, eigenbasis.

    ``O(n m^2)`` time and ``O(m^2 + block m)`` memory (never ``n x m``).
    """
    n = int(X.shape[0])
    # one generator, first for the centres (as Nystroem: its first draw is the permutation), then
    # for the rows of the trace estimate, so that random_state fixes both
    rng = check_random_state(random_state)
    idx = select_centres(X, m, kern, rng, method, lam)
    Z = _rows(X, idx)
    N = _inv_sqrt(kern(Z, Z))
    G, b, yy = gram_sums(X, Y, Z, N, kern, block)
    s2, W = _eigh(G)
    s2 = np.clip(s2, 0.0, None)  # C^T C is positive semi-definite: negatives are round-off
    M = N @ W
    z = W.T @ b
    # trace(K - K~) from a uniform sample of rows: k(x, x) - ||k(x, Z) N||^2 for each
    t_idx = np.sort(rng.choice(n, size=min(n, TRACE_SAMPLE), replace=False))
    Xs = _rows(X, t_idx)
    # k(x, x) from the diagonals of 100 x 100 blocks: few calls, little memory
    diag = np.concatenate([np.diagonal(kern(Xs[i:i + 100], Xs[i:i + 100])) for i in range(0, len(Xs), 100)])
    Fs = kern(Xs, Z) @ N
    resid = np.clip(diag - np.einsum("ij,ij->i", Fs, Fs), 0.0, None)
    return NystromFit(Z, np.asarray(idx, dtype=np.intp), M, s2, z, n, yy,
                      float(n * resid.mean()), float(n * diag.mean()))


# ---------------------------------------------------------------------------------------- closed forms
def step_coefficients(s2: FloatArray, lam: float, alphas: FloatArray) -> FloatArray:
    """``g^(tau)``, ``tau = 1..steps``: ``f(x, beta^(tau)) = k(x, Z) M diag(g^(tau)) z``, shape
    ``(steps, r)``; ``g^(1) = 1/(s^2 + lam)``, ``g^(tau) = (alpha I + (1 - alpha) B^(tau-1)) / (s^2 + lam)``
    (eqs. 12-13 at the eigenvalues ``s^2``)."""
    inv = 1.0 / (s2 + lam)
    B = theory.B_diag_path(s2, lam, alphas)
    g = np.empty((alphas.shape[0] + 1, s2.shape[0]))
    g[0] = inv
    g[1:] = inv * (alphas[:, None] + (1.0 - alphas[:, None]) * B[:-1])
    return g


def predict_coefficients(fit: NystromFit, Xq: Any, g: FloatArray, kern: Kern,
                         block: int | None = None) -> Any:
    """``k(Xq, Z) M diag(g_k) z`` for every row ``g_k`` of ``g``: shape ``(k, q, p)`` (dask for dask ``Xq``)."""
    k, r = g.shape
    p = fit.z.shape[1]
    R = (g[:, :, None] * fit.z[None]).transpose(1, 0, 2).reshape(r, k * p)  # (r, k p)
    F = features_times(Xq, fit.centres, fit.M, R, kern, block)
    return F.reshape(F.shape[0], k, p).transpose(1, 0, 2)


def greedy_alphas(fit: NystromFit, Q: FloatArray, R: FloatArray, yy: float, lam: float, steps: int,
                  clip: bool) -> tuple[FloatArray, FloatArray]:
    """Algorithm 1 with eq. (16) from the validation Gram sums ``Q = P^T P``, ``R = P^T y_val``,
    ``yy = ||y_val||^2`` (``P = k(X_val, Z) M``): ``(alpha*(2..steps), g^(1..steps))``.

    A prediction with coefficients ``g`` is ``P diag(g) z``; with ``D = diag(g0 - g1) z`` and
    ``V = diag(g1) z``, eq. (16) is ``alpha* = 1 - <P D, y_val - P V> / ||P D||^2`` with
    ``<P D, y_val> = sum(D * R)`` and ``<P D, P V> = sum(D * Q V)``. A zero denominator gives
    ``alpha* = 1`` with a :class:`~sdlib.krr.theory.DegenerateAlphaWarning`, as in
    :func:`sdlib.krr.theory.alpha_star`.
    """
    s2, z = fit.s2, fit.z
    inv = 1.0 / (s2 + lam)
    a = s2 * inv
    g = np.empty((steps, s2.shape[0]))
    g[0] = inv
    T_prev = np.ones_like(s2)  # targets of step tau-1 in the eigenbasis: q = T z
    V = inv[:, None] * z
    QV = Q @ V
    out = np.empty(steps - 1)
    for tau in range(1, steps):
        g0 = inv * a * T_prev
        D = (g0 - inv)[:, None] * z
        QD = Q @ D
        den = float(np.sum(D * QD))
        scale = max(float(np.sum(V * QV)), float(np.sum((V + D) * (QV + QD))), 1e-300)
        if not np.isfinite(den) or den <= 1e-24 * scale:
            warnings.warn(
                "alpha* is undefined: the alpha=0 and first-step validation predictions coincide "
                "(zero denominator in eq. 16); returning alpha*=1.0", theory.DegenerateAlphaWarning,
                stacklevel=3)
            alpha = 1.0
        else:
            alpha = 1.0 - (float(np.sum(D * R)) - float(np.sum(D * QV))) / den
        if clip:
            alpha = float(np.clip(alpha, 0.0, 1.0))
        out[tau - 1] = alpha
        T_prev = alpha + (1.0 - alpha) * a * T_prev
        g[tau] = inv * T_prev
    return out, g

def gcv_spectrum(fit: NystromFit) -> tuple[FloatArray, FloatArray]:
    """``(d, z)`` of ``K~`` for :mod:`sdlib.krr.gcv`: its ``n`` eigenvalues (``n - r`` zeros, then ``s^2``)
    and the targets' coordinates, the ``n - r`` directions of eigenvalue 0 lumped into one (GCV
    needs only ``sum_j z_kj^2`` per direction, and their filters are all 0)."""
    live = fit.s2 > 0
    u = np.zeros_like(fit.z)
    u[live] = fit.z[live] / np.sqrt(fit.s2[live])[:, None]  # U^T y = diag(1/s) W^T C^T y
    rest = max(fit.yy - float(np.sum(u * u)), 0.0)
    d = np.concatenate([np.zeros(fit.n - fit.rank), np.where(live, fit.s2, 0.0)])
    z = np.zeros((fit.n, 1))
    z[fit.n - fit.rank:, 0] = np.sqrt(np.sum(u * u, axis=1))
    if fit.n > fit.rank:
        z[0, 0] = np.sqrt(rest)
    return d, z

"""Self-distillation of networks on the ridge objective: fixed weights (eqs. 3-5), Section 5's
Algorithm 1 (alpha-hat, eq. 16 on the network's validation predictions, through
:func:`sdlib.nn.alpha_hat.alpha_hat_chain`), and the linearised network under the paper's penalty.

Every step restarts from ``theta_0`` (:class:`~sdlib.ntk.ridge.RidgeNetwork`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sdlib.krr import theory
from sdlib.krr.estimator import KernelSelfDistillation
from sdlib.nn.alpha_hat import alpha_hat_chain
from sdlib.ntk.ridge import RidgeFit, RidgeNetwork
from sdlib.ntk.threads import few_torch_threads

__all__ = ["NetworkPath", "network_path", "network_optimal_path", "paper_penalty_kernel_path", "targets_2d"]

FloatArray = NDArray[np.float64]


@dataclass
class NetworkPath:
    """Self-distillation of a network: predictions of steps ``tau = 1..steps`` and the fits' health.

    ``train`` ``(steps, n[, p])`` are ``y^(tau)``; ``query`` ``(steps, m[, p])`` are
    ``f(Xq, theta^(tau))``; ``alphas`` ``(steps - 1,)`` are the weights used (``alpha-hat`` for
    :func:`network_optimal_path`); ``fits`` lists every :class:`RidgeFit` in the order trained.
    """

    alphas: FloatArray
    train: FloatArray
    query: FloatArray
    fits: list[RidgeFit] = field(default_factory=list)

    @property
    def grad_max(self) -> float:
        """The largest final gradient entry over all fits."""
        return max(f.grad_max for f in self.fits)

    @property
    def converged(self) -> bool:
        return all(f.converged for f in self.fits)


def targets_2d(y: ArrayLike) -> tuple[FloatArray, bool]:
    """``y`` as an ``(n, p)`` float array, and whether it was given as ``(n,)``."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be (n,) or (n, p), got shape {y.shape}")
    return y.reshape(y.shape[0], -1), y.ndim == 1


def _stacked(trains: list[FloatArray], queries: list[FloatArray], squeeze: bool) -> tuple[FloatArray, FloatArray]:
    """The steps' training and query predictions as ``(steps, n[, p])`` and ``(steps, m[, p])``
    (``squeeze``: targets given as ``(n,)``, so one output, dropped)."""
    train, query = np.array(trains), np.array(queries)
    return (train[..., 0], query[..., 0]) if squeeze else (train, query)


@dataclass(frozen=True)
class _Step:
    """One fit of a chain and its training predictions (the next step's teacher outputs)."""

    fit: RidgeFit
    train: FloatArray


@few_torch_threads
def network_path(
    net: RidgeNetwork,
    X: ArrayLike,
    y: ArrayLike,
    Xq: ArrayLike,
    *,
    lam: float,
    alpha: float | ArrayLike,
    steps: int,
    penalty: str = "init",
    gtol: float = 1e-10,
    max_iter: int = 20000,
) -> NetworkPath:
    """Self-distillation of a network, eqs. (3)-(5) with the network in place of ``phi(x)^T beta``.

    Step 1 fits ``y``; step ``tau >= 2`` fits ``alpha^(tau) y + (1 - alpha^(tau)) y^(tau-1)``, where
    ``y^(tau-1)`` are the previous network's training predictions (footnote 7: the objective (1)
    and the fit to the weighted target have one minimiser). Every step restarts from ``theta_0``.
    """
    alphas = theory.alpha_sequence(alpha, steps)
    Y, squeeze = targets_2d(y)
    trains, queries, fits = [], [], []
    t = Y
    for tau in range(steps):
        if tau:
            t = alphas[tau - 1] * Y + (1 - alphas[tau - 1]) * trains[-1]
        fit = net.fit(X, t, lam=lam, penalty=penalty, gtol=gtol, max_iter=max_iter)
        fits.append(fit)
        trains.append(net.predict(fit.theta, X))
        queries.append(net.predict(fit.theta, Xq))
    train, query = _stacked(trains, queries, squeeze)
    return NetworkPath(alphas=alphas, train=train, query=query, fits=fits)


@few_torch_threads
def network_optimal_path(
    net: RidgeNetwork,
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike,
    y_val: ArrayLike,
    Xq: ArrayLike,
    *,
    lam: float,
    steps: int,
    clip: bool = False,
    penalty: str = "init",
    gtol: float = 1e-10,
    max_iter: int = 20000,
) -> NetworkPath:
    """Section 5's Algorithm 1 with networks: ``alpha-hat^(2..steps)`` and the path they give.

    Fit ``theta^(1)`` on ``y``; for ``t = 2..steps`` fit ``theta^(t)_{alpha=0}`` on ``y^(t-1)``,
    set ``alpha-hat^(t)`` by eq. (16) from the validation predictions of ``theta^(1)`` and
    ``theta^(t)_{alpha=0}`` (Frobenius norm for several outputs), then fit ``theta^(t)`` with it:
    ``2 (steps - 1) + 1`` fits. ``clip=True`` clips each ``alpha-hat`` to ``[0, 1]`` before use.
    ``fits`` holds the fits in that order (step 1, then ``alpha=0`` and ``alpha-hat`` per step).
    The sequence is :func:`sdlib.nn.alpha_hat.alpha_hat_chain`, the one the Section 5 networks follow.
    """
    theory.alpha_sequence(0.0, steps)
    Y, squeeze = targets_2d(y)
    Yv = np.asarray(y_val, dtype=np.float64).reshape(np.shape(y_val)[0], -1)
    fits: list[RidgeFit] = []

    def fit_fn(alpha: float, teacher: _Step | None) -> _Step:
        # eq. (18)'s targets: y at step 1, alpha y + (1 - alpha) y^(t-1) after (alpha = 0: y^(t-1))
        t = Y if teacher is None else alpha * Y + (1 - alpha) * teacher.train
        fit = net.fit(X, t, lam=lam, penalty=penalty, gtol=gtol, max_iter=max_iter)
        fits.append(fit)
        return _Step(fit, net.predict(fit.theta, X))

    with warnings.catch_warnings():
        warnings.simplefilter("always", theory.DegenerateAlphaWarning)
        alphas, chain, _ = alpha_hat_chain(fit_fn, lambda s: net.predict(s.fit.theta, X_val), Yv, steps, clip=clip)
    train, query = _stacked([s.train for s in chain], [net.predict(s.fit.theta, Xq) for s in chain], squeeze)
    return NetworkPath(alphas=np.array(alphas, dtype=np.float64), train=train, query=query, fits=fits)


def paper_penalty_kernel_path(
    K: ArrayLike,
    Kq: ArrayLike,
    y: ArrayLike,
    h0: ArrayLike,
    h0q: ArrayLike,
    *,
    lam: float,
    alpha: float | ArrayLike,
    steps: int,
) -> tuple[FloatArray, FloatArray]:
    """Self-distillation of the *linearised* network under the paper's penalty ``lam/2 ||theta||^2``.

    For ``f(x; theta) = J(x) (theta - theta_0)`` the minimiser of
    ``1/2 ||t - f(X; theta)||^2 + lam/2 ||theta||^2`` predicts

        f(x) = Theta(x, X) (Theta + lam I)^-1 (t + h_0(X)) - h_0(x),     h_0(x) = J(x) theta_0,

    i.e. kernel ridge regression on the shifted targets ``t + h_0(X)``, minus ``h_0``; the extra term
    against ``lam/2 ||theta - theta_0||^2`` is ``Theta(x, X) (Theta + lam I)^-1 h_0(X) - h_0(x)``,
    minus the ridge residual of ``h_0``. ``K = Theta(X, X)``, ``Kq = Theta(Xq, X)``, ``h0 = h_0(X)``,
    ``h0q = h_0(Xq)``; targets of eqs. (3)-(5). Returns ``(train (steps, n[, p]), query (steps, m[, p]))``.
    """
    alphas = theory.alpha_sequence(alpha, steps)
    Y, squeeze = targets_2d(y)
    H0 = np.asarray(h0, float).reshape(Y.shape)
    H0q = np.asarray(h0q, float).reshape(np.shape(Kq)[0], -1)
    trains, queries = [], []
    t = Y
    for tau in range(steps):
        if tau:
            t = alphas[tau - 1] * Y + (1 - alphas[tau - 1]) * trains[-1]
        # fit() factorises a precomputed Gram matrix in place: give it a copy
        model = KernelSelfDistillation(kernel="precomputed", lam=lam).fit(np.array(K, dtype=np.float64), t + H0)
        trains.append(model.predict(K) - H0)
        queries.append(model.predict(Kq) - H0q)
    return _stacked(trains, queries, squeeze)

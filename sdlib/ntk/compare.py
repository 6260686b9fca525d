"""A network against its two kernels: its self-distillation path next to kernel ridge regression with
its empirical NTK at ``theta_0`` and with the analytic NTK, on the same data (:func:`compare_with_kernels`),
and the distance between two paths (:func:`relative_gap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.gaussian_process.kernels import Kernel

from sdlib.krr.estimator import KernelSelfDistillation
from sdlib.ntk.paths import NetworkPath, network_optimal_path, network_path, targets_2d
from sdlib.ntk.ridge import RidgeNetwork
from sdlib.ntk.threads import few_torch_threads

__all__ = ["relative_gap", "KernelComparison", "compare_with_kernels"]

FloatArray = NDArray[np.float64]


def relative_gap(a: ArrayLike, b: ArrayLike) -> float:
    """``max_tau RMS(a^(tau) - b^(tau)) / RMS(b^(tau))`` over the steps (first axis) of two paths."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    steps = a.shape[0]
    num = np.sqrt(np.mean((a - b).reshape(steps, -1) ** 2, axis=1))
    den = np.sqrt(np.mean(b.reshape(steps, -1) ** 2, axis=1))
    return float(np.max(num / np.maximum(den, 1e-300)))


@dataclass
class KernelComparison:
    """One network's self-distillation next to kernel ridge regression with (a) its empirical NTK at
    ``theta_0`` and (b) the analytic NTK, on the same data (see :func:`compare_with_kernels`)."""

    network: NetworkPath            # fixed alpha, eqs. (3)-(5)
    empirical: FloatArray           # (steps, m[, p]) the kernel path with Theta_0 (all outputs jointly)
    analytic: FloatArray            # (steps, m[, p]) the kernel path with the analytic NTK
    optimal: NetworkPath | None     # Algorithm 1 with the network (alpha-hat), if validation data given
    alpha_star_empirical: FloatArray | None
    alpha_star_analytic: FloatArray | None
    start_error: float              # step 1 from theta_0 vs from the linearised minimiser (relative RMS)

    @property
    def gap_empirical(self) -> float:
        return relative_gap(self.network.query, self.empirical)

    @property
    def gap_analytic(self) -> float:
        return relative_gap(self.network.query, self.analytic)

    @property
    def kernel_gap(self) -> float:
        """Between the two kernels' paths: the fluctuation of the NTK at initialisation."""
        return relative_gap(self.empirical, self.analytic)


@few_torch_threads
def compare_with_kernels(
    model: Any,
    X: ArrayLike,
    y: ArrayLike,
    Xq: ArrayLike,
    kernel: Kernel,
    *,
    lam: float,
    alpha: float,
    steps: int,
    X_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    gtol: float = 1e-9,
    max_iter: int = 1000,
) -> KernelComparison:
    """Self-distil ``model`` (a :class:`RidgeNetwork` is made of it) and the two kernel machines.

    The network path (:func:`network_path`, fixed ``alpha``), the path of
    :class:`~sdlib.krr.estimator.KernelSelfDistillation` with the empirical NTK at ``theta_0`` (all outputs
    jointly, ``outputs="full"``: the exact kernel of the linearised network) and with ``kernel`` (the
    analytic NTK, one kernel per output); with validation data, also Algorithm 1 with the network
    (``alpha-hat``) and ``alpha*`` of eq. (16) for both kernels. ``start_error`` repeats the first fit
    from the linearised minimiser instead of ``theta_0``: the difference bounds what the optimiser
    leaves undone.
    """
    net = RidgeNetwork(model)
    Y, _ = targets_2d(y)
    p = Y.shape[1]
    path = network_path(net, X, y, Xq, lam=lam, alpha=alpha, steps=steps, gtol=gtol, max_iter=max_iter)
    K = net.ntk(X, outputs="full")
    emp = KernelSelfDistillation(kernel="precomputed", lam=lam).fit(K.copy(), Y.reshape(-1))
    m = np.shape(Xq)[0]
    F_emp = emp.path(net.ntk(Xq, X, outputs="full"), steps=steps, alpha=alpha).reshape((steps, m) + np.shape(y)[1:])
    ana = KernelSelfDistillation(kernel=kernel, lam=lam).fit(X, y)
    F_ana = ana.path(Xq, steps=steps, alpha=alpha)
    th_lin = net.linearized_theta(X, Y, lam=lam)
    other = net.fit(X, Y, lam=lam, gtol=gtol, max_iter=max_iter, start=th_lin)
    q1 = path.query[0].reshape(m, p)
    start_error = float(np.sqrt(np.mean((net.predict(other.theta, Xq) - q1) ** 2)) / np.sqrt(np.mean(q1**2)))
    optimal = a_emp = a_ana = None
    if X_val is not None and y_val is not None:
        optimal = network_optimal_path(net, X, y, X_val, y_val, Xq, lam=lam, steps=steps, gtol=gtol,
                                       max_iter=max_iter)
        yv = np.asarray(y_val, float)
        a_emp = emp.optimal_alphas(net.ntk(X_val, X, outputs="full"), yv.reshape(-1), steps=steps)
        a_ana = ana.optimal_alphas(X_val, yv, steps=steps)
    return KernelComparison(network=path, empirical=F_emp, analytic=F_ana, optimal=optimal,
                            alpha_star_empirical=a_emp, alpha_star_analytic=a_ana, start_error=start_error)

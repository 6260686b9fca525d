"""Kernel matrices ``kappa(X, Y)`` with scikit-learn's names, parameters and conventions.

``rbf`` is ``exp(-gamma ||x - x'||^2)`` (the paper's Section 4.5 uses ``gamma = 80``), ``laplacian``
is ``exp(-gamma ||x - x'||_1)``, ``polynomial`` is ``(gamma <x, x'> + coef0)^degree``, and so on:
see :func:`sklearn.metrics.pairwise.pairwise_kernels`. A callable ``kernel(x, y, **params)`` is
also accepted, as in :class:`sklearn.kernel_ridge.KernelRidge` (evaluated pair by pair), and so is
a scikit-learn kernel object (:class:`sklearn.gaussian_process.kernels.Kernel`, e.g.
``RBF(length_scale=0.1)`` or the neural tangent kernel :class:`sdlib.ntk.ReLUNTK`), whose
``kernel(X, Y)`` gives the whole Gram matrix at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import clone
from sklearn.gaussian_process.kernels import Kernel
from sklearn.metrics.pairwise import PAIRWISE_KERNEL_FUNCTIONS, pairwise_kernels

__all__ = ["KERNELS", "kernel_matrix", "check_kernel", "check_kernel_params"]

#: Kernel names accepted by :func:`kernel_matrix` (scikit-learn's, plus "precomputed").
KERNELS: tuple[str, ...] = tuple(sorted(PAIRWISE_KERNEL_FUNCTIONS)) + ("precomputed",)

KernelSpec = str | Callable[..., float] | Kernel


def check_kernel(kernel: KernelSpec) -> None:
    """Raise ``ValueError`` naming ``kernel`` and the valid names if it is not known."""
    if callable(kernel):
        return
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel={kernel!r}; valid names: {', '.join(KERNELS)}")


#: Kernels ``exp(-gamma dist)``: a positive semi-definite Gram matrix needs ``gamma > 0``.
_EXP_KERNELS = ("rbf", "laplacian", "chi2")


def check_kernel_params(kernel: KernelSpec, gamma: Any = None, degree: Any = 3, coef0: Any = 1) -> None:
    """Raise ``ValueError`` naming the parameter and its value unless ``gamma`` (None or a number),
    ``degree`` and ``coef0`` are finite, and ``gamma > 0`` for the kernels ``exp(-gamma d)``.

    A non-finite ``gamma`` would give a Gram matrix of NaN (``inf * 0`` on the diagonal) and a
    fit that predicts NaN without a word.
    """
    for name, value in (("gamma", gamma), ("degree", degree), ("coef0", coef0)):
        if name == "gamma" and value is None:
            continue
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a finite number, got {name}={value!r}") from None
        if not finite:
            raise ValueError(f"{name} must be a finite number, got {name}={value!r}")
    if isinstance(kernel, str) and kernel in _EXP_KERNELS and gamma is not None and not float(gamma) > 0:
        raise ValueError(f"gamma must be > 0 for kernel={kernel!r}, got gamma={gamma!r}")


def kernel_matrix(
    X: NDArray[np.float64],
    Y: NDArray[np.float64] | None,
    kernel: KernelSpec = "rbf",
    *,
    gamma: float | None = None,
    degree: float = 3,
    coef0: float = 1,
    kernel_params: dict[str, Any] | None = None,
) -> NDArray[np.float64]:
    """Gram matrix ``[kappa(x_i, y_j)]`` (Section 3's ``K = kappa(X, X)`` when ``Y`` is None).

    Parameters not used by a kernel are dropped (scikit-learn's ``filter_params``), exactly as
    :class:`~sklearn.kernel_ridge.KernelRidge` does. A scikit-learn kernel object is called on the
    whole arrays, ``kernel(X, Y)``; ``kernel_params`` then set its parameters (on a copy) and
    ``gamma``, ``degree``, ``coef0`` are not used.
    """
    check_kernel(kernel)
    if isinstance(kernel, Kernel):
        if kernel_params:
            kernel = clone(kernel).set_params(**kernel_params)
        K = np.asarray(kernel(X, Y), dtype=np.float64)
    else:
        if callable(kernel):
            params = dict(kernel_params or {})
        else:
            params = {"gamma": gamma, "degree": degree, "coef0": coef0}
        K = pairwise_kernels(X, Y, metric=kernel, filter_params=True, **params)
    # "precomputed" hands back the input itself: the caller's array is never to be written to
    if np.may_share_memory(K, X) or (Y is not None and np.may_share_memory(K, Y)):
        K = np.array(K, dtype=np.float64, copy=True)
    return K

"""The infinite-width kernels of a fully connected ReLU network: the NTK and the NNGP kernel (numpy only).

:func:`relu_ntk`, :func:`relu_nngp` and the scikit-learn kernel :class:`ReLUNTK` compute them for
``depth`` hidden layers in the NTK parametrisation by the arc-cosine recursion. ``ReLUNTK`` is
accepted by ``KernelSelfDistillation(kernel=ReLUNTK(...))`` (problem (1) with ``kappa = Theta``)
and by scikit-learn (e.g. Gaussian processes).

The network (NTK parametrisation, all weights and biases standard normal at initialisation)::

    h^(1) = sigma_w / sqrt(d) W^(1) x + sigma_b b^(1)
    h^(l+1) = sigma_w / sqrt(w) W^(l+1) relu(h^(l)) + sigma_b b^(l+1),   l = 1..depth
    g(x) = h^(depth+1)                                                   (p outputs)

Its NTK converges, as the width ``w`` grows, to the deterministic kernel (Jacot et al. 2018,
Theorem 1; Arora et al. 2019, eqs. 4-6)::

    Sigma^(1)(x, x') = sigma_w^2 <x, x'> / d + sigma_b^2,            Theta^(1) = Sigma^(1)
    Sigma^(l+1) = sigma_w^2 E[relu(u) relu(v)] + sigma_b^2,          (u, v) ~ N(0, Sigma^(l) on {x, x'})
    Sigma'^(l+1) = sigma_w^2 E[relu'(u) relu'(v)]
    Theta^(l+1) = Sigma^(l+1) + Theta^(l) Sigma'^(l+1)

with the arc-cosine expectations (Cho & Saul 2009): for ``c = Sigma_12 / sqrt(Sigma_11 Sigma_22)``
and ``t = arccos c``, ``E[relu(u) relu(v)] = sqrt(Sigma_11 Sigma_22) (sin t + (pi - t) c) / (2 pi)``
and ``E[relu'(u) relu'(v)] = (pi - t) / (2 pi)``. The NTK of ``p`` outputs is ``Theta (x) I_p``.

Threads: the torch work of this module (fits, empirical kernels, paths, comparisons) runs with one
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.gaussian_process.kernels import Kernel

__all__ = ["SQRT2", "KINDS", "relu_ntk", "relu_nngp", "ReLUNTK", "check_depth", "check_sigmas"]

FloatArray = NDArray[np.float64]

#: The default weight scale: sigma_w^2 = 2 keeps E[h^2] constant across ReLU layers (He et al.).
SQRT2 = math.sqrt(2.0)

#: The kernels :class:`ReLUNTK` computes.
KINDS = ("ntk", "nngp")


def check_depth(depth: Any) -> int:
    """``depth`` (hidden layers) as an int >= 0, or a ValueError naming it."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0 (hidden layers), got depth={depth!r}")
    return int(depth)


def check_sigmas(sigma_w: Any, sigma_b: Any) -> tuple[float, float]:
    """``(sigma_w, sigma_b)`` as floats, ``sigma_w > 0`` and ``sigma_b >= 0``, or a ValueError naming them."""
    try:
        sw, sb = float(sigma_w), float(sigma_b)
    except (TypeError, ValueError):
        raise ValueError(f"sigma_w and sigma_b must be numbers, got sigma_w={sigma_w!r}, sigma_b={sigma_b!r}") from None
    if not (np.isfinite(sw) and sw > 0):
        raise ValueError(f"sigma_w must be a finite number > 0, got sigma_w={sigma_w!r}")
    if not (np.isfinite(sb) and sb >= 0):
        raise ValueError(f"sigma_b must be a finite number >= 0, got sigma_b={sigma_b!r}")
    return sw, sb


def _relu_kernels(
    X: ArrayLike, Y: ArrayLike | None, depth: int, sigma_w: float, sigma_b: float
) -> tuple[FloatArray, FloatArray]:
    """``(Theta, Sigma)`` of the output layer: the NTK and NNGP recursions of the module docstring."""
    depth = check_depth(depth)
    sw, sb = check_sigmas(sigma_w, sigma_b)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d array (n, d), got shape {X.shape}")
    same = Y is None
    Y = X if same else np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] != X.shape[1]:
        raise ValueError(f"Y must be a 2-d array with {X.shape[1]} columns like X, got shape {Y.shape}")
    d0 = X.shape[1]
    sw2, sb2 = sw * sw, sb * sb
    S = sw2 * (X @ Y.T) / d0 + sb2
    qx = sw2 * np.einsum("ij,ij->i", X, X) / d0 + sb2  # Sigma^(l)(x, x), the diagonal
    qy = qx if same else sw2 * np.einsum("ij,ij->i", Y, Y) / d0 + sb2
    T = S.copy()
    for _ in range(depth):
        norm = np.sqrt(np.outer(qx, qy))
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(norm > 0, S / norm, 0.0)
        c = np.clip(c, -1.0, 1.0)
        if same:
            # arccos is ill-conditioned at c = 1: a rounding error of 1e-16 in c would give an angle
            # of 1e-8. On the diagonal the angle is exactly zero.
            np.fill_diagonal(c, np.where(qx > 0, 1.0, 0.0))
        t = np.arccos(c)
        S = sw2 / (2 * np.pi) * norm * (np.sin(t) + (np.pi - t) * c) + sb2
        # A pre-activation that is identically zero has relu'(0) = 0 (torch's convention).
        S_dot = np.where(norm > 0, sw2 / (2 * np.pi) * (np.pi - t), 0.0)
        T = S + T * S_dot
        qx = sw2 / 2 * qx + sb2
        qy = qx if same else sw2 / 2 * qy + sb2
    if same:  # exact symmetry, whatever the rounding
        T = (T + T.T) / 2
        S = (S + S.T) / 2
    return T, S


def relu_ntk(
    X: ArrayLike, Y: ArrayLike | None = None, *, depth: int = 1, sigma_w: float = SQRT2, sigma_b: float = 0.0
) -> FloatArray:
    """Infinite-width NTK ``Theta(X, Y)`` of a ReLU network with ``depth`` hidden layers (NTK
    parametrisation; Jacot et al. 2018, Theorem 1; Arora et al. 2019, eqs. 4-6). ``Y=None`` is
    ``Y = X`` (the paper's Gram matrix ``K``, Section 3)."""
    return _relu_kernels(X, Y, depth, sigma_w, sigma_b)[0]


def relu_nngp(
    X: ArrayLike, Y: ArrayLike | None = None, *, depth: int = 1, sigma_w: float = SQRT2, sigma_b: float = 0.0
) -> FloatArray:
    """Infinite-width NNGP kernel ``Sigma^(depth+1)(X, Y)``: the covariance of the network's output at
    initialisation (the kernel of training the last layer only)."""
    return _relu_kernels(X, Y, depth, sigma_w, sigma_b)[1]


class ReLUNTK(Kernel):
    """The analytic NTK (``kind="ntk"``) or NNGP kernel (``kind="nngp"``) of a fully connected ReLU
    network, as a scikit-learn kernel: ``k(X, Y)`` is the Gram matrix.

    ``KernelSelfDistillation(kernel=ReLUNTK(depth=2))`` distils kernel ridge regression with it
    (problem (1) with ``kappa = Theta``); ``kernel_params={"depth": 3}`` overrides parameters there.

    Parameters
    ----------
    depth : int, default=1
        Number of hidden layers ``L`` (0 is a linear model).
    sigma_w : float, default=sqrt(2)
        Weight scale of the NTK parametrisation (module docstring).
    sigma_b : float, default=0.0
        Bias scale; 0 is a network without biases.
    kind : {"ntk", "nngp"}, default="ntk"
    """

    def __init__(self, depth: int = 1, sigma_w: float = SQRT2, sigma_b: float = 0.0, kind: str = "ntk") -> None:
        self.depth = depth
        self.sigma_w = sigma_w
        self.sigma_b = sigma_b
        self.kind = kind

    def _check(self) -> None:
        check_depth(self.depth)
        check_sigmas(self.sigma_w, self.sigma_b)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got kind={self.kind!r}")

    def __call__(self, X: ArrayLike, Y: ArrayLike | None = None, eval_gradient: bool = False) -> Any:
        self._check()
        T, S = _relu_kernels(X, Y, self.depth, self.sigma_w, self.sigma_b)
        K = T if self.kind == "ntk" else S
        if eval_gradient:
            if Y is not None:
                raise ValueError("gradient can only be evaluated when Y is None")
            return K, np.empty(K.shape + (0,))  # no hyperparameters are optimised
        return K

    def diag(self, X: ArrayLike) -> FloatArray:
        """``k(x, x)`` for each row of ``X`` without the Gram matrix."""
        self._check()
        X = np.asarray(X, dtype=np.float64)
        sw, sb = check_sigmas(self.sigma_w, self.sigma_b)
        q = sw * sw * np.einsum("ij,ij->i", X, X) / X.shape[1] + sb * sb
        t = q.copy()
        for _ in range(int(self.depth)):
            s_dot = np.where(q > 0, sw * sw / 2, 0.0)
            q = sw * sw / 2 * q + sb * sb
            t = q + t * s_dot
        return t if self.kind == "ntk" else q

    def is_stationary(self) -> bool:
        return False

    def __repr__(self) -> str:
        return (f"ReLUNTK(depth={self.depth!r}, sigma_w={self.sigma_w!r}, sigma_b={self.sigma_b!r}, "
                f"kind={self.kind!r})")

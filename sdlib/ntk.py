"""Wide networks as kernel machines: the neural tangent kernel (NTK) and self-distillation of networks.

Section 5 of the paper carries eq. (16) to networks because very wide networks trained by gradient
descent behave as kernel ridge regression with the NTK (Jacot et al. 2018; Lee et al. 2019; Arora
et al. 2019). This module holds what is needed to check that bridge.

Analytic kernels (numpy only)
    :func:`relu_ntk`, :func:`relu_nngp` and the scikit-learn kernel :class:`ReLUNTK`: the
    infinite-width NTK and NNGP kernel of a fully connected ReLU network with ``depth`` hidden layers
    in the NTK parametrisation (below), by the arc-cosine recursion. ``ReLUNTK`` is accepted by
    ``KernelSelfDistillation(kernel=ReLUNTK(...))`` and by scikit-learn (e.g. Gaussian processes).

Empirical kernels (torch, imported inside the functions)
    :func:`empirical_ntk`: ``Theta(X, X') = J(X) J(X')^T`` of any ``torch.nn.Module`` at its current
    parameters (those with ``requires_grad``), float64, with ``torch.func`` (``vmap`` over
    ``jacrev``), in blocks of inputs so that memory stays bounded.

Networks (torch)
    :func:`ntk_mlp` builds the network below; :class:`RidgeNetwork` trains it on the ridge objective
    ``1/2 ||t - f(X; theta)||^2 + lam/2 ||theta - theta_0||^2`` (or the paper's ``lam/2 ||theta||^2``,
    eq. 18) to convergence with L-BFGS, the initial function removed:
    ``f(x; theta) = g(x; theta) - g(x; theta_0)``. :func:`network_path` is self-distillation of such
    a network (eqs. 3-5, every step restarting from ``theta_0``); :func:`network_optimal_path` is
    Section 5's Algorithm 1 with networks (``alpha-hat``, eq. 16 on the network's validation
    predictions).

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
intra-op thread unless the environment variable ``SDLIB_TORCH_THREADS`` says otherwise; torch's
setting is restored afterwards. Small fits on busy cores are otherwise oversubscribed.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.gaussian_process.kernels import Kernel

from sdlib.krr import theory

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "SQRT2",
    "relu_ntk",
    "relu_nngp",
    "ReLUNTK",
    "ntk_mlp",
    "empirical_ntk",
    "RidgeFit",
    "RidgeNetwork",
    "NetworkPath",
    "network_path",
    "network_optimal_path",
    "paper_penalty_kernel_path",
    "relative_gap",
    "KernelComparison",
    "compare_with_kernels",
    "width_exponent",
    "width_fit",
    "width_sweep",
    "write_width_sweep",
    "load_width_sweep",
    "SWEEP_KIND",
]

FloatArray = NDArray[np.float64]

#: The default weight scale: sigma_w^2 = 2 keeps E[h^2] constant across ReLU layers (He et al.).
SQRT2 = math.sqrt(2.0)

KINDS = ("ntk", "nngp")

#: Environment variable: torch's intra-op threads for this module's fits and kernels (default 1).
TORCH_THREADS_ENV = "SDLIB_TORCH_THREADS"


def _torch_threads() -> int:
    raw = os.environ.get(TORCH_THREADS_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{TORCH_THREADS_ENV} must be an integer >= 1, got {TORCH_THREADS_ENV}={raw!r}")
    return n


def _few_torch_threads(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func`` with torch's intra-op threads set to ``SDLIB_TORCH_THREADS`` (default 1), then
    restore them. The fits here are small (networks of thousands to millions of parameters on a
    few hundred points): on a machine whose cores are busy, torch's default of one thread per core
    oversubscribes them and a fit becomes some thirtyfold slower, while one thread slows in
    proportion to the load. Set the variable higher for large problems on an idle machine."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        before, wanted = torch.get_num_threads(), _torch_threads()
        if before == wanted:
            return func(*args, **kwargs)
        torch.set_num_threads(wanted)
        try:
            return func(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


# ------------------------------------------------------------------------------------------------
# Analytic kernels


def _check_depth(depth: Any) -> int:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0 (hidden layers), got depth={depth!r}")
    return int(depth)


def _check_sigmas(sigma_w: Any, sigma_b: Any) -> tuple[float, float]:
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
    depth = _check_depth(depth)
    sw, sb = _check_sigmas(sigma_w, sigma_b)
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
        _check_depth(self.depth)
        _check_sigmas(self.sigma_w, self.sigma_b)
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
        sw, sb = _check_sigmas(self.sigma_w, self.sigma_b)
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


# ------------------------------------------------------------------------------------------------
# Networks (torch inside)


@functools.cache
def _ntk_linear_class() -> type:
    """The dense layer of the NTK parametrisation, defined on first use (torch imported here only)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class NTKLinear(nn.Module):
        """``y = sigma_w / sqrt(in) x W^T + sigma_b b``, ``W`` and ``b`` standard normal."""

        def __init__(self, in_features: int, out_features: int, sigma_w: float, sigma_b: float,
                     generator: torch.Generator) -> None:
            super().__init__()
            self.in_features, self.out_features = in_features, out_features
            self.w_scale = sigma_w / math.sqrt(in_features)
            self.b_scale = sigma_b
            self.weight = nn.Parameter(torch.randn(out_features, in_features, generator=generator,
                                                   dtype=torch.float64))
            self.bias = (nn.Parameter(torch.randn(out_features, generator=generator, dtype=torch.float64))
                         if sigma_b > 0 else None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # Scaling the input (d values) is cheaper than scaling W (d * w values); same gradients.
            return F.linear(x * self.w_scale, self.weight, None if self.bias is None else self.bias * self.b_scale)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    return NTKLinear


def ntk_mlp(
    in_features: int,
    width: int,
    depth: int = 1,
    out_features: int = 1,
    *,
    sigma_w: float = SQRT2,
    sigma_b: float = 0.0,
    seed: int = 0,
) -> Any:
    """A fully connected ReLU network in the NTK parametrisation (module docstring), float64.

    ``depth`` hidden layers of ``width`` units; biases only when ``sigma_b > 0``. The initialisation
    is drawn from ``torch.Generator().manual_seed(seed)`` (the global RNG is not touched). Its NTK
    tends to :func:`relu_ntk` with the same ``depth``, ``sigma_w``, ``sigma_b`` as ``width`` grows.
    """
    import torch
    from torch import nn

    depth = _check_depth(depth)
    sw, sb = _check_sigmas(sigma_w, sigma_b)
    for name, value in (("in_features", in_features), ("width", width), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")
    NTKLinear = _ntk_linear_class()
    gen = torch.Generator().manual_seed(int(seed))
    sizes = [int(in_features)] + [int(width)] * depth + [int(out_features)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(nn.ReLU())
        layers.append(NTKLinear(a, b, sw, sb, gen))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------------------
# Empirical NTK

OUTPUTS = ("trace", "full")
METHODS = ("auto", "jacobian")


def _is_dense(module: Any) -> bool:
    from torch import nn

    return isinstance(module, (nn.Linear, _ntk_linear_class()))


def _dense_scales(module: Any) -> tuple[float, float]:
    return float(getattr(module, "w_scale", 1.0)), float(getattr(module, "b_scale", 1.0))


def _to_tensor(X: ArrayLike, dtype: Any, device: Any) -> Any:
    import torch

    if isinstance(X, torch.Tensor):
        return X.detach().to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(X), dtype=dtype, device=device)


class _NTKPlan:
    """How to compute per-input Jacobian factors of a module, with ``torch.func``.

    A dense layer (``nn.Linear`` or the NTK layer of :func:`ntk_mlp`) called once per input has the
    per-input gradient ``w_scale * delta a^T`` for its weight and ``b_scale * delta`` for its bias,
    with ``a`` its input and ``delta = d out / d(layer output)``. Its block of ``J J'^T`` is therefore
    ``w_scale^2 <delta, delta'> <a, a'> + b_scale^2 <delta, delta'>``: exact, with no per-input
    copy of the weight. ``jacrev`` computes ``delta`` as the derivative with respect to a zero
    tensor added to the layer's output (a forward hook), and returns ``a`` as auxiliary output.
    Every other trainable parameter gets its per-input gradient from ``jacrev`` directly
    (``method="jacobian"`` uses that for all parameters).
    """

    def __init__(self, model: Any, X: Any, method: str, params: Mapping[str, Any] | None = None) -> None:
        import torch

        self.model = model
        self.params = {k: v.detach() for k, v in model.named_parameters()}
        if params is not None:
            unknown = set(params) - set(self.params)
            if unknown:
                raise ValueError(f"params has names the model does not have: {sorted(unknown)}")
            self.params.update({k: v.detach() for k, v in params.items()})
        self.buffers = {k: v.detach() for k, v in model.named_buffers()}
        trainable = {k for k, v in model.named_parameters() if v.requires_grad}
        self.dense: dict[str, tuple[Any, bool, bool]] = {}  # name -> (module, weight?, bias?)
        if method == "auto":
            calls = self._probe(X[:1])
            for name, mod in model.named_modules():
                if not _is_dense(mod) or calls.get(name) != [1]:
                    continue  # called twice, or on several rows per input: generic path
                w = f"{name}.weight" if name else "weight"
                b = f"{name}.bias" if name else "bias"
                has_w, has_b = w in trainable, b in trainable
                if has_w or has_b:
                    self.dense[name] = (mod, has_w, has_b)
                    trainable -= {w, b}
        self.generic = sorted(trainable)
        if not self.dense and not self.generic:
            raise ValueError("the model has no trainable parameters (requires_grad=True): its NTK is zero")
        self.eps = {name: torch.zeros(mod.out_features, dtype=X.dtype, device=X.device)
                    for name, (mod, _, _) in self.dense.items()}
        self.n_out = int(self._forward_plain(X[:1]).shape[-1])
        self.per_input_values = self.n_out * (
            sum(self.params[k].numel() for k in self.generic)
            + sum(mod.out_features for mod, _, _ in self.dense.values())
        ) + sum(mod.in_features for mod, _, _ in self.dense.values())

    def _forward_plain(self, x: Any) -> Any:
        import torch
        from torch.func import functional_call

        with torch.no_grad():
            out = functional_call(self.model, (self.params, self.buffers), (x,))
        return out.reshape(x.shape[0], -1)

    def _probe(self, x: Any) -> dict[str, list[int]]:
        """For each dense layer, the number of rows it sees in each call on one input."""
        calls: dict[str, list[int]] = {}
        hooks = []
        for name, mod in self.model.named_modules():
            if _is_dense(mod):
                def hook(m: Any, inp: Any, out: Any, name: str = name) -> None:
                    calls.setdefault(name, []).append(int(inp[0].numel() // m.in_features))
                hooks.append(mod.register_forward_hook(hook))
        try:
            self._forward_plain(x)
        finally:
            for h in hooks:
                h.remove()
        return calls

    def factors(self, X: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
        """Per-input ``(delta, a, generic Jacobians, b)`` for the ``b`` rows of ``X``:
        ``delta[name]`` (b, p, out), ``a[name]`` (b, in), ``J[param]`` (b, p, numel)."""
        import torch
        from torch.func import functional_call, jacrev, vmap

        state: dict[str, Any] = {}
        hooks = []
        for name, (mod, _, _) in self.dense.items():
            def hook(m: Any, inp: Any, out: Any, name: str = name) -> Any:
                state["acts"][name] = inp[0].reshape(-1)
                return out + state["eps"][name]
            hooks.append(mod.register_forward_hook(hook))

        def f(eps: dict[str, Any], gen: dict[str, Any], x: Any) -> tuple[Any, dict[str, Any]]:
            state["eps"], state["acts"] = eps, {}
            out = functional_call(self.model, ({**self.params, **gen}, self.buffers), (x.unsqueeze(0),))
            return out.reshape(-1), dict(state["acts"])

        gen0 = {k: self.params[k] for k in self.generic}
        try:
            with torch.no_grad():
                (d_eps, d_gen), acts = vmap(jacrev(f, argnums=(0, 1), has_aux=True), in_dims=(None, None, 0))(
                    self.eps, gen0, X)
        finally:
            for h in hooks:
                h.remove()
        b = X.shape[0]
        J = {k: v.reshape(b, self.n_out, -1) for k, v in d_gen.items()}
        return d_eps, acts, J, b

    def gram(self, Fa: tuple, Fb: tuple, full: bool) -> Any:
        """The block ``J(Xa) J(Xb)^T``: ``(a, b)`` averaged over outputs, or ``(a, p, b, p)``."""
        import torch

        d_a, act_a, J_a, na = Fa
        d_b, act_b, J_b, nb = Fb
        p = self.n_out
        G = torch.zeros((na, p, nb, p) if full else (na, nb), dtype=torch.float64, device=self._device)

        def outer(A: Any, B: Any) -> Any:  # (a, p, k), (b, p, k) -> (a, p, b, p) or (a, b)
            if full:
                return (A.reshape(na * p, -1) @ B.reshape(nb * p, -1).T).reshape(na, p, nb, p)
            return A.reshape(na, -1) @ B.reshape(nb, -1).T / p

        for name, (mod, has_w, has_b) in self.dense.items():
            ws, bs = _dense_scales(mod)
            dd = outer(d_a[name], d_b[name])
            coef = torch.zeros_like(act_a[name][:, :1] @ act_b[name][:, :1].T)
            if has_w:
                coef = coef + ws * ws * (act_a[name] @ act_b[name].T)
            if has_b:
                coef = coef + bs * bs
            G += dd * (coef[:, None, :, None] if full else coef)
        for k in self.generic:
            G += outer(J_a[k], J_b[k])
        return G

    @property
    def _device(self) -> Any:
        return next(iter(self.params.values())).device


@_few_torch_threads
def empirical_ntk(
    model: Any,
    X: ArrayLike,
    X2: ArrayLike | None = None,
    *,
    outputs: str = "trace",
    method: str = "auto",
    max_block_bytes: int = 2**27,
    params: Mapping[str, Any] | None = None,
) -> FloatArray:
    """The empirical NTK ``Theta(X, X2) = J(X) J(X2)^T`` of ``model`` at its current parameters.

    ``J`` is the Jacobian of the outputs with respect to the trainable parameters (those with
    ``requires_grad=True``; a frozen parameter does not count), computed with ``torch.func``:
    ``vmap`` over ``jacrev`` of the model applied to one input (so the model must treat inputs
    independently: no batch normalisation in training mode). Dense layers called once per input
    use the exact factorisation of their per-input gradients (``method="auto"``, see
    :class:`_NTKPlan`); ``method="jacobian"`` takes every parameter's per-input gradient from
    ``jacrev``. Both agree to rounding.

    Memory: the inputs are processed in blocks of ``b`` rows with ``b * (per-input Jacobian values)
    * 8 <= max_block_bytes``; two blocks (rows and columns) and their ``jacrev`` transients are alive
    at once, so the peak is about the Gram matrix plus a few ``max_block_bytes``, whatever ``n``.

    Parameters
    ----------
    model : torch.nn.Module
    X, X2 : (n, ...) and (m, ...) inputs (numpy or torch); ``X2=None`` is ``X`` (symmetric Gram:
        only the blocks on and above the diagonal are computed).
    outputs : "trace" or "full"
        ``"trace"``: ``(n, m)``, the mean over the ``p`` outputs of ``<d f_a(x), d f_a(x')>`` (the
        kernel of each output in the infinite-width limit, ``Theta (x) I_p``); ``"full"``:
        ``(n p, m p)`` with entry ``(i p + a, j p + b) = <d f_a(x_i), d f_b(x'_j)>``, the kernel of
        the network linearised in all its outputs (targets ``Y.reshape(-1)`` match its rows).
    method : "auto" or "jacobian"
    max_block_bytes : int
        Budget of one block of per-input Jacobians (default 128 MiB).
    params : mapping of parameter names to tensors, optional
        Values to use instead of the module's own (e.g. trained parameters); the module is not changed.

    Returns
    -------
    numpy float64 array, ``(n, m)`` or ``(n p, m p)``.
    """
    import torch

    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}, got outputs={outputs!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got method={method!r}")
    if isinstance(max_block_bytes, bool) or not isinstance(max_block_bytes, (int, np.integer)) or max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be an integer >= 1, got max_block_bytes={max_block_bytes!r}")
    p0 = next(iter(model.parameters()), None)
    if p0 is None:
        raise ValueError("the model has no parameters: its NTK is zero")
    dtype, device = p0.dtype, p0.device
    Xa = _to_tensor(X, dtype, device)
    same = X2 is None
    Xb = Xa if same else _to_tensor(X2, dtype, device)
    if Xa.shape[0] == 0 or Xb.shape[0] == 0:
        raise ValueError(f"X and X2 need at least one row, got {Xa.shape[0]} and {Xb.shape[0]}")
    if Xa.shape[1:] != Xb.shape[1:]:
        raise ValueError(f"X2 must have the shape of X's rows {tuple(Xa.shape[1:])}, got {tuple(Xb.shape[1:])}")
    plan = _NTKPlan(model, Xa, method, params)
    full = outputs == "full"
    p = plan.n_out
    b = max(1, int(max_block_bytes // (8 * max(plan.per_input_values, 1))))
    n, m = Xa.shape[0], Xb.shape[0]
    G = torch.empty((n, p, m, p) if full else (n, m), dtype=torch.float64, device=device)
    rows = [(s, min(s + b, n)) for s in range(0, n, b)]
    cols = rows if same else [(s, min(s + b, m)) for s in range(0, m, b)]
    for i, (r0, r1) in enumerate(rows):
        Fa = plan.factors(Xa[r0:r1])
        for j, (c0, c1) in enumerate(cols):
            if same and j < i:
                continue
            Fb = Fa if same and j == i else plan.factors(Xb[c0:c1])
            blk = plan.gram(Fa, Fb, full)
            if full:
                G[r0:r1, :, c0:c1, :] = blk
                if same and j > i:
                    G[c0:c1, :, r0:r1, :] = blk.permute(2, 3, 0, 1)
            else:
                G[r0:r1, c0:c1] = blk
                if same and j > i:
                    G[c0:c1, r0:r1] = blk.T
            del Fb
    if same:  # exact symmetry
        G = (G + (G.permute(2, 3, 0, 1) if full else G.T)) / 2
    out = G.reshape(n * p, m * p) if full else G
    return out.cpu().numpy().astype(np.float64, copy=False)


# ------------------------------------------------------------------------------------------------
# Training on the ridge objective

PENALTIES = ("init", "zero")


@dataclass(frozen=True)
class RidgeFit:
    """One fit of the ridge objective: the parameters and how converged they are."""

    theta: FloatArray        # flat trainable parameters
    loss: float              # the objective at theta
    grad_max: float          # largest |entry| of the preconditioned gradient (the stopping rule's quantity)
    grad_norm: float         # Euclidean norm of the preconditioned gradient
    grad_theta_norm: float   # Euclidean norm of the gradient in theta
    nit: int                 # L-BFGS iterations
    converged: bool          # grad_max <= gtol
    distance: float          # ||theta - theta_0|| / ||theta_0||


def _jvp(f: Any, primals: tuple, tangents: tuple) -> Any:
    """``torch.func.jvp``. Its first call loads torch's forward-mode decompositions, which use the
    deprecated ``torch.jit.script`` and warn about it (a warning of torch, not of this call)."""
    from torch.func import jvp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        return jvp(f, primals, tangents)


class _Preconditioner:
    """``M^-1/2`` and ``M^1/2`` for ``M = J_0^T J_0 + lam I`` (``J_0``: Jacobian at ``theta_0`` on ``X``).

    With ``K_0 = J_0 J_0^T = V D V^T`` (the NTK Gram matrix, ``n p x n p``),
    ``M^s = lam^s (I + J_0^T V diag(e) V^T J_0)`` with ``e_k = ((1 + d_k / lam)^s - 1) / d_k``: exact on
    the row space of ``J_0`` (eigenvalue ``d_k + lam``) and ``lam^s`` on its complement. ``J_0`` is
    kept when it is small (``n p x P`` values within 256 MiB), otherwise applied by ``jvp``/``vjp``.
    """

    def __init__(self, net: RidgeNetwork, Xt: Any, lam: float, max_bytes: int = 2**28) -> None:
        import torch
        from torch.func import jacrev, vjp

        th0 = net._tensor(net.theta0)

        def f(th: Any) -> Any:
            return net._g(th, Xt).reshape(-1)

        m = int(f(th0).shape[0])
        with torch.no_grad():
            if m * net.n_params * 8 <= max_bytes:
                J = jacrev(f)(th0)
                self._jv = lambda v: J @ v
                self._jtu = lambda u: J.T @ u
                K = J @ J.T
            else:
                _, pullback = vjp(f, th0)
                self._jv = lambda v: _jvp(f, (th0,), (v,))[1]
                self._jtu = lambda u: pullback(u)[0]
                K = torch.as_tensor(empirical_ntk(net.model, Xt, outputs="full", params=net._params(th0)),
                                    dtype=th0.dtype, device=th0.device)
            d, self.V = torch.linalg.eigh((K + K.T) / 2)
        self.d = d.clamp_min(0.0)
        self.lam = float(lam)
        self._e = {s: self._coef(s) for s in (-0.5, 0.5)}

    def _coef(self, s: float) -> Any:
        import torch

        x = self.d / self.lam
        with torch.no_grad():
            num = torch.expm1(s * torch.log1p(x))  # (1 + x)^s - 1, accurate for small x
            return torch.where(self.d > 0, num / torch.where(self.d > 0, self.d, 1.0), s / self.lam)

    def _power(self, v: Any, s: float) -> Any:
        import torch

        with torch.no_grad():
            u = self.V @ (self._e[s] * (self.V.T @ self._jv(v)))
            return self.lam**s * (v + self._jtu(u))

    def apply(self, v: Any) -> Any:
        """``M^-1/2 v``."""
        return self._power(v, -0.5)

    def apply_inverse(self, v: Any) -> Any:
        """``M^1/2 v``."""
        return self._power(v, 0.5)


class RidgeNetwork:
    """A torch module trained on the ridge objective, as a function of one flat parameter vector.

    ``f(x; theta) = g(x; theta) - g(x; theta_0)`` when ``center=True`` (the initial function is
    removed, so that ``f(.; theta_0) = 0`` as for kernel ridge regression), else ``g(x; theta)``.
    ``theta`` is the vector of the trainable parameters (``requires_grad=True``); the others stay
    at their values. Each :meth:`fit` starts from ``theta_0``, the module's parameters when this
    object was made.
    """

    def __init__(self, model: Any, *, center: bool = True) -> None:
        import torch

        self.model = model
        named = [(k, v) for k, v in model.named_parameters() if v.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters (requires_grad=True)")
        self.names = [k for k, _ in named]
        self.shapes = [tuple(v.shape) for _, v in named]
        self.numels = [v.numel() for _, v in named]
        self.dtype, self.device = named[0][1].dtype, named[0][1].device
        if self.dtype != torch.float64:
            raise ValueError(f"the model's parameters must be float64 (model.double()), got {self.dtype}")
        self._fixed = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
        self._buffers = {k: v.detach() for k, v in model.named_buffers()}
        self.theta0 = torch.cat([v.detach().reshape(-1) for _, v in named]).cpu().numpy().copy()
        self.center = bool(center)
        self._precond: _Preconditioner | None = None
        self._precond_key: Any = None

    @property
    def n_params(self) -> int:
        return int(self.theta0.size)

    def _params(self, theta: Any) -> dict[str, Any]:
        parts = theta.split(self.numels)
        return {**self._fixed, **{k: t.view(s) for k, t, s in zip(self.names, parts, self.shapes, strict=True)}}

    def _g(self, theta: Any, X: Any) -> Any:
        from torch.func import functional_call

        out = functional_call(self.model, (self._params(theta), self._buffers), (X,))
        return out.reshape(X.shape[0], -1)

    def _tensor(self, a: Any) -> Any:
        return _to_tensor(a, self.dtype, self.device)

    def _g0(self, X: Any) -> Any:
        import torch

        with torch.no_grad():
            return self._g(self._tensor(self.theta0), X)

    def predict(self, theta: ArrayLike, X: ArrayLike) -> FloatArray:
        """``f(X; theta)``, shape ``(n, p)``."""
        import torch

        Xt = self._tensor(X)
        with torch.no_grad():
            out = self._g(self._tensor(theta), Xt)
            if self.center:
                out = out - self._g0(Xt)
        return out.cpu().numpy()

    def _preconditioner(self, Xt: Any, lam: float) -> _Preconditioner:
        key = (Xt.shape, hash(Xt.cpu().numpy().tobytes()), lam)
        if self._precond_key != key:
            self._precond, self._precond_key = _Preconditioner(self, Xt, lam), key
        return self._precond

    @_few_torch_threads
    def fit(
        self,
        X: ArrayLike,
        targets: ArrayLike,
        *,
        lam: float,
        penalty: str = "init",
        gtol: float = 1e-9,
        max_iter: int = 5000,
        start: ArrayLike | None = None,
        precondition: bool = True,
    ) -> RidgeFit:
        """Minimise ``1/2 ||t - f(X; theta)||_F^2 + lam/2 ||theta - c||^2`` from ``theta_0`` with L-BFGS.

        ``penalty="init"``: ``c = theta_0`` (the objective whose linearisation is kernel ridge
        regression with the NTK at ``theta_0``); ``penalty="zero"``: ``c = 0``, the paper's
        ``lam/2 ||theta||^2`` of eq. (18).

        L-BFGS (scipy's L-BFGS-B, 20 corrections) runs in the variables ``z`` with
        ``theta = theta_0 + M^-1/2 z``, ``M = J_0^T J_0 + lam I`` the Gauss-Newton Hessian at
        ``theta_0`` (``J_0`` the Jacobian on ``X``; applied through the ``n p x n p`` NTK Gram
        matrix, never formed): for a network in the lazy regime the objective is then nearly
        ``1/2 ||z - z*||^2`` and a few dozen iterations suffice where plain L-BFGS needs thousands
        (``precondition=False``). Stopping rule: the largest entry of the gradient in ``z``
        (``M^-1/2`` times the gradient in ``theta``) is ``<= gtol``; its Euclidean norm bounds the
        distance to the minimiser in that metric, hence (to first order) the error of the training
        predictions. ``ftol=0``, so a stall of the line search (e.g. at a ReLU kink) also ends it,
        as does ``max_iter``; :class:`RidgeFit` reports the final gradients either way.
        ``start`` is another starting point ``theta`` (e.g. :meth:`linearized_theta`) to check that
        the minimiser found does not depend on it.
        """
        import torch
        from scipy import optimize

        lam = theory.check_lam(lam)
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {', '.join(PENALTIES)}, got penalty={penalty!r}")
        if not (isinstance(gtol, (int, float)) and np.isfinite(gtol) and gtol > 0):
            raise ValueError(f"gtol must be a finite number > 0, got gtol={gtol!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got max_iter={max_iter!r}")
        Xt = self._tensor(X)
        T = self._tensor(targets).reshape(Xt.shape[0], -1)
        g0 = self._g0(Xt) if self.center else None
        n_out = self._g0(Xt[:1]).shape[1]
        if T.shape != (Xt.shape[0], n_out):
            raise ValueError(f"targets must have shape ({Xt.shape[0]}, {n_out}) for this network's "
                             f"{n_out} outputs, got {tuple(np.shape(targets))}")
        th0 = self._tensor(self.theta0)
        c = th0 if penalty == "init" else torch.zeros_like(th0)
        S = self._preconditioner(Xt, lam) if precondition else None

        def objective(th: Any) -> tuple[Any, Any]:
            th = th.detach().requires_grad_(True)
            r = self._g(th, Xt) - T
            if g0 is not None:
                r = r - g0
            dv = th - c
            loss = 0.5 * (r * r).sum() + 0.5 * lam * (dv * dv).sum()
            (grad,) = torch.autograd.grad(loss, th)
            return loss.detach(), grad

        def theta_of(z: FloatArray) -> Any:
            zt = torch.as_tensor(z, dtype=self.dtype, device=self.device)
            return th0 + (S.apply(zt) if S is not None else zt)

        def fun(z: FloatArray) -> tuple[float, FloatArray]:
            loss, grad = objective(theta_of(z))
            gz = S.apply(grad) if S is not None else grad
            return float(loss), gz.cpu().numpy()

        z0 = np.zeros(self.n_params)
        if start is not None:
            d0 = self._tensor(np.asarray(start, dtype=np.float64)) - th0
            z0 = (S.apply_inverse(d0) if S is not None else d0).cpu().numpy()
        res = optimize.minimize(fun, z0, jac=True, method="L-BFGS-B",
                                options={"maxiter": int(max_iter), "maxfun": 2 * int(max_iter), "gtol": float(gtol),
                                         "ftol": 0.0, "maxcor": 20})
        with torch.no_grad():
            theta = theta_of(res.x)
        loss, grad = objective(theta)
        gz = S.apply(grad) if S is not None else grad
        theta_np = theta.cpu().numpy()
        gmax = float(gz.abs().max())
        return RidgeFit(theta=theta_np, loss=float(loss), grad_max=gmax, grad_norm=float(gz.norm()),
                        grad_theta_norm=float(grad.norm()), nit=int(res.nit), converged=gmax <= gtol,
                        distance=float(np.linalg.norm(theta_np - self.theta0)
                                       / max(np.linalg.norm(self.theta0), 1e-300)))

    @_few_torch_threads
    def linearized_theta(self, X: ArrayLike, targets: ArrayLike, *, lam: float) -> FloatArray:
        """The minimiser of the ridge objective for the network linearised at ``theta_0``:
        ``theta_0 + J(X)^T (Theta + lam I)^-1 t`` (eq. 2 with the feature map ``J``), by one ``vjp``."""
        import torch
        from torch.func import vjp

        lam = theory.check_lam(lam)
        Xt = self._tensor(X)
        T = np.asarray(targets, dtype=np.float64).reshape(Xt.shape[0], -1)
        K = self.ntk(Xt, outputs="full")
        coef = np.linalg.solve(K + lam * np.eye(K.shape[0]), T.reshape(-1)).reshape(T.shape)
        th0 = self._tensor(self.theta0)
        with torch.no_grad():
            _, pullback = vjp(lambda th: self._g(th, Xt), th0)
            (step,) = pullback(self._tensor(coef))
        return self.theta0 + step.cpu().numpy()

    def ntk(self, X: ArrayLike, X2: ArrayLike | None = None, **kwargs: Any) -> FloatArray:
        """:func:`empirical_ntk` at ``theta_0`` (the kernel of the linearised network)."""
        return empirical_ntk(self.model, X, X2, **kwargs)

    def init_tangent(self, X: ArrayLike) -> FloatArray:
        """``h_0(X) = J(X) theta_0``, the Jacobian at ``theta_0`` applied to ``theta_0`` itself: the
        extra term of the paper's penalty in the linearised model (see :func:`paper_penalty_kernel_path`);
        shape ``(n, p)``. One ``torch.func.jvp``."""
        import torch
        Xt = self._tensor(X)
        th0 = self._tensor(self.theta0)
        with torch.no_grad():
            _, tangent = _jvp(lambda th: self._g(th, Xt), (th0,), (th0,))
        return tangent.cpu().numpy()


# ------------------------------------------------------------------------------------------------
# Self-distillation of networks


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


def _targets(y: ArrayLike) -> tuple[FloatArray, bool]:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be (n,) or (n, p), got shape {y.shape}")
    return y.reshape(y.shape[0], -1), y.ndim == 1


@_few_torch_threads
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
    Y, squeeze = _targets(y)
    trains, queries, fits = [], [], []
    t = Y
    for tau in range(steps):
        if tau:
            t = alphas[tau - 1] * Y + (1 - alphas[tau - 1]) * trains[-1]
        fit = net.fit(X, t, lam=lam, penalty=penalty, gtol=gtol, max_iter=max_iter)
        fits.append(fit)
        trains.append(net.predict(fit.theta, X))
        queries.append(net.predict(fit.theta, Xq))
    out = (np.array(trains), np.array(queries))
    if squeeze:
        out = (out[0][..., 0], out[1][..., 0])
    return NetworkPath(alphas=alphas, train=out[0], query=out[1], fits=fits)


@_few_torch_threads
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
    """
    theory.alpha_sequence(0.0, steps)
    Y, squeeze = _targets(y)
    Yv = np.asarray(y_val, dtype=np.float64).reshape(np.shape(y_val)[0], -1)
    fit1 = net.fit(X, Y, lam=lam, penalty=penalty, gtol=gtol, max_iter=max_iter)
    fits = [fit1]
    trains = [net.predict(fit1.theta, X)]
    queries = [net.predict(fit1.theta, Xq)]
    val1 = net.predict(fit1.theta, X_val)
    if val1.shape != Yv.shape:
        raise ValueError(f"y_val must have shape {val1.shape} to match X_val and the outputs, got {np.shape(y_val)}")
    alphas = np.empty(steps - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("always", theory.DegenerateAlphaWarning)
        for t in range(1, steps):
            fit0 = net.fit(X, trains[-1], lam=lam, penalty=penalty, gtol=gtol, max_iter=max_iter)
            a = theory.alpha_star(Yv, val1, net.predict(fit0.theta, X_val))
            a = float(np.clip(a, 0.0, 1.0)) if clip else a
            alphas[t - 1] = a
            fit = net.fit(X, a * Y + (1 - a) * trains[-1], lam=lam, penalty=penalty, gtol=gtol, max_iter=max_iter)
            fits += [fit0, fit]
            trains.append(net.predict(fit.theta, X))
            queries.append(net.predict(fit.theta, Xq))
    out = (np.array(trains), np.array(queries))
    if squeeze:
        out = (out[0][..., 0], out[1][..., 0])
    return NetworkPath(alphas=alphas, train=out[0], query=out[1], fits=fits)


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
    from sdlib.krr.estimator import KernelSelfDistillation

    alphas = theory.alpha_sequence(alpha, steps)
    Y, squeeze = _targets(y)
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
    out = (np.array(trains), np.array(queries))
    return (out[0][..., 0], out[1][..., 0]) if squeeze else out


# ------------------------------------------------------------------------------------------------
# A network against its two kernels


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


@_few_torch_threads
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
    from sdlib.krr.estimator import KernelSelfDistillation

    net = RidgeNetwork(model)
    Y, _ = _targets(y)
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


# ------------------------------------------------------------------------------------------------
# The width exponent


def width_exponent(widths: ArrayLike, gaps: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """Least-squares slope of ``log gap`` against ``log width`` with its ``level`` confidence interval.

    Each (width, gap) pair is one point (several seeds give several points per width); the interval
    is ``slope +- t_{(1+level)/2, N-2} * stderr`` (scipy's ``linregress``). Returns
    ``(slope, low, high)``; the lazy regime predicts a slope of ``-1/2`` for the distance between a
    width-``w`` network and the infinite-width kernel (Lee et al. 2019).
    """
    from scipy import stats

    w = np.asarray(widths, dtype=float).ravel()
    g = np.asarray(gaps, dtype=float).ravel()
    if w.shape != g.shape or w.size < 3:
        raise ValueError(f"widths and gaps must have one shape with >= 3 points, got {w.shape} and {g.shape}")
    if np.any(w <= 0) or np.any(g <= 0) or not np.all(np.isfinite(g)):
        raise ValueError("widths and gaps must be finite and > 0 for a log-log fit")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    fit = stats.linregress(np.log(w), np.log(g))
    half = stats.t.ppf((1 + level) / 2, w.size - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half)


def _slope_t(x: FloatArray, y: FloatArray, level: float, degree: int = 1) -> tuple[float, float, float]:
    """Leading coefficient of a least-squares polynomial of ``degree`` in ``x`` with its t interval."""
    from scipy import stats

    A = np.vander(x, degree + 1)
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    dof = x.size - degree - 1
    resid = y - A @ coef
    s2 = float(resid @ resid) / dof
    se = math.sqrt(s2 * float(np.linalg.inv(A.T @ A)[0, 0]))
    half = float(stats.t.ppf((1 + level) / 2, dof)) * se
    return float(coef[0]), float(coef[0] - half), float(coef[0] + half)


def width_fit(widths: ArrayLike, gaps: ArrayLike, *, level: float = 0.95, n_boot: int = 4000,
              seed: int = 0) -> dict[str, Any]:
    """The rate at which a gap shrinks with the width, with intervals that respect the design.

    The design is ``k`` widths with several seeds each. The seeds of one width are replicates of
    that width's mean, not of a straight line: if the mean of ``log gap`` is not linear in
    ``log w`` over the widths, treating every (width, seed) point as an independent observation of
    one line (:func:`width_exponent`) understates the uncertainty of the slope. Returned:

    ``points``
        ``(slope, low, high)`` of :func:`width_exponent` (every point independent), for comparison.
    ``means``
        the least-squares slope through the per-width means of ``log gap`` against ``log w``, with
        its Student-t interval on ``k - 2`` degrees of freedom: the residuals include both the
        seeds' noise and any departure from a line.
    ``bootstrap``
        a percentile interval of the same slope with the seeds of each width resampled (with
        replacement, ``n_boot`` times): the seeds' noise alone, given the widths.
    ``curvature``
        the coefficient of ``(log w)^2`` of a quadratic through the per-width means, with its t
        interval on ``k - 3`` degrees of freedom (NaN for fewer than four widths); an interval that
        excludes 0 says the log-log relation bends and no single rate describes these widths.
    ``local``
        the slopes between consecutive widths' means.

    ``widths``, ``mean_log_gap`` and ``n_seeds`` (per width) describe the design.
    """
    w = np.asarray(widths, dtype=float).ravel()
    g = np.asarray(gaps, dtype=float).ravel()
    if w.shape != g.shape:
        raise ValueError(f"widths and gaps must have one shape, got {w.shape} and {g.shape}")
    if np.any(w <= 0) or np.any(g <= 0) or not np.all(np.isfinite(g)) or not np.all(np.isfinite(w)):
        raise ValueError("widths and gaps must be finite and > 0 for a log-log fit")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got level={level!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot must be an integer >= 100, got n_boot={n_boot!r}")
    uw = np.unique(w)
    if uw.size < 3:
        raise ValueError(f"a slope with an interval needs >= 3 distinct widths, got widths={uw.tolist()}")
    lx = np.log(uw)
    groups = [np.log(g[w == u]) for u in uw]
    means = np.array([grp.mean() for grp in groups])
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    A = np.vander(lx, 2)
    pinv = np.linalg.pinv(A)
    for b in range(n_boot):
        m_b = np.array([rng.choice(grp, size=grp.size).mean() for grp in groups])
        boot[b] = (pinv @ m_b)[0]
    s_means = _slope_t(lx, means, level)
    lo_b, hi_b = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    curv = _slope_t(lx, means, level, degree=2) if uw.size >= 4 else (float("nan"),) * 3
    return {"widths": uw, "n_seeds": np.array([grp.size for grp in groups]), "mean_log_gap": means,
            "points": width_exponent(w, g, level), "means": s_means,
            "bootstrap": (s_means[0], float(lo_b), float(hi_b)), "curvature": curv,
            "local": np.diff(means) / np.diff(lx)}


# ------------------------------------------------------------------------------------------------
# A committed width sweep (more seeds and widths than a chapter's default run affords)

#: ``kind`` of a width-sweep results file (:func:`write_width_sweep`).
SWEEP_KIND = "sdlib.ntk/width_sweep"


@_few_torch_threads
def width_sweep(widths: list[int], seeds: list[int], *, depth: int = 1, sigma_b: float = 1.0,
                lam: float = 0.2, alpha: float = 0.25, steps: int = 3, max_iter: int = 150,
                n_grid: int = 101, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The gaps of :class:`KernelComparison` for every (width, seed) on the data of Section 4.5.

    Per record: ``width``, ``seed``, ``gap_empirical`` (network vs its linearisation),
    ``gap_analytic`` (network vs the analytic NTK), ``kernel_gap`` (empirical vs analytic NTK),
    ``start_error``, ``grad_max`` and ``seconds``. Without validation data (no ``alpha-hat``).
    """
    import time

    from sdlib.experiments.examples import illustrative_example

    ex = illustrative_example(n_grid)
    kernel = ReLUNTK(depth=depth, sigma_b=sigma_b)
    out = []
    for w in widths:
        for seed in seeds:
            t0 = time.perf_counter()
            r = compare_with_kernels(ntk_mlp(1, int(w), depth, sigma_b=sigma_b, seed=int(seed)), ex.X, ex.y,
                                     ex.X_grid, kernel, lam=lam, alpha=alpha, steps=steps, max_iter=max_iter)
            out.append({"width": int(w), "seed": int(seed), "gap_empirical": r.gap_empirical,
                        "gap_analytic": r.gap_analytic, "kernel_gap": r.kernel_gap,
                        "start_error": r.start_error, "grad_max": r.network.grad_max,
                        "seconds": time.perf_counter() - t0})
            if progress is not None:
                progress(f"width {w}, seed {seed}: {out[-1]['seconds']:.1f} s")
    return out


def write_width_sweep(path: str, *, widths: list[int], seeds: list[int], overwrite: bool = False,
                      **params: Any) -> dict[str, Any]:
    """Run :func:`width_sweep` and write its records with their provenance to ``path`` (JSON).

    An existing file is kept unless ``overwrite``; the file appears whole or not at all.
    """
    import json
    from datetime import datetime, timezone
    from pathlib import Path

    from sdlib.provenance import git_commit, provenance, write_bytes_atomic

    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists: pass overwrite=True (--overwrite) to replace it")
    started = datetime.now(timezone.utc)
    import time

    # the tree's commit when the run starts: edits made while it runs do not belong to it
    commit = git_commit()
    t0 = time.perf_counter()
    records = width_sweep(widths, seeds, progress=lambda m: print(m, flush=True), **params)
    parameters = {"widths": list(map(int, widths)), "seeds": list(map(int, seeds)), **params}
    doc = {"kind": SWEEP_KIND, "parameters": parameters, "results": {"records": records},
           "provenance": {**provenance(started=started, seconds=time.perf_counter() - t0, parameters=parameters,
                                       seed=list(map(int, seeds))),
                          "git_commit": commit, "torch_threads": _torch_threads()}}
    write_bytes_atomic(target, (json.dumps(doc, indent=1) + "\n").encode())
    return doc


def load_width_sweep(path: str) -> dict[str, Any]:
    """A file of :func:`write_width_sweep`; an error if it is something else."""
    import json

    with open(path, encoding="utf8") as fh:
        doc = json.load(fh)
    if doc.get("kind") != SWEEP_KIND:
        raise ValueError(f"{path} is not a width-sweep file (kind={doc.get('kind')!r}, expected {SWEEP_KIND!r})")
    return doc


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sdlib.ntk", description="Write a width sweep of the NTK "
                                 "chapter (network vs kernels on the data of Section 4.5) with its provenance.")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--widths", type=int, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", required=True)
    ap.add_argument("--max-iter", type=int, default=150)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    write_width_sweep(a.out, widths=a.widths, seeds=a.seeds, max_iter=a.max_iter, overwrite=a.overwrite)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())

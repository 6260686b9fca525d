"""Networks in the NTK parametrisation (torch, imported inside the functions): the dense layer and
:func:`ntk_mlp`, whose NTK tends to :func:`sdlib.ntk.analytic.relu_ntk` as the width grows
(the network is written out in :mod:`sdlib.ntk.analytic`); and the small helpers the empirical
kernel and the ridge fits share (:func:`is_dense`, :func:`dense_scales`, :func:`to_tensor`).

torch is imported on call, not with the module: ``import sdlib.ntk`` stays numpy and scikit-learn
only, so the analytic kernels need no torch.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from sdlib.ntk.analytic import SQRT2, check_depth, check_sigmas

__all__ = ["ntk_mlp", "ntk_linear_class", "is_dense", "dense_scales", "to_tensor"]


@functools.cache
def ntk_linear_class() -> type:
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
    """A fully connected ReLU network in the NTK parametrisation (:mod:`sdlib.ntk.analytic`), float64.

    ``depth`` hidden layers of ``width`` units; biases only when ``sigma_b > 0``. The initialisation
    is drawn from ``torch.Generator().manual_seed(seed)`` (the global RNG is not touched). Its NTK
    tends to :func:`relu_ntk` with the same ``depth``, ``sigma_w``, ``sigma_b`` as ``width`` grows.
    """
    import torch
    from torch import nn

    depth = check_depth(depth)
    sw, sb = check_sigmas(sigma_w, sigma_b)
    for name, value in (("in_features", in_features), ("width", width), ("out_features", out_features)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}")
    NTKLinear = ntk_linear_class()
    gen = torch.Generator().manual_seed(int(seed))
    sizes = [int(in_features)] + [int(width)] * depth + [int(out_features)]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i:
            layers.append(nn.ReLU())
        layers.append(NTKLinear(a, b, sw, sb, gen))
    return nn.Sequential(*layers)


def is_dense(module: Any) -> bool:
    """Whether ``module`` is a dense layer: ``nn.Linear`` or the layer of :func:`ntk_mlp`."""
    from torch import nn

    return isinstance(module, (nn.Linear, ntk_linear_class()))


def dense_scales(module: Any) -> tuple[float, float]:
    """The factors of a dense layer's weight and bias in its output (1 for ``nn.Linear``)."""
    return float(getattr(module, "w_scale", 1.0)), float(getattr(module, "b_scale", 1.0))


def to_tensor(X: ArrayLike, dtype: Any, device: Any) -> Any:
    """``X`` (numpy or torch) as a detached tensor of ``dtype`` on ``device``."""
    import torch

    if isinstance(X, torch.Tensor):
        return X.detach().to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(X), dtype=dtype, device=device)

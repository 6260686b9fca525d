"""Wide networks as kernel machines: the neural tangent kernel (NTK) and self-distillation of networks.

Section 5 of the paper carries eq. (16) to networks because very wide networks trained by gradient
descent behave as kernel ridge regression with the NTK (Jacot et al. 2018; Lee et al. 2019; Arora
et al. 2019). This package holds what is needed to check that bridge, one module per concept:

:mod:`~sdlib.ntk.analytic` (numpy)
    :func:`relu_ntk`, :func:`relu_nngp` and the scikit-learn kernel :class:`ReLUNTK`: the
    infinite-width NTK and NNGP kernel of a fully connected ReLU network in the NTK
    parametrisation, by the arc-cosine recursion (written out there).
:mod:`~sdlib.ntk.networks`
    :func:`ntk_mlp`, that network in float64.
:mod:`~sdlib.ntk.empirical`
    :func:`empirical_ntk`: ``Theta(X, X') = J(X) J(X')^T`` of any ``torch.nn.Module``.
:mod:`~sdlib.ntk.ridge`
    :class:`RidgeNetwork`: a network trained on the ridge objective to convergence (L-BFGS), and
    its linearisation.
:mod:`~sdlib.ntk.paths`
    :func:`network_path` (eqs. 3-5 with a network), :func:`network_optimal_path` (Section 5's
    Algorithm 1, alpha-hat: :mod:`sdlib.nn.alpha_hat`, the one implementation), and
    :func:`paper_penalty_kernel_path` (the linearised network under eq. 18's penalty).
:mod:`~sdlib.ntk.compare`
    :func:`compare_with_kernels`: a network's path next to its empirical and analytic kernels'.
:mod:`~sdlib.ntk.width`
    :func:`width_fit`, :func:`width_exponent`: the rate in the width; the committed width sweep
    (``python -m sdlib.ntk``).
:mod:`~sdlib.ntk.threads`
    torch's intra-op threads for all of the above: one, unless ``SDLIB_TORCH_THREADS`` says otherwise.

torch is imported inside the functions that need it: ``import sdlib.ntk`` needs numpy and
scikit-learn only.
"""

from __future__ import annotations

from sdlib.ntk.analytic import KINDS, SQRT2, ReLUNTK, relu_nngp, relu_ntk
from sdlib.ntk.compare import KernelComparison, compare_with_kernels, relative_gap
from sdlib.ntk.empirical import METHODS, OUTPUTS, empirical_ntk
from sdlib.ntk.networks import ntk_mlp
from sdlib.ntk.paths import NetworkPath, network_optimal_path, network_path, paper_penalty_kernel_path
from sdlib.ntk.ridge import PENALTIES, RidgeFit, RidgeNetwork
from sdlib.ntk.threads import TORCH_THREADS_ENV
from sdlib.ntk.width import (
    SWEEP_KIND,
    load_width_sweep,
    width_exponent,
    width_fit,
    width_sweep,
    write_width_sweep,
)

__all__ = [
    "SQRT2",
    "KINDS",
    "relu_ntk",
    "relu_nngp",
    "ReLUNTK",
    "ntk_mlp",
    "empirical_ntk",
    "OUTPUTS",
    "METHODS",
    "RidgeFit",
    "RidgeNetwork",
    "PENALTIES",
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
    "TORCH_THREADS_ENV",
]

"""The empirical NTK ``Theta(X, X') = J(X) J(X')^T`` of any ``torch.nn.Module`` at its parameters.

float64, with ``torch.func`` (``vmap`` over ``jacrev``), in blocks of inputs so that memory stays
bounded; dense layers use the exact factorisation of their per-input gradients (:class:`_NTKPlan`).
torch is imported inside the functions (``import sdlib.ntk`` needs no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sdlib.ntk.networks import dense_scales, is_dense, to_tensor
from sdlib.ntk.threads import few_torch_threads

__all__ = ["empirical_ntk", "OUTPUTS", "METHODS"]

FloatArray = NDArray[np.float64]

#: ``outputs=``: the kernel averaged over the outputs, or the kernel of all outputs jointly.
OUTPUTS = ("trace", "full")
#: ``method=``: the dense layers' factorisation where it applies, or ``jacrev`` for every parameter.
METHODS = ("auto", "jacobian")


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
                if not is_dense(mod) or calls.get(name) != [1]:
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
            if is_dense(mod):
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
            ws, bs = dense_scales(mod)
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


def _check_options(outputs: str, method: str, max_block_bytes: Any) -> None:
    if outputs not in OUTPUTS:
        raise ValueError(f"outputs must be one of {', '.join(OUTPUTS)}, got outputs={outputs!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got method={method!r}")
    if isinstance(max_block_bytes, bool) or not isinstance(max_block_bytes, (int, np.integer)) or max_block_bytes < 1:
        raise ValueError(f"max_block_bytes must be an integer >= 1, got max_block_bytes={max_block_bytes!r}")


def _inputs(model: Any, X: ArrayLike, X2: ArrayLike | None) -> tuple[Any, Any, bool]:
    """``X`` and ``X2`` as tensors of the model's dtype and device (``X2 = X`` when None), checked."""
    p0 = next(iter(model.parameters()), None)
    if p0 is None:
        raise ValueError("the model has no parameters: its NTK is zero")
    Xa = to_tensor(X, p0.dtype, p0.device)
    same = X2 is None
    Xb = Xa if same else to_tensor(X2, p0.dtype, p0.device)
    if Xa.shape[0] == 0 or Xb.shape[0] == 0:
        raise ValueError(f"X and X2 need at least one row, got {Xa.shape[0]} and {Xb.shape[0]}")
    if Xa.shape[1:] != Xb.shape[1:]:
        raise ValueError(f"X2 must have the shape of X's rows {tuple(Xa.shape[1:])}, got {tuple(Xb.shape[1:])}")
    return Xa, Xb, same


def _gram(plan: _NTKPlan, Xa: Any, Xb: Any, same: bool, full: bool, b: int) -> Any:
    """``J(Xa) J(Xb)^T`` block by block (``b`` rows at a time); symmetric Gram: the blocks on and
    above the diagonal, mirrored."""
    import torch

    p = plan.n_out
    n, m = Xa.shape[0], Xb.shape[0]
    G = torch.empty((n, p, m, p) if full else (n, m), dtype=torch.float64, device=Xa.device)
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
    return G


@few_torch_threads
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
    _check_options(outputs, method, max_block_bytes)
    Xa, Xb, same = _inputs(model, X, X2)
    plan = _NTKPlan(model, Xa, method, params)
    full = outputs == "full"
    b = max(1, int(max_block_bytes // (8 * max(plan.per_input_values, 1))))
    G = _gram(plan, Xa, Xb, same, full, b)
    n, m, p = Xa.shape[0], Xb.shape[0], plan.n_out
    out = G.reshape(n * p, m * p) if full else G
    return out.cpu().numpy().astype(np.float64, copy=False)

"""Networks trained on the ridge objective to convergence (torch, imported inside the functions).

:class:`RidgeNetwork` trains a module on ``1/2 ||t - f(X; theta)||^2 + lam/2 ||theta - theta_0||^2``
(or the paper's ``lam/2 ||theta||^2``, eq. 18) with L-BFGS, preconditioned by the Gauss-Newton
Hessian at ``theta_0`` (:class:`_Preconditioner`), the initial function removed:
``f(x; theta) = g(x; theta) - g(x; theta_0)``; :meth:`RidgeNetwork.linearized_theta` is the
minimiser of the network linearised at ``theta_0`` (kernel ridge regression with the empirical NTK,
eq. 2 with the feature map ``J``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sdlib.krr import theory
from sdlib.ntk.empirical import empirical_ntk
from sdlib.ntk.networks import to_tensor
from sdlib.ntk.threads import few_torch_threads

__all__ = ["RidgeFit", "RidgeNetwork", "PENALTIES"]

FloatArray = NDArray[np.float64]

#: ``penalty=``: ``lam/2 ||theta - theta_0||^2`` (``"init"``) or the paper's ``lam/2 ||theta||^2`` (``"zero"``).
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
        return to_tensor(a, self.dtype, self.device)

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

    @few_torch_threads
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
        lam = _check_fit_options(lam, penalty, gtol, max_iter)
        Xt = self._tensor(X)
        problem = _RidgeProblem(self, Xt, self._target_tensor(Xt, targets), lam, penalty,
                                self._preconditioner(Xt, lam) if precondition else None)
        return problem.solve(start, gtol=gtol, max_iter=max_iter)

    def _target_tensor(self, Xt: Any, targets: ArrayLike) -> Any:
        """``targets`` as an ``(n, p)`` tensor for this network's ``p`` outputs, or a ValueError."""
        T = self._tensor(targets).reshape(Xt.shape[0], -1)
        n_out = self._g0(Xt[:1]).shape[1]
        if T.shape != (Xt.shape[0], n_out):
            raise ValueError(f"targets must have shape ({Xt.shape[0]}, {n_out}) for this network's "
                             f"{n_out} outputs, got {tuple(np.shape(targets))}")
        return T

    @few_torch_threads
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
        extra term of the paper's penalty in the linearised model (see
        :func:`sdlib.ntk.paths.paper_penalty_kernel_path`); shape ``(n, p)``. One ``torch.func.jvp``."""
        import torch
        Xt = self._tensor(X)
        th0 = self._tensor(self.theta0)
        with torch.no_grad():
            _, tangent = _jvp(lambda th: self._g(th, Xt), (th0,), (th0,))
        return tangent.cpu().numpy()


def _check_fit_options(lam: Any, penalty: str, gtol: Any, max_iter: Any) -> float:
    """``lam`` checked (:func:`sdlib.krr.theory.check_lam`), and the options of :meth:`RidgeNetwork.fit`."""
    lam = theory.check_lam(lam)
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {', '.join(PENALTIES)}, got penalty={penalty!r}")
    if not (isinstance(gtol, (int, float)) and np.isfinite(gtol) and gtol > 0):
        raise ValueError(f"gtol must be a finite number > 0, got gtol={gtol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got max_iter={max_iter!r}")
    return lam


class _RidgeProblem:
    """One ridge objective of :meth:`RidgeNetwork.fit` in L-BFGS's variables ``z``:
    ``theta = theta_0 + S z`` with ``S = M^-1/2`` (:class:`_Preconditioner`) or the identity."""

    def __init__(self, net: RidgeNetwork, Xt: Any, T: Any, lam: float, penalty: str,
                 S: _Preconditioner | None) -> None:
        import torch

        self.net, self.Xt, self.T, self.lam, self.S = net, Xt, T, lam, S
        self.g0 = net._g0(Xt) if net.center else None
        self.th0 = net._tensor(net.theta0)
        self.c = self.th0 if penalty == "init" else torch.zeros_like(self.th0)

    def objective(self, th: Any) -> tuple[Any, Any]:
        """``1/2 ||t - f(X; theta)||^2 + lam/2 ||theta - c||^2`` and its gradient in ``theta``."""
        import torch

        th = th.detach().requires_grad_(True)
        r = self.net._g(th, self.Xt) - self.T
        if self.g0 is not None:
            r = r - self.g0
        dv = th - self.c
        loss = 0.5 * (r * r).sum() + 0.5 * self.lam * (dv * dv).sum()
        (grad,) = torch.autograd.grad(loss, th)
        return loss.detach(), grad

    def theta_of(self, z: FloatArray) -> Any:
        import torch

        zt = torch.as_tensor(z, dtype=self.net.dtype, device=self.net.device)
        return self.th0 + (self.S.apply(zt) if self.S is not None else zt)

    def fun(self, z: FloatArray) -> tuple[float, FloatArray]:
        """The objective and its gradient in ``z`` (what L-BFGS sees)."""
        loss, grad = self.objective(self.theta_of(z))
        gz = self.S.apply(grad) if self.S is not None else grad
        return float(loss), gz.cpu().numpy()

    def z_start(self, start: ArrayLike | None) -> FloatArray:
        """``z`` of the starting point: 0 (``theta_0``), or ``S^-1 (start - theta_0)``."""
        if start is None:
            return np.zeros(self.net.n_params)
        d0 = self.net._tensor(np.asarray(start, dtype=np.float64)) - self.th0
        return (self.S.apply_inverse(d0) if self.S is not None else d0).cpu().numpy()

    def solve(self, start: ArrayLike | None, *, gtol: float, max_iter: int) -> RidgeFit:
        """Minimise with scipy's L-BFGS-B (20 corrections, ``ftol=0``) and report the fit's health."""
        import torch
        from scipy import optimize

        res = optimize.minimize(self.fun, self.z_start(start), jac=True, method="L-BFGS-B",
                                options={"maxiter": int(max_iter), "maxfun": 2 * int(max_iter), "gtol": float(gtol),
                                         "ftol": 0.0, "maxcor": 20})
        with torch.no_grad():
            theta = self.theta_of(res.x)
        loss, grad = self.objective(theta)
        gz = self.S.apply(grad) if self.S is not None else grad
        theta_np = theta.cpu().numpy()
        gmax = float(gz.abs().max())
        theta0 = self.net.theta0
        return RidgeFit(theta=theta_np, loss=float(loss), grad_max=gmax, grad_norm=float(gz.norm()),
                        grad_theta_norm=float(grad.norm()), nit=int(res.nit), converged=gmax <= gtol,
                        distance=float(np.linalg.norm(theta_np - theta0) / max(np.linalg.norm(theta0), 1e-300)))

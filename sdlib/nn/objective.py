"""The distillation objective of Section 5, eq. (18), as a minibatch loss.

Eq. (18) for a network ``f_nn(., theta)`` with one-hot targets ``Y`` (footnote 12: class
probabilities, i.e. the softmax of the outputs) and the teacher's probabilities ``Y^(tau-1)``:

    alpha/2 ||softmax(f) - Y||_F^2 + (1 - alpha)/2 ||softmax(f) - Y^(tau-1)||_F^2 + lam/2 ||theta||^2.

The paper prints ``Y^(1)`` in the first term; with Section 3's notation (``y^(0) = y``, ``y^(1)`` the
first fit's predictions) that is an erratum: the ground-truth targets ``Y`` are meant (problem 3,
footnote 12), and they are what is used here.

Reduction used here (documented choice): the data terms are averaged over the examples of the
batch (the *mean over the batch of per-example squared errors / 2*, summed over the ``p`` classes),
and the penalty is ``lam/2 * sum of squared parameters`` (every parameter tensor). Minimising the
batch mean with ``lam`` is minimising eq. (18) (a sum over the ``n`` training examples) with
``lam_eq18 = n * lam``. The teacher's probabilities are computed on the *same augmented batch*.

The authors' released code differs (the chapter notebooks/section5_deep.md, "The objective as
trained"): ``torch.nn.functional.mse_loss`` (a mean over the batch *and* the ``p`` classes, i.e. our
data terms x 2/p) and a penalty ``1e-4 * sum ||theta||`` (norms, not squared). Ours follows eq. (18).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn import functional as F

__all__ = ["distill_loss", "l2_penalty", "objective"]


def distill_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    teacher_probs: torch.Tensor | None,
    alpha: float | torch.Tensor,
) -> torch.Tensor:
    """Data terms of eq. (18), averaged over the batch.

    ``logits`` (B, p); ``y`` int labels (B,); ``teacher_probs`` (B, p) or None when ``alpha == 1``
    (the first fit, tau = 1, which sees only ``Y``). Returns a scalar:
    ``mean_b [alpha/2 ||s_b - e_{y_b}||^2 + (1 - alpha)/2 ||s_b - t_b||^2]`` with ``s = softmax(logits)``.
    """
    s = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    onehot = F.one_hot(y, num_classes=s.shape[-1]).to(s.dtype)
    truth = 0.5 * ((s - onehot) ** 2).sum(-1).mean()
    if teacher_probs is None:
        if isinstance(alpha, torch.Tensor) or float(alpha) != 1.0:
            raise ValueError(f"teacher_probs is None, which needs alpha=1, got alpha={alpha!r}")
        return truth
    teach = 0.5 * ((s - teacher_probs.to(s.dtype)) ** 2).sum(-1).mean()
    return alpha * truth + (1.0 - alpha) * teach


def l2_penalty(params: Iterable[torch.Tensor], lam: float) -> torch.Tensor:
    """``lam/2 * sum_theta ||theta||^2`` over every parameter tensor (the last term of eq. 18)."""
    total = sum((p.to(torch.promote_types(p.dtype, torch.float32)) ** 2).sum() for p in params)
    return 0.5 * lam * total  # type: ignore[return-value]


def objective(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    teacher_probs: torch.Tensor | None,
    alpha: float,
    lam: float,
) -> torch.Tensor:
    """Eq. (18) on one (augmented, normalised) batch: :func:`distill_loss` + :func:`l2_penalty`."""
    return distill_loss(model(x), y, teacher_probs, alpha) + l2_penalty(model.parameters(), lam)

"""Eq. (18) as implemented (sdlib.nn.objective) against a hand computation in numpy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdlib.nn.objective import distill_loss, l2_penalty, objective  # noqa: E402


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 1.7, -0.4])
def test_distill_loss_matches_hand_computation(alpha: float) -> None:
    rng = np.random.default_rng(1)
    B, p = 7, 5
    logits = rng.normal(size=(B, p))
    y = rng.integers(0, p, size=B)
    t = _softmax(rng.normal(size=(B, p)))
    s = _softmax(logits)
    e = np.eye(p)[y]
    hand = 0.0
    for b in range(B):  # eq. (18), per example, then the mean over the batch
        hand += alpha / 2 * np.sum((s[b] - e[b]) ** 2) + (1 - alpha) / 2 * np.sum((s[b] - t[b]) ** 2)
    hand /= B
    got = distill_loss(torch.tensor(logits), torch.tensor(y), torch.tensor(t), alpha)
    assert abs(float(got) - hand) <= 1e-6 * max(1.0, abs(hand))


def test_footnote7_weighted_target_identity() -> None:
    """Loss = 1/2 ||s - (alpha e + (1 - alpha) t)||^2 + alpha (1 - alpha)/2 ||e - t||^2 per example."""
    rng = np.random.default_rng(2)
    logits, y = torch.tensor(rng.normal(size=(6, 4))), torch.tensor(rng.integers(0, 4, size=6))
    t = torch.softmax(torch.tensor(rng.normal(size=(6, 4))), -1)
    a = 0.35
    s = torch.softmax(logits, -1)
    e = torch.nn.functional.one_hot(y, 4).double()
    rhs = (0.5 * ((s - (a * e + (1 - a) * t)) ** 2).sum(1) + a * (1 - a) / 2 * ((e - t) ** 2).sum(1)).mean()
    assert abs(float(distill_loss(logits, y, t, a)) - float(rhs)) <= 1e-12


def test_objective_adds_half_lam_squared_norm() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    lam = 0.37
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    s = _softmax(x.numpy() @ w.T + b)
    hand = np.mean(0.5 * np.sum((s - np.eye(4)[y.numpy()]) ** 2, axis=1)) + lam / 2 * (np.sum(w**2) + np.sum(b**2))
    got = objective(model, x, y, None, 1.0, lam).detach()
    assert abs(float(got) - hand) <= 1e-9
    assert abs(float(l2_penalty(model.parameters(), lam).detach()) - lam / 2 * (np.sum(w**2) + np.sum(b**2))) <= 1e-6


def test_teacher_required_unless_alpha_is_one() -> None:
    with pytest.raises(ValueError, match="alpha=0.5"):
        distill_loss(torch.zeros(2, 3), torch.tensor([0, 1]), None, 0.5)

"""alpha-hat (Section 5): the chain machinery on kernel ridge regression, where eq. (16) is exact,
against sdlib.krr.estimator's Algorithm 1; and the networks' alpha-hat recomputed from the saved outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from sdlib import KernelSelfDistillation
from sdlib.nn.alpha_hat import alpha_hat_chain


def test_alpha_hat_chain_on_krr_equals_algorithm1() -> None:
    rng = np.random.default_rng(0)
    n, m, p, lam, gamma = 40, 25, 3, 0.3, 2.0
    X, Xv = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (m, 2))
    Y = np.eye(p)[rng.integers(0, p, n)]           # one-hot targets, as in Section 5
    Yv = np.eye(p)[rng.integers(0, p, m)]

    def fit(alpha: float, teacher: KernelRidge | None) -> KernelRidge:
        target = Y if teacher is None else alpha * Y + (1 - alpha) * teacher.predict(X)   # eq. (18), linear model
        return KernelRidge(alpha=lam, kernel="rbf", gamma=gamma).fit(X, target)   # sklearn's alpha is lam

    alphas, models, fits = alpha_hat_chain(fit, lambda mdl: mdl.predict(Xv), Yv, steps=5)
    ref = KernelSelfDistillation(kernel="rbf", gamma=gamma, lam=lam).fit(X, Y).optimal_alphas(Xv, Yv, steps=5)
    np.testing.assert_allclose(alphas, ref, rtol=1e-6, atol=1e-8)
    assert fits == 2 * (5 - 1) + 1 and len(models) == 5


def test_alpha_hat_chain_clip() -> None:
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(20, 1)), np.eye(2)[rng.integers(0, 2, 20)]
    Xv, Yv = rng.normal(size=(15, 1)), np.eye(2)[rng.integers(0, 2, 15)]

    def fit(alpha: float, teacher: KernelRidge | None) -> KernelRidge:
        target = Y if teacher is None else alpha * Y + (1 - alpha) * teacher.predict(X)
        return KernelRidge(alpha=1.0, kernel="rbf", gamma=1.0).fit(X, target)

    free, _, _ = alpha_hat_chain(fit, lambda mdl: mdl.predict(Xv), Yv, steps=4)
    clipped, _, _ = alpha_hat_chain(fit, lambda mdl: mdl.predict(Xv), Yv, steps=4, clip=True)
    assert all(0.0 <= a <= 1.0 for a in clipped)
    if 0.0 <= free[0] <= 1.0:
        assert abs(free[0] - clipped[0]) <= 1e-12
    else:
        assert clipped[0] in (0.0, 1.0)


def test_network_alpha_hat_from_saved_outputs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from sdlib.nn.config import ExperimentConfig
    from sdlib.nn.graph import run_experiment

    cfg = ExperimentConfig(dataset="digits", arch="small_cnn", epochs=1, steps=3, alphas=[0.5], seeds=[0],
                           n_train=96, n_val=40, n_test=40)
    doc = run_experiment(cfg, tmp_path, checkpoint_dir=tmp_path / "ck")
    recs = doc["results"]["records"]
    yv = None
    ck = tmp_path / "ck" / "seed0"
    y1 = torch.load(ck / "first.pt", weights_only=True)["val_probs"].double().numpy()
    from sdlib.nn.data import load_data

    d = load_data("digits", n_train=96, n_val=40, n_test=40)
    yv = np.eye(10)[d.val.y.numpy()]
    for tau in (2, 3):
        y0 = torch.load(ck / "alpha_hat" / f"step{tau}_alpha0.pt", weights_only=True)["val_probs"].double().numpy()
        diff = (y0 - y1).ravel()
        expected = 1 - diff @ (yv - y1).ravel() / (diff @ diff)   # eq. (16), Frobenius norm, by hand
        [rec] = [r for r in recs if r["chain"] == "alpha_hat" and r["step"] == tau]
        assert abs(rec["alpha_hat"] - expected) <= 1e-9 * max(1, abs(expected))
        assert rec["alpha"] == rec["alpha_hat"] and rec["fits"] == 2 * (tau - 1) + 1
    assert len(doc["results"]["helper_records"]) == 2
    assert {r["fits"] for r in recs if r["chain"] == "alpha=0.5"} == {1, 2, 3}

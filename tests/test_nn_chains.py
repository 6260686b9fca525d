"""Chains (CPU, deterministic): interrupted + resumed == straight through; a corrupt checkpoint is
retrained with a warning; a NaN loss names seed, chain, step and epoch; the vmapped fits of one step
equal the sequential ones; a checkpoint directory made with other parameters is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from sdlib.nn.checkpoints import CorruptCheckpointWarning  # noqa: E402
from sdlib.nn.config import ExperimentConfig  # noqa: E402
from sdlib.nn.data import load_data  # noqa: E402
from sdlib.nn.fitting import fit, fit_together, predict_probs  # noqa: E402
from sdlib.nn.graph import InterruptedRun, run_experiment  # noqa: E402

CFG = dict(dataset="digits", arch="small_cnn", epochs=1, steps=2, alphas=[0.0, 0.6], seeds=[0, 1],
           n_train=64, n_val=32, n_test=32)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_data("digits", n_train=64, n_val=32, n_test=32)


def _strip(doc: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("seconds")} for r in doc["results"]["records"]]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("straight")
    return out, run_experiment(ExperimentConfig(**CFG), out, data=data)


def test_interrupted_and_resumed_equals_straight(tmp_path: Path, data, straight) -> None:  # type: ignore[no-untyped-def]
    cfg = ExperimentConfig(**CFG)
    with pytest.raises(InterruptedRun):
        run_experiment(cfg, tmp_path, data=data, stop_after_fits=5)
    assert not (tmp_path / "results.json").exists()
    doc = run_experiment(cfg, tmp_path, data=data)
    assert doc["results"]["fits_loaded"] == 5
    assert doc["results"]["fits_trained"] == straight[1]["results"]["fits_trained"] - 5
    assert _strip(doc) == _strip(straight[1])      # bitwise: every accuracy, loss and alpha-hat


def test_corrupt_checkpoint_is_retrained(tmp_path: Path, data, straight) -> None:  # type: ignore[no-untyped-def]
    import shutil

    shutil.copytree(straight[0] / "checkpoints", tmp_path / "checkpoints")
    bad = tmp_path / "checkpoints" / "seed1" / "alpha=0.6" / "step2.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.warns(CorruptCheckpointWarning, match="step2.pt"):
        doc = run_experiment(ExperimentConfig(**CFG), tmp_path, data=data)
    assert doc["results"]["fits_trained"] == 1
    assert _strip(doc) == _strip(straight[1])


def test_checkpoint_dir_with_other_parameters_is_refused(tmp_path: Path, data, straight) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="epochs"):
        run_experiment(ExperimentConfig(**{**CFG, "epochs": 2}), tmp_path, data=data,
                       checkpoint_dir=straight[0] / "checkpoints")


def test_records_and_fit_counts(straight) -> None:  # type: ignore[no-untyped-def]
    recs = straight[1]["results"]["records"]
    assert len(recs) == 2 * 3 * 2                       # seeds x chains x steps
    for r in recs:
        for k in ("alpha", "train_acc", "val_acc", "test_acc", "train_loss", "seconds", "fits"):
            assert k in r
        assert r["fits"] == (2 * (r["step"] - 1) + 1 if r["chain"] == "alpha_hat" else r["step"])
    # the first model is shared by every chain of a seed
    for s in (0, 1):
        firsts = [r for r in recs if r["seed"] == s and r["step"] == 1]
        assert len({(r["val_acc"], r["train_loss"]) for r in firsts}) == 1
    prov = straight[1]["provenance"]
    assert prov["seed"] == [0, 1] and "cpu" in prov["device"] and prov["packages"]["torch"]


def test_nan_loss_names_seed_chain_step_epoch(data) -> None:  # type: ignore[no-untyped-def]
    cfg = ExperimentConfig(**CFG)
    teacher = fit(cfg, data, alpha=1.0, teacher=None, seed=1).model
    with pytest.raises(FloatingPointError, match=r"seed=3, chain=alpha=0.6, step=2, epoch=1"):
        fit(cfg, data, alpha=float("nan"), teacher=teacher, seed=2, where={"seed": 3, "chain": "alpha=0.6", "step": 2})


def test_fit_together_equals_sequential_fits(data) -> None:  # type: ignore[no-untyped-def]
    cfg = ExperimentConfig(**{**CFG, "epochs": 2})
    teacher = fit(cfg, data, alpha=1.0, teacher=None, seed=1).model
    other = fit(cfg, data, alpha=1.0, teacher=None, seed=5).model
    alphas, teachers = [0.0, 0.3, 0.9], [teacher, other, teacher]
    together = fit_together(cfg, data, alphas=alphas, teachers=teachers, seed=2)
    for a, t, res in zip(alphas, teachers, together, strict=True):
        seq = fit(cfg, data, alpha=a, teacher=t, seed=2)
        p_seq = predict_probs(seq.model, data.val.x, data.spec, cfg)
        p_tog = predict_probs(res.model, data.val.x, data.spec, cfg)
        assert float((p_seq - p_tog).abs().max()) <= 1e-4
        assert abs(seq.train_loss - res.train_loss) <= 1e-5

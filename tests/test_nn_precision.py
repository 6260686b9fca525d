"""The GPU-path defects, tested on the CPU: alpha-hat is scored in fp32 even when training runs
under bf16 autocast; a checkpoint's identity includes the device type and the precision, and resume
never mixes them; chains_together with a BatchNorm network is rejected before anything is trained;
fp32 means no TF32; user errors (no GPU, missing data, a download that cannot reach its host) are
sdlib.errors types with a one-line message naming cause and fix."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdlib.errors import DataMissingError, DeviceUnavailableError, RunError, UsageError  # noqa: E402
from sdlib.nn import fitting as T  # noqa: E402
from sdlib.nn.config import ARCHS, BATCHNORM_ARCHS, ExperimentConfig, load_experiment  # noqa: E402
from sdlib.nn.data import load_data  # noqa: E402
from sdlib.nn.graph import fit_identity, train  # noqa: E402
from sdlib.nn.models import build_model, has_batchnorm  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(dataset="digits", arch="small_cnn", epochs=2, steps=2, alphas=[0.5], seeds=[0],
            n_train=96, n_val=64, n_test=32, augment=False)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return load_data("digits", n_train=96, n_val=64, n_test=32)


def _bf16_autocast(dev, cfg):  # type: ignore[no-untyped-def]
    """What ``amp="bf16"`` does on CUDA, on the CPU (the CUDA branch cannot run here)."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if cfg.amp == "bf16" else contextlib.nullcontext()


def test_alpha_hat_is_scored_in_fp32_under_bf16_training(tmp_path: Path, data, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(T, "_autocast", _bf16_autocast)
    cfg = ExperimentConfig(**{**TINY, "amp": "bf16"})
    doc = train(cfg, tmp_path, data=data, progress=False)
    ck = tmp_path / "checkpoints" / "seed0"
    models, probs = {}, {}
    for name, path in (("first", ck / "first.pt"), ("alpha0", ck / "alpha_hat" / "step2_alpha0.pt")):
        state = torch.load(path, weights_only=True)
        m = T.new_model(cfg, data.spec, 0, torch.device("cpu"))
        m.load_state_dict(state["state_dict"])
        models[name] = m
        fp32 = T.predict_probs(m, data.val.x, data.spec, cfg)
        bf16 = T.predict_probs(m, data.val.x, data.spec, cfg, amp=True)
        assert torch.equal(state["val_probs"], fp32)            # what was saved is the fp32 scoring
        assert float((bf16 - fp32).abs().max()) > 1e-4          # ... and bf16 scoring would differ
        probs[name] = fp32.double().numpy()
    yv = np.eye(10)[data.val.y.numpy()]
    diff = (probs["alpha0"] - probs["first"]).ravel()
    expected = 1 - diff @ (yv - probs["first"]).ravel() / (diff @ diff)     # eq. (16), by hand
    [rec] = [r for r in doc["results"]["records"] if r["chain"] == "alpha_hat" and r["step"] == 2]
    assert abs(rec["alpha_hat"] - expected) <= 1e-12 * max(1.0, abs(expected))


def test_identity_has_device_type_and_actual_precision() -> None:
    bf16 = ExperimentConfig(**{**TINY, "amp": "bf16"})
    none = ExperimentConfig(**{**TINY, "amp": "none"})
    assert fit_identity(bf16, "cpu") == fit_identity(none, "cpu")           # amp is ignored on a CPU: both fp32
    assert fit_identity(bf16, "cpu")["precision"] == "fp32"
    cuda = fit_identity(bf16, "cuda")
    assert (cuda["device_type"], cuda["precision"]) == ("cuda", "bf16")
    assert fit_identity(none, "cuda")["precision"] == "fp32"


def _as_if_made_on_cuda_bf16(ckpt: Path, cfg: ExperimentConfig) -> dict:
    other = fit_identity(cfg, "cuda")
    (ckpt / "config.json").write_text(json.dumps(other))
    for p in ckpt.rglob("*.pt"):
        obj = torch.load(p, weights_only=True)
        obj["identity"] = other
        torch.save(obj, p)
    return other


def test_resume_never_mixes_bf16_cuda_checkpoints_into_a_cpu_run(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    cfg = ExperimentConfig(**{**TINY, "amp": "bf16"})
    train(cfg, tmp_path, data=data, progress=False)
    ckpt = tmp_path / "checkpoints"
    _as_if_made_on_cuda_bf16(ckpt, cfg)
    with pytest.raises(UsageError, match=r"device_type.*'cuda', 'cpu'.*precision.*'bf16', 'fp32'"):
        train(cfg, tmp_path, data=data, progress=False)
    (ckpt / "config.json").unlink()                  # the directory's record gone: each checkpoint still refuses
    with pytest.raises(UsageError, match=r"first.pt was made with other settings"):
        train(cfg, tmp_path, data=data, progress=False)


def test_chains_together_with_batchnorm_is_rejected_at_validation() -> None:
    for arch in BATCHNORM_ARCHS:
        with pytest.raises(UsageError, match=rf"chains_together.*BatchNorm.*arch='{arch}'"):
            ExperimentConfig(arch=arch, chains_together=True)
    with pytest.raises(UsageError, match="chains_together"):
        load_experiment(ROOT / "configs" / "figure5_paper.yaml", chains_together=True)
    for arch in ARCHS:                               # the list is what the networks are
        assert has_batchnorm(build_model(arch, 10, 1)) == (arch in BATCHNORM_ARCHS), arch


def test_fp32_means_no_tf32(data) -> None:  # type: ignore[no-untyped-def]
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    try:
        T.fit(ExperimentConfig(**{**TINY, "epochs": 1}), data, alpha=1.0, teacher=None, seed=0)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        T.configure_precision(torch.device("cpu"))


def test_cuda_without_gpu_is_a_device_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceUnavailableError, match=r"device='cuda'.*no CUDA GPU.*use device='cpu'"):
        T.resolve_device("cuda")
    with pytest.raises(DeviceUnavailableError):
        train(ExperimentConfig(**{**TINY, "device": "cuda"}), Path("/nonexistent-never-written"), progress=False)


def test_missing_data_says_where_to_place_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match=rf"Fashion-MNIST not found: place .*\.gz in {tmp_path}"):
        load_data("fashion_mnist", tmp_path)
    with pytest.raises(DataMissingError, match=rf"CIFAR-10 not found in {tmp_path}.*extract cifar-10-python"):
        load_data("cifar10", tmp_path)


def test_a_download_that_cannot_reach_its_host(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from urllib.error import URLError

    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.mnist as mnist

    def offline(*a, **k):  # type: ignore[no-untyped-def]
        raise URLError("no route to host")

    monkeypatch.setattr(mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(RunError, match=rf"could not download Fashion-MNIST.*place the files in {tmp_path}"):
        load_data("fashion_mnist", tmp_path, download=True)
    with pytest.raises(RunError, match=rf"could not download CIFAR-10.*place the files in {tmp_path}"):
        load_data("cifar10", tmp_path, download=True)
    for msg in ("fashion_mnist", "cifar10"):
        with pytest.raises(RunError) as e:
            load_data(msg, tmp_path, download=True)
        assert "\n" not in str(e.value)               # one line

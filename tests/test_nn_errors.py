"""Bad input: unknown architecture or dataset, out-of-range parameters, device cuda without a GPU;
the models as the paper used them; sdlib and the result readers import without torch; on the
command line (``python -m sdlib train``) device cuda without a GPU, missing CIFAR-10 files and a
download that cannot reach its host are each one line naming the fix, exit status 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdlib.nn.config import ARCHS, DATASETS, ExperimentConfig


def test_unknown_arch_and_dataset_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="resnet50.*small_cnn"):
        ExperimentConfig(arch="vgg11")
    with pytest.raises(ValueError, match="cifar10, fashion_mnist, digits"):
        ExperimentConfig(dataset="mnist")


@pytest.mark.parametrize("bad", [dict(alphas=[1.5]), dict(epochs=0), dict(lr=-1.0), dict(seeds=[]),
                                 dict(device="tpu"), dict(n_val=0), dict(optimizer="lbfgs")])
def test_parameters_out_of_range_name_themselves(bad: dict) -> None:
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        ExperimentConfig(**bad)


def test_unknown_parameter_in_a_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sdlib.nn.config import load_experiment

    p = tmp_path / "c.yaml"
    p.write_text("dataset: digits\nepochz: 3\n")
    with pytest.raises(ValueError, match="epochz"):
        load_experiment(p)


def test_a_config_file_that_cannot_be_used_is_one_line_naming_it(tmp_path: Path) -> None:
    from sdlib.errors import UsageError
    from sdlib.nn.config import load_experiment

    cases = {"missing.yaml": None, "list.yaml": "- 1\n- 2\n", "broken.yaml": "epochs: [3\n",
             "latin1.yaml": b"dataset: d\xe9\n"}
    reasons = {"missing.yaml": "does not exist; give a YAML file", "list.yaml": "must hold a mapping 'name: value'",
               "broken.yaml": "is not valid YAML", "latin1.yaml": "is not UTF-8 text"}
    for name, content in cases.items():
        p = tmp_path / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        elif content is not None:
            p.write_text(content)
        with pytest.raises(UsageError) as err:
            load_experiment(p)
        msg = str(err.value)
        assert "\n" not in msg and f"config file {str(p)!r}" in msg and reasons[name] in msg, msg
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_experiment(empty, epochs=2) == ExperimentConfig(epochs=2)    # an empty file: the defaults


def test_load_config_is_a_deprecated_name_of_load_experiment(tmp_path: Path) -> None:
    import sdlib.nn
    from sdlib.nn.config import load_experiment

    p = tmp_path / "c.yaml"
    p.write_text("epochs: 2\n")
    with pytest.warns(DeprecationWarning, match="load_experiment"):
        old = sdlib.nn.load_config(p, steps=4)
    assert old == load_experiment(p, steps=4) == ExperimentConfig(epochs=2, steps=4)


def test_cuda_without_gpu_is_an_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from sdlib.nn.fitting import resolve_device

    with pytest.raises(RuntimeError, match="device='cuda'.*no CUDA GPU"):
        resolve_device("cuda")


def test_build_model_unknown_and_shapes() -> None:
    torch = pytest.importorskip("torch")
    from sdlib.nn.models import build_model

    with pytest.raises(ValueError, match="valid architectures"):
        build_model("resnet101", 10)
    m = build_model("resnet18", 10, in_channels=1)       # ImageNet stem, 1-channel first conv
    assert m.conv1.in_channels == 1 and m.conv1.kernel_size == (7, 7) and m.conv1.stride == (2, 2)
    assert isinstance(m.maxpool, torch.nn.MaxPool2d) and m.fc.out_features == 10
    c = build_model("resnet18_cifar", 10)
    assert c.conv1.kernel_size == (3, 3) and c.conv1.stride == (1, 1) and isinstance(c.maxpool, torch.nn.Identity)
    import torchvision

    ref = torchvision.models.resnet50(weights=None, num_classes=10)
    ours = build_model("resnet50", 10)
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in ref.parameters()]
    with torch.no_grad():
        assert build_model("small_cnn", 10, 1)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
        assert c.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert set(ARCHS) >= {"resnet18", "resnet34", "resnet50"} and len(DATASETS) == 3


def test_sdlib_and_result_readers_do_not_import_torch() -> None:
    code = ("import sys, sdlib, sdlib.nn, sdlib.nn.results, sdlib.nn.config, "
            "sdlib.chapters.section5_figures; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# The same errors on the command line (``python -m sdlib train``): one line, exit 1, no traceback

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke_cpu.yaml"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sdlib train: error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_cuda_without_gpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    from sdlib.__main__ import main

    out = tmp_path / "o"
    assert main(["train", "-f", str(SMOKE), "-o", str(out), "--dry-run", "-p", "device", "cuda", "--no-progress"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "device='cuda'" in line and "no CUDA GPU" in line and "-p device cpu" in line
    assert not (out / "results.json").exists()


def test_cli_missing_cifar10_says_where_to_place_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torchvision")
    from sdlib.__main__ import main

    empty = tmp_path / "data"
    assert main(["train", "-f", str(SMOKE), "-o", str(tmp_path / "o"), "--dry-run", "-p", "dataset", "cifar10",
                 "-p", "data_dir", str(empty), "--no-progress"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "CIFAR-10 not found" in line and str(empty) in line and "cifar-10-python.tar.gz" in line


def test_cli_download_that_cannot_reach_its_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("torchvision")
    from torchvision.datasets import CIFAR10

    from sdlib.__main__ import main

    # port 9 (discard) on this machine: refused at once, whatever the network
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    empty = tmp_path / "data"
    assert main(["train", "-f", str(SMOKE), "-o", str(tmp_path / "o"), "--dry-run", "-p", "dataset", "cifar10",
                 "-p", "data_dir", str(empty), "-p", "download", "true", "--no-progress"]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "could not download CIFAR-10" in line and str(empty) in line and "download: false" in line

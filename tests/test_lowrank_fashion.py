"""The kernel twin of Section 5 (sdlib.experiments.kernel_scale) on small files in Fashion-MNIST's format.

Oracles: eq. (16) evaluated directly on the validation predictions of explicit paths
(``theory.alpha_star``), and accuracies recomputed from the predictions; the records are read by
Section 5's own comparison (``sdlib.nn.results.paired_comparison``).
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torchvision")

from sdlib import KernelSelfDistillation
from sdlib.experiments import kernel_scale as ks  # noqa: E402
from sdlib.krr import theory  # noqa: E402
from sdlib.nn import results as R  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sdlib.krr.lowrank.LowRankWarning")


def _idx(path: Path, arr: np.ndarray) -> None:
    head = struct.pack(">IIII", 2051, *arr.shape) if arr.ndim == 3 else struct.pack(">II", 2049, arr.shape[0])
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SDLIB_DATA", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    src = tmp_path / "debian"
    src.mkdir()
    # class-dependent images, so that a kernel separates the classes somewhat
    ytr, yte = rng.integers(0, 10, 90), rng.integers(0, 10, 30)
    proto = rng.integers(0, 256, (10, 28, 28))
    noisy = lambda y: np.clip(proto[y] + rng.normal(0, 60, (len(y), 28, 28)), 0, 255)  # noqa: E731
    for name, arr in (("train-images-idx3-ubyte", noisy(ytr)), ("train-labels-idx1-ubyte", ytr),
                      ("t10k-images-idx3-ubyte", noisy(yte)), ("t10k-labels-idx1-ubyte", yte)):
        _idx(src / f"{name}.gz", arr)
    return src


def test_study_records_are_section5_records_with_exact_alpha_star(fashion_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r" / "results.json"
    out.parent.mkdir()
    doc = ks.run_study(out, n_train=None, n_val=20, seeds=[0, 1], steps=3, alphas=(0.0, 0.5),
                       n_components=30, data_dir=fashion_dir)
    assert json.loads(out.read_text())["provenance"]["parameters"]["n_components"] == 30
    recs = doc["results"]["records"]
    assert {r["chain"] for r in recs} == {"alpha_hat", "alpha=0.0", "alpha=0.5"}
    rows = R.paired_comparison(doc)  # Section 5's comparison reads the kernel's records
    assert [r["step"] for r in rows] == [2, 3] and all(r["n"] == 2 for r in rows)
    # eq. (16) directly, on the validation predictions of explicit paths, for seed 1
    data = ks.load_fashion(None, 20, None, 0, fashion_dir)
    lam = doc["results"]["lam"]
    model = KernelSelfDistillation(gamma=doc["parameters"]["gamma"], lam=lam, n_components=30,
                                   random_state=1).fit(data["X_train"], data["Y_train"])
    f1 = model.path(data["X_val"], steps=1)[0]
    f0 = model.path(data["X_val"], steps=2, alpha=0.0)[1]
    a2 = theory.alpha_star(data["Y_val"], f1, f0)
    got = {r["step"]: r for r in recs if r["seed"] == 1 and r["chain"] == "alpha_hat"}
    assert got[2]["alpha_hat"] == pytest.approx(a2, rel=1e-8, abs=1e-10)
    # the accuracy of the alpha* chain at step 3, recomputed from its test predictions
    a = [got[2]["alpha_hat"], got[3]["alpha_hat"]]
    F = model.path(data["X_test"], steps=3, alpha=a)[2]
    assert got[3]["test_acc"] == pytest.approx(float(np.mean(F.argmax(1) == data["y_test"])))


def test_main_refuses_to_replace_a_result(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):
        ks.main([str(out)])
    assert out.read_text() == "{}"

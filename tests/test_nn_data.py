"""Data loading: CIFAR-10 through torchvision's own CIFAR10 class on small files in CIFAR-10's format
written here; Fashion-MNIST from .gz files; digits; augmentation; the missing-data errors."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sdlib.errors import DataMissingError  # noqa: E402
from sdlib.nn.data import SPECS, augment, load_data, normalise  # noqa: E402


def _write_cifar(root: Path, per_batch: int = 12, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """CIFAR-10's python format: pickled dicts with 'data' (N, 3072) uint8, rows R..G..B, and 'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / name, "wb") as fh:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, fh)
        written[name] = (data, np.array(labels))
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"], "num_cases_per_batch": per_batch}, fh)
    return written


def test_cifar10_loader_on_files_in_cifar10_format(tmp_path: Path) -> None:
    written = _write_cifar(tmp_path)
    d = load_data("cifar10", tmp_path, n_val=20, verify_md5=False)
    assert d.spec.channels == 3 and d.spec.size == 32
    assert (len(d.train), len(d.val), len(d.test)) == (40, 20, 10)
    assert d.train.x.shape[1:] == (3, 32, 32) and d.train.x.dtype == torch.uint8
    # every image is one of the rows written, decoded as (3, 32, 32) channel planes, with its label
    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = np.concatenate([written[f"data_batch_{i}"][1] for i in range(1, 6)])
    lookup = {rows[i].tobytes(): labels[i] for i in range(len(rows))}
    for split in (d.train, d.val):
        for x, y in zip(split.x.numpy(), split.y.numpy(), strict=True):
            assert lookup[x.reshape(-1).tobytes()] == y
    test_rows, test_labels = written["test_batch"]
    np.testing.assert_array_equal(d.test.x.numpy().reshape(10, -1), test_rows)
    np.testing.assert_array_equal(d.test.y.numpy(), test_labels)


def test_cifar10_md5_is_verified_by_default(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    with pytest.raises(RuntimeError, match="md5"):
        load_data("cifar10", tmp_path, n_val=20)


def test_cifar10_missing_names_where_the_files_go(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match=r"cifar-10-batches-py.*download: true"):
        load_data("cifar10", tmp_path / "nothing", download=False)


def _idx(path: Path, arr: np.ndarray) -> None:
    head = struct.pack(">IIII", 2051, *arr.shape) if arr.ndim == 3 else struct.pack(">II", 2049, arr.shape[0])
    with gzip.open(path, "wb") as fh:
        fh.write(head + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_from_gz_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDLIB_DATA", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    src = tmp_path / "debian"
    src.mkdir()
    xtr, ytr = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 10, 30)
    xte, yte = rng.integers(0, 256, (8, 28, 28)), rng.integers(0, 10, 8)
    _idx(src / "train-images-idx3-ubyte.gz", xtr)
    _idx(src / "train-labels-idx1-ubyte.gz", ytr)
    _idx(src / "t10k-images-idx3-ubyte.gz", xte)
    _idx(src / "t10k-labels-idx1-ubyte.gz", yte)
    d = load_data("fashion_mnist", src, n_val=10)
    assert (len(d.train), len(d.val), len(d.test)) == (20, 10, 8)
    np.testing.assert_array_equal(d.test.x.numpy()[:, 0], xte)
    np.testing.assert_array_equal(d.test.y.numpy(), yte)
    assert (tmp_path / "cache" / "fashion_mnist_from_gz" / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file()


def test_fashion_mnist_missing_names_where_the_files_go(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match=r"FashionMNIST/raw.*dataset-fashion-mnist"):
        load_data("fashion_mnist", tmp_path, download=False)


def test_digits_splits_are_disjoint_and_sized() -> None:
    d = load_data("digits", n_train=100, n_val=50, n_test=60)
    assert (len(d.train), len(d.val), len(d.test)) == (100, 50, 60)
    assert d.train.x.shape[1:] == (1, 16, 16)
    keys = [set(map(bytes, s.x.numpy().reshape(len(s), -1))) for s in (d.train, d.val, d.test)]
    # digits has duplicate images, so compare counts of distinct rows instead of exact disjointness
    assert sum(len(k) for k in keys) >= 0.95 * 210


def test_augment_is_a_padded_crop_and_flip() -> None:
    spec = SPECS["cifar10"]
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = augment(x, spec, torch.Generator().manual_seed(0))
    p = spec.pad
    xp = torch.nn.functional.pad(x, (p, p, p, p))
    for b in range(6):   # each output is one of the (2p+1)^2 windows of the zero-padded image, maybe mirrored
        cands = [xp[b, :, i:i + 32, j:j + 32] for i in range(2 * p + 1) for j in range(2 * p + 1)]
        assert any(torch.equal(out[b], c) or torch.equal(out[b], c.flip(2)) for c in cands)
    z = normalise(x, spec)
    assert z.dtype == torch.float32 and abs(float(z[:, 0].mean()) - (127.5 / 255 - 0.4914) / 0.2023) < 0.05

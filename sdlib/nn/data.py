"""Data for Section 5: CIFAR-10 and Fashion-MNIST through torchvision, scikit-learn's digits.

Every dataset is returned as uint8 image tensors ``(N, C, H, W)`` with int64 labels, split into a
training subset, a validation split *held out of the training set* (alpha-hat is estimated on it,
a deliberate improvement over the authors' code, which used the test set) and the test set (only
reported). Augmentation and normalisation are batched tensor operations (:func:`augment`,
:func:`normalise`), so they run wherever the data lives, the GPU included.

Per dataset (``SPECS``):

* ``cifar10``: 32x32x3; the authors' normalisation (means 0.4914, 0.4822, 0.4465; standard
  deviations 0.2023, 0.1994, 0.2010), random crop 32 with zero padding 4 and random horizontal flip.
* ``fashion_mnist``: 28x28x1; mean and standard deviation of its training images (0.2860, 0.3530),
  random crop with padding 4 and horizontal flip (clothes are mirror-symmetric classes).
* ``digits``: scikit-learn's 1,797 8x8 images (values 0..16) scaled to 0..255 and upsampled x2 by
  pixel repetition to 16x16 (so that two 2x2 poolings of the small CNN still leave 4x4); random crop
  with padding 2 and no flip (digits are not mirror-symmetric); mean 0.3053 and standard deviation
  0.3759 of all 1,797 images. It has no test set: ``n_test`` images (default 400) are held out first.

Files: CIFAR-10 is read by torchvision's own ``CIFAR10`` class from ``DATA_DIR/cifar-10-batches-py/``.
That class verifies the md5 sums of the real files; :func:`load_cifar10` with ``verify_md5=False``
(used by the tests, whose small files in CIFAR-10's format cannot match them) runs the same class
with the md5 sums set to None, for which torchvision's ``check_integrity`` only checks that each file
exists. Fashion-MNIST is read by torchvision's ``FashionMNIST`` from ``DATA_DIR/FashionMNIST/raw/``;
a directory holding just the four ``*-ubyte.gz`` files (Debian's ``dataset-fashion-mnist`` installs
them in ``/usr/share/datasets/fashion-mnist``) is also accepted: they are decompressed once into a
cache directory laid out as torchvision expects.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdlib.errors import DataMissingError, RunError, UsageError
from sdlib.nn.config import DATASETS

__all__ = ["Split", "DataBundle", "SPECS", "load_data", "load_cifar10", "load_fashion_mnist", "load_digits",
           "augment", "normalise", "default_data_dir"]

FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class Spec:
    channels: int
    size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    flip: bool


SPECS: dict[str, Spec] = {
    "cifar10": Spec(3, 32, 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, True),
    "fashion_mnist": Spec(1, 28, 10, (0.2860,), (0.3530,), 4, True),
    "digits": Spec(1, 16, 10, (0.3053,), (0.3759,), 2, False),
}


@dataclass
class Split:
    """uint8 images ``x`` (N, C, H, W) and int64 labels ``y`` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class DataBundle:
    name: str
    spec: Spec
    train: Split
    val: Split
    test: Split

    def to(self, device: torch.device | str) -> DataBundle:
        return DataBundle(self.name, self.spec, self.train.to(device), self.val.to(device), self.test.to(device))


def default_data_dir() -> Path:
    """``$SDLIB_DATA`` if set, else ``~/.cache/sdlib/data``."""
    return Path(os.environ.get("SDLIB_DATA", Path.home() / ".cache" / "sdlib" / "data"))


@contextmanager
def _download_errors(what: str, where: str | Path) -> Iterator[None]:
    """A download that cannot reach its host becomes one :class:`RunError` naming what to place where."""
    from urllib.error import URLError

    try:
        yield
    except URLError as e:
        raise RunError(f"could not download {what} ({e.reason}); download it elsewhere and place the files in "
                       f"{where}, then set download: false") from e
    except RuntimeError as e:   # torchvision's "Error downloading ..." after every mirror failed
        if isinstance(e, RunError) or "download" not in str(e).lower():
            raise
        first = str(e).strip().splitlines()[0].rstrip(":") if str(e).strip() else type(e).__name__
        raise RunError(f"could not download {what} ({first}: no mirror could be reached); download it elsewhere "
                       f"and place the files in {where}, then set download: false") from e


def _cifar10_class(verify_md5: bool):  # type: ignore[no-untyped-def]
    from torchvision.datasets import CIFAR10

    if verify_md5:
        return CIFAR10

    class CIFAR10Files(CIFAR10):
        """torchvision's CIFAR10 with the md5 sums set to None (check_integrity: the file exists)."""

        train_list = [[name, None] for name, _ in CIFAR10.train_list]
        test_list = [[name, None] for name, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return CIFAR10Files


def load_cifar10(data_dir: str | Path, *, download: bool = False, verify_md5: bool = True) -> tuple[Split, Split]:
    """CIFAR-10 (train, test) from ``data_dir/cifar-10-batches-py/`` through torchvision's ``CIFAR10``."""
    data_dir = Path(data_dir)
    folder = data_dir / "cifar-10-batches-py"
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
             "batches.meta"]
    if not download and not all((folder / n).is_file() for n in names):
        raise DataMissingError(
            f"CIFAR-10 not found in {folder}: extract cifar-10-python.tar.gz into {data_dir} (it holds "
            f"cifar-10-batches-py/{{{','.join(names)}}}), or set download: true"
        )
    cls = _cifar10_class(verify_md5)
    try:
        with _download_errors("CIFAR-10 (cifar-10-python.tar.gz)", data_dir):
            tr = cls(str(data_dir), train=True, download=download)
        te = cls(str(data_dir), train=False, download=False)
    except RuntimeError as e:
        if isinstance(e, RunError):
            raise
        raise RunError(f"CIFAR-10 in {folder} is not usable: {e} (torchvision verifies the md5 sums of the real "
                       f"files); extract a fresh cifar-10-python.tar.gz into {data_dir}") from e

    def split(ds) -> Split:  # type: ignore[no-untyped-def]
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return Split(x, torch.as_tensor(ds.targets, dtype=torch.int64))

    return split(tr), split(te)


def _fashion_root(data_dir: Path, download: bool) -> Path:
    """A torchvision root holding ``FashionMNIST/raw/<uncompressed files>``; decompresses .gz if needed."""
    raw = data_dir / "FashionMNIST" / "raw"
    if all((raw / f).is_file() for f in FASHION_FILES):
        return data_dir
    for src in (raw, data_dir):
        if all((src / f"{f}.gz").is_file() for f in FASHION_FILES):
            cache = default_data_dir() / "fashion_mnist_from_gz"
            dst = cache / "FashionMNIST" / "raw"
            dst.mkdir(parents=True, exist_ok=True)
            for f in FASHION_FILES:
                if not (dst / f).is_file():
                    tmp = dst / f".{f}.tmp"
                    with gzip.open(src / f"{f}.gz", "rb") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                    os.replace(tmp, dst / f)
            return cache
    if download:
        return data_dir
    raise DataMissingError(
        f"Fashion-MNIST not found: place {', '.join(f + '.gz' for f in FASHION_FILES)} in {data_dir} (or "
        f"uncompressed in {raw}); Debian's dataset-fashion-mnist package puts them in {DEBIAN_FASHION}; "
        "or set download: true"
    )


def load_fashion_mnist(data_dir: str | Path | None, *, download: bool = False) -> tuple[Split, Split]:
    """Fashion-MNIST (train, test) through torchvision's ``FashionMNIST``; ``data_dir=None`` tries
    :func:`default_data_dir` and then Debian's ``/usr/share/datasets/fashion-mnist``."""
    from torchvision.datasets import FashionMNIST

    if data_dir is None:
        candidates = [default_data_dir(), DEBIAN_FASHION]
        for c in candidates:
            try:
                root = _fashion_root(c, download=False)
                break
            except FileNotFoundError:
                continue
        else:
            root = _fashion_root(candidates[0], download)
    else:
        root = _fashion_root(Path(data_dir), download)
    with _download_errors("Fashion-MNIST (the four *-ubyte.gz files)", root):
        tr = FashionMNIST(str(root), train=True, download=download)
    te = FashionMNIST(str(root), train=False, download=False)
    return (Split(tr.data[:, None].contiguous(), tr.targets.long()),
            Split(te.data[:, None].contiguous(), te.targets.long()))


def load_digits() -> Split:
    """scikit-learn's digits as uint8 16x16 images (values x 255/16, each pixel repeated 2x2)."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    img = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    img = img.repeat(2, axis=1).repeat(2, axis=2)[:, None]
    return Split(torch.from_numpy(np.ascontiguousarray(img)), torch.as_tensor(d.target, dtype=torch.int64))


def _take(s: Split, idx: np.ndarray) -> Split:
    t = torch.as_tensor(idx, dtype=torch.int64)
    return Split(s.x[t].contiguous(), s.y[t].contiguous())


def load_data(
    dataset: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = False,
    n_train: int | None = None,
    n_val: int = 5000,
    n_test: int | None = None,
    split_seed: int = 0,
    verify_md5: bool = True,
) -> DataBundle:
    """Train / validation / test splits. The validation split (``n_val``) is held out of the
    training set at random (``split_seed``), then ``n_train`` of the rest are kept (None: all);
    ``n_test`` images of the test set are kept (None: all)."""
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset={dataset!r}; valid datasets: {', '.join(DATASETS)}")
    rng = np.random.default_rng(split_seed)
    if dataset == "cifar10":
        full, test = load_cifar10(data_dir if data_dir is not None else default_data_dir(), download=download,
                                  verify_md5=verify_md5)
    elif dataset == "fashion_mnist":
        full, test = load_fashion_mnist(data_dir, download=download)
    else:
        allx = load_digits()
        n_hold = 400 if n_test is None else n_test
        perm = rng.permutation(len(allx))
        test, full = _take(allx, perm[:n_hold]), _take(allx, perm[n_hold:])
    if n_val >= len(full):
        raise UsageError(f"n_val={n_val} leaves no training images (the training set has {len(full)})")
    perm = rng.permutation(len(full))
    val_idx, rest = perm[:n_val], perm[n_val:]
    if n_train is not None:
        if n_train > len(rest):
            raise UsageError(f"n_train={n_train} exceeds the {len(rest)} training images left after n_val={n_val}")
        rest = rest[:n_train]
    if n_test is not None and dataset != "digits":
        if n_test > len(test):
            raise UsageError(f"n_test={n_test} exceeds the {len(test)} test images")
        test = _take(test, rng.permutation(len(test))[:n_test])
    return DataBundle(dataset, SPECS[dataset], _take(full, np.sort(rest)), _take(full, np.sort(val_idx)), test)


def normalise(x: torch.Tensor, spec: Spec, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 or [0, 1] float images -> (x / 255 - mean) / std, per channel."""
    if x.dtype == torch.uint8:
        x = x.to(dtype) / 255.0
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def augment(x: torch.Tensor, spec: Spec, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding ``spec.pad`` (in pixel space, before normalisation, as
    torchvision's ``RandomCrop(padding=...)``) and, if ``spec.flip``, a random horizontal flip:
    a batched version of the authors' per-image transforms. Draws from ``generator`` only."""
    b, _, h, w = x.shape
    p = spec.pad
    dev = x.device
    if p > 0:
        xp = torch.nn.functional.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=generator.device).to(dev)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=generator.device).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :]
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if spec.flip:
        flip = (torch.rand((b,), generator=generator, device=generator.device) < 0.5).to(dev)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x

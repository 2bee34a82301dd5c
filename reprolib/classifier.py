"""Classifiers trained on real images, to judge the class of a generated sample.

- digits: an RBF support-vector machine on the 64 raw pixels (scikit-learn's classic digits recipe); about
  99% on held-out real digits.
- CIFAR-10 and MNIST: a small residual CNN (the nine-layer layout of Page 2018's DAWNBench entry: conv, three stages of
  conv + max-pool, residual blocks after the first and last, max-pool, linear), trained with SGD, Nesterov
  momentum, a one-cycle learning rate, label smoothing, random crops and (not for digits) flips. It is trained
  once per config and cached in the store; its accuracy is measured on the official test set.

The notebooks report the held-out accuracy beside every class-dependent result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC
from torch import nn
from tqdm.auto import tqdm

from . import codehash, data
from .store import Store


@dataclass
class DigitClassifier:
    model: SVC
    accuracy: float  # on held-out real digits
    tested: int = 0  # how many: the accuracy's denominator

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class of each image in [-1, 1] (N, 1, 8, 8)."""
        return torch.from_numpy(self.model.predict(_features(images)).astype(np.int64))


def _features(images: torch.Tensor) -> np.ndarray:
    return ((images.reshape(len(images), -1).double().clamp(-1, 1) + 1) * 8).numpy()  # back to counts 0..16


def digit_classifier(seed: int = 0, test_size: float = 0.25) -> DigitClassifier:
    ds = data.load("digits")
    x_tr, x_te, y_tr, y_te = train_test_split(_features(ds.images), ds.labels.numpy(), test_size=test_size,
                                              random_state=seed, stratify=ds.labels.numpy())
    svc = SVC(gamma=0.001, C=10.0).fit(x_tr, y_tr)
    return DigitClassifier(svc, float((svc.predict(x_te) == y_te).mean()), len(y_te))


# ---------------------------------------------------------------- CIFAR-10 and MNIST

KIND = "classifier"
DIGITS = ("mnist",)  # data sets of handwritten digits: never mirrored
# Each data set's judge where it differs from ``CNNConfig``'s (CIFAR-10's): MNIST needs a narrower, shorter run.
CNN_DEFAULTS = {"cifar10": {}, "mnist": {"width": 32, "epochs": 8}}


@dataclass(frozen=True)
class CNNConfig:
    """The CIFAR-10 judge: every field is part of its store key."""

    data: str = "cifar10"
    width: int = 64  # channels of the first stage; the stages have width x 2, 4, 8
    epochs: int = 24
    batch: int = 512
    lr: float = 0.4  # peak of the one-cycle schedule, reached after ``warmup`` of the epochs
    warmup: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.2
    seed: int = 0


def _conv(cin: int, cout: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), _conv(channels, channels))

    def forward(self, x):
        return x + self.body(x)


def cnn(width: int = 64, in_channels: int = 3, classes: int = 10) -> nn.Sequential:
    w = width
    return nn.Sequential(_conv(in_channels, w), _conv(w, 2 * w, pool=True), _Residual(2 * w),
                         _conv(2 * w, 4 * w, pool=True), _conv(4 * w, 8 * w, pool=True), _Residual(8 * w),
                         nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, classes))


@dataclass
class ImageClassifier:
    model: nn.Module
    accuracy: float  # on the held-out test images
    device: str = "cpu"
    tested: int = 0  # how many: the accuracy's denominator

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        """Class of each image in [-1, 1] (N, C, H, W), on the CPU."""
        self.model.eval()
        out = [self.model(images[i:i + batch].float().to(self.device)).argmax(1).cpu()
               for i in range(0, len(images), batch)]
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def augment(x: torch.Tensor, gen: torch.Generator, mirror: bool = True) -> torch.Tensor:
    """A random crop of each image padded by 4 reflected pixels, mirrored left-right with probability 1/2 where
    ``mirror`` (not for digits: a mirrored digit is another symbol)."""
    n, c, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dy, dx = (torch.randint(0, 9, (n,), generator=gen).to(x.device) for _ in range(2))
    flip = ((torch.rand(n, generator=gen) < 0.5) & mirror).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)
    cols = dx[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    i, ch = torch.arange(n, device=x.device), torch.arange(c, device=x.device)
    return padded[i[:, None, None, None], ch[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def _one_cycle(cfg: CNNConfig, t: float) -> float:
    """Linear up to ``lr`` at fraction ``warmup`` of training, then linear down to 0 (Smith 2018)."""
    return cfg.lr * (t / cfg.warmup if t < cfg.warmup else (1 - t) / (1 - cfg.warmup))


def train_cnn(cfg: CNNConfig, store: Store | None = None, device="cpu", progress: bool = True) -> ImageClassifier:
    """The judge ``cfg`` describes: from the store when trained, else trained on the training set and scored
    on the test set (kind "classifier"; the file is written atomically once training has finished)."""
    store = store or Store()
    key = {**asdict(cfg), "code": codehash.of(KIND)}
    train_set, test_set = data.load(cfg.data), data.load(cfg.data, train=False)
    classes = int(max(train_set.labels.max(), test_set.labels.max())) + 1
    torch.manual_seed(cfg.seed)  # initial weights
    model = cnn(cfg.width, train_set.shape[0], classes).to(device)
    if store.exists(KIND, key, "final"):
        saved = store.load(KIND, key, "final")
        model.load_state_dict(saved["model"])
        return ImageClassifier(model.eval().requires_grad_(False), saved["accuracy"], str(device), len(test_set))

    store.clear_leftovers(KIND, key)  # half-written files of a killed run of this config
    batch = min(cfg.batch, len(train_set))
    per_epoch = len(train_set) // batch  # full batches only: batch norm needs more than one image
    total = per_epoch * cfg.epochs
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    images, labels = train_set.images.to(device), train_set.labels.to(device)
    model.train()
    bar = tqdm(total=total, disable=not progress, desc=f"judge cnn-{cfg.width} on {cfg.data}", leave=False)
    for step in range(total):
        if step % per_epoch == 0:
            order = torch.randperm(len(images), generator=gen).to(device)
        idx = order[(step % per_epoch) * batch:(step % per_epoch + 1) * batch]
        for group in opt.param_groups:
            group["lr"] = _one_cycle(cfg, step / total)
        x = augment(images[idx], gen, mirror=cfg.data not in DIGITS)
        loss = F.cross_entropy(model(x), labels[idx], label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update()
    bar.close()
    judge = ImageClassifier(model.eval().requires_grad_(False), 0.0, str(device), len(test_set))
    judge.accuracy = float((judge.predict(test_set.images) == test_set.labels).double().mean())
    store.save(KIND, key, "final", {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                                    "accuracy": judge.accuracy, "threads": [torch.get_num_threads()]})
    return judge

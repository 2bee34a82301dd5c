"""A digit classifier trained on real digits, to judge the class of a generated sample.

An RBF support-vector machine on the 64 raw pixels (scikit-learn's classic digits recipe): it reaches
about 99% on held-out real digits, which the notebooks report beside every class-dependent result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from . import data


@dataclass
class DigitClassifier:
    model: SVC
    accuracy: float  # on held-out real digits

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
    return DigitClassifier(svc, float((svc.predict(x_te) == y_te).mean()))

"""Similarity backends and the paper's scores.

A backend maps images in [-1, 1] to unit vectors, so similarity is a dot product:
- ``PixelSimilarity``: Pearson correlation of the centred pixel vectors (the offline default);
- ``SSCDSimilarity``: cosine of SSCD descriptors (Pizzi et al. 2022) from a local TorchScript file,
  with the paper's preprocessing (320x320, ImageNet mean and std); threshold 0.6 in the paper.

Scores (Zhang et al. 2024, section 2-3):
- RP(A, B)  = fraction of seeds whose two samples are more similar than a threshold;
- chance    = the same fraction over mismatched seeds (sample i of A against sample pi(i) of B);
- GL(A)     = 1 - fraction of samples whose most similar training image beats the threshold;
- memorized = nearest/second-nearest L2 distance ratio below 1/3 (Carlini et al. 2023), a copy test
  that a correlation alone cannot give on 8x8 digits (real digits have near-twins);
- MAE       = mean absolute pixel difference of paired samples on [0, 1] (the paper's companion heatmap;
  its exact formula is unconfirmed, this is the plain reading).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


class PixelSimilarity:
    """Pearson correlation of the centred pixels; ``threshold`` calibrated per data set on its real images
    (``profiles.PIXEL_THRESHOLD``: 0.9 on 8x8 digits)."""

    name, label = "pixel", "Pearson"

    def __init__(self, threshold: float = 0.9):
        self.default_threshold = threshold

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(len(images), -1).double()
        flat = flat - flat.mean(1, keepdim=True)
        return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


class SSCDSimilarity:
    """SSCD descriptors from a TorchScript file: ``path`` or the ``REPRO_SSCD`` environment variable."""

    name, label, default_threshold = "sscd", "SSCD cosine", 0.6
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, path: str | Path | None = None, size: int = 320, batch_size: int = 64, device="cpu"):
        path = path or os.environ.get("REPRO_SSCD")
        if not path or not Path(path).exists():
            raise FileNotFoundError(
                f"SSCD weights not found ({path or 'no path given'}). Download sscd_disc_large.torchscript.pt "
                f"on a machine with internet, then pass its path or set REPRO_SSCD=/path/to/it. "
                f"Without it, use PixelSimilarity().")
        with warnings.catch_warnings():  # SSCD ships as TorchScript only; torch 2.14 calls jit.load deprecated
            warnings.simplefilter("ignore", FutureWarning)
            self.model = torch.jit.load(str(path), map_location=device).eval()
        self.size, self.batch_size, self.device = size, batch_size, device

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        for i in range(0, len(images), self.batch_size):  # resized on the device: 320x320 batches are large
            x = ((images[i:i + self.batch_size].float().to(self.device) + 1) / 2).clamp(0, 1)
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
            out.append(self.model((x - mean) / std).float().cpu())
        return F.normalize(torch.cat(out), dim=1).double()


def backend(name: str = "pixel", device="cpu", pixel_threshold: float = 0.9, **kwargs):
    """The similarity a notebook's ``similarity`` setting names: pixels at ``pixel_threshold`` (its
    ``pixel_threshold`` setting), or SSCD at the paper's 0.6, which runs on ``device``, reads ``kwargs`` (``path``,
    ``size``, ``batch_size``) and without a path reads ``REPRO_SSCD``."""
    if name == "pixel":
        return PixelSimilarity(pixel_threshold)
    if name == "sscd":
        return SSCDSimilarity(device=device, **kwargs)
    raise ValueError(f"Unknown similarity '{name}': use 'pixel' or 'sscd'.")


def paired(sim, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Similarity of a[i] and b[i] for every seed i."""
    return (sim.embed(a) * sim.embed(b)).sum(1)


def derangement(n: int, seed: int = 0) -> torch.Tensor:
    """A permutation with no fixed point: pairs every seed with another one (one seed has no other: itself)."""
    if n < 2:
        return torch.arange(n)
    return (torch.arange(n) + 1 + torch.randint(0, n - 1, (1,), generator=torch.Generator().manual_seed(seed))) % n


def unpaired(sim, a, b, seed: int = 0) -> torch.Tensor:
    """Similarity of a[i] and b[pi(i)] for a seeded derangement pi: the chance baseline for RP."""
    return paired(sim, a, b[derangement(len(b), seed)])


def rp_score(sim, a, b, threshold: float | None = None) -> float:
    """Reproducibility score: fraction of seeds with similarity above the threshold."""
    t = sim.default_threshold if threshold is None else threshold
    return float((paired(sim, a, b) > t).double().mean())


def chance_rp(sim, a, b, threshold: float | None = None, seed: int = 0) -> float:
    t = sim.default_threshold if threshold is None else threshold
    return float((unpaired(sim, a, b, seed) > t).double().mean())


def rp_curve(similarities: torch.Tensor, thresholds) -> np.ndarray:
    """RP as a function of the threshold, from per-seed similarities."""
    s = similarities.double().numpy()
    return np.array([(s > t).mean() for t in np.asarray(thresholds)])


def nearest(sim, samples, train, chunk: int = 4096):
    """Most similar training image of each sample: (similarity, index)."""
    e, best, idx = sim.embed(samples), None, None
    for j in range(0, len(train), chunk):
        s = e @ sim.embed(train[j:j + chunk]).T
        v, i = s.max(1)
        if best is None:
            best, idx = v, i
        else:
            better = v > best
            best, idx = torch.where(better, v, best), torch.where(better, i + j, idx)
    return best, idx


def gl_score(sim, samples, train, threshold: float | None = None) -> float:
    """Generalization score: 1 - fraction of samples with a training image above the threshold."""
    t = sim.default_threshold if threshold is None else threshold
    return 1.0 - float((nearest(sim, samples, train)[0] > t).double().mean())


def _l2(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    return torch.cdist(samples.reshape(len(samples), -1).double(), train.reshape(len(train), -1).double())


def nearest_l2(samples: torch.Tensor, train: torch.Tensor):
    """L2 distance to, and index of, each sample's nearest training image."""
    return _l2(samples, train).min(1)


def distance_ratio(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """L2 distance to the nearest training image over the distance to the second nearest."""
    two = _l2(samples, train).topk(2, dim=1, largest=False).values
    return two[:, 0] / two[:, 1].clamp_min(1e-12)


def memorized(samples, train, ratio: float = 1 / 3) -> torch.Tensor:
    """True where a sample is a copy of one training image (distance ratio below ``ratio``)."""
    return distance_ratio(samples, train) < ratio


def mae(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-seed mean absolute pixel difference on the [0, 1] scale."""
    return ((a - b).abs() / 2).reshape(len(a), -1).mean(1)


def score_matrix(fn, samples: dict) -> np.ndarray:
    """fn(a, b) for every ordered pair of named sample sets: the heatmaps of Figures 1, 6 and 12."""
    names = list(samples)
    return np.array([[fn(samples[p], samples[q]) for q in names] for p in names])


def threshold_for_chance(sim, images: torch.Tensor, rate: float, pairs: int = 20_000, seed: int = 0) -> float:
    """The threshold that random pairs of real images exceed with probability ``rate``."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, len(images), (pairs,), generator=g)
    j = (i + torch.randint(1, len(images), (pairs,), generator=g)) % len(images)
    return float(torch.quantile(paired(sim, images[i], images[j]).float(), 1 - rate))

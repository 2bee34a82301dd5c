"""Reproducibility of class-conditional models (Zhang et al. 2024, section 4.1, Figure 6).

Two comparisons, both from the same per-seed noise z:
- conditional A vs conditional B, both given label c for seed i: RP per class, against a chance level
  taken *within* the class (sample i of A against sample j != i of B with the same label), since two
  images of one class agree more often than two arbitrary images;
- conditional vs unconditional: the unconditional model picks its own class; a classifier judges it, and
  RP is split by whether that class equals the label the conditional model was given.
"""

from __future__ import annotations

import numpy as np
import torch

from . import metrics


def cycle_labels(n: int, classes: int = 10) -> torch.Tensor:
    """Label i mod ``classes`` for seed i: every class gets n / classes seeds."""
    return torch.arange(n) % classes


def within_group_derangement(groups: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A permutation pi with groups[pi(i)] == groups[i] and pi(i) != i wherever the group has 2+ members."""
    groups = torch.as_tensor(groups)
    pi = torch.arange(len(groups))
    for k, g in enumerate(torch.unique(groups)):
        idx = torch.nonzero(groups == g).flatten()
        if len(idx) > 1:
            pi[idx] = idx[metrics.derangement(len(idx), seed + k)]
    return pi


def rp_and_chance(sim, a, b, threshold: float, groups=None, seed: int = 0) -> tuple[float, float]:
    """RP of paired seeds, and chance RP over mismatched seeds (within ``groups`` when given)."""
    pi = metrics.derangement(len(b), seed) if groups is None else within_group_derangement(groups, seed)
    rp = float((metrics.paired(sim, a, b) > threshold).double().mean())
    return rp, float((metrics.paired(sim, a, b[pi]) > threshold).double().mean())


def rp_by_class(sim, a, b, labels, threshold: float) -> dict:
    """{class: (RP, within-class chance, seeds)} for two conditional models given the same ``labels``."""
    labels = torch.as_tensor(labels)
    out = {}
    for c in torch.unique(labels).tolist():
        m = labels == c
        out[c] = (*rp_and_chance(sim, a[m], b[m], threshold, seed=c), int(m.sum()))
    return out


def rp_split_by_match(sim, cond, uncond, labels, uncond_classes, threshold: float) -> dict:
    """RP of conditional vs unconditional samples on the seeds whose unconditional sample was judged to be
    the conditioning class ("match") and on the others ("mismatch"): {split: (RP, chance, seeds)}.

    Chance pairs seeds of the same split and the same conditioning label (mismatched seeds), so it measures
    how often two unrelated samples of those classes agree. An empty split gives NaN.
    """
    match = torch.as_tensor(uncond_classes) == torch.as_tensor(labels)
    out = {}
    for name, m in (("match", match), ("mismatch", ~match)):
        if m.sum() == 0:
            out[name] = (float("nan"), float("nan"), 0)
            continue
        out[name] = (*rp_and_chance(sim, cond[m], uncond[m], threshold, groups=torch.as_tensor(labels)[m]),
                     int(m.sum()))
    return out


def class_fidelity(predicted, labels) -> float:
    """Fraction of conditional samples the classifier assigns to the label they were generated for."""
    return float((torch.as_tensor(predicted) == torch.as_tensor(labels)).double().mean())


def judge(data_name: str, store=None, device="cpu", seed: int = 0, **config):
    """The classifier that judges a sample's class: ``classifier.digit_classifier`` for digits (``seed`` draws its
    held-out split), the CNN of ``classifier.train_cnn`` for CIFAR-10 and MNIST (``seed`` and ``config``:
    ``CNNConfig`` fields over the data set's ``classifier.CNN_DEFAULTS``; cached in ``store``)."""
    from . import classifier

    if data_name == "digits":
        return classifier.digit_classifier(seed)
    config = {**config, "seed": seed} if seed else config  # seed 0 is CNNConfig's default: the same key as before
    if data_name in classifier.CNN_DEFAULTS:
        cfg = classifier.CNNConfig(data=data_name, **{**classifier.CNN_DEFAULTS[data_name], **config})
        return classifier.train_cnn(cfg, store, device, progress=False)
    raise NotImplementedError(f"No classifier for '{data_name}' here: reprolib.classifier has one for digits and "
                              f"CNNs for {', '.join(classifier.CNN_DEFAULTS)}.")


def summary_array(by_class: dict) -> np.ndarray:
    """(classes, 3) array of RP, chance, seeds from ``rp_by_class``."""
    return np.array([by_class[c] for c in sorted(by_class)], dtype=float)

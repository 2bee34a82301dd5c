"""Classifier-free guidance, the digit classifier, measurement operators and deterministic DPS."""

from __future__ import annotations

import pytest
import torch

from reprolib import inverse, samplers
from reprolib.classifier import digit_classifier
from reprolib.guidance import Guided


class LabelEcho(torch.nn.Module):
    """D(x, sigma, labels) = labels as a constant image: makes the guidance arithmetic visible."""

    def forward(self, x, sigma, labels=None):
        return labels.float().view(-1, 1, 1, 1).expand_as(x)


def test_guidance_extrapolates_from_the_unconditional_to_the_conditional_prediction():
    x, labels = torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2])
    assert torch.equal(Guided(LabelEcho(), 0.0)(x, 1.0, labels), LabelEcho()(x, 1.0, labels))
    out = Guided(LabelEcho(), 2.0, null_label=10)(x, 1.0, labels)
    expected = labels + 2.0 * (labels - 10.0)  # cond + w (cond - uncond)
    assert torch.equal(out[:, 0, 0, 0], expected.float())


def test_digit_classifier_is_accurate_on_held_out_real_digits():
    clf = digit_classifier()
    assert clf.accuracy >= 0.97
    from reprolib import data

    d = data.load("digits")
    assert (clf.predict(d.images[:100]) == d.labels[:100]).double().mean() >= 0.97


def test_operators():
    x = torch.randn(2, 1, 8, 8)
    masked = inverse.Inpaint((1, 8, 8))(x)
    assert torch.all(masked[:, :, 2:6, 2:6] == 0) and torch.equal(masked[:, :, :2], x[:, :, :2])
    assert inverse.Downsample(2)(x).shape == (2, 1, 4, 4)
    const = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(inverse.Blur()(const), const, atol=1e-6)  # the kernel sums to one
    with pytest.raises(ValueError, match="inpaint, superres, deblur"):
        inverse.operator("denoise", (1, 8, 8))


def _gaussian(x, sigma):  # the exact denoiser of N(0, I)
    return x / (1 + sigma**2)


def test_dps_without_guidance_is_the_plain_solver():
    sigmas = samplers.karras_sigmas(10)
    z = samplers.noise([1, 2, 3], (1, 8, 8))
    A = inverse.Inpaint((1, 8, 8))
    y = torch.zeros(3, 1, 8, 8)
    got = inverse.dps(_gaussian, y, A, z, sigmas, zeta=0.0)
    torch.testing.assert_close(got, samplers.dpmpp_2m(_gaussian, z * sigmas[0], sigmas))
    got_euler = inverse.dps(_gaussian, y, A, z, sigmas, zeta=0.0, solver="euler")
    torch.testing.assert_close(got_euler, samplers.euler(_gaussian, z * sigmas[0], sigmas))


def test_dps_moves_reconstructions_toward_the_measurement():
    A = inverse.Inpaint((1, 8, 8))
    truth = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = inverse.measure(A, truth, 0.0)
    err = {zeta: float((A(inverse.reconstruct(_gaussian, y, A, range(4), (1, 8, 8), zeta=zeta)) - y).norm())
           for zeta in (0.0, 0.5)}
    assert err[0.5] < 0.5 * err[0.0], err

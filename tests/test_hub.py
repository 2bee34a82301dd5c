"""diffusers checkpoints as denoisers, on tiny UNet2DModels that each test saves with ``save_pretrained``.

The reference is written out here from Ho et al. 2020: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, so
x0 = (x_t - sqrt(1 - abar_t) eps(x_t, t)) / sqrt(abar_t), with abar_t the scheduler's own table.
"""

from __future__ import annotations

import sys

import pytest
import torch

import diffusers  # in the test extra: a missing install fails here rather than skipping

from reprolib import hub, profiles, samplers
from reprolib.store import Store


def tiny_unet(channels=3, size=8, seed=0):
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    with torch.no_grad():  # diffusers zero-initialises nothing here, but make the output clearly non-trivial
        unet.conv_out.weight.mul_(5)
    return unet.eval()


def save(folder, unet, layout="pipeline", **scheduler_kw):
    """Write a checkpoint as pipelines do (unet/ and scheduler/) or as older releases do (both at the top)."""
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, **scheduler_kw)
    unet.save_pretrained(folder / "unet" if layout == "pipeline" else folder)
    scheduler.save_pretrained(folder / "scheduler" if layout == "pipeline" else folder)
    return scheduler


@pytest.mark.parametrize("layout, schedule", [("pipeline", "linear"), ("flat", "squaredcos_cap_v2")])
def test_denoiser_is_the_eps_to_x0_formula(tmp_path, layout, schedule):
    unet = tiny_unet()
    scheduler = save(tmp_path, unet, layout, beta_schedule=schedule)
    model = hub.load(tmp_path)
    assert model.shape == (3, 8, 8) and model.formulation.T == 1000
    # The scheduler's betas, multiplied out in float64 (its own float32 alphas_cumprod drifts by ~1e-4 at t = 999).
    abar = torch.cumprod(1 - scheduler.betas.double(), 0)
    torch.testing.assert_close(model.formulation.sigmas, ((1 - abar) / abar).sqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(abar.float(), scheduler.alphas_cumprod, rtol=1e-3, atol=0)
    x0 = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for t in (0, 10, 500, 990):
        a = abar[t].float()
        sigma = float(((1 - a) / a).sqrt())
        x = x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
        x_t = a.sqrt() * x  # the same point in DDPM's variance-preserving variables
        with torch.no_grad():
            eps = unet(x_t, torch.full((4,), float(t))).sample
        expected = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
        got = model(x, sigma)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * max(1.0, sigma))
        assert (got - x).abs().max() > 1e-3 * sigma  # the network's term matters at every level
    # between two table entries D is still defined and lies between its neighbours' timesteps
    mid = float((model.formulation.sigmas[100] * model.formulation.sigmas[101]).sqrt())
    assert float(model.formulation.t_of_sigma(torch.tensor([mid]))) == pytest.approx(100.5, abs=1e-2)


def test_sampling_is_deterministic_per_seed(tmp_path):
    save(tmp_path, tiny_unet())
    model = hub.load(tmp_path)
    a = samplers.sample(model, [3, 4, 5], model.shape, "ddim", 5, "native")
    assert a.shape == (3, 3, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, samplers.sample(model, [3, 4, 5], model.shape, "ddim", 5, "native"))
    # not the batch: the seed alone decides, up to the round-off that convolutions split differently per batch
    # shape (a sample drawn from another seed's noise is off by O(1))
    b = samplers.sample(model, [3, 4, 5], model.shape, "ddim", 5, "native", batch_size=1)
    alone = samplers.sample(model, [4], model.shape, "ddim", 5, "native")
    torch.testing.assert_close(a, b, rtol=0, atol=2e-3)
    torch.testing.assert_close(alone[0], a[1], rtol=0, atol=2e-3)
    assert (a[0] - a[1]).abs().max() > 1e-2
    heun = samplers.sample(model, [3], model.shape, "heun", 4)  # and on a Karras schedule
    assert torch.isfinite(heun).all() and (heun[0] - a[0]).abs().max() > 0


def test_only_eps_prediction_is_read(tmp_path):
    save(tmp_path, tiny_unet(), prediction_type="v_prediction")
    with pytest.raises(ValueError, match="'v_prediction'.*epsilon"):
        hub.load(tmp_path)


def test_missing_diffusers_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # `import diffusers` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'reprolib\[hub\]'"):
        hub.load(tmp_path)


def test_notebook_rows_sample_once_and_check_the_shape(tmp_path, monkeypatch):
    P = profiles.settings("01", "smoke")
    assert all(profiles.settings("01", p)["public_checkpoints"] == [] for p in profiles.NAMES)  # opt-in only
    store, seeds = Store(tmp_path / "store"), [100_000, 100_001, 100_002]
    save(tmp_path / "digits-ddpm", tiny_unet(channels=1))
    assert hub.rows([], store, seeds, P) == {}
    rows = hub.rows([str(tmp_path / "digits-ddpm")], store, seeds, P)
    assert list(rows) == ["digits-ddpm (DDIM)"]
    x = rows["digits-ddpm (DDIM)"]
    assert x.shape == (3, *P["shape"]) and float(x.abs().max()) <= 1.0
    direct = samplers.sample(hub.load(tmp_path / "digits-ddpm"), seeds, P["shape"], "ddim",
                             2 * P["sample_steps"] - 1, "native").clamp(-1, 1)
    torch.testing.assert_close(x, direct)
    monkeypatch.setattr(hub, "load", lambda *a, **k: pytest.fail("sampled again instead of reading the store"))
    torch.testing.assert_close(hub.rows([str(tmp_path / "digits-ddpm")], store, seeds, P)["digits-ddpm (DDIM)"], x)
    monkeypatch.undo()
    save(tmp_path / "cifar-ddpm", tiny_unet(channels=3))
    with pytest.raises(ValueError, match=r"shape \(3, 8, 8\).*\(1, 8, 8\)"):
        hub.rows([str(tmp_path / "cifar-ddpm")], store, seeds, P)

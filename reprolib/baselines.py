"""GANs and VAEs: the paper's counterexample to reproducibility (Zhang et al. 2024, section on other
generative models). Two GANs, or two VAEs' decoders, trained on the same data map the SAME latent z
to unrelated images, whereas two diffusion models map the same noise to nearly the same image.

- GAN: non-saturating loss (Goodfellow et al. 2014, section 3) with an R1 gradient penalty on real data
  (Mescheder et al. 2018, eq. 9), Adam(2e-4, betas (0.5, 0.999)), an EMA of the generator's weights.
- VAE: the ELBO (Kingma & Welling 2014, eq. 10) with a Bernoulli likelihood on pixels rescaled to
  [0, 1] and a ``beta`` weight on the KL term; the "sample" of a latent z is the decoder mean, so it is
  deterministic, like a GAN's G(z).

Both come in two generator architectures, ``mlp`` and ``conv``, so a notebook can pair models that differ
in architecture as well as in seed. The discriminator / encoder follows the same ``arch``.

As in ``loop.py``, every bit of randomness comes from the config's seed (the same weights, bit for bit, at
the same torch thread count, which is recorded beside them), finished models land in the store keyed by the
whole config and are never trained twice, and ``latents`` draws z per seed, so a sample depends on its seed
and, by float32 round-off only, on the batch it was computed in.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import codehash
from . import progress as progress_lib
from .samplers import noise
from .store import Store
from .loop import ema_update, training_set

ARCHS = ("mlp", "conv")
DEFAULT_WIDTH = {"mlp": 256, "conv": 16}  # hidden units (mlp) or base channels (conv)


def _check(arch: str, width):
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch '{arch}'. Choose one of {', '.join(ARCHS)}.")
    return DEFAULT_WIDTH[arch] if width is None else int(width)


class _Config:
    """What the GAN and VAE configs share: ``arch`` checked and ``width`` filled in (so equal models get equal
    keys), the whole config and the code that trains it as the store key, and ``replace``."""

    def __post_init__(self):
        object.__setattr__(self, "width", _check(self.arch, self.width))

    def key_dict(self) -> dict:
        return {**asdict(self), "code": codehash.of(_kind(self))}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GANConfig(_Config):
    data: str = "digits"
    n: int | None = None  # training-set size: a nested seeded subset; None = all
    subset_seed: int = 0
    latent: int = 16
    arch: str = "mlp"
    width: int | None = None  # None = the arch's default; filled in so equal models get equal keys
    steps: int = 6000
    batch: int = 128
    lr: float = 2e-4
    r1: float = 1.0  # gamma of the R1 penalty
    ema_halflife: int = 200  # in steps, on the generator's weights
    seed: int = 0


@dataclass(frozen=True)
class VAEConfig(_Config):
    data: str = "digits"
    n: int | None = None
    subset_seed: int = 0
    latent: int = 16
    arch: str = "mlp"
    width: int | None = None
    steps: int = 6000
    batch: int = 128
    lr: float = 1e-3
    beta: float = 1.0  # weight of the KL term
    seed: int = 0


GAN_KIND, VAE_KIND = "gan", "vae"


# ----------------------------------------------------------------------------------------------------
# Networks: z -> image and image -> vector, in two architectures.

class Generator(nn.Module):
    """z (B, latent) -> image (B, C, H, W) in [-1, 1] (tanh), for a GAN's G or a VAE's decoder logits."""

    def __init__(self, latent: int, shape, arch: str = "mlp", width: int = 256, out: str = "tanh"):
        super().__init__()
        self.latent, self.shape, self.out = latent, tuple(shape), out
        c, h, w = self.shape
        if arch == "mlp":
            self.net = nn.Sequential(
                nn.Linear(latent, width), nn.LeakyReLU(0.2),
                nn.Linear(width, width), nn.LeakyReLU(0.2),
                nn.Linear(width, width), nn.LeakyReLU(0.2),
                nn.Linear(width, c * h * w), nn.Unflatten(1, self.shape))
        else:
            # Start at a quarter of the resolution and upsample once: at 8x8 a deeper pyramid leaves
            # 1x1 maps with no spatial structure to learn.
            self.net = nn.Sequential(
                nn.Linear(latent, 2 * width * (h // 2) * (w // 2)), nn.LeakyReLU(0.2),
                nn.Unflatten(1, (2 * width, h // 2, w // 2)),
                nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(2 * width, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, c, 3, padding=1))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z)
        # "bernoulli": the decoder mean sigmoid(logits) on [0, 1], mapped back to the data's [-1, 1].
        return torch.tanh(x) if self.out == "tanh" else 2 * torch.sigmoid(x) - 1


class Critic(nn.Module):
    """image (B, C, H, W) -> (B, out): the GAN's discriminator (out = 1) or the VAE's encoder (out = 2 latent)."""

    def __init__(self, shape, out: int, arch: str = "mlp", width: int = 256):
        super().__init__()
        c, h, w = shape
        if arch == "mlp":
            self.net = nn.Sequential(
                nn.Flatten(),
                nn.Linear(c * h * w, width), nn.LeakyReLU(0.2),
                nn.Linear(width, width), nn.LeakyReLU(0.2),
                nn.Linear(width, out))
        else:
            self.net = nn.Sequential(
                nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2),
                nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
                nn.Flatten(),
                nn.Linear(2 * width * (h // 2) * (w // 2), out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VAE(nn.Module):
    """Encoder q(z|x) = N(mu, diag exp(logvar)) and a Bernoulli decoder p(x|z) on pixels in [0, 1]."""

    def __init__(self, latent: int, shape, arch: str = "mlp", width: int = 256):
        super().__init__()
        self.encoder = Critic(shape, 2 * latent, arch, width)
        self.decoder = Generator(latent, shape, arch, width, out="bernoulli")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder mean, in [-1, 1]: the deterministic "sample" of latent z."""
        return self.decoder(z)

    def loss(self, x: torch.Tensor, gen: torch.Generator, beta: float = 1.0) -> torch.Tensor:
        """Negative ELBO per image (Kingma & Welling 2014, eq. 10), with the KL term weighted by ``beta``."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        eps = torch.randn(mu.shape, generator=gen).to(mu.device)
        z = mu + (0.5 * logvar).exp() * eps  # reparameterisation trick, section 2.4
        target = (x + 1) / 2
        rec = F.binary_cross_entropy_with_logits(self.decoder.logits(z), target, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)  # closed form, appendix B
        return (rec + beta * kl).mean()


# ----------------------------------------------------------------------------------------------------
# Training.

class _Bar(tqdm):
    """tqdm that also tells ``progress`` (the runner's view of worker processes) where training is."""

    def __init__(self, what: str, steps: int, progress: bool):
        self.what = what
        super().__init__(range(steps), disable=not progress, leave=False, desc=f"train {what}")

    def __iter__(self):
        for step in super().__iter__():
            progress_lib.update("train", self.what, step, self.total)
            yield step
        progress_lib.update("train", self.what, self.total, self.total)


def _bar(cfg, kind: str, n: int, progress: bool):
    return _Bar(f"{kind} {cfg.arch}/{cfg.width} seed={cfg.seed} n={n}", cfg.steps, progress)


def train_gan(cfg: GANConfig, store: Store | None = None, device=None, progress: bool = True) -> nn.Module:
    """The trained generator ``G(z) -> images`` (EMA weights, eval mode) for ``cfg``: from the store when
    finished, else trained with the non-saturating loss (Goodfellow et al. 2014) and R1 (Mescheder et al. 2018).
    """
    store = store or Store()
    key = cfg.key_dict()
    ds = training_set(cfg)
    device = torch.device(device or "cpu")
    if store.exists(GAN_KIND, key, "final"):
        G = Generator(cfg.latent, ds.shape, cfg.arch, cfg.width)
        G.load_state_dict(store.load(GAN_KIND, key, "final")["generator"])
        return G.to(device).eval().requires_grad_(False)

    store.clear_leftovers(GAN_KIND, key)  # half-written files of a killed run of this config
    torch.manual_seed(cfg.seed)  # initial weights
    G = Generator(cfg.latent, ds.shape, cfg.arch, cfg.width).to(device)
    D = Critic(ds.shape, 1, cfg.arch, cfg.width).to(device)
    G_ema = copy.deepcopy(G).requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    images = ds.images.to(device)
    decay = 0.5 ** (1 / cfg.ema_halflife)
    losses, run_d, run_g = [], 0.0, 0.0
    bar = _bar(cfg, "gan", len(ds), progress)
    for step in bar:
        real = images[torch.randint(0, len(images), (cfg.batch,), generator=gen).to(device)]
        z = torch.randn(cfg.batch, cfg.latent, generator=gen).to(device)

        # D step: softplus(-D(real)) + softplus(D(fake)) is -log sigmoid(D(real)) - log(1 - sigmoid(D(fake))).
        real.requires_grad_(True)
        d_real = D(real)
        d_fake = D(G(z).detach())
        (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
        # R1 keeps D's gradient small on the data, which damps the oscillation around equilibrium.
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean() + cfg.r1 / 2 * grad.pow(2).flatten(1).sum(1).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # G step, non-saturating: maximise log D(G(z)) rather than minimise log(1 - D(G(z))), whose
        # gradient vanishes early on when D rejects every fake (Goodfellow et al. 2014, section 3).
        loss_g = F.softplus(-D(G(z))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema_update(G_ema, G, decay)

        run_d += loss_d.item()
        run_g += loss_g.item()
        if (step + 1) % 100 == 0:
            losses.append((run_d / 100, run_g / 100))
            run_d = run_g = 0.0
            bar.set_postfix(d=f"{losses[-1][0]:.3f}", g=f"{losses[-1][1]:.3f}")
    store.save(GAN_KIND, key, "final", {"generator": {k: v.cpu() for k, v in G_ema.state_dict().items()},
                                       "losses": losses, "threads": [torch.get_num_threads()]})
    return G_ema.eval()


def train_vae(cfg: VAEConfig, store: Store | None = None, device=None, progress: bool = True) -> nn.Module:
    """The trained decoder ``z -> decoder mean image`` (eval mode) for ``cfg``: from the store when finished,
    else trained on the negative ELBO (Kingma & Welling 2014). ``train_vae_model`` gives the encoder too.
    """
    return train_vae_model(cfg, store, device, progress).decoder


def train_vae_model(cfg: VAEConfig, store: Store | None = None, device=None, progress: bool = True) -> VAE:
    """The whole trained VAE (encoder and decoder), eval mode."""
    store = store or Store()
    key = cfg.key_dict()
    ds = training_set(cfg)
    device = torch.device(device or "cpu")
    if store.exists(VAE_KIND, key, "final"):
        vae = VAE(cfg.latent, ds.shape, cfg.arch, cfg.width)
        vae.load_state_dict(store.load(VAE_KIND, key, "final")["vae"])
        return vae.to(device).eval().requires_grad_(False)

    store.clear_leftovers(VAE_KIND, key)  # half-written files of a killed run of this config
    torch.manual_seed(cfg.seed)
    vae = VAE(cfg.latent, ds.shape, cfg.arch, cfg.width).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    images = ds.images.to(device)
    losses, running = [], 0.0
    bar = _bar(cfg, "vae", len(ds), progress)
    for step in bar:
        # Cosine decay to 0: the last steps average out minibatch noise instead of wandering with it.
        for group in opt.param_groups:
            group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        x = images[torch.randint(0, len(images), (cfg.batch,), generator=gen).to(device)]
        loss = vae.loss(x, gen, cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += loss.item()
        if (step + 1) % 100 == 0:
            losses.append(running / 100)
            running = 0.0
            bar.set_postfix(loss=f"{losses[-1]:.2f}")
    store.save(VAE_KIND, key, "final", {"vae": {k: v.cpu() for k, v in vae.state_dict().items()}, "losses": losses,
                                       "threads": [torch.get_num_threads()]})
    return vae.eval().requires_grad_(False)


def _kind(cfg) -> str:
    return GAN_KIND if isinstance(cfg, GANConfig) else VAE_KIND


def is_trained(cfg: GANConfig | VAEConfig, store: Store | None = None) -> bool:
    return (store or Store()).exists(_kind(cfg), cfg.key_dict(), "final")


def trained_threads(cfg: GANConfig | VAEConfig, store: Store | None = None) -> list[int]:
    """The torch thread count a finished run was trained with, as a list like ``train.trained_threads``."""
    return (store or Store()).load(_kind(cfg), cfg.key_dict(), "final").get("threads", [])


def losses(cfg: GANConfig | VAEConfig, store: Store | None = None) -> list:
    """Mean losses per 100 steps of a finished run: (D, G) pairs for a GAN, the negative ELBO for a VAE."""
    return (store or Store()).load(_kind(cfg), cfg.key_dict(), "final")["losses"]


# ----------------------------------------------------------------------------------------------------
# Sampling.

def latents(seeds: Sequence[int], dim: int) -> torch.Tensor:
    """z ~ N(0, I_dim) from one generator per seed (``samplers.noise``): the same z for a seed everywhere."""
    return noise(seeds, (dim,))


@torch.no_grad()
def generate(generator: nn.Module, seeds: Sequence[int] | None, latent_dim: int, batch_size: int = 500,
             z: torch.Tensor | None = None) -> torch.Tensor:
    """``generator(z(seed))`` for each seed, on CPU: (len(seeds), C, H, W). ``z`` overrides the seeds."""
    z = latents(seeds, latent_dim) if z is None else z
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    out = [generator(z[i:i + batch_size].to(device)).cpu() for i in range(0, len(z), batch_size)]
    generator.train(was_training)
    return torch.cat(out) if out else torch.empty(0)

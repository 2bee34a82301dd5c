"""The models each section compares, named once so every notebook reuses the same trained artifacts.

A ``Variant`` is a training config plus how it is sampled (sampler and step schedule). Sizes come from a
profile's settings (``profiles.settings``): ``steps_scale`` stretches every training length, ``data``
picks the data set and ``shape`` the backbone's resolution, ``nets`` overrides backbone entries and
``precision`` sets the training precision of every config (``configured``). ``fitting`` trains what ``plan``
lists; ``banks`` draws and keeps the samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import baselines, fitting, profiles
from .profiles import training_seed
from .store import Store, config_key
from .train import TrainConfig

# Two details of EDM's DDPM++ (``networks.UNet``) that the section-1 U-Nets, trained and verified first, lack:
# GroupNorm groups of at least 4 channels, and noise features smooth in ln(sigma). The size sweep needs them: at
# widths 4 and 8 the first rule normalises every channel alone (notebook 03 gives the numbers before and after).
DDPMPP = {"group_size": 4, "noise_scale": 1.0}

# Backbones sized for 8x8 digits on one CPU thread (see benchmarks/ for their step times).
DIGIT_NETS = {
    "unet": {"kind": "unet", "width": 16},
    "mlp": {"kind": "mlp", "width": 256, "depth": 4},
    "uvit": {"kind": "uvit", "width": 48, "depth": 4},
}
# Backbones for 28x28 MNIST (the mnist rung): DDPM++'s details (``DDPMPP``) from the start; attention at 7x7.
MNIST_NETS = {
    "unet": {"kind": "unet", "width": 32, "channel_mult": [1, 2, 2], "attn_res": [7], **DDPMPP},
    "mlp": {"kind": "mlp", "width": 1024, "depth": 4},
    "uvit": {"kind": "uvit", "width": 128, "depth": 6, "patch": 4},
}
PAPER_NETS = {
    "unet": {"kind": "unet", "width": 128, "channel_mult": [2, 2, 2], "num_blocks": 4, "attn_res": [16]},
    "mlp": {"kind": "mlp", "width": 2048, "depth": 6},
    "uvit": {"kind": "uvit", "width": 256, "depth": 8, "patch": 4},
}


@dataclass(frozen=True)
class Variant:
    name: str
    cfg: TrainConfig
    sampler: str = "heun"
    schedule: str = "karras"
    steps: int | None = None  # a few-step model's own count; None: the profile's ``sample_steps`` (``banks.samples``)
    snapshot: int | None = None  # the model is ``cfg``'s EMA snapshot after this many steps; None: its end

    @property
    def trained_steps(self) -> int:
        return self.snapshot or self.cfg.steps


def lineage(cfg: TrainConfig) -> str:
    """The store key of the training ``cfg`` descends from: its first ancestor (``fitting.ancestors``, a distilled
    student's or a fine-tuning's), itself if it has none. Rows of one lineage share a training replicate
    (``replicates.crossed``)."""
    return config_key((fitting.ancestors(cfg) or [cfg])[-1].key_dict())


def nets(P: dict) -> dict:
    """The backbones for ``P["data"]``, each updated with ``P["nets"]`` entries (e.g. {"mlp": {"depth": 2}})."""
    base = {"cifar10": PAPER_NETS, "mnist": MNIST_NETS}.get(P["data"], DIGIT_NETS)
    return {kind: {**net, **P.get("nets", {}).get(kind, {})} for kind, net in base.items()}


def configured(cfg: TrainConfig, P: dict) -> TrainConfig:
    """``cfg`` with the profile's training precision; unset (float32) leaves the config, and its key, as it is."""
    return cfg.replace(precision=P["precision"]) if P.get("precision") else cfg


# Notebook 07 follows the training of section 1's U-Net and MLP (EDM) through their EMA weights every
# SNAPSHOT_EVERY steps (scaled like the lengths). Section 1 keeps those snapshots too, so that both notebooks share
# one training of each: keeping a snapshot changes no weight.
SNAPSHOT_EVERY = 250


def section1(P: dict) -> list[Variant]:
    """Figure 1's zoo: architecture, formulation, sampler and training seed each varied."""
    net = nets(P)

    def cfg(kind, form, steps, seed=0, snapshots=False):
        every = max(int(SNAPSHOT_EVERY * P["steps_scale"]), 1) if snapshots else None
        return configured(TrainConfig(data=P["data"], net=net[kind], formulation=form,
                                      steps=max(int(steps * P["steps_scale"]), 1), seed=training_seed(P, seed),
                                      batch=128, snapshot_every=every), P)

    teacher = cfg("unet", "edm", 3000, snapshots=True)
    ct = cfg("unet", "ct", 6000)
    return [
        Variant("U-Net EDM (Heun)", teacher),
        Variant("U-Net EDM seed 2 (Heun)", cfg("unet", "edm", 3000, seed=1)),
        Variant("U-ViT EDM (Heun)", cfg("uvit", "edm", 3000)),
        Variant("U-Net EDM (DPM++)", teacher, sampler="dpmpp_2m"),
        Variant("MLP EDM (Heun)", cfg("mlp", "edm", 3000, snapshots=True)),
        Variant("MLP DDPM (DDIM)", cfg("mlp", "ddpm", 3000), sampler="ddim", schedule="native"),
        Variant("MLP flow (Euler)", cfg("mlp", "flow", 3000), sampler="euler", schedule="native"),
        Variant("U-Net sub-VP (Heun)", cfg("unet", "subvp", 3000)),
        Variant("U-Net CT (1 step)", ct, sampler="consistency", schedule="consistency", steps=1),
        Variant("U-Net CT (2 steps)", ct, sampler="consistency", schedule="consistency", steps=2),
        Variant(f"U-Net distilled ({DISTILL_STEPS} steps)", distilled(teacher, P), sampler="euler", schedule="native",
                steps=DISTILL_STEPS),
    ]


# Progressive distillation of the EDM U-Net (``formulations.Progressive``): from its 32-step Euler (= DDIM) sampler
# to 4 steps in three halvings. Each round is a short fine-tuning of the previous one (Salimans & Ho 2022 train each
# halving for a small fraction of the teacher's updates); lr, warm-up and EMA are scaled down to that length.
DISTILL_FROM, DISTILL_STEPS, DISTILL_ROUND = 32, 4, 600


def distilled(teacher: TrainConfig, P: dict) -> TrainConfig:
    """The DISTILL_STEPS-step student of ``teacher``: one config per halving, each the ``init`` of the next."""
    cfg, n = teacher, DISTILL_FROM
    while n > DISTILL_STEPS:
        n //= 2
        cfg = cfg.replace(formulation=f"distill{n}", init=asdict(cfg), lr=2e-4, warmup=50, ema_halflife=100,
                          steps=max(int(DISTILL_ROUND * P["steps_scale"]), 1))
    return cfg


def section1_baselines(P: dict):
    """Two GANs and two VAEs of different architectures and training seeds on the same data.

    Different seeds matter: two VAEs trained with one seed share their minibatch and noise draws and
    agree above chance even across architectures (measured when baselines.py was written).
    """
    scale = P["steps_scale"]
    gans = [baselines.GANConfig(data=P["data"], arch=a, steps=max(int(s * scale), 1), seed=training_seed(P, k))
            for k, (a, s) in enumerate((("mlp", 6000), ("conv", 3000)))]
    vaes = [baselines.VAEConfig(data=P["data"], arch=a, steps=max(int(s * scale), 1), seed=training_seed(P, k))
            for k, (a, s) in enumerate((("mlp", 6000), ("conv", 4000)))]
    return gans, vaes


def regimes(P: dict) -> dict:
    """Figure 2's sweep: U-Nets of doubling widths on nested subsets of N images, per training seed.

    Keys are (N, width, seed); every model of one N sees the same subset (``subset_seed`` 0). The U-Nets are
    ``DDPMPP``'s, whatever ``P["nets"]`` leaves unset.
    ``P["steps"]`` maps N to a training length: small sets memorize fast, middle ones take longest. Every
    model keeps its EMA weights each ``P["snapshot_every"]`` steps, for the convergence curves.
    """
    base = nets(P)["unet"]
    scale = P.get("steps_scale", 1.0)
    every = max(int(P["snapshot_every"] * scale), 1)
    out = {}
    for n in P["sizes"]:
        for w in P["widths"]:
            for seed in range(P["train_seeds"]):
                net = {**DDPMPP, **base, "width": w}
                steps = max(int(P["steps"][n] * scale), 1)
                out[(n, w, seed)] = configured(TrainConfig(data=P["data"], n=n, net=net, steps=steps,
                                                           seed=training_seed(P, seed), batch=P["batch"], lr=P["lr"],
                                                           snapshot_every=every), P)
    return out


def disjoint(P: dict) -> dict:
    """The disjoint-data pairs of notebook 02 (replications/02_disjoint_data.md): keys (N, width, set). Set "A" is
    the sweep's model on the first N images (``regimes``' config where the sweep has that N); set "B" trains on N
    images outside A's largest set (``TrainConfig.exclude``), so on none of A's at any N, with the next training
    seed: the pair shares its architecture and nothing else."""
    sweep = regimes({**P, "sizes": sorted(set(P["sizes"]) | set(P["disjoint_sizes"])),
                     "widths": sorted(set(P["widths"]) | set(P["disjoint_widths"])), "train_seeds": 1})
    outside = (max(P["disjoint_sizes"]), 0)
    out = {}
    for n in P["disjoint_sizes"]:
        for w in P["disjoint_widths"]:
            a = sweep[(n, w, 0)]
            out[(n, w, "A")] = a
            out[(n, w, "B")] = a.replace(exclude=outside, seed=training_seed(P, 1))
    return out


def section4(P: dict) -> list[Variant]:
    """Section 4's conditional models: section 1's U-Net and MLP (EDM, Heun), trained with class labels
    and 10% label dropout so that one network is both D(x; sigma | c) and D(x; sigma) (for guidance)."""
    base = {v.name: v for v in section1(P)}
    return [Variant(f"cond {name}", base[name].cfg.replace(conditional=True, snapshot_every=None))
            for name in _BACKBONES]


def unconditional(P: dict) -> list[Variant]:
    """Section 1's unconditional U-Net and MLP (EDM, Heun): the partners of section 4 and the priors of
    section 5, reused from the store when notebook 01 has trained them."""
    return [v for v in section1(P) if v.name in _BACKBONES]


_BACKBONES = ("U-Net EDM (Heun)", "MLP EDM (Heun)")


def judge(P: dict) -> dict:
    """The keywords of ``conditional.judge`` at ``P``: the ``judge`` setting, its training seed in ``P``'s
    replicate."""
    return {**P["judge"], "seed": training_seed(P, P["judge"].get("seed", 0))}


def section6(P: dict) -> dict[str, Variant]:
    """Section 6's fine-tuning study: a U-Net pre-trained on ``P["source"]`` classes, fine-tuned on
    ``P["target"]`` fully, decoder only, encoder only, head only and through LoRA adapters, beside two
    from-scratch U-Nets on the target classes. The pre-training and the two from-scratch models each have
    their own training seed; the fine-tunings share a fourth, so none shares an initialisation or a minibatch
    stream with the from-scratch models it is compared to. The fine-tunings train fewer steps than those.

    The partial fine-tunings (``section6_partial``) are read off their longer runs (``section6_long``): with the
    same seed and a learning rate with warm-up but no decay, the run's EMA snapshot after the fine-tuning's length
    is the fine-tuned model, bit for bit (tests/test_train_features.py), so it is not trained a second time."""
    net = nets(P)["unet"]

    def steps(k):
        return max(int(k * P["steps_scale"]), 1)

    src, tgt = tuple(P["source"]), tuple(P["target"])
    parent = configured(TrainConfig(data=P["data"], net=net, classes=src, steps=steps(2500), seed=training_seed(P, 10),
                                    batch=128), P)
    scratch = configured(TrainConfig(data=P["data"], net=net, classes=tgt, steps=steps(2500), seed=training_seed(P, 0),
                                     batch=128), P)
    tune = scratch.replace(init=asdict(parent), steps=steps(1500), seed=training_seed(P, 2))
    variants = {
        "scratch": Variant("scratch", scratch),
        "scratch, seed 2": Variant("scratch, seed 2", scratch.replace(seed=training_seed(P, 1))),
        "pre-trained": Variant("pre-trained", parent),
        "full fine-tune": Variant("full fine-tune", tune),
        "decoder fine-tune": Variant("decoder fine-tune", tune.replace(trainable=("net.up", "net.head"))),
        "encoder fine-tune": Variant("encoder fine-tune", tune.replace(trainable=("net.stem", "net.down", "net.mid"))),
        f"LoRA r{P['lora_rank']} fine-tune": Variant(f"LoRA r{P['lora_rank']} fine-tune",
                                                     tune.replace(lora={"rank": P["lora_rank"]})),
        "head fine-tune": Variant("head fine-tune", tune.replace(trainable=("net.head",))),
    }
    for name in section6_partial(variants):
        cfg = variants[name].cfg
        variants[name] = Variant(name, _longer(cfg, P), snapshot=cfg.steps)
    return variants


def _longer(cfg: TrainConfig, P: dict) -> TrainConfig:
    """``cfg`` trained ``P["long_factor"]`` times as long, keeping its EMA weights at every multiple of its length."""
    return cfg.replace(steps=cfg.steps * P["long_factor"], snapshot_every=cfg.steps)


def section6_long(variants: dict[str, Variant], names) -> dict[str, Variant]:
    """The longer runs of the fine-tunings ``names`` of ``section6`` (``P["long_factor"]`` times their length, EMA
    snapshots at every multiple of it): the later snapshots say where each fine-tuning's training is heading."""
    return {name: Variant(name, variants[name].cfg) for name in names}


def section7(P: dict) -> list[Variant]:
    """Section 7's pair for training dynamics and noise edits: section 1's U-Net and MLP (EDM, Heun) with EMA
    snapshots every ``P["snapshot_every"]`` steps (scaled like the training length): at the default
    (``SNAPSHOT_EVERY``) section 1's own models, otherwise trained again."""
    every = max(int(P["snapshot_every"] * P["steps_scale"]), 1)
    names = ("U-Net EDM (Heun)", "MLP EDM (Heun)")
    return [Variant(v.name, v.cfg.replace(snapshot_every=every)) for v in section1(P) if v.name in names]


def snapshot_steps(cfg: TrainConfig, count: int) -> list[int]:
    """``count`` evenly spaced snapshot steps of a run, the last one its final step."""
    every = cfg.snapshot_every
    stored = list(range(every, cfg.steps + 1, every))
    picks = np.unique(np.linspace(0, len(stored) - 1, min(count, len(stored))).round().astype(int))
    return [stored[i] for i in picks]


def sweep_settings(P: dict) -> dict:
    """Notebook 02's settings at ``P``'s profile under ``P["sweep"]`` (the overrides 02 itself was given: the runner
    passes them) and ``P``'s backbone, precision, device and replicate settings: the sweep as 02 trains it, for the
    notebooks that reuse its models (07, 08)."""
    own = {k: P[k] for k in ("nets", "precision", "device", "replicate") if k in P}
    return profiles.settings("02", P["profile"], **{**P.get("sweep", {}), **own})


def privacy_models(P: dict, store: Store) -> tuple[dict, dict, bool]:
    """The models of the privacy study: notebook 02's whole sweep when the store holds all of it (nothing is
    trained), else its ``P["privacy_widths"]`` x ``P["privacy_sizes"]`` corner (the same configs, so a later
    run of 02 reuses them). Returns (02's settings, {(N, width, seed): config}, whether it is the whole sweep)."""
    p02 = sweep_settings(P)
    sweep_cfgs = regimes(p02)
    if all(fitting.is_fitted(c, store) for c in sweep_cfgs.values()):
        return p02, sweep_cfgs, True
    sub = {k: c for k, c in sweep_cfgs.items() if k[0] in P["privacy_sizes"] and k[1] in P["privacy_widths"]}
    return p02, sub, False


def section6_partial(variants: dict[str, Variant]) -> list[str]:
    """The partial fine-tunings of ``section6`` (all but the full and the encoder fine-tuning): those of claim 3,
    which ``section6_long`` follows further."""
    return [n for n in variants if "fine-tune" in n and n not in ("full fine-tune", "encoder fine-tune")]


def plan(notebook: str, P: dict, store: Store) -> list:
    """Every model notebook ``notebook`` trains at settings ``P``: what it hands ``fitting.fit_all``, and what
    ``paper_figures.py`` trains for all its notebooks at once, in one pool, before it runs them."""
    if notebook == "01":
        gans, vaes = section1_baselines(P)
        return [v.cfg for v in section1(P)] + gans + vaes
    if notebook == "02":
        sweep = regimes(P)
        return list(sweep.values()) + [c for (n, w, s), c in disjoint(P).items() if s == "B" or (n, w, 0) not in sweep]
    if notebook == "03":
        return list(regimes(P).values())
    if notebook == "04":
        return [v.cfg for v in section4(P) + unconditional(P)]
    if notebook == "05":
        return [v.cfg for v in unconditional(P)]
    if notebook == "06":
        return [v.cfg for v in section6(P).values()]
    if notebook == "07":
        return [v.cfg for v in section7(P)] + list(privacy_models(P, store)[1].values())
    raise ValueError(f"no training plan for notebook {notebook!r}: zoo.plan knows 01-07 (08 trains nothing)")

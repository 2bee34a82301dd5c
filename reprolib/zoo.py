"""The models each section compares, named once so every notebook reuses the same trained artifacts.

A ``Variant`` is a training config plus how it is sampled (sampler and step schedule). Sizes come from a
profile's settings (``profiles.settings``): ``steps_scale`` stretches every training length, ``data``
picks the data set and ``shape`` the backbone's resolution, ``nets`` overrides backbone entries and
``precision`` sets the training precision of every config (``configured``).
"""

from __future__ import annotations

import inspect
import json
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import torch

from . import baselines, codehash, machine, samplers, stacked, sweep
from .store import Store, config_key
from .train import KIND, TrainConfig, is_trained, train

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
    steps: int | None = None  # a few-step model's own count; None: the profile's ``sample_steps`` (``samples``)
    snapshot: int | None = None  # the model is ``cfg``'s EMA snapshot after this many steps; None: its end

    @property
    def trained_steps(self) -> int:
        return self.snapshot or self.cfg.steps


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
                                      steps=max(int(steps * P["steps_scale"]), 1), seed=seed, batch=128,
                                      snapshot_every=every), P)

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
    gans = [baselines.GANConfig(data=P["data"], arch=a, steps=max(int(s * scale), 1), seed=k)
            for k, (a, s) in enumerate((("mlp", 6000), ("conv", 3000)))]
    vaes = [baselines.VAEConfig(data=P["data"], arch=a, steps=max(int(s * scale), 1), seed=k)
            for k, (a, s) in enumerate((("mlp", 6000), ("conv", 4000)))]
    return gans, vaes


def samples(cfg: TrainConfig, store: Store, seeds, P: dict, sampler: str = "heun", schedule: str = "karras",
            steps: int | None = None):
    """Samples of a trained model for ``seeds``, cached in the store beside the model (kind "samples"); ``steps``
    defaults to the profile's ``sample_steps`` (Heun) or as many evaluations (the others)."""
    if steps is None:
        steps = P["sample_steps"] if sampler == "heun" else 2 * P["sample_steps"] - 1  # equal evaluations
    seeds = [int(s) for s in seeds]
    key = {"model": cfg.key_dict(), "sampler": sampler, "schedule": schedule, "steps": steps,
           "seeds": [seeds[0], len(seeds)] if seeds == list(range(seeds[0], seeds[0] + len(seeds))) else seeds,
           "code": codehash.of("samples")}
    return _bank(store, key, lambda: samplers.sample(train(cfg, store, device=P["device"], progress=False), seeds,
                                                     P["shape"], sampler, steps, schedule, device=P["device"]))


def plane_samples(cfg: TrainConfig, store: Store, corners, P: dict):
    """``hyperplane.generate`` of the trained model ``cfg`` on the plane of the seeds ``corners`` (``P["grid"]``
    points a side): its three corner images and its image from every point, cached in the store (kind "samples")
    and, like ``generate``'s, not clipped."""
    from . import hyperplane

    corners = [int(s) for s in corners]
    key = {"model": cfg.key_dict(), "plane": corners, "grid": P["grid"], "sampler": "heun",
           "steps": P["sample_steps"], "code": codehash.of("plane samples")}

    def draw():
        grid = hyperplane.plane(corners, P["shape"], P["grid"])
        return torch.cat(hyperplane.generate(train(cfg, store, device=P["device"], progress=False), grid, corners, P))

    x = _bank(store, key, draw, clip=False)
    return x[:3], x[3:]


def edit_samples(cfg: TrainConfig, store: Store, seeds, direction_seed: int, angles, P: dict) -> torch.Tensor:
    """``editing.paths`` of the trained model ``cfg``: its samples (angles, seeds, *shape) from every seed's noise
    turned by each angle toward the noise of ``direction_seed``, cached in the store (kind "samples")."""
    from . import editing

    seeds, angles = [int(s) for s in seeds], [float(a) for a in angles]
    key = {"model": cfg.key_dict(), "seeds": seeds, "direction": int(direction_seed), "angles": angles,
           "sampler": "heun", "steps": P["sample_steps"], "code": codehash.of("edit samples")}

    def draw():
        direction = samplers.noise([direction_seed], P["shape"])[0]
        return editing.paths(train(cfg, store, device=P["device"], progress=False), seeds, direction, angles,
                             P["shape"], P["sample_steps"], P["device"])

    return _bank(store, key, draw)


def _bank(store: Store, key: dict, draw, clip: bool = True):
    """The sample bank stored under ``key``, else ``draw()`` clipped to [-1, 1] (images live there: clip as one does
    when writing an image file; ``clip=False`` keeps what the sampler returned) and stored."""
    return _once(store, "samples", key, "x", lambda: draw().clamp(-1, 1) if clip else draw(), lambda x: {"x": x},
                 lambda saved: saved["x"])


@lru_cache(maxsize=None)
def stored_as() -> str:
    """The digest (``codehash.source_digest``) of the code between a computation and the store, which lives here,
    outside every artifact's digested modules: ``_bank``'s clip, ``table``'s and ``_once``'s encodings. It joins
    every bank's and table's key, so that an edit to how a result is stored recomputes it, as an edit to the code
    that computes it does. Read once per process, like ``codehash``."""
    return codehash.source_digest("\n".join(inspect.getsource(f) for f in (_bank, table, _once)))


def table(store: Store, key: dict, compute):
    """The table stored under ``key`` (kind "tables"), else ``compute()`` (a DataFrame of plain columns), stored."""
    import pandas as pd

    return _once(store, "tables", key, "rows", compute,
                 lambda t: {"columns": list(t.columns), "rows": t.to_dict("records")},
                 lambda saved: pd.DataFrame(saved["rows"], columns=saved["columns"]))


def _once(store: Store, kind: str, key: dict, name: str, compute, encode, decode):
    """``decode`` of what the store holds under ``key``, else ``compute()``, saved as ``encode`` of it. One process
    computes it; another asking for it meanwhile (a notebook run beside this one) waits and loads it. The key holds
    the digest of this storing code too (``stored_as``)."""
    key = {**key, "stored": stored_as()}
    if not store.exists(kind, key, name):
        with store.computing(kind, key, name):
            if not store.exists(kind, key, name):
                value = compute()
                store.save(kind, key, name, encode(value))
                return value
    return decode(store.load(kind, key, name))


def generate(v: Variant, store: Store, seeds, P: dict):
    """Samples of a variant for ``seeds`` (training it first if the store lacks it)."""
    if v.snapshot is not None:
        if (v.sampler, v.schedule, v.steps) != ("heun", "karras", None):
            raise ValueError(f"{v.name}: a snapshot is sampled with Heun on the Karras schedule at the profile's steps")
        return snapshot_samples(v.cfg, v.snapshot, store, seeds, P)
    return samples(v.cfg, store, seeds, P, v.sampler, v.schedule, v.steps)


def fit(cfg, store: Store | None = None, progress: bool = True, device=None):
    """Train (or load) any model of the zoo, whatever its kind, or a ``stacked.Stack`` of them: the one function a
    sweep maps. A model that another process is training (a second run on the same store, another worker of a
    cluster) is waited for, then loaded, not trained twice (``training``); on several GPUs it trains on the one
    with the fewest trainings (``machine.gpu``)."""
    store = store or Store()
    with training(cfg, store), machine.gpu(device or "cpu") as device:
        return _fit(cfg, store, progress, device)


@contextmanager
def training(cfg, store: Store):
    """Held while this process trains ``cfg`` (each model of a stack): ``Store.computing`` on every model's
    "final", taken in one global order (their store keys), so that processes whose stacks overlap wait for each
    other and never deadlock."""
    members = cfg.cfgs if isinstance(cfg, stacked.Stack) else [cfg]
    kinds = [KIND if isinstance(c, TrainConfig) else baselines._kind(c) for c in members]
    with ExitStack() as held:
        for kind, key in sorted(((k, c.key_dict()) for k, c in zip(kinds, members)),
                                key=lambda kk: (kk[0], config_key(kk[1]))):
            held.enter_context(store.computing(kind, key, "final"))
        yield


def _fit(cfg, store: Store, progress: bool, device):
    if isinstance(cfg, stacked.Stack):
        return stacked.train_stacked(cfg.cfgs, store, device=device, progress=progress)
    if isinstance(cfg, TrainConfig):
        return train(cfg, store, device=device, progress=progress)
    if isinstance(cfg, baselines.GANConfig):
        return baselines.train_gan(cfg, store, device=device, progress=progress)
    return baselines.train_vae(cfg, store, device=device, progress=progress)


# CPU seconds per training step of each kind of job (``cost_class``), measured on one thread at the cpu profile's
# sizes by ``benchmarks/bench_jobs.py --write``; ``cost`` reads them to put the longest work first.
STEP_COSTS = Path(__file__).with_name("step_costs.json")


def cost_class(job) -> str:
    """What one training step of ``job`` costs depends on: the backbone, the formulation's passes per step
    (consistency training and distillation take more than one), conditioning, what is trained, and for a stack
    how many models it holds."""
    if isinstance(job, stacked.Stack):
        return f"{len(job.cfgs)} stacked {cost_class(job.cfgs[0])}"
    if isinstance(job, TrainConfig):
        net = " ".join(f"{k}={v}" for k, v in sorted(job.net.items()))
        passes = job.formulation if job.formulation == "ct" else "distill" if job.formulation.startswith(
            "distill") else "one pass"
        extra = [name for name, on in (("conditional", job.conditional), ("lora", job.lora)) if on]
        if job.trainable:
            extra.append("trains " + ",".join(job.trainable))
        return " · ".join([net, passes, *extra])
    return f"{type(job).__name__} {job.arch} width={job.width}"


@lru_cache(maxsize=1)
def _step_costs() -> dict:
    return json.loads(STEP_COSTS.read_text())["seconds_per_step"] if STEP_COSTS.exists() else {}


def cost(job, costs: dict | None = None) -> float | None:
    """Estimated CPU seconds to train ``job`` on one thread: its steps times the measured cost of one of its steps
    (``STEP_COSTS``); None for a kind never measured."""
    per_step = (_step_costs() if costs is None else costs).get(cost_class(job))
    return None if per_step is None else job.steps * per_step


def _cost(job) -> float:
    """A job's length in model-steps weighted by width: the stand-in for ``cost`` where a job was never measured."""
    if isinstance(job, stacked.Stack):
        return sum(_cost(c) for c in job.cfgs)
    return job.steps * (job.net.get("width", 1) if isinstance(job, TrainConfig) else 1)


def costs(jobs, per_step: dict | None = None) -> list[float]:
    """Each job's estimated cost, for ordering: measured seconds (``STEP_COSTS``, or ``per_step``: a value per
    ``cost_class``) when every job's kind was measured, else the stand-in for all (the two are not in the same
    units)."""
    measured = [cost(job, per_step) for job in jobs]
    return measured if all(c is not None for c in measured) else [float(_cost(job)) for job in jobs]


def fit_all(configs, store: Store, P: dict, backend: str | None = None, stack: bool = True,
            progress: bool = True) -> dict:
    """Train every config not yet in the store, ``P["n_jobs"]`` jobs at a time on ``P["device"]``; returns
    {label (``describe``): seconds} of the jobs trained. ``backend`` names a joblib backend (``"dask"``,
    ``"ray"``; default ``REPRO_SWEEP_BACKEND``), see ``sweep.run_scheduled``.

    With ``stack``, the untrained configs of the kinds where it pays (``stacked.min_stack``: the narrow U-Nets on
    the CPU, every kind on a GPU) that differ only in data, seed and the like train together as one stacked model
    per job (``stacked.group``), each as if alone up to round-off; the rest train alone. A job whose configs start
    (``init``) from a config of another job waits for it, so that two workers never train the same parent; the
    rest start longest chain of work first, by ``costs``. On a cluster backend, a job on "cuda" asks for its share
    of a GPU (``gpu_share``)."""
    jobs, job_costs, after = schedule(configs, store, stack, device=P["device"], max_stack=max_stack(P))
    return sweep.run_scheduled(partial(fit, device=P["device"]), jobs, job_costs, after, store,
                               n_jobs=P["n_jobs"], progress=progress, label=describe, backend=backend,
                               gpus=gpu_share(P))


def gpu_share(P: dict) -> float:
    """The share of a GPU one training asks a cluster for: 1 / the profile's ``GPU_WORKERS`` on "cuda" (a card
    holds as many trainings on a cluster as on one machine), none elsewhere."""
    from . import profiles

    return 1 / profiles.GPU_WORKERS[P["profile"]] if str(P["device"]).startswith("cuda") else 0.0


def max_stack(P: dict) -> int | None:
    """The most models one job stacks at ``P``'s profile and device: the profile's ``GPU_STACK`` on a GPU, else
    the library's default (``stacked.group``)."""
    from . import profiles

    return None if str(P["device"]).startswith("cpu") else profiles.GPU_STACK[P["profile"]]


def schedule(configs, store: Store, stack: bool = True, per_step: dict | None = None,
             device="cpu", max_stack: int | None = None) -> tuple[list, list[float], list[list[int]]]:
    """``fit_all``'s jobs for the configs not yet in the store (stacked where it pays on ``device``, ``max_stack``
    models at most), each job's estimated cost (``costs``, under ``per_step`` if given; a job also trains the
    ancestors no other job trains, as ``train.train`` does, and they count) and the jobs each waits for
    (``after``: those that train one of its ancestors)."""
    todo = [c for c in {repr(c): c for c in configs}.values() if not is_fitted(c, store)]
    jobs = stacked.group(todo, max_stack, device=device) if stack else todo
    members = [_members(job) for job in jobs]
    after = [[i for i, others in enumerate(members) if i != j and any(a in others for c in mine for a in _ancestors(c))]
             for j, mine in enumerate(members)]
    planned = [c for m in members for c in m]
    own = [[a for c in mine for a in _ancestors(c) if a not in planned and not is_fitted(a, store)]
           for mine in members]  # trained inside the job, before it
    flat = costs([*jobs, *(a for ancestors in own for a in ancestors)], per_step)
    job_costs, k = flat[:len(jobs)], len(jobs)
    for j, ancestors in enumerate(own):
        job_costs[j] += sum(flat[k:k + len(ancestors)])
        k += len(ancestors)
    return jobs, job_costs, after


def _members(job) -> list:
    return list(job.cfgs) if isinstance(job, stacked.Stack) else [job]


def _ancestors(cfg) -> list:
    """The configs a config starts from (its ``init``, that one's, ...)."""
    out = []
    while isinstance(cfg, TrainConfig) and cfg.init is not None:
        cfg = TrainConfig(**cfg.init)
        out.append(cfg)
    return out


def is_fitted(cfg, store: Store | None = None) -> bool:
    if isinstance(cfg, stacked.Stack):
        return all(is_trained(c, store) for c in cfg.cfgs)
    return is_trained(cfg, store) if isinstance(cfg, TrainConfig) else baselines.is_trained(cfg, store)


def training_losses(cfg, store: Store | None = None) -> list:
    """Mean training loss per 100 steps of a finished model of any kind."""
    from . import train as train_lib

    return train_lib.losses(cfg, store) if isinstance(cfg, TrainConfig) else baselines.losses(cfg, store)


def describe(cfg) -> str:
    if isinstance(cfg, stacked.Stack):
        c = cfg.cfgs[0]
        return (f"{len(cfg.cfgs)} stacked {c.net['kind']}-{c.net.get('width', '')}/{c.formulation} "
                f"n={','.join(str(m.n or 'all') for m in cfg.cfgs)}")
    if isinstance(cfg, TrainConfig):
        extra = [f"classes {''.join(map(str, cfg.classes))}" if cfg.classes else "", "cond" if cfg.conditional else "",
                 "fine-tuned" if cfg.init and not cfg.formulation.startswith("distill") else "",
                 f"trains {','.join(cfg.trainable)}" if cfg.trainable else "",
                 f"LoRA r{cfg.lora.get('rank')}" if cfg.lora else "", f"{cfg.steps} steps"]
        return (f"{cfg.net['kind']}-{cfg.net.get('width', '')}/{cfg.formulation} n={cfg.n or 'all'} seed={cfg.seed} "
                + " ".join(e for e in extra if e))
    return f"{type(cfg).__name__[:3]} {cfg.arch} seed={cfg.seed}"


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
                out[(n, w, seed)] = configured(TrainConfig(data=P["data"], n=n, net=net, steps=steps, seed=seed,
                                                           batch=P["batch"], lr=P["lr"], snapshot_every=every), P)
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


def guided_samples(v: Variant, store: Store, seeds, labels, scale: float, P: dict):
    """Samples of a conditional variant for ``seeds`` with per-seed ``labels`` under classifier-free guidance
    of scale ``scale`` (``guidance.Guided``), cached in the store like ``samples``."""
    from .guidance import Guided

    steps = P["sample_steps"] if v.sampler == "heun" else 2 * P["sample_steps"] - 1
    seeds, labels = [int(s) for s in seeds], torch.as_tensor(labels, dtype=torch.long)
    key = {"model": v.cfg.key_dict(), "sampler": v.sampler, "schedule": v.schedule, "steps": steps,
           "seeds": seeds, "labels": labels.tolist(), "guidance": float(scale),
           "code": codehash.of("guided samples")}
    return _bank(store, key, lambda: samplers.sample(Guided(train(v.cfg, store, device=P["device"], progress=False),
                                                            scale), seeds, P["shape"], v.sampler, steps, v.schedule,
                                                     device=P["device"], labels=labels))


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
    parent = configured(TrainConfig(data=P["data"], net=net, classes=src, steps=steps(2500), seed=10, batch=128), P)
    scratch = configured(TrainConfig(data=P["data"], net=net, classes=tgt, steps=steps(2500), seed=0, batch=128), P)
    tune = scratch.replace(init=asdict(parent), steps=steps(1500), seed=2)
    variants = {
        "scratch": Variant("scratch", scratch),
        "scratch, seed 2": Variant("scratch, seed 2", scratch.replace(seed=1)),
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


def snapshot_samples(cfg: TrainConfig, step: int, store: Store, seeds, P: dict):
    """Heun samples of the EMA snapshot after ``step`` steps, cached in the store like ``samples``."""
    from .train import snapshot

    seeds = [int(s) for s in seeds]
    key = {"model": cfg.key_dict(), "snapshot": step, "sampler": "heun", "steps": P["sample_steps"], "seeds": seeds,
           "code": codehash.of("samples")}

    def draw():
        train(cfg, store, device=P["device"], progress=False)
        model = snapshot(cfg, step, store, device=P["device"])
        return samplers.sample(model, seeds, P["shape"], "heun", P["sample_steps"], device=P["device"])

    return _bank(store, key, draw)


def sweep_settings(P: dict) -> dict:
    """Notebook 02's settings at ``P``'s profile under ``P["sweep"]`` (the overrides 02 itself was given: the runner
    passes them) and ``P``'s backbone, precision and device settings: the sweep as 02 trains it, for the notebooks
    that reuse its models (07, 08)."""
    from . import profiles

    own = {k: P[k] for k in ("nets", "precision", "device") if k in P}
    return profiles.settings("02", P["profile"], **{**P.get("sweep", {}), **own})


def privacy_models(P: dict, store: Store) -> tuple[dict, dict, bool]:
    """The models of the privacy study: notebook 02's whole sweep when the store holds all of it (nothing is
    trained), else its ``P["privacy_widths"]`` x ``P["privacy_sizes"]`` corner (the same configs, so a later
    run of 02 reuses them). Returns (02's settings, {(N, width, seed): config}, whether it is the whole sweep)."""
    p02 = sweep_settings(P)
    sweep_cfgs = regimes(p02)
    if all(is_fitted(c, store) for c in sweep_cfgs.values()):
        return p02, sweep_cfgs, True
    sub = {k: c for k, c in sweep_cfgs.items() if k[0] in P["privacy_sizes"] and k[1] in P["privacy_widths"]}
    return p02, sub, False


def section6_partial(variants: dict[str, Variant]) -> list[str]:
    """The partial fine-tunings of ``section6`` (all but the full and the encoder fine-tuning): those of claim 3,
    which ``section6_long`` follows further."""
    return [n for n in variants if "fine-tune" in n and n not in ("full fine-tune", "encoder fine-tune")]


def plan(notebook: str, P: dict, store: Store) -> list:
    """Every model notebook ``notebook`` trains at settings ``P``: what it hands ``fit_all``, and what
    ``paper_figures.py`` trains for all its notebooks at once, in one pool, before it runs them."""
    if notebook == "01":
        gans, vaes = section1_baselines(P)
        return [v.cfg for v in section1(P)] + gans + vaes
    if notebook in ("02", "03"):
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

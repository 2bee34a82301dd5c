"""One training loop for every diffusion model: Adam, linear warm-up, EMA, checkpoints, resume.

All randomness (initialisation, minibatches, noise levels, label dropout) comes from the config's seed.
What holds: the same config on the same device with the same number of torch threads gives the same weights,
bit for bit, and a run resumed from a checkpoint at that thread count ends bit-identical to one never
interrupted. What does not: another thread count (or device, or torch build) splits floating-point reductions
differently, and that round-off, amplified by training, gives other weights. So every run records its thread
count beside its weights (``trained_threads``: the counts in the order a run and its resumes used them).
Finished models land in the store, keyed by the whole config and the code that trains it (``codehash``), and are
never trained twice.

``precision`` ("bf16" or "fp16") runs the forward pass and the loss under ``torch.autocast`` (Micikevicius
et al. 2018, mixed precision training); fp16 adds dynamic loss scaling (``torch.amp.GradScaler``) because its
narrow exponent underflows small gradients. Weights, Adam's state, the EMA and what is saved stay float32.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from . import codehash
from . import data as data_lib
from . import lora as lora_lib
from . import networks
from . import progress as progress_lib
from .formulations import Denoiser
from .store import Store


@dataclass(frozen=True)
class TrainConfig:
    data: str = "digits"
    n: int | None = None  # training-set size: a nested seeded subset; None = all
    subset_seed: int = 0
    net: dict = field(default_factory=lambda: {"kind": "unet", "width": 32})
    formulation: str = "edm"
    conditional: bool = False  # class labels, with label dropout for classifier-free guidance
    label_dropout: float = 0.1
    steps: int = 4000
    batch: int = 128
    lr: float = 1e-3
    warmup: int = 200
    ema_halflife: int = 500  # in steps
    seed: int = 0
    ckpt_every: int = 500  # how often to checkpoint: not part of the key, it does not change the result
    # Optional features; each joins the key only when set, so adding one never invalidates a store.
    classes: tuple | None = None  # keep only these labels (before the size-n subset)
    init: dict | None = None  # start from this trained config's EMA weights (``asdict`` of a TrainConfig)
    trainable: tuple | None = None  # parameter-name prefixes to train (e.g. ("net.up",)); None = all
    snapshot_every: int | None = None  # also keep the EMA weights every k steps
    lora: dict | None = None  # low-rank adapters (``lora.add`` keywords, e.g. {"rank": 4}), trained alone
    precision: str | None = None  # autocast dtype of the loss: "bf16" or "fp16"; None = float32

    def key_dict(self) -> dict:
        d = asdict(self)
        d.pop("ckpt_every")
        if d["init"] is not None:  # a parent given as ``asdict`` gained fields added since: unset, they are no key
            d["init"] = {k: v for k, v in d["init"].items() if not (k in _ADDED_SINCE_INIT and v is None)}
        d = {k: v for k, v in d.items() if not (k in _OPTIONAL and v is None)}
        return {**d, "code": codehash.of(KIND)}  # the code that trains it: edit it, and the model is new

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


_OPTIONAL = ("classes", "init", "trainable", "snapshot_every", "lora", "precision")
_ADDED_SINCE_INIT = ("precision",)  # optional fields younger than the stores that hold fine-tuned models
KIND = "diffusion"
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def training_set(cfg) -> data_lib.ImageSet:
    ds = data_lib.load(cfg.data)
    if getattr(cfg, "classes", None) is not None:
        keep = torch.isin(ds.labels, torch.tensor(list(cfg.classes)))
        ds = data_lib.ImageSet(ds.name, ds.images[keep], ds.labels[keep])
    return ds.subset(cfg.n, cfg.subset_seed)


def build(cfg: TrainConfig, shape) -> Denoiser:
    """The untrained denoiser the config describes, for images of ``shape`` (C, H, W)."""
    kw = dict(cfg.net)
    kind = kw.pop("kind")
    num_classes = 10 if cfg.conditional else 0
    net = networks.build(kind, in_channels=shape[0], resolution=shape[1], num_classes=num_classes, **kw)
    if getattr(cfg, "lora", None) is not None:
        lora_lib.add(net, **cfg.lora)
    return Denoiser(net, cfg.formulation)


def mark_trainable(model, cfg: TrainConfig) -> int:
    """Freeze what ``cfg`` does not train (``trainable`` prefixes, ``lora`` adapters); returns the count trained."""
    if cfg.trainable is not None or cfg.lora is not None:
        prefixes = tuple(cfg.trainable or ())
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefixes) or (cfg.lora is not None and lora_lib.is_adapter(name)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, every parameter in one call (one kernel launch, not one a tensor)."""
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)


def optimizer(params, lr: float) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) as one fused kernel over every tensor per step instead of a loop over them: the same
    update up to round-off, and with ``ema_update`` 1.02-1.16x more training steps per CPU second on one thread
    (``benchmarks/bench_levers.py``, benchmarks/results.md)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


def autocast(precision: str | None, device) -> contextlib.AbstractContextManager:
    """The context a training step's forward pass runs in: ``torch.autocast`` at ``precision``, or nothing."""
    if precision is None:
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision '{precision}': use None (float32), 'bf16' or 'fp16'.")
    return torch.autocast(torch.device(device).type, dtype=PRECISIONS[precision])


def _with_current_threads(threads: list[int]) -> list[int]:
    """The thread counts a run has used, with this process's appended when it differs from the last one."""
    now = torch.get_num_threads()
    return list(threads) if threads and threads[-1] == now else [*threads, now]


def _lr(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def train(cfg: TrainConfig, store: Store | None = None, device=None, progress: bool = True, callback=None) -> Denoiser:
    """The trained EMA denoiser for ``cfg``: from the store when finished, else trained (resuming a checkpoint).

    ``callback(step, loss)`` is called after every step; raising in it interrupts training like Ctrl-C.
    """
    store = store or Store()
    key = cfg.key_dict()
    ds = training_set(cfg)
    if store.exists(KIND, key, "final"):
        model = build(cfg, ds.shape)
        model.load_state_dict(store.load(KIND, key, "final")["ema"])
        return model.to(device or "cpu").eval().requires_grad_(False)

    device = torch.device(device or "cpu")
    store.clear_leftovers(KIND, key)  # half-written checkpoints of a killed run of this config
    torch.manual_seed(cfg.seed)  # initial weights
    model = build(cfg, ds.shape).to(device)
    if cfg.init is not None:  # fine-tuning: the parent is trained first if the store lacks it
        parent = train(TrainConfig(**cfg.init), store, device, progress).state_dict()
        missing, unexpected = model.load_state_dict(parent, strict=False)
        if unexpected or not all(lora_lib.is_adapter(k) for k in missing):  # only new adapters may be missing
            raise ValueError(f"parent does not fit the child: missing {missing}, unexpected {unexpected}")
    if getattr(model.formulation, "needs_teacher", False):  # distillation: the parent, frozen, is the teacher
        if cfg.init is None:
            raise ValueError(f"formulation {cfg.formulation} distils a teacher: give its config as init")
        model.formulation.teacher = copy.deepcopy(model).requires_grad_(False).eval()
    mark_trainable(model, cfg)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = optimizer([p for p in model.parameters() if p.requires_grad], cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    precision = getattr(cfg, "precision", None)
    # Loss scaling only for fp16; disabled, the scaler passes the loss and the step through unchanged.
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    start, losses, running, threads = 0, [], 0.0, []
    if store.exists(KIND, key, "checkpoint"):
        ck = store.load(KIND, key, "checkpoint")
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        if "scaler" in ck:
            scaler.load_state_dict(ck["scaler"])
        start, losses, running, threads = ck["step"], ck["losses"], ck["running"], ck.get("threads", [])
    threads = _with_current_threads(threads)

    images, labels = ds.images.to(device), ds.labels.to(device)
    decay = 0.5 ** (1 / cfg.ema_halflife)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=not progress,
               desc=f"train {cfg.net['kind']}/{cfg.formulation} n={len(ds)}", leave=False)
    what = f"{cfg.net['kind']}-{cfg.net.get('width', '')} {cfg.formulation} n={len(ds)} seed={cfg.seed}"
    for step in bar:
        progress_lib.update("train", what, step, cfg.steps)
        idx = torch.randint(0, len(images), (cfg.batch,), generator=gen).to(device)
        lab = None
        if cfg.conditional:
            drop = torch.rand(cfg.batch, generator=gen).to(device) < cfg.label_dropout
            lab = torch.where(drop, torch.full_like(labels[idx], 10), labels[idx])
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        with autocast(precision, device):
            loss = model.loss(images[idx], gen, lab, step, cfg.steps).float()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        ema_update(ema, model, decay)
        running += loss.item()
        if (step + 1) % 100 == 0:
            losses.append(running / 100)
            running = 0.0
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if cfg.snapshot_every and (step + 1) % cfg.snapshot_every == 0:
            store.save(KIND, key, f"ema_{step + 1}", {"ema": {k: v.cpu() for k, v in ema.state_dict().items()}})
        if callback is not None:
            callback(step, loss.item())
        if (step + 1) % cfg.ckpt_every == 0 and step + 1 < cfg.steps:
            store.save(KIND, key, "checkpoint", {
                "model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "gen": gen.get_state(), "step": step + 1, "losses": losses, "running": running, "threads": threads,
                **({"scaler": scaler.state_dict()} if scaler.is_enabled() else {})})
    progress_lib.update("train", what, cfg.steps, cfg.steps)
    store.save(KIND, key, "final", {"ema": {k: v.cpu() for k, v in ema.state_dict().items()}, "losses": losses,
                                    "threads": threads})
    store.remove(KIND, key, "checkpoint")
    return ema.eval()


def snapshot(cfg: TrainConfig, step: int, store: Store | None = None, device=None) -> Denoiser:
    """The EMA denoiser after ``step`` steps of a run trained with ``snapshot_every`` dividing ``step``."""
    store = store or Store()
    model = build(cfg, training_set(cfg).shape)
    model.load_state_dict(store.load(KIND, cfg.key_dict(), f"ema_{step}")["ema"])
    return model.to(device or "cpu").eval().requires_grad_(False)


def losses(cfg: TrainConfig, store: Store | None = None) -> list[float]:
    """Mean training loss per 100 steps of a finished run (for judging convergence)."""
    return (store or Store()).load(KIND, cfg.key_dict(), "final")["losses"]


def trained_threads(cfg: TrainConfig, store: Store | None = None) -> list[int]:
    """The torch thread counts a finished run was trained with (one entry per count used across resumes; empty
    for a model stored before they were recorded)."""
    return (store or Store()).load(KIND, cfg.key_dict(), "final").get("threads", [])


def is_trained(cfg: TrainConfig, store: Store | None = None) -> bool:
    return (store or Store()).exists(KIND, cfg.key_dict(), "final")

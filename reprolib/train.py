"""Training one diffusion model: its config (the store key), its denoiser, and one optimisation step.

``train(cfg)`` returns the trained EMA denoiser, from the store when finished, else trained by ``loop.run`` as a
``Single`` job (resuming a checkpoint): Adam, linear warm-up, EMA, checkpoints. All randomness (initialisation,
minibatches, noise levels, label dropout) comes from the config's seed; what is bit-identical and what is not is
said in ``loop``. Finished models land in the store, keyed by the whole config and the code that trains it
(``codehash``), and are never trained twice.

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

from . import codehash, loop
from . import lora as lora_lib
from . import networks
from .formulations import Denoiser, to_device
from .loop import KIND, ema_update, optimizer, training_set
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
    exclude: tuple | None = None  # (size, seed): train outside that subset of the data, so on none of its images
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


_OPTIONAL = ("classes", "exclude", "init", "trainable", "snapshot_every", "lora", "precision")
_ADDED_SINCE_INIT = ("precision", "exclude")  # optional fields younger than the stores that hold fine-tuned models
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast(precision: str | None, device) -> contextlib.AbstractContextManager:
    """The context a training step's forward pass runs in: ``torch.autocast`` at ``precision``, or nothing."""
    if precision is None:
        return contextlib.nullcontext()
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision '{precision}': use None (float32), 'bf16' or 'fp16'.")
    return torch.autocast(torch.device(device).type, dtype=PRECISIONS[precision])


def prepare(cfg: TrainConfig, shape, store: Store, device, progress: bool = True) -> Denoiser:
    """The denoiser ``cfg`` starts training from: initial weights from its seed, or its parent's (``init``: trained
    first if the store lacks it; only new adapters may be missing from them), a frozen copy of them as the teacher
    of a distilled student, and only what it trains left unfrozen."""
    store.clear_leftovers(KIND, cfg.key_dict())  # half-written files of a killed run of this config
    torch.manual_seed(cfg.seed)
    model = build(cfg, shape).to(device)
    if cfg.init is not None:
        parent = train(TrainConfig(**cfg.init), store, device, progress).state_dict()
        missing, unexpected = model.load_state_dict(parent, strict=False)
        if unexpected or not all(lora_lib.is_adapter(k) for k in missing):
            raise ValueError(f"parent does not fit the child: missing {missing}, unexpected {unexpected}")
    if getattr(model.formulation, "needs_teacher", False):
        if cfg.init is None:
            raise ValueError(f"formulation {cfg.formulation} distils a teacher: give its config as init")
        model.formulation.teacher = copy.deepcopy(model).requires_grad_(False).eval()
    mark_trainable(model, cfg)
    return model


def minibatch(cfg: TrainConfig, gen: torch.Generator, images, labels, formulation, step: int, device):
    """One training step's draws from ``gen``, in a fixed order: the minibatch, its label dropout (classifier-free
    guidance's "no label" is label 10), then the formulation's noise levels and noise. Returns (x0, labels or None,
    the formulation's draws)."""
    idx = to_device(torch.randint(0, len(images), (cfg.batch,), generator=gen), device)
    lab = None
    if cfg.conditional:
        drop = to_device(torch.rand(cfg.batch, generator=gen), device) < cfg.label_dropout
        lab = torch.where(drop, torch.full_like(labels[idx], 10), labels[idx])
    x0 = images[idx]
    return x0, lab, formulation.draw(x0, gen, step, cfg.steps)


class Single:
    """One model as a ``loop.Job``: its denoiser, EMA, Adam (with loss scaling at fp16) and generator.

    ``channels_last`` and ``compile_mode`` (a ``torch.compile`` mode) change how the step is computed, not what:
    the same numbers up to round-off, for the GPU benchmark to measure.
    """

    def __init__(self, cfg: TrainConfig, store: Store, device: torch.device, progress: bool = True,
                 channels_last: bool = False, compile_mode: str | None = None):
        self.cfgs, self.keys, self.device = [cfg], [cfg.key_dict()], device
        ds = training_set(cfg)
        self.model = prepare(cfg, ds.shape, store, device, progress)
        self.images, self.labels = ds.images.to(device), ds.labels.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        self.net = torch.compile(self.model.net, mode=compile_mode) if compile_mode else self.model.net
        self.opt = optimizer([p for p in self.model.parameters() if p.requires_grad], cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        # Loss scaling only for fp16; disabled, the scaler passes the loss and the step through unchanged.
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
        self.decay = 0.5 ** (1 / cfg.ema_halflife)
        self.what = f"{cfg.net['kind']}-{cfg.net.get('width', '')} {cfg.formulation} n={len(ds)} seed={cfg.seed}"

    def restore(self, checkpoints: list) -> None:
        ck = checkpoints[0]
        if ck is None:
            return
        self.model.load_state_dict(ck["model"])
        self.ema_model.load_state_dict(ck["ema"])
        self.opt.load_state_dict(ck["opt"])
        self.gen.set_state(ck["gen"])
        if "scaler" in ck:
            self.scaler.load_state_dict(ck["scaler"])

    def step(self, step: int, lr: float) -> torch.Tensor:
        cfg = self.cfgs[0]
        x0, labels, draws = minibatch(cfg, self.gen, self.images, self.labels, self.model.formulation, step,
                                      self.device)
        for group in self.opt.param_groups:
            group["lr"] = lr
        with autocast(cfg.precision, self.device):
            loss = self.model.formulation.objective(self.net, x0, labels, **draws).float()
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        ema_update(self.ema_model, self.model, self.decay)
        return loss.detach().reshape(1)

    def ema(self, k: int = 0) -> dict:
        return {name: v.cpu() for name, v in self.ema_model.state_dict().items()}

    def state(self, k: int = 0) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema_model.state_dict(), "opt": self.opt.state_dict(),
                "gen": self.gen.get_state(), **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled()
                                                else {})}


def train(cfg: TrainConfig, store: Store | None = None, device=None, progress: bool = True, callback=None, *,
          channels_last: bool = False, compile_mode: str | None = None) -> Denoiser:
    """The trained EMA denoiser for ``cfg``: from the store when finished, else trained (resuming a checkpoint).

    ``callback(step, loss)`` is called after every step; raising in it interrupts training like Ctrl-C.
    ``channels_last`` and ``compile_mode``: see ``Single``.
    """
    store = store or Store()
    if is_trained(cfg, store):
        return load(cfg, store, device)
    job = Single(cfg, store, torch.device(device or "cpu"), progress, channels_last, compile_mode)
    loop.run(job, store, progress, callback and (lambda step, losses: callback(step, losses[0])))
    return job.ema_model.eval()


def load(cfg: TrainConfig, store: Store | None = None, device=None, name: str = "final") -> Denoiser:
    """The stored EMA denoiser of a finished run (``name`` "final"), or of its snapshot ``ema_<step>``."""
    store = store or Store()
    model = build(cfg, training_set(cfg).shape)
    model.load_state_dict(store.load(KIND, cfg.key_dict(), name)["ema"])
    return model.to(device or "cpu").eval().requires_grad_(False)


def snapshot(cfg: TrainConfig, step: int, store: Store | None = None, device=None) -> Denoiser:
    """The EMA denoiser after ``step`` steps of a run trained with ``snapshot_every`` dividing ``step``."""
    return load(cfg, store, device, f"ema_{step}")


def losses(cfg: TrainConfig, store: Store | None = None) -> list[float]:
    """Mean training loss per 100 steps of a finished run (for judging convergence)."""
    return (store or Store()).load(KIND, cfg.key_dict(), "final")["losses"]


def trained_threads(cfg: TrainConfig, store: Store | None = None) -> list[int]:
    """The torch thread counts a finished run was trained with (one entry per count used across resumes; empty
    for a model stored before they were recorded)."""
    return (store or Store()).load(KIND, cfg.key_dict(), "final").get("threads", [])


def is_trained(cfg: TrainConfig, store: Store | None = None) -> bool:
    return (store or Store()).exists(KIND, cfg.key_dict(), "final")

"""Several same-shape diffusion models trained together as one stacked model, each as if alone.

Small models leave a core (or a GPU) mostly idle on Python and kernel-launch overhead, so K of them share one
forward and backward pass: their parameters are stacked along a new first axis (as
``torch.func.stack_module_state`` does) and the formulation's deterministic ``objective`` runs once per model
under ``torch.func.vmap`` over ``functional_call``. Each model keeps what it would have alone: its initial
weights, its own generator and draws in ``train.minibatch``'s order, its own losses. Adam and the EMA are
elementwise, so one Adam on the stacked parameters stepped on the sum of the K losses is each model's own Adam; a
parameter one model freezes (``trainable``) gets a zero gradient in its slice, which leaves it and its moments
where they are. What differs from training alone is round-off: batched kernels sum in another order (the tests
bound the gap). Each model lands in the store under its own key in ``train.train``'s format; a stack's checkpoints
are one file under the stack's own key (``stack_resume``, how stacks train).

Stackable: configs equal in everything but ``STACKABLE``, float32, without LoRA adapters or a teacher
(``check`` says why not). ``group`` stacks where it pays (``min_stack``): on the CPU the narrow U-Nets, as
measured in ``benchmarks/bench_stacked.py``; on a GPU, whose steps are launch-bound, every same-shape group.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections import defaultdict

import torch
from torch.func import functional_call, vmap

from . import formulations
from . import train as train_lib
from .loop import optimizer, training_set
from .store import Store
from .train import TrainConfig

# Fields in which the models of one stack may differ: none changes the network's shape or the step's arithmetic.
STACKABLE = ("n", "subset_seed", "seed", "classes", "exclude", "init", "trainable", "snapshot_every", "ckpt_every")


def signature(cfg: TrainConfig) -> tuple:
    """What configs of one stack share: every field but ``STACKABLE`` (as a hashable tuple)."""
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in STACKABLE}
    return tuple(sorted((k, repr(v)) for k, v in d.items()))


def check(cfgs) -> None:
    """Raises ValueError naming what keeps ``cfgs`` from training as one stack."""
    cfgs = list(cfgs)
    if not cfgs:
        raise ValueError("no configs to stack")
    if not all(isinstance(c, TrainConfig) for c in cfgs):
        raise ValueError("only diffusion models (TrainConfig) can be stacked")
    first = dataclasses.asdict(cfgs[0])
    for c in cfgs[1:]:
        d = dataclasses.asdict(c)
        differ = [k for k in first if k not in STACKABLE and d[k] != first[k]]
        if differ:
            raise ValueError(f"configs cannot be stacked: they differ in {', '.join(differ)} (a stack may differ only "
                             f"in {', '.join(STACKABLE)})")
    if first["lora"] is not None:
        raise ValueError("configs with LoRA adapters cannot be stacked: train them alone with train.train")
    if getattr(formulations.build(first["formulation"]), "needs_teacher", False):
        raise ValueError(f"{first['formulation']} distils a teacher of each model's own: train it with train.train")
    if first["precision"] is not None:
        raise ValueError(f"configs at precision {first['precision']!r} cannot be stacked: only float32 (None) is")
    keys = [repr(c.key_dict()) for c in cfgs]
    if len(set(keys)) < len(keys):
        raise ValueError("a stack holds the same config twice")


# Where stacking paid >= 1.1x on one CPU thread (benchmarks/results.md, 2026-12-02): backbone kind -> [(widest
# width, smallest K that pays)]. Wider U-Nets fill the core alone; narrow ones pay from a few models on.
PAYS = {"unet": [(4, 2), (8, 4)]}
MAX_STACK = 8  # the largest K measured on the CPU


def stackable(cfg) -> bool:
    """Whether ``cfg`` can train in a stack at all (``check``'s rules for one config)."""
    return (isinstance(cfg, TrainConfig) and cfg.lora is None and cfg.precision is None
            and not getattr(formulations.build(cfg.formulation), "needs_teacher", False))


def min_stack(cfg, device="cpu") -> int | None:
    """The fewest models of ``cfg``'s kind that train faster stacked than one by one; None where stacking does not
    pay or ``cfg`` cannot be stacked. On the CPU as measured (``PAYS``); on a GPU two, of any kind: a small model's
    step there is launch-bound (one H200: 300 steps of a stack of 6 digits U-Nets took 2.3x one model's time,
    benchmarks/results.md, 2026-12-04)."""
    if not stackable(cfg):
        return None
    if torch.device(device).type != "cpu":
        return 2
    width = cfg.net.get("width", 0)
    return next((k for widest, k in PAYS.get(cfg.net["kind"], []) if width <= widest), None)


@dataclasses.dataclass(frozen=True)
class Stack:
    """Configs that train as one stacked model (a job for ``sweep.run_all``)."""

    cfgs: tuple

    @property
    def steps(self) -> int:
        return self.cfgs[0].steps


def group(configs, max_size: int | None = None, device="cpu") -> list:
    """``configs`` with those of one ``signature`` gathered into ``Stack``s where they are enough for stacking to pay
    on ``device`` (``min_stack``), of at most ``max_size`` models (default: ``MAX_STACK`` on the CPU, any number on
    a GPU); the rest stay configs. A stack takes the place of its first member."""
    on_cpu = torch.device(device).type == "cpu"
    max_size = max_size or (MAX_STACK if on_cpu else len(configs) or 1)
    out, members = [], defaultdict(dict)
    for c in configs:
        sig = signature(c) if min_stack(c, device) else None
        if sig is None:
            out.append(c)
            continue
        if sig not in members:
            out.append(sig)
        members[sig][repr(c.key_dict())] = c
    result = []
    for item in out:
        if not isinstance(item, tuple):
            result.append(item)
            continue
        cfgs = list(members[item].values())
        parts = -(-len(cfgs) // max_size)  # as few stacks as fit, of nearly equal sizes
        for i in range(parts):
            part = cfgs[i::parts]
            result += [Stack(tuple(part))] if len(part) >= min_stack(part[0], device) and len(part) > 1 else part
    return result


def _attention(device: torch.device):
    """The attention kernels a stacked step may use. CUDA's fused kernels fail under vmap (the memory-efficient
    backward misreads the stacked batch's strides: "LSE is not correctly aligned"; flash has no float32 kernel),
    and the math kernel is exact there. On the CPU vmap runs the fused kernel once per model, as a model alone
    does, so the CPU keeps it."""
    if device.type == "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class Stacked:
    """K models of one ``signature`` as one ``loop.Job``: stacked parameters, EMA and Adam, one generator each."""

    def __init__(self, cfgs, store: Store, device: torch.device, progress: bool = True):
        self.cfgs, self.keys, self.device = list(cfgs), [c.key_dict() for c in cfgs], device
        sets = [training_set(c) for c in cfgs]
        self.models = [train_lib.prepare(c, ds.shape, store, device, progress) for c, ds in zip(cfgs, sets)]
        self.names = [n for n, _ in self.models[0].named_parameters()]
        # masks[n][k]: model k trains parameter n; a stacked parameter is trained when some model trains it
        self.masks = {n: torch.tensor([dict(m.named_parameters())[n].requires_grad for m in self.models], device=device)
                      for n in self.names}
        self.trained = [n for n in self.names if self.masks[n].any()]
        self.gens = [torch.Generator().manual_seed(c.seed + 1) for c in cfgs]
        self.images = [ds.images.to(device) for ds in sets]
        self.labels = [ds.labels.to(device) for ds in sets]
        self.base = copy.deepcopy(self.models[0].net).to("meta")  # the shape of the computation; weights come per model
        self.formulation = self.models[0].formulation
        self.decay = 0.5 ** (1 / cfgs[0].ema_halflife)
        first = cfgs[0]
        self.what = (f"{first.net['kind']}-{first.net.get('width', '')} {first.formulation} stack of {len(cfgs)} "
                     f"n={','.join(str(len(ds)) for ds in sets)}")

    def restore(self, checkpoints: list) -> None:
        """Each model's checkpoint into its model, then the stacks (parameters, EMA, Adam) built from the models."""
        self.ema_states = [copy.deepcopy(m.state_dict()) for m in self.models]  # buffers stay each model's
        opt_states = [None] * len(self.models)
        for k, ck in enumerate(checkpoints):
            if ck is None:
                continue
            if "scaler" in ck:
                raise ValueError(f"{self.cfgs[k]} was checkpointed with loss scaling: resume it with train.train")
            self.models[k].load_state_dict(ck["model"])
            self.ema_states[k], opt_states[k] = ck["ema"], ck["opt"]
            self.gens[k].set_state(ck["gen"])
        # torch.func.stack_module_state, less its demand that every model train the same parameters
        self.params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in self.models])
                       .requires_grad_(n in self.trained) for n in self.names}
        self.buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in self.models])
                        for n, _ in self.models[0].named_buffers()}
        self.ema_stack = {n: t.to(self.device) for n, t in _stacked_state(self.ema_states, self.params).items()}
        self.opt = optimizer([self.params[n] for n in self.trained], self.cfgs[0].lr)
        if any(s is not None for s in opt_states):
            self.opt.load_state_dict(_stack_opt(opt_states, self.models, self.trained, self.masks))
        self.partial_masks = {n: m.view(-1, *[1] * (self.params[n].dim() - 1)) for n, m in self.masks.items()
                              if n in self.trained and not m.all()}

        def one(p, b, x0, lab, draws):
            net_params = {n[len("net."):]: v for n, v in p.items()}
            net_bufs = {n[len("net."):]: v for n, v in b.items()}

            def net(x, c_noise, labels=None):
                return functional_call(self.base, (net_params, net_bufs), (x, c_noise, labels))

            return self.formulation.objective(net, x0, lab, **draws).float()

        self.losses_of = vmap(one, in_dims=(0, 0, 0, 0 if self.cfgs[0].conditional else None, 0))

    def step(self, step: int, lr: float) -> torch.Tensor:
        x0s, labels, draws = [], [], []
        for cfg, gen, images, labs in zip(self.cfgs, self.gens, self.images, self.labels):
            x0, lab, drawn = train_lib.minibatch(cfg, gen, images, labs, self.formulation, step, self.device)
            x0s.append(x0)
            labels += [lab] if lab is not None else []
            draws.append(drawn)
        drawn = {name: torch.stack([d[name] for d in draws]) for name in draws[0]}
        for g in self.opt.param_groups:
            g["lr"] = lr
        with _attention(self.device), warnings.catch_warnings():
            # nn.MultiheadAttention's CPU kernel has no vmap rule: PyTorch loops over the models there, and says so
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            loss = self.losses_of(self.params, self.buffers, torch.stack(x0s), torch.stack(labels) if labels else None,
                                  drawn)
            self.opt.zero_grad(set_to_none=True)
            loss.sum().backward()
        with torch.no_grad():
            for n, m in self.partial_masks.items():  # frozen in some models: no gradient in their slice
                self.params[n].grad.mul_(m)
            self.opt.step()
            torch._foreach_lerp_(list(self.ema_stack.values()), [self.params[n] for n in self.ema_stack],
                                 1 - self.decay)  # loop.ema_update, on the stacks
        return loss.detach()

    def ema(self, k: int) -> dict:
        return _state(self.models[k], self.ema_stack, k, self.ema_states[k])

    def state(self, k: int) -> dict:
        return {"model": _state(self.models[k], self.params, k), "ema": self.ema(k),
                "opt": _unstack_opt(self.opt, self.params, self.trained, self.masks, k),
                "gen": self.gens[k].get_state()}


def _stacked_state(states: list[dict], names) -> dict:
    return {n: torch.stack([s[n] for s in states]) for n in names}


def _state(model, stacked: dict, k: int, rest: dict | None = None) -> dict:
    """Model k's state dict in ``model.state_dict()``'s order: its slice of ``stacked``, other entries (buffers)
    from ``rest`` or the model. Slices are copied: saving a view would save the whole stack."""
    rest = rest if rest is not None else model.state_dict()
    return {n: (stacked[n][k].detach().clone() if n in stacked else rest[n]).cpu() for n in model.state_dict()}


def _own(trained, masks, k) -> list:
    """The stacked parameters model k trains, in the order its own Adam in ``train.train`` holds them."""
    return [n for n in trained if bool(masks[n][k])]


def _unstack_opt(opt, params, trained, masks, k) -> dict:
    """Model k's Adam state in the format ``torch.optim.Adam.state_dict()`` gives ``train.train``."""
    group = {g: v for g, v in opt.state_dict()["param_groups"][0].items() if g != "params"}
    own = _own(trained, masks, k)
    state = {}
    for i, n in enumerate(own):
        s = opt.state.get(params[n])
        if s:
            state[i] = {name: (v.clone() if name == "step" else v[k].clone()) for name, v in s.items()}
    return {"state": state, "param_groups": [{**group, "params": list(range(len(own)))}]}


def _stack_opt(states, models, trained, masks) -> dict:
    """One Adam state for the stack from each model's (``_unstack_opt``'s or ``train.train``'s format)."""
    per_model = [{n: st["state"].get(i) for i, n in enumerate(_own(trained, masks, k))} for k, st in enumerate(states)]
    state = {}
    for i, n in enumerate(trained):
        have = [pm.get(n) for pm in per_model]
        known = [s for s in have if s]
        if not known:
            continue
        like = known[0]
        state[i] = {name: (like[name].clone() if name == "step" else
                           torch.stack([s[name] if s else torch.zeros_like(like[name]) for s in have]))
                    for name in like}
    group = {g: v for g, v in states[0]["param_groups"][0].items() if g != "params"}
    return {"state": state, "param_groups": [{**group, "params": list(range(len(trained)))}]}

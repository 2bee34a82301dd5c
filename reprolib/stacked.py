"""Several same-shape diffusion models trained together as one stacked model, each exactly as if alone.

Small models leave most of a core unused (Python and kernel-launch overhead), so K of them share one forward and
backward pass: their parameters are stacked along a new first axis (as ``torch.func.stack_module_state`` does) and the
formulation's deterministic ``objective`` runs once per model under ``torch.func.vmap`` over ``functional_call``.
What each model would do alone is kept: its own initial weights (``torch.manual_seed(seed)`` then ``build``, as
``train.train``), its own generator (``seed + 1``) drawing its minibatch indices, label dropout and the
formulation's ``draw`` in ``train.train``'s order, its own losses. Adam and the EMA are elementwise, so one Adam
on the stacked parameters, stepped on the *sum* of the K losses (the gradient of model k's slice is the gradient
of its own loss), is each model's own Adam; a parameter frozen in one model (``trainable``) gets a zero gradient
in that model's slice, which leaves Adam's moments at zero and the parameter where it is, as if it were not in the
optimiser. What differs from ``train.train`` is round-off: the batched kernels sum in another order (tests measure
the gap), and training amplifies it, as another thread count would.

Each model lands in the store under its own key with ``train.train``'s payloads (final: ema, losses, threads;
``ema_<step>`` snapshots; checkpoints in ``train.train``'s format), so either path resumes the other's checkpoint
and a later ``train.train`` loads the result. Models resumed from different checkpoint steps train as one stack
per step; a stack of one is left to ``train.train`` (bit-identical to training alone).

Stackable: configs equal in everything but ``STACKABLE`` (data subset, seed, classes, parent, trained parameters,
snapshot and checkpoint spacing), float32, without LoRA adapters (``check`` says why not). Where it pays is
measured in ``benchmarks/bench_stacked.py`` (``benchmarks/results.md``); ``PAYS`` records it for ``zoo.fit_all``
(``group``).
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections import defaultdict

import torch
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from . import formulations
from . import progress as progress_lib
from . import train as train_lib
from .store import Store
from .train import KIND, TrainConfig

# Fields in which the models of one stack may differ: none changes the network's shape or the step's arithmetic.
STACKABLE = ("n", "subset_seed", "seed", "classes", "init", "trainable", "snapshot_every", "ckpt_every")


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
MAX_STACK = 8  # the largest K measured


def min_stack(cfg) -> int | None:
    """The fewest models of ``cfg``'s kind that train faster stacked than one by one (``PAYS``); None where
    stacking does not pay or ``cfg`` cannot be stacked."""
    if not isinstance(cfg, TrainConfig) or cfg.lora is not None or cfg.precision is not None:
        return None
    width = cfg.net.get("width", 0)
    return next((k for widest, k in PAYS.get(cfg.net["kind"], []) if width <= widest), None)


@dataclasses.dataclass(frozen=True)
class Stack:
    """Configs that train as one stacked model (a job for ``sweep.run_all``)."""

    cfgs: tuple

    @property
    def steps(self) -> int:
        return self.cfgs[0].steps


def group(configs, max_size: int = MAX_STACK) -> list:
    """``configs`` with those of one ``signature`` gathered into ``Stack``s of at most ``max_size``, where they are
    enough for stacking to pay (``min_stack``); the rest stay configs. A stack takes the place of its first member."""
    out, members = [], defaultdict(dict)
    for c in configs:
        sig = signature(c) if min_stack(c) else None
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
            result += [Stack(tuple(part))] if len(part) >= min_stack(part[0]) and len(part) > 1 else part
    return result


def train_stacked(cfgs, store: Store | None = None, device=None, progress: bool = True, callback=None) -> list:
    """Train every config of ``cfgs`` not yet in the store, stacked; returns their EMA denoisers in order.

    Models with checkpoints resume from them, one stack per checkpoint step. ``callback(step, losses)`` (losses:
    one float per model of the stack) is called after every step; raising in it interrupts, like Ctrl-C.
    """
    cfgs = list(cfgs)
    check(cfgs)
    store = store or Store()
    todo = [c for c in cfgs if not train_lib.is_trained(c, store)]
    by_step = defaultdict(list)
    for c in todo:
        key = c.key_dict()
        ck = store.exists(KIND, key, "checkpoint") and store.load(KIND, key, "checkpoint")["step"]
        by_step[int(ck or 0)].append(c)
    for start in sorted(by_step, reverse=True):
        part = by_step[start]
        if len(part) == 1:  # alone, the plain loop is exact and no slower
            train_lib.train(part[0], store, device, progress, callback and (lambda s, l: callback(s, [l])))
        else:
            _train(part, store, device, progress, callback)
    return [train_lib.train(c, store, device, progress=False) for c in cfgs]


def _stacked_state(states: list[dict], names) -> dict:
    return {n: torch.stack([s[n] for s in states]) for n in names}


def _train(cfgs, store: Store, device, progress: bool, callback) -> None:
    device = torch.device(device or "cpu")
    K, first = len(cfgs), cfgs[0]
    keys = [c.key_dict() for c in cfgs]
    sets = [train_lib.training_set(c) for c in cfgs]
    models = []
    for c, key, ds in zip(cfgs, keys, sets):  # each model as train.train builds it
        store.clear_leftovers(KIND, key)
        torch.manual_seed(c.seed)
        model = train_lib.build(c, ds.shape).to(device)
        if c.init is not None:
            parent = train_lib.train(TrainConfig(**c.init), store, device, progress).state_dict()
            missing, unexpected = model.load_state_dict(parent, strict=False)
            if unexpected or missing:
                raise ValueError(f"parent does not fit the child: missing {missing}, unexpected {unexpected}")
        train_lib.mark_trainable(model, c)
        models.append(model)
    names = [n for n, _ in models[0].named_parameters()]
    # masks[n][k]: model k trains parameter n; a stacked parameter is trained when some model trains it
    masks = {n: torch.tensor([dict(m.named_parameters())[n].requires_grad for m in models], device=device)
             for n in names}
    trained = [n for n in names if masks[n].any()]
    gens = [torch.Generator().manual_seed(c.seed + 1) for c in cfgs]
    starts, losses, running, threads = [0] * K, [[] for _ in cfgs], [0.0] * K, [[] for _ in cfgs]
    ema_states = [copy.deepcopy(m.state_dict()) for m in models]
    opt_states = [None] * K
    for k, key in enumerate(keys):
        if store.exists(KIND, key, "checkpoint"):
            ck = store.load(KIND, key, "checkpoint")
            if "scaler" in ck:
                raise ValueError(f"{cfgs[k]} was checkpointed with loss scaling: resume it with train.train")
            models[k].load_state_dict(ck["model"])
            ema_states[k] = ck["ema"]
            opt_states[k] = ck["opt"]
            gens[k].set_state(ck["gen"])
            starts[k], losses[k], running[k], threads[k] = ck["step"], ck["losses"], ck["running"], ck.get("threads", [])
    if len(set(starts)) > 1:
        raise ValueError(f"a stack must start at one step; these start at {starts} (train_stacked groups by step)")
    start = starts[0]
    threads = [train_lib._with_current_threads(t) for t in threads]

    # torch.func.stack_module_state, less its demand that every model train the same parameters
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_(n in trained)
              for n in names}
    buffers = {n: torch.stack([dict(m.named_buffers())[n] for m in models]) for n, _ in models[0].named_buffers()}
    ema = _stacked_state(ema_states, params)  # parameters only: ema_update moves those, buffers stay each model's
    ema = {n: t.to(device) for n, t in ema.items()}
    opt = train_lib.optimizer([params[n] for n in trained], first.lr)
    if any(s is not None for s in opt_states):
        if not all(s is not None for s in opt_states):
            raise ValueError("a stack resumes either every model's optimiser or none")
        opt.load_state_dict(_stack_opt(opt_states, models, trained, masks))

    base = copy.deepcopy(models[0].net).to("meta")  # the shape of the computation; weights come per model
    formulation = models[0].formulation
    imgs = [ds.images.to(device) for ds in sets]
    labs = [ds.labels.to(device) for ds in sets]

    def one(p, b, x0, lab, draws):
        net_params = {n[len("net."):]: v for n, v in p.items()}
        net_bufs = {n[len("net."):]: v for n, v in b.items()}

        def net(x, c_noise, labels=None):
            return functional_call(base, (net_params, net_bufs), (x, c_noise, labels))

        return formulation.objective(net, x0, lab, **draws).float()

    losses_of = vmap(one, in_dims=(0, 0, 0, 0 if first.conditional else None, 0))
    decay = 0.5 ** (1 / first.ema_halflife)
    sizes = ",".join(str(len(ds)) for ds in sets)
    what = f"{first.net['kind']}-{first.net.get('width', '')} {first.formulation} stack of {K} n={sizes}"
    bar = tqdm(range(start, first.steps), initial=start, total=first.steps, disable=not progress,
               desc=f"train {K} stacked {first.net['kind']}/{first.formulation}", leave=False)
    partial_masks = {n: m.view(-1, *[1] * (params[n].dim() - 1)) for n, m in masks.items()
                     if n in trained and not m.all()}
    with warnings.catch_warnings():
        # nn.MultiheadAttention's kernel has no vmap rule on CPU: PyTorch loops over the models there, and says so
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        for step in bar:
            progress_lib.update("train", what, step, first.steps)
            x0s, ls, draws = [], [], []
            for c, gen, images, labels in zip(cfgs, gens, imgs, labs):  # train.train's draws, in its order
                idx = torch.randint(0, len(images), (c.batch,), generator=gen).to(device)
                if c.conditional:
                    drop = torch.rand(c.batch, generator=gen).to(device) < c.label_dropout
                    ls.append(torch.where(drop, torch.full_like(labels[idx], 10), labels[idx]))
                x0s.append(images[idx])
                draws.append(formulation.draw(x0s[-1], gen, step, c.steps))
            x0 = torch.stack(x0s)
            drawn = {name: torch.stack([d[name] for d in draws]) for name in draws[0]}
            for g in opt.param_groups:
                g["lr"] = train_lib._lr(first, step)
            loss = losses_of(params, buffers, x0, torch.stack(ls) if ls else None, drawn)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            with torch.no_grad():
                for n, m in partial_masks.items():  # frozen in some models: no gradient in their slice
                    params[n].grad.mul_(m)
                opt.step()
                torch._foreach_lerp_(list(ema.values()), [params[n] for n in ema], 1 - decay)  # train.ema_update
            values = loss.tolist()
            for k, c in enumerate(cfgs):
                running[k] += values[k]
                if (step + 1) % 100 == 0:
                    losses[k].append(running[k] / 100)
                    running[k] = 0.0
                if c.snapshot_every and (step + 1) % c.snapshot_every == 0:
                    store.save(KIND, keys[k], f"ema_{step + 1}", {"ema": _state(models[k], ema, k, ema_states[k])})
            if (step + 1) % 100 == 0:
                bar.set_postfix(loss=f"{sum(losses[k][-1] for k in range(K)) / K:.4f}")
            if callback is not None:
                callback(step, values)
            for k, c in enumerate(cfgs):
                if (step + 1) % c.ckpt_every == 0 and step + 1 < c.steps:
                    store.save(KIND, keys[k], "checkpoint", {
                        "model": _state(models[k], params, k), "ema": _state(models[k], ema, k, ema_states[k]),
                        "opt": _unstack_opt(opt, params, trained, masks, k), "gen": gens[k].get_state(),
                        "step": step + 1, "losses": losses[k], "running": running[k], "threads": threads[k]})
    progress_lib.update("train", what, first.steps, first.steps)
    for k, key in enumerate(keys):
        store.save(KIND, key, "final", {"ema": _state(models[k], ema, k, ema_states[k]), "losses": losses[k],
                                        "threads": threads[k]})
        store.remove(KIND, key, "checkpoint")


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

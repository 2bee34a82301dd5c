"""Training jobs: train any model of the zoo (``fit``), or a whole plan in one pool (``fit_all``), stacked where
it pays, parents before their students, longest chain of work first, each model once however many processes
share the store.
"""

from __future__ import annotations

import json
from contextlib import ExitStack, contextmanager
from functools import lru_cache, partial
from pathlib import Path

from . import baselines, machine, stack_resume, stacked, sweep
from .store import Store, config_key
from .train import KIND, TrainConfig, is_trained, train


def fit(cfg, store: Store | None = None, progress: bool = True, device=None):
    """Train (or load) any model of the zoo, whatever its kind, or a ``stacked.Stack`` of them: the one function a
    sweep maps. A model that another process is training (a second run on the same store, another worker of a
    cluster) is waited for, then loaded, not trained twice (``training``); on several GPUs it trains on the one
    with the fewest trainings (``machine.gpu``)."""
    store = store or Store()
    with training(cfg, store), machine.gpu(device or "cpu") as device:
        return _fit(cfg, store, progress, device)


def _fit(cfg, store: Store, progress: bool, device):
    """The training loop of ``cfg``'s kind (``stacked``, ``train``, ``baselines``) on ``device``."""
    if isinstance(cfg, stacked.Stack):
        return stack_resume.train(cfg.cfgs, store, device=device, progress=progress)
    if isinstance(cfg, TrainConfig):
        return train(cfg, store, device=device, progress=progress)
    if isinstance(cfg, baselines.GANConfig):
        return baselines.train_gan(cfg, store, device=device, progress=progress)
    return baselines.train_vae(cfg, store, device=device, progress=progress)


@contextmanager
def training(cfg, store: Store):
    """Held while this process trains ``cfg`` (each model of a stack): ``Store.computing`` on every model's
    "final", taken in one global order (their store keys), so that processes whose stacks overlap wait for each
    other and never deadlock."""
    members = _members(cfg)
    kinds = [KIND if isinstance(c, TrainConfig) else baselines._kind(c) for c in members]
    with ExitStack() as held:
        for kind, key in sorted(((k, c.key_dict()) for k, c in zip(kinds, members)),
                                key=lambda kk: (kk[0], config_key(kk[1]))):
            held.enter_context(store.computing(kind, key, "final"))
        yield


def is_fitted(cfg, store: Store | None = None) -> bool:
    """Whether the store holds the finished model ``cfg`` (every model, for a stack), whatever its kind."""
    if isinstance(cfg, stacked.Stack):
        return all(is_trained(c, store) for c in cfg.cfgs)
    return is_trained(cfg, store) if isinstance(cfg, TrainConfig) else baselines.is_trained(cfg, store)


def training_losses(cfg, store: Store | None = None) -> list:
    """Mean training loss per 100 steps of a finished model of any kind."""
    from . import train as train_lib

    return train_lib.losses(cfg, store) if isinstance(cfg, TrainConfig) else baselines.losses(cfg, store)


def describe(cfg) -> str:
    """A one-line label of a job for progress reports: backbone, formulation, N, seed and what sets it apart."""
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


def fit_all(configs, store: Store, P: dict, backend: str | None = None, stack: bool = True,
            progress: bool = True) -> dict:
    """Train every config not yet in the store, ``P["n_jobs"]`` jobs at a time on ``P["device"]``; returns
    {label (``describe``): seconds} of the jobs trained. ``backend`` names a joblib backend (``"dask"``,
    ``"ray"``; default ``REPRO_SWEEP_BACKEND``), see ``sweep.run_scheduled``.

    With ``stack``, the untrained configs of the kinds where it pays (``stacked.min_stack``: the narrow U-Nets on
    the CPU, every kind on a GPU) that differ only in data, seed and the like train together as one stacked model
    per job (``stacked.group`` over the whole plan; checkpointed and resumed as one, ``stack_resume``), each as if
    alone up to round-off; the rest train alone. A job whose configs start (``init``) from a config of another job
    waits for it, so that two workers never train the same parent; the rest start longest chain of work first, by
    ``costs``. On a cluster backend, a job on "cuda" asks for its share of a GPU (``gpu_share``)."""
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
    models at most; a stack is a job while any of its members is not stored), each job's estimated cost
    (``costs``, under ``per_step`` if given; a job also trains the ancestors no other job trains, as ``train.train``
    does, and they count) and the jobs each waits for (``after``: those that train one of its ancestors)."""
    plan = list({repr(c): c for c in configs}.values())
    # stacks are formed from the whole plan, stored models included, so that a model always trains in the company
    # the plan gives it (its bits depend on it); a stack with any member left trains on as a whole
    jobs = [job for job in (stacked.group(plan, max_stack, device=device) if stack else plan)
            if not is_fitted(job, store)]
    members = [_members(job) for job in jobs]
    after = [[i for i, others in enumerate(members) if i != j and any(a in others for c in mine for a in ancestors(c))]
             for j, mine in enumerate(members)]
    planned = [c for m in members for c in m]
    own = [[a for c in mine for a in ancestors(c) if a not in planned and not is_fitted(a, store)]
           for mine in members]  # trained inside the job, before it
    flat = costs([*jobs, *(a for extra in own for a in extra)], per_step)
    job_costs, k = flat[:len(jobs)], len(jobs)
    for j, extra in enumerate(own):
        job_costs[j] += sum(flat[k:k + len(extra)])
        k += len(extra)
    return jobs, job_costs, after


def _members(job) -> list:
    return list(job.cfgs) if isinstance(job, stacked.Stack) else [job]


def ancestors(cfg) -> list:
    """The configs a config starts from (its ``init``, that one's, ...)."""
    out = []
    while isinstance(cfg, TrainConfig) and cfg.init is not None:
        cfg = TrainConfig(**cfg.init)
        out.append(cfg)
    return out


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

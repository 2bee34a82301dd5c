"""GPU hours of the paper profile, notebook by notebook, from throughput measured on one H200.

    python benchmarks/gpu_hours.py [--rates benchmarks/gpu_rates_h200.json] [--json PATH]

What is counted, for notebooks 01-07 at the paper profile: every model ``zoo.plan`` trains (with the models they
start from, as ``train.train`` does; notebook 04's CNN judge too) and every sample bank, plane, hand-off and DPS
reconstruction the notebooks draw on the GPU (``draws``, read off notebooks/NN_*.py). The notebooks run in order
01 ... 07 on one store, so a model or bank an earlier notebook made costs nothing later (``alone``: each notebook
with an empty store). Notebook 07's plan takes 02's whole sweep when the store holds it, else a corner of it; in
order both are 02's models and banks, and cost 07 nothing. Not counted: GAN and VAE samples (one generator pass
each), the optimal denoiser's samples (notebook 03, on the CPU), scoring, and notebook 08 (it trains nothing).

How long a job takes (``gpu_rates_h200.json`` holds the rates and where they come from):
- measured: notebook 02's DDPM++ U-Nets (widths 64/128/256, batch 128) train at the measured images/s, in TF32 or in
  bf16, and sample at the measured Heun rate (35 evaluations per image);
- scaled: any other network from the measured U-Net nearest to it in forward FLOPs per image (``forward_flops``):
  images/s x their FLOPs / its FLOPs, and x 3 / passes for a formulation that runs more than a forward and a
  backward pass (3 forward passes' worth) per image: consistency training one more forward (4), progressive
  distillation two teacher forwards (5); DPS evaluations carry a backward pass to the input (2). Fine-tunings
  that train a part (or LoRA adapters) are counted as full trainings of their network: an upper bound;
- floor: no training step, and no evaluation of a sampling batch, is counted as faster than the slowest measured
  launch-bound step (``floor_steps_per_s``): small networks are bound by kernel launches, not FLOPs.
Sampling runs in float32 in both columns (the library's default): the bf16 column changes training only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reprolib import banks, baselines, classifier, fitting, profiles, samplers, zoo  # noqa: E402
from reprolib.store import Store  # noqa: E402
from reprolib.train import TrainConfig, build  # noqa: E402

RATES = Path(__file__).with_name("gpu_rates_h200.json")
NOTEBOOKS = ("01", "02", "03", "04", "05", "06", "07")
PRECISIONS = ("tf32", "bf16")
SHAPE = (3, 32, 32)  # CIFAR-10, the paper profile's data
SAMPLE_BATCH, DPS_BATCH = 500, 250  # samplers.sample's default batch (the notebooks'), inverse.reconstruct's
CIFAR_TRAIN = 50_000  # CIFAR-10's training images: the judge's epoch
HANDOFF_CUTS, CORNER_CANDIDATES = 4, 40  # notebook 03's hand-off levels sigma_c and candidate corner seeds
PLAIN = 3  # forward passes' worth of one image's training step: a forward, and a backward of about two
BACKBONES = {"unet": "U-Net", "mlp": "MLP", "uvit": "U-ViT"}
PASSES = {"ct": PLAIN + 1, "distill": PLAIN + 2}  # consistency: the target's forward; distillation: 2 teacher steps


@dataclass(frozen=True)
class Job:
    """One unit of GPU work: a training (``count`` steps of ``batch`` images) or sampling (``count`` images of
    ``evals`` evaluations each, in batches of ``batch``) of one network."""

    kind: str  # "train" or "sample"
    key: str  # what the store keys it by: a job another notebook already ran costs nothing
    label: str  # the network and what is done, for the tables
    net: object  # the config (TrainConfig, GANConfig, VAEConfig, CNNConfig) whose network runs
    count: int
    batch: int
    evals: int = 1  # denoiser evaluations per image (sampling)
    passes: int = PLAIN  # forward passes' worth per image and step (training) or per evaluation (sampling: 1, DPS 2)


def load_rates(path=RATES) -> dict:
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------------------------------- networks and FLOPs


@lru_cache(maxsize=1)
def _paper_unets() -> dict:
    """{width: net} of the measured U-Nets: notebook 02's sweep at the paper profile."""
    return {cfg.net["width"]: cfg.net for cfg in zoo.regimes(profiles.settings("02", "paper")).values()}


def measured_width(job: Job, rates: dict) -> int | None:
    """The width of the measured U-Net ``job`` runs exactly as measured (network, loss, batch), else None."""
    cfg, unet = job.net, rates["measured"]["unet"]
    if not isinstance(cfg, TrainConfig) or cfg.formulation != "edm" or cfg.conditional or cfg.lora or cfg.trainable:
        return None
    width = cfg.net.get("width")
    same_net = _paper_unets().get(width) == cfg.net and str(width) in unet["sample_images_per_s"]
    if job.kind == "train":
        return width if same_net and job.batch == unet["batch"] and job.passes == PLAIN else None
    return width if same_net and job.passes == 1 else None


def _forward(cfg):
    """A forward pass on one image of the network(s) ``cfg`` trains (a GAN's or VAE's generator and critic)."""
    x = torch.randn(1, *SHAPE)
    if isinstance(cfg, TrainConfig):
        model, labels = build(cfg, SHAPE), torch.zeros(1, dtype=torch.long) if cfg.conditional else None
        return lambda: model(x, torch.ones(1), labels)
    if isinstance(cfg, classifier.CNNConfig):
        return partial(classifier.cnn(cfg.width, SHAPE[0]), x)
    gen = baselines.Generator(cfg.latent, SHAPE, cfg.arch, cfg.width)
    critic = baselines.Critic(SHAPE, 1 if isinstance(cfg, baselines.GANConfig) else 2 * cfg.latent, cfg.arch, cfg.width)
    return lambda: (gen(torch.randn(1, cfg.latent)), critic(x))


_FLOPS: dict[str, float] = {}  # per architecture (``_arch``)


def forward_flops(cfg) -> float:
    """FLOPs of one forward pass on one image (``torch.utils.flop_counter``), in training mode as trained (its
    attention as the unfused matmuls autograd runs: 10.05 GFLOP for the width-64 U-Net, where bench_gpu.py's
    eval-mode count, 9.75, misses the fused attention kernel), once per architecture."""
    arch = _arch(cfg)
    if arch not in _FLOPS:
        with torch.device("meta"):  # shapes only: no weight is made, nothing runs (the paper's U-Nets in a second)
            forward = _forward(cfg)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                forward()
        _FLOPS[arch] = float(counter.get_total_flops())
    return _FLOPS[arch]


def _arch(cfg) -> str:
    """What a network's FLOPs depend on."""
    if isinstance(cfg, TrainConfig):
        return json.dumps([cfg.net, cfg.conditional, cfg.lora], sort_keys=True)
    return json.dumps([type(cfg).__name__, getattr(cfg, "arch", None), cfg.width, getattr(cfg, "latent", None)])


# --------------------------------------------------------------------------------------------------- rates


def _reference(flops: float, rates: dict) -> tuple[int, float]:
    """The measured U-Net nearest to ``flops`` (in ratio): its width and forward FLOPs."""
    unets = {w: forward_flops(TrainConfig(data="cifar10", net=net)) for w, net in _paper_unets().items()
             if str(w) in rates["measured"]["unet"]["sample_images_per_s"]}
    width = min(unets, key=lambda w: abs(math.log(flops / unets[w])))
    return width, unets[width]


def seconds(job: Job, rates: dict, precision: str) -> tuple[float, str]:
    """GPU seconds of ``job`` when training in ``precision`` ("tf32" or "bf16"), and how they were had:
    "measured", "scaled" or "floor"."""
    unet, floor = rates["measured"]["unet"], rates["derived"]["floor_steps_per_s"]
    train_rate = unet["train_images_per_s"][precision]
    sample_rate = unet["sample_images_per_s"]  # images/s of Heun-18 sampling, float32
    per_image = unet["sample"]["evaluations_per_image"]
    width = measured_width(job, rates)
    if width is not None:
        if job.kind == "train":
            return job.count * job.batch / train_rate[str(width)], "measured"
        return job.count * job.evals / (sample_rate[str(width)] * per_image), "measured"
    flops = forward_flops(job.net)
    ref, ref_flops = _reference(flops, rates)
    if job.kind == "train":  # images/s of the reference, times its work per image over this one's
        rate = train_rate[str(ref)] * (PLAIN * ref_flops) / (job.passes * flops)
        busy, launched = job.count * job.batch / rate, job.count / floor
    else:  # evaluations/s of the reference, likewise; at least one floor step per batch and evaluation
        rate = sample_rate[str(ref)] * per_image * ref_flops / (job.passes * flops)
        busy, launched = job.count * job.evals / rate, math.ceil(job.count / job.batch) * job.evals / floor
    return (busy, "scaled") if busy >= launched else (launched, "floor")


# --------------------------------------------------------------------------------------------------- jobs


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def _network(cfg) -> str:
    """The network, in words: "U-Net w128", "MLP w2048", "GAN conv w16", "CNN judge w64"."""
    if isinstance(cfg, TrainConfig):
        return f"{BACKBONES[cfg.net['kind']]} w{cfg.net['width']}"
    if isinstance(cfg, classifier.CNNConfig):
        return f"CNN judge w{cfg.width}"
    return f"{type(cfg).__name__[:3]} {cfg.arch} w{cfg.width}"


def _describe(cfg) -> str:
    """The network and how it is trained: "U-Net w128 ct", "U-Net w128 edm LoRA r16"."""
    if not isinstance(cfg, TrainConfig):
        return _network(cfg)
    extra = [x for x in ("cond" if cfg.conditional else "", f"LoRA r{cfg.lora['rank']}" if cfg.lora else "",
                         "trains " + ",".join(cfg.trainable) if cfg.trainable else "") if x]
    return " ".join([_network(cfg), cfg.formulation, *extra])


def training(cfg) -> Job:
    if isinstance(cfg, classifier.CNNConfig):  # full batches only, as classifier.train_cnn
        steps, batch, key = CIFAR_TRAIN // cfg.batch * cfg.epochs, cfg.batch, asdict(cfg)
    else:
        steps, batch, key = cfg.steps, cfg.batch, cfg.key_dict()
    form = getattr(cfg, "formulation", "")
    passes = PASSES.get("distill" if form.startswith("distill") else form, PLAIN)
    return Job("train", _key("train", key), f"{_describe(cfg)}, {steps:,} steps", cfg, steps, batch, passes=passes)


def trainings(nid: str, P: dict, store: Store) -> list[Job]:
    # with the configs each starts from (``init``), which train.train trains first
    cfgs = [a for cfg in zoo.plan(nid, P, store) for a in (*reversed(fitting.ancestors(cfg)), cfg)]
    if nid == "04" and P["data"] == "cifar10":  # the judge (conditional.judge), trained in the notebook
        cfgs.append(classifier.CNNConfig(data=P["data"], **P["judge"]))
    return [training(c) for c in cfgs]


def bank(cfg: TrainConfig, tag: tuple, images: int, evals: int, passes: int = 1, batch: int = SAMPLE_BATCH) -> Job:
    """Sampling ``images`` images of ``evals`` evaluations each from the model ``cfg``; ``tag`` is what, besides the
    model, keys the bank in the store."""
    what = f"{_describe(cfg)}, {images:,} x {evals} evaluations" + (" with gradients" if passes > 1 else "")
    return Job("sample", _key("sample", cfg.key_dict(), tag), what, cfg, images, batch, evals, passes)


def _heun(cfg, P: dict, seeds: int, snapshot: int | None = None) -> Job:
    """The bank ``banks.samples`` (or ``banks.snapshot_samples``) makes: Heun at the profile's steps from the first
    ``seeds`` seeds."""
    return bank(cfg, ("heun", P["sample_steps"], seeds, snapshot), seeds,
                samplers.evaluations("heun", P["sample_steps"]))


def _variant(v: zoo.Variant, P: dict) -> Job:
    """``banks.generate``'s bank of a variant for the profile's seeds."""
    if v.snapshot is not None:
        return _heun(v.cfg, P, P["seeds"], v.snapshot)
    steps = v.steps or banks.sample_steps(P, v.sampler)
    if (v.sampler, v.schedule, steps) == ("heun", "karras", P["sample_steps"]):
        return _heun(v.cfg, P, P["seeds"])
    return bank(v.cfg, (v.sampler, v.schedule, steps, P["seeds"]), P["seeds"], samplers.evaluations(v.sampler, steps))


def _sweep(P: dict, models: dict, curve_sizes=None) -> list[Job]:
    """Notebook 02's banks: every model at the profile's seeds, and for the convergence curves
    (``regimes.training_curves``) the first ``curve_seeds`` at each stored snapshot and at the end."""
    out = [_heun(cfg, P, P["seeds"]) for cfg in models.values()]
    for (n, _, seed), cfg in models.items():
        if curve_sizes is None or (n in curve_sizes and seed == 0):
            out += [_heun(cfg, P, P["curve_seeds"], step) for step in range(cfg.snapshot_every, cfg.steps,
                                                                            cfg.snapshot_every)]
            out.append(_heun(cfg, P, P["curve_seeds"]))
    return out


def draws(nid: str, P: dict, store: Store) -> list[Job]:
    """What notebook ``nid`` samples on the GPU at settings ``P`` (read off notebooks/NN_*.py)."""
    heun = samplers.evaluations("heun", P.get("sample_steps", 18))
    if nid == "01":  # every variant of section 1 from the same seeds (GANs and VAEs: one pass each, not counted)
        return [_variant(v, P) for v in zoo.section1(P)]
    if nid == "02":
        return _sweep(P, zoo.regimes(P))
    if nid == "03":
        models, sizes = zoo.regimes(P), sorted(P["sizes"])
        out = _sweep(P, models, curve_sizes=sizes[:2])
        for w in P["widths"]:  # hand-off at the smallest N: per cut, the model takes the levels above it in one
            # integration and those below in the other, so 35 of its evaluations per seed and cut in all
            out.append(bank(models[(sizes[0], w, 0)], ("hand-off", HANDOFF_CUTS), HANDOFF_CUTS * P["seeds"], heun))
        for n in (sizes[0], sizes[-1]):  # noise planes: the candidate corners (not cached), 3 corners + the grid
            for w in P["widths"]:
                out.append(bank(models[(n, w, 0)], ("corners", n), CORNER_CANDIDATES, heun))
                out.append(bank(models[(n, w, 0)], ("plane", P["grid"]), 3 + P["grid"] ** 2, heun))
        return out
    if nid == "04":  # guided samples (two evaluations a step unless w = 0) and the unconditional partners
        scales = dict.fromkeys([P["guidance"], *P["guidance_sweep"]])
        return [bank(v.cfg, ("guided", w), P["seeds"], heun * (1 if w == 0 else 2))
                for v in zoo.section4(P) for w in scales] + [_variant(v, P) for v in zoo.unconditional(P)]
    if nid == "05":  # DPS, gradients through D: two noises per image; DPM++ at two zetas and zeta = 0, Euler
        runs = [("dpmpp_2m", P["sample_steps"], z) for z in (*P["zetas"], 0.0)] + [
            ("euler", 2 * P["sample_steps"] - 1, P["zetas"][0])]
        return [bank(v.cfg, ("dps", task, solver, z, noise), P["images"], samplers.evaluations(solver, steps), 2,
                     DPS_BATCH)
                for v in zoo.unconditional(P) for task in P["tasks"] for solver, steps, z in runs for noise in (1, 2)]
    if nid == "06":  # every variant, then each longer run's snapshots (the first is the variant's own bank)
        variants = zoo.section6(P)
        long = zoo.section6_long(variants, zoo.section6_partial(variants))
        return [_variant(v, P) for v in variants.values()] + [
            _heun(v.cfg, P, P["seeds"], step) for v in long.values()
            for step in range(v.cfg.snapshot_every, v.cfg.steps + 1, v.cfg.snapshot_every)]
    if nid == "07":  # snapshots of the pair, the privacy models' banks at 02's settings, the noise edits
        pair = zoo.section7(P)
        p02, privacy, _ = zoo.privacy_models(P, store)
        return ([_heun(v.cfg, P, P["seeds"], step) for v in pair for step in zoo.snapshot_steps(v.cfg, P["snapshots"])]
                + [_heun(cfg, p02, p02["seeds"]) for cfg in privacy.values()]
                + [bank(v.cfg, ("edit", P["edit_seeds"], tuple(P["angles"])), P["edit_seeds"] * len(P["angles"]),
                        heun) for v in pair])
    raise ValueError(f"no draws for notebook {nid!r}")


# --------------------------------------------------------------------------------------------------- totals


def _hours(jobs: list[Job], rates: dict) -> list[dict]:
    rows = []
    for job in jobs:
        row = {"kind": job.kind, "label": job.label, "net": _network(job.net), "count": job.count,
               "batch": job.batch, "evals": job.evals, "passes": job.passes, "hours": {}, "basis": {}}
        for p in PRECISIONS:
            s, basis = seconds(job, rates, p)
            row["hours"][p], row["basis"][p] = s / 3600, basis
        rows.append(row)
    return rows


def _summary(rows: list[dict]) -> str:
    trained = [r for r in rows if r["kind"] == "train"]
    drawn = [r for r in rows if r["kind"] == "sample"]
    nets = Counter(r["net"] for r in trained)
    text = (f"trains {len(trained)} model(s), {sum(r['count'] for r in trained):,} steps: "
            + ", ".join(f"{k} {net}" for net, k in nets.items()) if trained else "trains nothing new")
    images, evals = sum(r["count"] for r in drawn), sum(r["count"] * r["evals"] for r in drawn)
    text += "; samples nothing new" if not drawn else f"; samples {images:,} images ({evals / 1e6:.1f} M evaluations)"
    hours = Counter()
    for r in rows:
        hours[r["basis"]["tf32"]] += r["hours"]["tf32"]
    total = sum(hours.values())
    return text + (" (TF32 hours " + ", ".join(f"{k} {100 * h / total:.0f}%" for k, h in hours.most_common()) + ")"
                   if total else "")


def estimate(rates: dict | None = None) -> dict:
    """Hours per notebook in order 01 ... 07 (``rows``: what each adds to the store), their ``total``, each
    notebook ``alone`` (empty store) and every job with its basis."""
    rates = rates or load_rates()
    done, out = set(), {"rates": {k: rates[k] for k in ("source", "date", "device", "torch", "cuda")},
                        "rows": [], "alone": {}}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)  # empty: nothing counts as trained
        for nid in NOTEBOOKS:
            P = profiles.settings(nid, "paper")
            jobs = list({j.key: j for j in trainings(nid, P, store) + draws(nid, P, store)}.values())
            alone = _hours(jobs, rates)
            new = [r for j, r in zip(jobs, alone) if j.key not in done]
            done.update(j.key for j in jobs)
            out["alone"][nid] = {p: sum(r["hours"][p] for r in alone) for p in PRECISIONS}
            out["rows"].append({"notebook": nid, "what": _summary(new), "jobs": new,
                                "hours": {p: sum(r["hours"][p] for r in new) for p in PRECISIONS}})
    out["total"] = {p: sum(row["hours"][p] for row in out["rows"]) for p in PRECISIONS}
    return out


def _h(v: float) -> str:
    return "<0.01" if v < 0.005 else f"{v:.2f}" if v < 1 else f"{v:,.1f}"


def table(est: dict) -> list[str]:
    """The Markdown table (notebook | what | TF32 | bf16) with the total, and each job's basis."""
    r = est["rates"]
    lines = [f"GPU hours at the paper profile, rates measured on {r['device']} ({r['date']}, torch {r['torch']}, "
             f"CUDA {r['cuda']}); notebooks in order, each counting what the ones before have not made.\n",
             "| notebook | what it trains and samples | GPU hours TF32 | GPU hours bf16 |", "|---|---|---|---|"]
    lines += [f"| {row['notebook']} | {row['what']} | {_h(row['hours']['tf32'])} | {_h(row['hours']['bf16'])} |"
              for row in est["rows"]]
    lines.append(f"| all | in the order 01 ... 07 | **{_h(est['total']['tf32'])}** | **{_h(est['total']['bf16'])}** |")
    lines.append("\nEach notebook alone (empty store), TF32 / bf16 hours: " + ", ".join(
        f"{nid} {_h(h['tf32'])} / {_h(h['bf16'])}" for nid, h in est["alone"].items()))
    lines += ["\n| notebook | job | jobs | basis (TF32, bf16) | hours TF32 | hours bf16 |", "|---|---|---|---|---|---|"]
    for row in est["rows"]:
        groups = {}
        for job in row["jobs"]:
            g = groups.setdefault((job["label"], tuple(job["basis"].values())), {"n": 0, "tf32": 0.0, "bf16": 0.0})
            g["n"] += 1
            for p in PRECISIONS:
                g[p] += job["hours"][p]
        lines += [f"| {row['notebook']} | {label} | {g['n']} | {', '.join(dict.fromkeys(basis))} | {_h(g['tf32'])} | "
                  f"{_h(g['bf16'])} |" for (label, basis), g in groups.items()]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default=str(RATES), help="measured rates (default %(default)s)")
    ap.add_argument("--json", metavar="PATH", help="also write the estimate, every job included, as JSON")
    a = ap.parse_args(argv)
    est = estimate(load_rates(a.rates))
    print("\n".join(table(est)))
    if a.json:
        Path(a.json).write_text(json.dumps(est, indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

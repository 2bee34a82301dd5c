# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Reproducibility across models (Figure 1, Figures 6 and 12)
#
# *Zhang et al., The Emergence of Reproducibility and Generalizability in Diffusion Models, section 2.*
#
# Start different diffusion models from **the same Gaussian noise** and integrate the probability-flow ODE
# with a deterministic sampler: they produce nearly the same image, whatever their architecture, training
# objective, sampler or training seed. GANs and VAEs fed one latent show no such agreement.
#
# Here every model is trained from scratch on scikit-learn's 1,797 real 8x8 digits (nothing is downloaded),
# every model is read as a denoiser $D(x;\sigma)$, and every sample starts at $x = \sigma_{\max} z$ with
# $z$ drawn from its seed alone.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "cpu")  # smoke | cpu | paper
overrides = {}  # e.g. {"seeds": 200}; settings of reprolib.profiles.Reproducibility

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab starts without the library; Binder and local runs have it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/reprocompanion/companion"], check=True)

import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from reprolib import banks, baselines, claims, data, fitting, hub, metrics, notebook, plotting, replicates, zoo

run = notebook.start("01", profile, overrides)
P, store = run.P, run.store
train_set = data.load(P.data)
seeds = list(range(100_000, 100_000 + P.seeds))  # the paper's seeds start at 100000
print(f"{len(train_set)} training images of shape {train_set.shape}, {len(seeds)} seeds")

# %% [markdown]
# ## Calibrating the similarity threshold
#
# The paper calls two samples "the same" when their SSCD similarity exceeds 0.6. SSCD is a copy detector for
# natural photographs; its weights cannot be downloaded here, and on 8x8 digits it would be meaningless anyway.
# We use the **Pearson correlation of the centred pixels** (cosine of mean-subtracted images) and choose its
# threshold from real data: the rate at which two *different* real digits, drawn at random, exceed the
# threshold is the price of calling them "the same". At 0.6 a quarter of random pairs of real digits would
# count as reproductions; at 0.9 about one in a hundred does. We use **0.9** (`metrics.PixelSimilarity`) and
# show every score as a curve over thresholds as well. The paper's chance level for RP is this rate too,
# measured on each pair of models with mismatched seeds (sample *i* of A against sample *j != i* of B).
# With the setting `similarity="sscd"` (and the weights in `REPRO_SSCD`) every score of the notebook uses SSCD at
# the paper's 0.6 instead (`metrics.SSCDSimilarity`).

# %%
sim = metrics.backend(P.similarity, device=P.device, pixel_threshold=P.pixel_threshold)
THRESHOLD = sim.default_threshold
print(f"similarity: {sim.name}, RP threshold {THRESHOLD}")
thresholds = np.linspace(0.5, 1.0, 51)
g = torch.Generator().manual_seed(0)
i = torch.randint(0, len(train_set), (20_000,), generator=g)
j = (i + torch.randint(1, len(train_set), (20_000,), generator=g)) % len(train_set)
real_pairs = metrics.paired(sim, train_set.images[i], train_set.images[j])
same_class = train_set.labels[i] == train_set.labels[j]
real_chance = float((real_pairs > THRESHOLD).double().mean())
fig, ax = plt.subplots(figsize=(4.5, 3))
ax.plot(thresholds, metrics.rp_curve(real_pairs, thresholds), label="random pairs of real digits")
ax.plot(thresholds, metrics.rp_curve(real_pairs[same_class], thresholds), label="pairs of the same class")
ax.axvline(THRESHOLD, color="k", ls=":", lw=1)
ax.set(xlabel=f"{sim.label} threshold", ylabel="fraction above", title="What a threshold means on real digits")
ax.legend(fontsize=8)
plotting.save(fig, "01_threshold_calibration")
print(f"random real pairs above {THRESHOLD}: {real_chance:.3%}")

# %% [markdown]
# ## The models
#
# Seven diffusion models that differ in **architecture** (U-Net, residual MLP, U-ViT transformer),
# **formulation** (EDM, DDPM eps-prediction on its discrete schedule, rectified flow), **sampler** (Heun,
# DDIM on the model's own schedule, DPM-Solver++(2M), Euler) and **training seed**, and two GANs and two VAEs
# on the same data. Beside them, the families the paper's Figure 1 adds, each read as the same $D(x;\sigma)$:
#
# - a **sub-VP** U-Net (Song et al. 2021's third SDE, $x_t = \alpha_t x_0 + (1-\alpha_t^2) z$, read on the VE
#   scale as $\sigma = (1-\alpha^2)/\alpha$), sampled with Heun like the others;
# - a **consistency model trained from scratch** (improved consistency training, Song & Dhariwal 2023): its
#   consistency function $f(x,\sigma)$ is the denoiser, so **one step** is $D(\sigma_{\max} z;\sigma_{\max})$,
#   and **two steps** re-noise that image to $\sigma = 0.821$ with the next draw of the same seed's generator and
#   apply $D$ again. It trains on twice the images of the others (iCT's CIFAR-10 run saw about twice EDM's);
# - a **progressively distilled** student of the EDM U-Net (Salimans & Ho 2022, the paper's distilled model):
#   three halvings from the teacher's 32 Euler (= DDIM) steps to **4 steps**, each a short fine-tuning of the
#   previous round that learns to do in one step what its teacher does in two; it is sampled with Euler on its
#   own 4-level grid.
#
# The list lives in `reprolib.zoo` so that other notebooks reuse the same models. Trainings run in one-thread
# worker processes, one per core (a student after its teacher); finished models are cached in the store, so a
# second run trains nothing.

# %%
variants = zoo.section1(P)
for v in variants:
    print(f"{v.name:26s} {v.cfg.net['kind']:5s} {v.cfg.formulation:9s} {v.sampler:11s} {v.schedule:11s} "
          f"steps={v.cfg.steps} seed={v.cfg.seed}")
gan_cfgs, vae_cfgs = zoo.section1_baselines(P)
t0 = time.perf_counter()
fitting.fit_all(zoo.plan("01", P, store), store, P)
print(f"training: {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Same noise, every model
#
# Each diffusion model integrates the PF-ODE from $\sigma_{\max} z$ for the same seeds with its own sampler
# (18 steps at the cpu profile). The bottom rows are the GANs and VAEs fed the same per-seed latent.
#
# Released checkpoints can join: list diffusers DDPM checkpoints (local folders or hub ids, e.g.
# `google/ddpm-cifar10-32` at the paper profile) in the setting `public_checkpoints`. Each is read as
# $D(x;\sigma)$ (`reprolib.hub`), sampled with DDIM from the same seeds, and added to the grid and the
# heatmaps; the claims below stay about the models trained here.

# %%
t0 = time.perf_counter()
samples = {v.name: banks.generate(v, store, seeds, P) for v in variants}
public = hub.rows(P.public_checkpoints, store, seeds, P)  # {} unless checkpoints are listed
others = {}
for kind, cfgs in (("GAN", gan_cfgs), ("VAE", vae_cfgs)):
    for k, cfg in enumerate(cfgs):
        model = fitting.fit(cfg, store, progress=False, device=P.device)
        others[f"{kind} {k + 1} ({cfg.arch})"] = baselines.generate(model, seeds, cfg.latent)
print(f"sampling: {time.perf_counter() - t0:.0f} s")
fig = plotting.image_grid({k: v[:16] for k, v in {**samples, **public, **others}.items()})
plotting.save(fig, "01_same_noise_grid")

# %% [markdown]
# ## Reproducibility (RP) and MAE heatmaps
#
# RP of models A and B is the fraction of seeds whose two samples correlate above the threshold; the chance
# heatmap is the same score on mismatched seeds. MAE is the mean absolute pixel difference of paired samples
# on the [0, 1] scale (lower is more alike). Released checkpoints, when listed, are the last rows.

# %%
names, rows = list(samples), list({**samples, **public})  # the models trained here come first in both
rp = metrics.score_matrix(lambda a, b: metrics.rp_score(sim, a, b, THRESHOLD), {**samples, **public})
chance = metrics.score_matrix(lambda a, b: metrics.chance_rp(sim, a, b, THRESHOLD), {**samples, **public})
mae = metrics.score_matrix(lambda a, b: float(metrics.mae(a, b).mean()), {**samples, **public})
fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
plotting.heatmap(rp, rows, axes[0], f"RP ({sim.label} > {THRESHOLD})")
plotting.heatmap(chance, rows, axes[1], "chance (mismatched seeds)")
plotting.heatmap(mae, rows, axes[2], "MAE of paired samples", vmax=float(mae.max()) or 1.0, cmap="viridis_r")
fig.tight_layout()
plotting.save(fig, "01_rp_mae_heatmaps")
for p in public:  # printed, not asserted: these were trained elsewhere, on other data and for other lengths
    k = rows.index(p)
    print(f"{p}: RP with the models trained here {rp[k, :len(names)].min():.3f}-{rp[k, :len(names)].max():.3f}, "
          f"chance <= {chance[k, :len(names)].max():.3f}")

# %% [markdown]
# ## RP against the threshold, and the baselines
#
# RP as a function of the threshold, for every pair of diffusion models, the GAN pair and the VAE pair, with
# the chance curve of the same pairs: an agreement that only holds at a lax threshold is no agreement.

# %%
def family(v):
    """The model families the paper's Figure 1 adds beside the multi-step ODE samplers (None: those)."""
    form = v.cfg.formulation
    return "consistency" if form == "ct" else "distilled" if form.startswith("distill") else \
        "subvp" if form == "subvp" else None


families = {v.name: family(v) for v in variants}
# The two-step consistency sample re-noises with a second draw no other model sees: not a map of the initial noise.
renoised = [v.name for v in variants if v.sampler == "consistency" and (v.steps or 1) > 1]
deterministic = [n for n in names if n not in renoised]
core = [n for n in names if families[n] is None]
off = [(a, b) for k, a in enumerate(core) for b in core[k + 1:]]  # pairs of the seven multi-step ODE models
# each added model against every other deterministic row, except its own family's (one CT network, two samplers)
added = {f: [(a, b) for a in deterministic if families[a] == f for b in deterministic if families[b] != f]
         for f in ("consistency", "distilled", "subvp")}
against_renoised = [(a, b) for a in renoised for b in deterministic if families[b] != families[a]]
fig, ax = plt.subplots(figsize=(7.5, 3.5))
for (a, b), color in [(p, "tab:blue") for p in off] + [(p, "tab:purple") for f in added for p in added[f]] + \
        [(p, "tab:red") for p in against_renoised]:
    ax.plot(thresholds, metrics.rp_curve(metrics.paired(sim, samples[a], samples[b]), thresholds), color=color, alpha=0.3, lw=1)
    ax.plot(thresholds, metrics.rp_curve(metrics.unpaired(sim, samples[a], samples[b]), thresholds), color="gray", alpha=0.3, lw=1)
pairs_other = {"GAN vs GAN": list(others)[:2], "VAE vs VAE": list(others)[2:]}
baseline_rp = {}
for label, (a, b) in pairs_other.items():
    s = metrics.paired(sim, others[a], others[b])
    baseline_rp[label] = (metrics.rp_score(sim, others[a], others[b], THRESHOLD), metrics.chance_rp(sim, others[a], others[b], THRESHOLD))
    ax.plot(thresholds, metrics.rp_curve(s, thresholds), lw=2, label=label,
            color={"GAN vs GAN": "tab:olive", "VAE vs VAE": "tab:cyan"}[label])  # no diffusion family's colour
ax.plot([], [], color="tab:blue", label="diffusion pairs (ODE samplers)")
ax.plot([], [], color="tab:purple", label="sub-VP, CT (1 step), distilled vs the rest")
ax.plot([], [], color="tab:red", label="CT (2 steps, re-noised) vs the rest")
ax.plot([], [], color="gray", label="chance (mismatched seeds)")
ax.axvline(THRESHOLD, color="k", ls=":", lw=1)
ax.set(xlabel=f"{sim.label} threshold", ylabel="RP", title="RP against threshold")
ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # beside the curves, not on them
plotting.save(fig, "01_rp_vs_threshold")
diff_rp = np.array([rp[names.index(a), names.index(b)] for a, b in off])
diff_chance = np.array([chance[names.index(a), names.index(b)] for a, b in off])
print(f"diffusion pairs: RP min {diff_rp.min():.3f}, median {np.median(diff_rp):.3f}; chance max {diff_chance.max():.3f}")
for label, (r, c) in baseline_rp.items():
    print(f"{label}: RP {r:.3f}, chance {c:.3f}")
for a in [n for n in names if families[n]]:
    others_of_a = [b for b in deterministic if families[b] != families[a]]
    r = [rp[names.index(a), names.index(b)] for b in others_of_a]
    c = [chance[names.index(a), names.index(b)] for b in others_of_a]
    print(f"{a}: RP with the others {min(r):.3f}-{max(r):.3f} (median {np.median(r):.3f}), chance <= {max(c):.3f}")

# %% [markdown]
# ## Each model against itself, trained again
#
# The paper's "different seeds" for every family: each model beside its own **training replicate**, the same
# family and configuration trained with other training seeds (initial weights, minibatches, training noise) on
# the same data, sampled from the same noise. This needs a run of several replicates
# (`paper_figures.py --replicates R`, which sets `replicates`; replications/training_replicates.md): replicate r
# is compared with replicate r + 1 (the last with the first).

# %%
self_rp, self_hits = {}, {}
by_replicate = []  # every replicate's deterministic samples, on the same seeds
if P.replicates > 1:
    for r in range(P.replicates):
        Pr = P.replace(replicate=r)
        fitting.fit_all(zoo.plan("01", Pr, store), store, Pr)  # nothing to train in a run of replicates
        by_replicate.append({v.name: banks.generate(v, store, seeds, Pr) for v in zoo.section1(Pr)
                             if v.name in deterministic})
    Q = P.replace(replicate=(P.replicate + 1) % P.replicates)
    twins = dict(by_replicate[Q.replicate])
    for kind, cfgs in zip(("GAN", "VAE"), zoo.section1_baselines(Q)):
        for k, cfg in enumerate(cfgs):
            model = fitting.fit(cfg, store, progress=False, device=P.device)
            twins[f"{kind} {k + 1} ({cfg.arch})"] = baselines.generate(model, seeds, cfg.latent)
    mine = {**samples, **others}
    for name, twin in twins.items():
        self_hits[name] = ((metrics.paired(sim, mine[name], twin) > THRESHOLD).numpy(),  # per seed: agrees?
                           (metrics.unpaired(sim, mine[name], twin) > THRESHOLD).numpy())  # on mismatched seeds
        self_rp[name] = (self_hits[name][0].mean(), self_hits[name][1].mean())
    fig, ax = plt.subplots(figsize=(7.5, 3.5))
    ax.barh(list(self_rp), [r for r, _ in self_rp.values()], color=["tab:blue" if n in samples else "tab:olive"
                                                                    for n in self_rp])
    ax.barh(list(self_rp), [c for _, c in self_rp.values()], color="gray", label="chance (mismatched seeds)")
    ax.axvline(0.6, color="k", ls=":", lw=1)
    ax.invert_yaxis()
    ax.set(xlabel="RP with its own training replicate", xlim=(0, 1),
           title=f"replicate {P.replicate} against replicate {Q.replicate}")
    ax.legend(fontsize=7)
    plotting.save(fig, "01_self_agreement")
    for name, (r, c) in self_rp.items():
        print(f"{name:26s} RP with its replicate {r:.3f} (chance {c:.3f})")
else:
    print("one training replicate in this run: `python paper_figures.py --all --profile cpu --replicates 3` "
          "compares each model with itself trained again")

# %% [markdown]
# ## Which training moves a claim between models
#
# In a run of several replicates each row's replicates can be paired with every other row's: row a of replicate r
# against row b of replicate s, on the same seeds. Rows of one training keep one replicate (`zoo.lineage`): the
# U-Net EDM's two samplers and its distilled student, the consistency network's two samples. The claims between
# models below then get an interval in which each training's replicates are resampled on their own
# (`replicates.crossed`; the addendum of
# [replications/training_replicates.md](../replications/training_replicates.md), stated before its run), and two
# answers: which training's replicates move each claim most (its share of the variance between replicates), and each
# added family's claim at each of its own replicates, whichever replicates the other rows come from. The figure shows
# each added family's claim in every world (every training at one of its replicates), split by the replicate of the
# training that moves it most.

# %%
floor = 1 / len(seeds)  # a chance rate of zero counts as one seed's
crossed = {}  # claim family: the replicate level of its RP and of its RP over chance, each training on its own
worlds = {}  # added family: its claim in every world, and the training whose replicates move it most
if P.replicates > 1:
    lineages = list(dict.fromkeys(zoo.lineage(v.cfg) for v in variants))
    lineage = {v.name: lineages.index(zoo.lineage(v.cfg)) for v in variants}
    first = {k: next(n for n in names if lineage[n] == k) for k in range(len(lineages))}
    for f, pairs in {"diffusion": off, **added}.items():
        groups = [(lineage[a], lineage[b]) for a, b in pairs]
        rates = claims.crossed_rates(sim, pairs, by_replicate, THRESHOLD)
        ratio = rates / np.maximum(claims.crossed_rates(sim, pairs, by_replicate, THRESHOLD, chance=True), floor)
        crossed[f] = replicates.crossed(rates, groups), replicates.crossed(ratio, groups)
        shares = crossed[f][0].shares
        print(f"{f}_rp: the variance between replicates, by training: " + ", ".join(
            f"{first[k]} {shares[k]:.2f}" for k in np.argsort(shares)[::-1][:3]))
        if f != "diffusion":
            values, idx = replicates.every_world(rates, groups)
            ids = list(np.unique(groups))  # every_world's order of the lineages
            own = ids.index(lineage[pairs[0][0]])
            print("   " + "; ".join(f"at its replicate {r}: {values[idx[:, own] == r].min():.3f}-"
                                    f"{values[idx[:, own] == r].max():.3f}" for r in range(P.replicates))
                  + " over the others' replicates")
            worlds[f] = values, idx, int(np.argmax(shares)), ids
    fig, axes = plt.subplots(1, len(worlds), figsize=(4 * len(worlds), 3), sharey=True)
    jitter = np.random.default_rng(0)
    for ax, (f, (values, idx, top, ids)) in zip(axes, worlds.items()):
        for r in range(P.replicates):
            v = values[idx[:, ids.index(top)] == r]
            ax.scatter(r + jitter.uniform(-0.3, 0.3, len(v)), v, s=2, alpha=0.1, color="tab:purple")
        ax.axhline(0.6, color="k", ls=":", lw=1)
        ax.set(xticks=range(P.replicates), xlabel=f"replicate of {first[top]}", title=f"{f}_rp in every world")
    axes[0].set_ylabel("lowest pair's RP")
    fig.tight_layout()
    plotting.save(fig, "01_crossed_replicates")
else:
    print("one training replicate in this run: nothing to pair across replicates")

# %% [markdown]
# ## Claims
#
# Thresholds stated here, before the runs that judge them, never tuned to pass:
# 1. every pair of diffusion models agrees far above chance: **RP >= 0.6** and **RP >= 10 x chance** at
#    Pearson > 0.9 (the chance rate floored at 1/seeds so a zero chance cannot make any RP pass);
# 2. the GAN pair and the VAE pair do not: **RP <= 3 x chance + 0.05**;
# 3. the same two thresholds for each added family against every other deterministic sample of the notebook
#    (the seven above and the other added families): the consistency model's one-step sample
#    (`consistency_rp`, `consistency_vs_chance`), the distilled student (`distilled_rp`, `distilled_vs_chance`)
#    and the sub-VP model (`subvp_rp`, `subvp_vs_chance`). The paper's claim is about the map from the initial
#    noise, so the two-step consistency sample, which re-noises with a second draw, is left out of it
#    ([replications/01_renoising.md](../replications/01_renoising.md)). Claim 1 keeps its meaning: the seven
#    multi-step ODE models it was stated for.
#
# A claim of ours, pre-registered in the same file and judged on 1,000 seeds no earlier run drew: re-noising
# with fresh noise breaks reproducibility, **the two-step consistency sample agrees with every deterministic
# sample on fewer than 60% of the seeds** (RP < 0.6).
#
# In a run of several training replicates, two more of ours, pre-registered in
# [replications/training_replicates.md](../replications/training_replicates.md): every deterministic diffusion
# sample agrees with its own training replicate's, **RP >= 0.6** (`self_agreement_diffusion`), and no GAN or VAE
# does beyond chance, **RP <= 3 x chance + 0.05** (`self_agreement_baselines`).

# %%
def agree(pairs, sets=samples, chance=False):
    return claims.agreement(sim, pairs, sets, THRESHOLD, chance)


ratio = diff_rp / np.maximum(diff_chance, floor)
hits, misses = agree(off), agree(off, chance=True)  # the 95% intervals resample the seeds (claims.bootstrap)
k = int(diff_rp.argmin())
run.claims.check("diffusion_rp", "every pair of diffusion models: RP >= 0.6", diff_rp.min(), ">=", 0.6,
                 source="paper, Fig. 1, 6, 12", paper="RP 0.70-0.91 between models (SSCD > 0.6, CIFAR-10)",
                 detail=f"lowest pair {off[k][0]} / {off[k][1]}; median {np.median(diff_rp):.3f}",
                 interval=claims.rate_interval(hits), between=crossed.get("diffusion", (None, None))[0])
k = int(ratio.argmin())
run.claims.check("diffusion_vs_chance", "every pair of diffusion models: RP >= 10 x chance", ratio.min(), ">=", 10,
                 source="paper, Fig. 1, 6, 12",
                 detail=f"lowest ratio {off[k][0]} / {off[k][1]}; chance at most {diff_chance.max():.3f}",
                 interval=claims.rate_interval(hits, chance=misses, floor=floor),
                 between=crossed.get("diffusion", (None, None))[1])
for label, (r, c) in baseline_rp.items():
    kind = label.split()[0].lower()
    run.claims.check(f"{kind}_not_reproducible", f"{label}: RP <= 3 x chance + 0.05", r, "<=", 3 * c + 0.05,
                     source="paper, Sec. 2", detail=f"chance {c:.3f}",
                     interval=claims.rate_interval(agree([pairs_other[label]], others)))
# (label, where the paper says it, what the paper reports); sub-VP is not among the paper's models: it tests the
# paper's "whatever the framework" on a third perturbation kernel
what = {"consistency": ("the consistency model (1 step)", "Fig. 1 / Fig. 6",
                        "RP 0.70-0.91 between models, CT among them"),
        "distilled": ("the distilled student (4 steps)", "Fig. 1 / Fig. 6",
                      "RP 0.70-0.91 between models, progressive distillation among them"),
        "subvp": ("the sub-VP model", "Sec. 2 (every diffusion model)",
                  "no sub-VP model in the paper: its claim for every diffusion model, on a third kernel")}
for f, pairs in added.items():
    r = np.array([rp[names.index(a), names.index(b)] for a, b in pairs])
    c = np.array([chance[names.index(a), names.index(b)] for a, b in pairs])
    q = r / np.maximum(c, floor)
    label, where, paper = what[f]
    hits, misses = agree(pairs), agree(pairs, chance=True)
    k = int(r.argmin())
    run.claims.check(f"{f}_rp", f"{label} against every other deterministic sample: RP >= 0.6", r.min(), ">=", 0.6,
                     source=f"paper, {where}", paper=paper,
                     detail=f"lowest pair {pairs[k][0]} / {pairs[k][1]}; median {np.median(r):.3f}",
                     interval=claims.rate_interval(hits), between=crossed.get(f, (None, None))[0])
    k = int(q.argmin())
    run.claims.check(f"{f}_vs_chance", f"{label} against every other deterministic sample: RP >= 10 x chance", q.min(),
                     ">=", 10, source=f"paper, {where}",
                     detail=f"lowest ratio {pairs[k][0]} / {pairs[k][1]}; chance at most {c.max():.3f}",
                     interval=claims.rate_interval(hits, chance=misses, floor=floor),
                     between=crossed.get(f, (None, None))[1])
fresh = list(range(200_000, 200_000 + P.seeds))  # drawn for this claim only
drawn = {v.name: banks.generate(v, store, fresh, P) for v in variants}
hits = agree(against_renoised, drawn)
r = hits.mean(1)
k = int(r.argmax())
run.claims.check("renoised_not_reproducible", "the two-step consistency sample (re-noised with a second draw) "
                 "against every deterministic sample: RP < 0.6", r.max(), "<", 0.6,
                 source="ours, replications/01_renoising.md",
                 detail=f"seeds 200000-{fresh[-1]}; highest pair {against_renoised[k][0]} / {against_renoised[k][1]}; "
                        f"median {np.median(r):.3f}", interval=claims.rate_interval(hits, reduce=np.max))
if self_rp:
    source = "ours, replications/training_replicates.md"
    diffusion = [n for n in self_rp if n in samples]
    k = int(np.argmin([self_rp[n][0] for n in diffusion]))
    rates = np.stack([self_hits[n][0] for n in diffusion])
    run.claims.check("self_agreement_diffusion", "every deterministic diffusion sample against its own training "
                     "replicate's: RP >= 0.6", rates.mean(1).min(), ">=", 0.6, source=source,
                     detail=f"lowest {diffusion[k]}; replicate {P.replicate} vs {Q.replicate}",
                     interval=claims.rate_interval(rates))
    base = [n for n in self_rp if n not in samples]
    hit, miss = np.stack([self_hits[n][0] for n in base]), np.stack([self_hits[n][1] for n in base])
    excess = lambda idx: float((hit[:, idx].mean(1) - 3 * miss[:, idx].mean(1)).max())  # noqa: E731
    k = int(np.argmax(hit.mean(1) - 3 * miss.mean(1)))
    run.claims.check("self_agreement_baselines", "every GAN and VAE against its own training replicate: RP - 3 x "
                     "chance <= 0.05", excess(np.arange(len(seeds))), "<=", 0.05, source=source,
                     detail=f"highest {base[k]}: RP {self_rp[base[k]][0]:.3f}, chance {self_rp[base[k]][1]:.3f}",
                     interval=claims.bootstrap(excess, len(seeds)))
run.finish()

# %% [markdown]
# ## What we found
#
# At the `cpu` profile the seven diffusion models, which differ in backbone, formulation, sampler and training
# seed, map the same noise to the same digit: every pair agrees on 0.649-1.00 of the seeds at Pearson > 0.9
# (the lowest pair's 95% interval over the seeds 0.615-0.671), against a mismatched-seed chance of at most 0.008.
# The two GANs agree on 0.002 of the seeds and the two VAEs on 0.079, at their chance (0.000 and 0.047): fed
# one latent, they produce different digits. Trained again with other training seeds, every diffusion model agrees
# with itself (its next training replicate) on at least 0.771 / 0.837 / 0.812 of the seeds in
# replicates 0 / 1 / 2 (in replicate 0 the lowest row is the one-step consistency model, 0.771), and every GAN and
# VAE near its chance: the paper's "different seeds" holds for every family (the figure above).
#
# The added families (notes/01_reproducibility.md gives their recipes, chosen before their first run) agree with
# every other deterministic sample far above chance (at most 0.008), but in this run not always above 0.6: the
# **distilled** 4-step student on 0.445-0.995 of the seeds (median 0.895), the **sub-VP** U-Net on 0.547-0.875
# (median 0.843), the **one-step consistency model** on 0.321-0.547 (median 0.436). The one-step consistency
# row is the low one, and it is the lowest pair of the other two. These three verdicts are **unstable** over
# three training replicates (`consistency_rp` 0.321 / 0.659 / 0.605, 2 of 3 hold;
# `distilled_rp` 0.445 / 0.676 / 0.705; `subvp_rp` 0.547 / 0.751 / 0.734): one training of a 6,000-step
# consistency model decides them. Paired across replicates, the consistency network's own training carries 1.00 of
# `consistency_rp`'s variance between replicates, 0.97 of `distilled_rp`'s and 0.89 of `subvp_rp`'s: with its
# replicate 0, `consistency_rp` is 0.321-0.335 whichever replicates the other rows come from, with its replicates
# 1 and 2 0.605-0.687; `distilled_rp` and `subvp_rp` fall below 0.6 only in worlds where the consistency network is
# its replicate 0 (the figure of every world above). The multi-step models' `diffusion_rp` holds with each
# training resampled on its own too (0.637 [0.612, 0.661]). The one-step samples sit at the threshold's edge (replicate 0's median Pearson
# with the U-Net EDM's sample is 0.889, against RP's 0.9) and blurrier than replicate 1's, and
# training it twice as long does not help: it is sharpest mid-run and declines through the curriculum's finest
# stages ([replications/training_replicates.md](../replications/training_replicates.md)). The
# **two-step consistency sample** does not reproduce: re-noised at iCT's CIFAR-10 midpoint sigma = 0.821 with a
# second draw of the seed, it agrees with the other models on 0.037-0.098 of the seeds (its chance rounds to
# 0.000), and on 1,000 fresh seeds at most 0.129, so our claim that re-noising with fresh noise breaks
# reproducibility holds. Its digits, the same as the one-step ones in the grid, come out speckled (the MAE
# heatmap above). At 8x8, sigma = 0.821 is above the data's scale
# (sigma_data = 0.5): the second noise replaces much of what the first step made, and that noise is the
# two-step sample's alone.

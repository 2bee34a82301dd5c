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
# # 4. Conditional models (section 4.1, Figure 6)
#
# *Zhang et al., The Emergence of Reproducibility and Generalizability in Diffusion Models, section 4.*
#
# Does reproducibility survive conditioning? Train two **class-conditional** diffusion models of different
# architectures (U-Net and residual MLP), sample both from the same noise with the same label under
# **classifier-free guidance**, and compare:
#
# - conditional vs conditional, **class by class**: do they produce the same digit?
# - conditional vs **unconditional** (notebook 01's models, from the same noise): the unconditional model
#   chooses its own class. The paper finds the two agree where that class equals the conditioning label, and
#   not elsewhere: the label selects which image the noise maps to, without breaking the noise-to-image map.
#
# A class is judged by a small classifier trained on the real images; its held-out accuracy is reported.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "cpu")  # smoke | cpu | paper
overrides = {}  # e.g. {"guidance": 2.0}; settings of reprolib.profiles.Conditional

# %%
import subprocess
import sys
import time

if "google.colab" in sys.modules:  # Colab starts without the library; Binder and local runs have it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/reprocompanion/companion"], check=True)

import matplotlib.pyplot as plt
import numpy as np
import torch

from reprolib import banks, claims, conditional, fitting, metrics, notebook, plotting, zoo

run = notebook.start("04", profile, overrides)
P, store = run.P, run.store
seeds = list(range(100_000, 100_000 + P.seeds))  # the same seeds as notebook 01
labels = conditional.cycle_labels(len(seeds))  # seed i is asked for digit i mod 10
sim = metrics.backend(P.similarity, device=P.device, pixel_threshold=P.pixel_threshold)
THRESHOLD = sim.default_threshold  # Pearson 0.9 (calibrated in notebook 01), or SSCD 0.6
print(f"similarity: {sim.name}, RP threshold {THRESHOLD}")
print(f"profile {profile}: {len(seeds)} seeds, {len(seeds) // 10} per class, guidance scale w = {P.guidance}")

# %% [markdown]
# ## The judge: a classifier of real images
#
# On digits, an RBF support-vector machine on the 64 raw pixels, fitted on three quarters of the real digits;
# on CIFAR-10 (the paper profile), a small residual CNN trained on the training set (setting `judge`), cached in
# the store (`reprolib.classifier`). Its accuracy on held-out real images (the held-out quarter of the digits,
# CIFAR-10's test set) is how far to trust a class it assigns.

# %%
judge = conditional.judge(P.data, store, P.device, **zoo.judge(P))
print(f"classifier accuracy on held-out real {P.data}: {judge.accuracy:.3f}")

# %% [markdown]
# ## The models
#
# The conditional models are notebook 01's U-Net and MLP (EDM preconditioning, Heun sampler, same training
# length) with a label embedding added to the noise embedding. Each training step drops 10% of the labels to
# a "no label" token, so one network is both $D(x;\sigma\mid c)$ and $D(x;\sigma)$, and classifier-free
# guidance (Ho & Salimans 2022, eq. 6, in denoiser form) samples with
#
# $$D_w(x;\sigma\mid c) = D(x;\sigma\mid c) + w\,\big(D(x;\sigma\mid c) - D(x;\sigma)\big),$$
#
# $w = 0$ being the plain conditional model. The unconditional partners are notebook 01's U-Net and MLP, taken
# from the store (trained here only if notebook 01 has not run).

# %%
cond = zoo.section4(P)
uncond = zoo.unconditional(P)
t0 = time.perf_counter()
fitting.fit_all(zoo.plan("04", P, store), store, P)
print(f"training: {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Same noise, same label
#
# Heun, 18 steps (35 evaluations, each a conditional and an unconditional pass under guidance). The top row
# gives the label asked for; the unconditional rows choose their own digit.

# %%
t0 = time.perf_counter()
c_samples = {v.name: banks.guided_samples(v, store, seeds, labels, P.guidance, P) for v in cond}
u_samples = {v.name: banks.generate(v, store, seeds, P) for v in uncond}
print(f"sampling: {time.perf_counter() - t0:.0f} s")
fig = plotting.image_grid({**{k: v[:20] for k, v in c_samples.items()}, **{k: v[:20] for k, v in u_samples.items()}},
                          title="labels: " + " ".join(str(int(c)) for c in labels[:20]))
plotting.save(fig, "04_same_noise_grid")

# %% [markdown]
# ## Does the label take?
#
# The fraction of each conditional model's samples that the classifier assigns to the label they were drawn
# for, and the class distribution the unconditional models pick on their own.

# %%
predicted = {k: judge.predict(x) for k, x in c_samples.items()}
fidelity = {k: conditional.class_fidelity(p, labels) for k, p in predicted.items()}
u_classes = {k: judge.predict(x) for k, x in u_samples.items()}
for k, f in fidelity.items():
    print(f"{k}: {f:.1%} of samples classified as their label")
for k, c in u_classes.items():
    print(f"{k}: classes picked {np.bincount(c.numpy(), minlength=10).tolist()}")

# %% [markdown]
# ## Conditional vs conditional, class by class
#
# RP between the conditional U-Net and MLP within each class, beside the chance level *within the class*
# (sample $i$ of one model against sample $j \ne i$ of the other, same label): two 1s agree more often than a 1
# and a 7, so the all-classes chance level would flatter the conditional models.

# %%
(ca, a), (cb, b) = c_samples.items()
by_class = conditional.rp_by_class(sim, a, b, labels, THRESHOLD)
cc_rp, cc_chance = conditional.rp_and_chance(sim, a, b, THRESHOLD, groups=labels)
table = conditional.summary_array(by_class)
fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(np.arange(10) - 0.2, table[:, 0], width=0.4, label="RP (same noise)")
ax.bar(np.arange(10) + 0.2, table[:, 1], width=0.4, color="gray", label="chance (same class, other noise)")
ax.axhline(cc_rp, color="tab:blue", ls=":", lw=1)
ax.set(xticks=range(10), xlabel="class", ylabel="RP", ylim=(0, 1.02), title=f"{ca} vs {cb}")
ax.legend(fontsize=7)
plotting.save(fig, "04_rp_by_class")
print(f"{ca} vs {cb}: RP {cc_rp:.3f}, within-class chance {cc_chance:.3f}")
print("per class RP:", " ".join(f"{c}:{r:.2f}" for c, (r, _, _) in by_class.items()))

# %% [markdown]
# ## Conditional vs unconditional, split by class match
#
# For every conditional/unconditional pair (same and different architectures), seeds are split by whether the
# classifier puts the unconditional sample in the class the conditional model was asked for. Chance pairs
# mismatched seeds within the same split and the same label.

# %%
split = {}
for kc, xc in c_samples.items():
    for ku, xu in u_samples.items():
        split[(kc, ku)] = conditional.rp_split_by_match(sim, xc, xu, labels, u_classes[ku], THRESHOLD)
fig, ax = plt.subplots(figsize=(7, 3.2))
names = [f"{kc.split(' EDM')[0]}\nvs {ku.split(' EDM')[0]}" for kc, ku in split]
for j, (part, color) in enumerate((("match", "tab:green"), ("mismatch", "tab:red"))):
    x = np.arange(len(split)) + (j - 0.5) * 0.4
    ax.bar(x, [s[part][0] for s in split.values()], width=0.4, color=color, label=f"RP, class {part}")
    ax.scatter(x, [s[part][1] for s in split.values()], color="k", marker="_", s=200, zorder=3)
ax.scatter([], [], color="k", marker="_", label="chance")
ax.set(xticks=range(len(split)), xticklabels=names, ylabel="RP", ylim=(0, 1.02), title="conditional vs unconditional")
ax.tick_params(labelsize=7)
ax.legend(fontsize=7)
plotting.save(fig, "04_cond_vs_uncond")
for (kc, ku), s in split.items():
    print(f"{kc} vs {ku}: match RP {s['match'][0]:.3f} (chance {s['match'][1]:.3f}, {s['match'][2]} seeds), "
          f"mismatch RP {s['mismatch'][0]:.3f} (chance {s['mismatch'][1]:.3f}, {s['mismatch'][2]} seeds)")

# %%
kc, ku = list(c_samples)[0], list(u_samples)[0]
match = u_classes[ku] == labels
rows = {}
for part, m in (("match", match), ("mismatch", ~match)):
    idx = torch.nonzero(m).flatten()[:12]
    if len(idx):
        rows[f"{part}: conditional"] = c_samples[kc][idx]
        rows[f"{part}: unconditional"] = u_samples[ku][idx]
if rows:
    fig = plotting.image_grid(rows, ncols=min(len(v) for v in rows.values()), title=f"{kc} vs {ku}")
    plotting.save(fig, "04_match_examples")

# %% [markdown]
# ## How guidance moves the picture
#
# The same comparisons across guidance scales $w$: RP between the two conditional models, how often the
# label takes, and the match RP of the conditional U-Net against the unconditional U-Net. Stronger guidance
# pushes samples toward typical members of the class, away from where the unconditional model would go.

# %%
t0 = time.perf_counter()
sweep_rows = []
(kc_unet, kc_mlp), ku_unet = [v.name for v in cond], uncond[0].name
for w in P.guidance_sweep:
    xs = {v.name: banks.guided_samples(v, store, seeds, labels, w, P) for v in cond}
    s = conditional.rp_split_by_match(sim, xs[kc_unet], u_samples[ku_unet], labels, u_classes[ku_unet], THRESHOLD)
    sweep_rows.append((w, conditional.rp_and_chance(sim, xs[kc_unet], xs[kc_mlp], THRESHOLD, groups=labels)[0],
                       np.mean([conditional.class_fidelity(judge.predict(x), labels) for x in xs.values()]),
                       s["match"][0]))
sweep_rows = np.array(sweep_rows)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(sweep_rows[:, 0], sweep_rows[:, 1], marker="o", label="RP cond U-Net vs cond MLP")
ax.plot(sweep_rows[:, 0], sweep_rows[:, 2], marker="s", label="label taken (mean of both)")
ax.plot(sweep_rows[:, 0], sweep_rows[:, 3], marker="^", label="RP cond vs uncond U-Net, class match")
ax.axvline(P.guidance, color="k", ls=":", lw=1)
ax.set(xlabel="guidance scale w", ylim=(0, 1.02), title="Guidance")
ax.legend(fontsize=7)
plotting.save(fig, "04_guidance_sweep")
print(f"guidance sweep: {time.perf_counter() - t0:.0f} s")
for w, r, f, m in sweep_rows:
    print(f"w={w:.1f}: RP cond-cond {r:.3f}, label taken {f:.1%}, match RP cond-uncond U-Net {m:.3f}")

# %% [markdown]
# ## Claims
#
# At guidance scale `P.guidance`, with thresholds written before the run that judges them (never tuned to
# pass). Two controls of the method (ours) come first:
# 1. the judge is trustworthy: held-out accuracy **>= 0.97** on digits (`judge_accuracy`; 0.9 for the CNN on
#    CIFAR-10, which does not reach the SVC's 0.97 on digits);
# 2. guidance works: **>= 90%** of each conditional model's samples are classified as their label
#    (`label_taken_unet`, `label_taken_mlp`).
#
# Then the paper's claims:
# 3. the conditional models reproduce each other: RP **>= 0.6** overall (`cond_rp`), and the chance-corrected
#    agreement kappa = (RP - chance) / (1 - chance) over the within-class chance is **>= 0.5** (`cond_kappa`: RP
#    covers at least half of the room above chance; undefined, so not met, when the chance is 1). Chance is
#    corrected for rather than divided by because a ratio to chance cannot exceed 1 / chance, and under guidance
#    samples of one class look alike;
# 4. class by class: RP **>= 0.4 in every class** (`cond_rp_min_class`: the lowest class);
# 5. conditional vs unconditional, for each of the four pairs (`<cond>_vs_uncond_<uncond>_...`): RP **>= 0.5**
#    on the seeds whose classes match (`_match`), **<= 0.05** where they do not (`_mismatch`), and the match RP
#    at least **0.3** above the mismatch RP (`_gap`).
#
# The kappa form of claim 3 was adopted after a first cpu run; [notes/04_conditional.md](../notes/04_conditional.md)
# says what it replaced and why. At the `smoke` profile the models train for a few steps only: the table shows
# verdicts that mean nothing.

# %%
tag = {k: k.removeprefix("cond ").split()[0].lower().replace("-", "") for k in [*c_samples, *u_samples]}  # "unet"
right = round(judge.accuracy * judge.tested)  # a rate's bootstrap depends on its count alone, not on which images
run.claims.check("judge_accuracy", f"the judge's accuracy on held-out real images >= {P.judge_accuracy}",
                 judge.accuracy, ">=", P.judge_accuracy, source="ours, a control of the method",
                 detail=f"{right} of {judge.tested} held-out images",
                 interval=claims.rate_interval(np.arange(judge.tested) < right))
for k, f in fidelity.items():  # the 95% intervals resample the seeds (claims.bootstrap)
    run.claims.check(f"label_taken_{tag[k]}", f"{k}: >= 90% of samples classified as their label", f, ">=", 0.9,
                     source="ours, a control of the method",
                     interval=claims.rate_interval((torch.as_tensor(predicted[k]) == labels).numpy()))
sec4 = "paper, Sec. 4 (conditional)"
run.claims.check("cond_rp", f"{ca} vs {cb}: RP >= 0.6", cc_rp, ">=", 0.6, source=sec4,
                 detail=f"within-class chance {cc_chance:.3f}",
                 interval=claims.rate_interval(claims.agreement(sim, [(ca, cb)], c_samples, THRESHOLD)))
# a chance of 1 leaves no room above it, so no agreement beyond what any pair of the class shows
kappa = (cc_rp - cc_chance) / (1 - cc_chance) if cc_chance < 1 else None
cc_hits = claims.agreement(sim, [(ca, cb)], c_samples, THRESHOLD)[0]
cc_misses = (metrics.paired(sim, a, b[conditional.within_group_derangement(labels)]) > THRESHOLD).numpy()


def kappa_on(idx):  # the seeds idx, each still against the sample of the same class it was paired with
    chance = cc_misses[idx].mean()
    return (cc_hits[idx].mean() - chance) / (1 - chance) if chance < 1 else np.nan


def min_class(idx):
    drawn = labels.numpy()[idx]
    return np.min([cc_hits[idx][drawn == c].mean() if (drawn == c).any() else np.nan for c in by_class])


run.claims.check("cond_kappa", f"{ca} vs {cb}: kappa = (RP - chance) / (1 - chance) over the within-class chance "
                 ">= 0.5", kappa, ">=", 0.5, source=sec4, detail=f"RP {cc_rp:.3f}, within-class chance {cc_chance:.3f}",
                 interval=claims.bootstrap(kappa_on, len(cc_hits)))
run.claims.check("cond_rp_min_class", f"{ca} vs {cb}: RP >= 0.4 in every class", table[:, 0].min(), ">=", 0.4,
                 source=sec4, detail=" ".join(f"{c}:{r:.2f}" for c, (r, _, _) in by_class.items()),
                 interval=claims.bootstrap(min_class, len(cc_hits)))
for (kc, ku), s in split.items():
    (rm, cm, nm), (rx, cx, nx) = s["match"], s["mismatch"]
    pair, counts = f"{tag[kc]}_vs_uncond_{tag[ku]}", f"{nm} matching and {nx} other seeds"
    hits = claims.agreement(sim, [(kc, ku)], {**c_samples, **u_samples}, THRESHOLD)[0]
    same = (torch.as_tensor(u_classes[ku]) == labels).numpy()

    def rate(idx, part):  # RP on the resampled seeds of one split (none there: no value)
        kept = same[idx] == part
        return hits[idx][kept].mean() if kept.any() else np.nan

    run.claims.check(f"{pair}_match", f"{kc} vs {ku}: RP >= 0.5 where the classes match", rm, ">=", 0.5,
                     source=sec4, detail=f"chance {cm:.3f}, {counts}",
                     interval=claims.bootstrap(lambda idx: rate(idx, True), len(hits)))
    run.claims.check(f"{pair}_mismatch", f"{kc} vs {ku}: RP <= 0.05 where they do not", rx, "<=", 0.05,
                     source=sec4, detail=f"chance {cx:.3f}, {counts}",
                     interval=claims.bootstrap(lambda idx: rate(idx, False), len(hits)))
    run.claims.check(f"{pair}_gap", f"{kc} vs {ku}: match RP >= mismatch RP + 0.3", rm - rx, ">=", 0.3,
                     source=sec4, detail=f"match {rm:.3f}, mismatch {rx:.3f}",
                     interval=claims.bootstrap(lambda idx: rate(idx, True) - rate(idx, False), len(hits)))
run.finish()

# %% [markdown]
# ## What we found
#
# At the cpu profile all 18 checks hold. The judge classifies 99.3% of held-out real digits correctly. The
# conditional U-Net and MLP agree on 0.959 of the seeds (RP), where two samples of the same class from
# different noises agree on 0.166 (within-class chance): kappa 0.95. Against the unconditional models, the
# conditional ones agree on 0.81-0.84 of the seeds where the unconditional sample falls in the class asked
# for, and on at most 0.014 where it does not: the label selects which image a noise maps to without breaking
# the noise-to-image map, as the paper finds.

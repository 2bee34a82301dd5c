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
# # 6. Fine-tuning: is a fine-tuned model the model one would have trained from scratch?
#
# *Zhang et al., section 4 (fine-tuning).* The paper fine-tunes a pre-trained diffusion model on new data and
# asks whether the result reproduces a model trained on that data from scratch, from the same noises. Its
# finding: fine-tuning the **whole** network lands on (nearly) the same noise-to-image map as training from
# scratch; fine-tuning only **part** of it reproduces less. The paper's exact protocol is unconfirmed; here:
#
# - pre-train a U-Net (notebook 01's width-16 EDM U-Net) on the digits **0-4** only;
# - fine-tune it on the digits **5-9** in five ways: every weight; the **decoder** only (the U-Net's up path and
#   output head); the **encoder** only (stem, down path and middle: the other half of the U-Net, which tells
#   whether what the decoder does is the decoder's own); the **output head** only; **LoRA** adapters of rank 4 on
#   every convolution and linear layer (Hu et al. 2021, `reprolib.lora`), the pre-trained weights frozen;
# - train two U-Nets from scratch on 5-9 (two training seeds) as the reference and its own reproducibility.
#
# Each fine-tuning trains 1,500 steps, the from-scratch models 2,500; the decoder, head and LoRA fine-tunings go on
# to three times as long, to see whether 1,500 steps is where they are heading. The pre-training and
# the two from-scratch models each have their own training seed; the fine-tunings share a fourth (they differ
# only in what they train), so none of them shares a minibatch stream with the from-scratch models.

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "cpu")  # smoke | cpu | paper
overrides = {}  # e.g. {"seeds": 200}; settings of reprolib.profiles.FineTuning

# %%
import subprocess
import sys

if "google.colab" in sys.modules:  # Colab starts without the library; Binder and local runs have it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/reprocompanion/companion"], check=True)

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from reprolib import banks, claims, conditional, fitting, metrics, notebook, plotting, zoo
from reprolib.train import build, mark_trainable, training_set

run = notebook.start("06", profile, overrides)
P, store = run.P, run.store
seeds = list(range(100_000, 100_000 + P.seeds))
variants = zoo.section6(P)
tuned = [n for n in variants if "fine-tune" in n]
partial = zoo.section6_partial(variants)  # claim 3's partial fine-tunings
long = zoo.section6_long(variants, partial)  # the same fine-tunings, trained longer (convergence check)
sim = metrics.backend(P.similarity, device=P.device, pixel_threshold=P.pixel_threshold)
THRESHOLD = sim.default_threshold
print(f"similarity: {sim.name}, RP threshold {THRESHOLD}")
print(f"pre-train on {P.source}, fine-tune on {P.target}, {len(seeds)} seeds")

# %% [markdown]
# ## The models
#
# The table lists each model's training data, length and the share of its weights that training touches. All of
# them train in one-thread worker processes; the pre-trained model goes first, since every fine-tuning starts from
# its weights. The partial fine-tunings are trained longer (see "Are the partial fine-tunings converged?"), and
# their models here are those runs' EMA weights after 1,500 steps.

# %%
rows = []
for name, v in variants.items():
    model = build(v.cfg, P.shape)
    total = sum(p.numel() for k, p in model.named_parameters() if ".lora_" not in k)
    rows.append(dict(model=name, classes="".join(map(str, v.cfg.classes)), images=len(training_set(v.cfg)),
                     steps=v.trained_steps, seed=v.cfg.seed, starts_from="pre-trained" if v.cfg.init else "random",
                     trained_share=mark_trainable(model, v.cfg) / total))
models_table = pd.DataFrame(rows).set_index("model")
t0 = time.perf_counter()
fitting.fit_all(zoo.plan("06", P, store), store, P)
print(f"training: {time.perf_counter() - t0:.0f} s")
models_table.round(3)

# %% [markdown]
# ## Same noise, every model
#
# Each model integrates the PF-ODE (Heun) from the same seeds. A digit classifier trained on real digits
# (`reprolib.classifier`, an RBF SVM; its held-out accuracy is printed) tells which share of each model's
# samples are target digits (5-9): a fine-tuning that has not left the pre-training data shows up there.

# %%
t0 = time.perf_counter()
samples = {name: banks.generate(v, store, seeds, P) for name, v in variants.items()}
print(f"sampling: {time.perf_counter() - t0:.0f} s")
fig = plotting.image_grid({k: v[:16] for k, v in samples.items()})
plotting.save(fig, "06_same_noise_grid")
clf = conditional.judge(P.data, store, P.device, **zoo.judge(P)) if P.data in ("digits", "mnist") else None
if clf is not None:
    print(f"digit classifier: {clf.accuracy:.1%} on held-out real digits")
    target = torch.tensor(P.target)
    models_table["target_share"] = [float(torch.isin(clf.predict(x), target).double().mean()) for x in samples.values()]

# %% [markdown]
# ## Reproducibility against the from-scratch model
#
# RP (Pearson > 0.9 of same-seed samples, calibrated in notebook 01) between every pair of models, and its
# chance level over mismatched seeds. The row that matters is "scratch": how often each fine-tuned model draws
# the digit that training from scratch draws for the same noise. The second from-scratch model gives the
# reproducibility one can expect at all between two independently trained models.

# %%
names = list(samples)
rp = metrics.score_matrix(lambda a, b: metrics.rp_score(sim, a, b, THRESHOLD), samples)
chance = metrics.score_matrix(lambda a, b: metrics.chance_rp(sim, a, b, THRESHOLD), samples)
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
plotting.heatmap(rp, names, axes[0], f"RP ({sim.label} > {THRESHOLD})")
plotting.heatmap(chance, names, axes[1], "chance (mismatched seeds)")
fig.tight_layout()
plotting.save(fig, "06_rp_heatmaps")
ref = names.index("scratch")
models_table["rp_vs_scratch"] = rp[ref]
models_table["chance_vs_scratch"] = chance[ref]
models_table["median_pearson_vs_scratch"] = [float(metrics.paired(sim, samples["scratch"], x).median())
                                             for x in samples.values()]
models_table.round(3)

# %% [markdown]
# ## RP with the from-scratch model against the share of weights fine-tuned
#
# Left: RP with the from-scratch model as a curve over thresholds, so that no conclusion rests on 0.9 alone.
# Right: RP at 0.9 against the share of weights each fine-tuning trains.

# %%
thresholds = np.linspace(0.5, 1.0, 51)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name in names:
    if name == "scratch":
        continue
    axes[0].plot(thresholds, metrics.rp_curve(metrics.paired(sim, samples["scratch"], samples[name]), thresholds),
                 label=name, ls="--" if name in ("pre-trained", "scratch, seed 2") else "-")
axes[0].plot(thresholds, metrics.rp_curve(metrics.unpaired(sim, samples["scratch"], samples["scratch, seed 2"]),
                                          thresholds), "k:", label="chance (scratch pair)")
axes[0].axvline(THRESHOLD, color="k", lw=1, alpha=0.5)
axes[0].set(xlabel=f"{sim.label} threshold", ylabel="RP with scratch", title="RP with the from-scratch model")
axes[0].legend(fontsize=7)
colour = {n: axes[0].lines[names.index(n) - 1].get_color() for n in names if n != "scratch"}  # as on the left
for n in tuned:  # a legend, not labels beside the points: the points sit too close to label
    axes[1].scatter(models_table.loc[n, "trained_share"], models_table.loc[n, "rp_vs_scratch"], s=30,
                    color=colour[n], label=n)
axes[1].axhline(models_table.loc["scratch, seed 2", "rp_vs_scratch"], color=colour["scratch, seed 2"], ls="--",
                label="second from-scratch seed")
axes[1].axhline(models_table.loc["pre-trained", "rp_vs_scratch"], color=colour["pre-trained"], ls="--",
                label="pre-trained, untuned")
axes[1].set(xscale="log", xlabel="share of weights fine-tuned", ylabel="RP with scratch", ylim=(-0.02, 1.02),
            title="RP with scratch against the share of weights trained")
axes[1].legend(fontsize=7, loc="center right")
fig.tight_layout()
plotting.save(fig, "06_rp_vs_trained_share")

# %% [markdown]
# ## Are the partial fine-tunings converged?
#
# Claim 3 compares models after 1,500 fine-tuning steps. A fine-tuning that trains fewer weights may only be
# slower to get where it is going: its deficit at 1,500 steps would then be one of training time, not of the
# frozen weights. So the decoder, LoRA and head fine-tunings train three times as long, keeping their EMA
# weights every 1,500 steps, and each snapshot is sampled from the same seeds. The learning rate has warm-up but
# no decay, so the first snapshot is the 1,500-step fine-tuning itself, bit for bit (a test checks it): the
# model the claims use. The test is notebook 02's: a model whose RP with scratch moves by more than 0.05 over
# its last interval is still moving. The last snapshots are what claim 3' below judges.

# %%
t0 = time.perf_counter()
rows, last = [], {}  # last: each longer run's samples at its last snapshot
for name, v in long.items():
    for step in range(v.cfg.snapshot_every, v.cfg.steps + 1, v.cfg.snapshot_every):
        x = last[name] = banks.snapshot_samples(v.cfg, step, store, seeds, P)
        rows.append(dict(model=name, step=step, rp_vs_scratch=metrics.rp_score(sim, samples["scratch"], x, THRESHOLD)))
curves = pd.DataFrame(rows)
print(f"longer runs, sampling and scoring: {time.perf_counter() - t0:.0f} s")
fig, ax = plt.subplots(figsize=(6, 3.8))
for name, c in curves.groupby("model", sort=False):
    ax.plot(c.step, c.rp_vs_scratch, "o-", label=name)
ax.axhline(models_table.loc["full fine-tune", "rp_vs_scratch"], color="k", ls="-", lw=1,
           label=f"full fine-tune ({variants['full fine-tune'].cfg.steps} steps)")
ax.axhline(models_table.loc["scratch, seed 2", "rp_vs_scratch"], color="tab:gray", ls="--",
           label="second from-scratch seed")
ax.set(xlabel="fine-tuning steps", ylabel="RP with scratch", ylim=(-0.02, 1.02),
       title="Partial fine-tunings trained longer")
ax.legend(fontsize=7)
fig.tight_layout()
plotting.save(fig, "06_partial_convergence")
moving = curves.pivot(index="model", columns="step", values="rp_vs_scratch").loc[partial]
moving["last change"] = moving.iloc[:, -1] - moving.iloc[:, -2]
moving["still moving (> 0.05)"] = moving["last change"].abs() > 0.05
moving.round(3)

# %% [markdown]
# ## Claims
#
# Thresholds stated here, before the runs that judge them, never tuned to pass.
#
# *The paper's claims*, on the models of the table above (fine-tunings at 1,500 steps):
# 1. full fine-tuning reproduces the from-scratch model: RP(full fine-tune, scratch) **>= 0.6** and **>= 10 x
#    chance** (chance floored at 1/seeds);
# 2. as well as a second from-scratch training does: RP(full fine-tune, scratch) **>= RP(scratch seed 2,
#    scratch) - 0.1**;
# 3. partial fine-tuning reproduces less: for each partial fine-tuning (decoder, head, LoRA), RP with scratch
#    **<= RP(full fine-tune, scratch) - 0.1**. The encoder-only fine-tuning is not part of this claim; its row
#    in the table is there to read the decoder's.
#
# *A control of ours*
# 4. the full fine-tuning has left the pre-training data: **>= 90%** of its samples are classified as target
#    digits (digits profiles only).
#
# *Claim 3 restated (3', ours)*, on the last snapshots of the longer runs. We formed it from this split's
# numbers, so its verdict here is no evidence for it; the evidence is the pre-registered re-test on the reverse
# split (pre-train on 5-9, fine-tune on 0-4) in
# [replications/06_reverse_split.md](../replications/06_reverse_split.md), which fixed these thresholds before
# its run:
# - 3'a. too small a trained part reproduces less, however long it trains: the head-only fine-tuning, at the
#   end of its longer run, RP with scratch **<= RP(full fine-tune, scratch) - 0.1**;
# - 3'b. a partial fine-tuning that trains a sizeable part (decoder, LoRA), trained to where it is heading,
#   reproduces the from-scratch model as full fine-tuning does: at the end of its longer run, RP with scratch
#   **>= RP(full fine-tune, scratch) - 0.1**.

# %%
def with_scratch(name, sets=samples, chance=False):  # per seed: does this model's sample agree with scratch's?
    return claims.agreement(sim, [("scratch", name)], {**sets, "scratch": samples["scratch"]}, THRESHOLD, chance)


T = models_table
full_rp = T.loc["full fine-tune", "rp_vs_scratch"]
full_chance = T.loc["full fine-tune", "chance_vs_scratch"]
second = T.loc["scratch, seed 2", "rp_vs_scratch"]
floor = 1 / len(seeds)
full_hits = with_scratch("full fine-tune")  # the 95% intervals resample the seeds (claims.bootstrap)
paper = "paper, Sec. 4 (fine-tuning)"
run.claims.check("full_reproduces", "full fine-tuning: RP with scratch >= 0.6", full_rp, ">=", 0.6, source=paper,
                 detail=f"chance {full_chance:.3f}", interval=claims.rate_interval(full_hits))
run.claims.check("full_vs_chance", "full fine-tuning: RP with scratch >= 10 x chance",
                 full_rp / max(full_chance, floor), ">=", 10, source=paper,
                 detail=f"RP {full_rp:.3f}, chance {full_chance:.3f} (floored at {floor:.3g})",
                 interval=claims.rate_interval(full_hits, chance=with_scratch("full fine-tune", chance=True),
                                               floor=floor))
run.claims.check("full_as_scratch", "full fine-tuning: RP with scratch >= a second from-scratch seed's - 0.1",
                 full_rp, ">=", second - 0.1, source=paper, detail=f"second from-scratch seed {second:.3f}",
                 interval=claims.rate_interval(full_hits))
reverse = {"decoder": "; reverse split (replications/06_reverse_split.md): decoder 0.822 vs full 0.854"}
short = {n: n.split()[0].lower() for n in partial}  # "LoRA r4 fine-tune" -> "lora"
for n in partial:
    run.claims.check(f"{short[n]}_reproduces_less", f"{n}: RP with scratch <= the full fine-tuning's - 0.1",
                     T.loc[n, "rp_vs_scratch"], "<=", full_rp - 0.1, source=paper,
                     detail=f"full fine-tune {full_rp:.3f}; {variants[n].trained_steps} steps, "
                            f"{T.loc[n, 'trained_share']:.1%} of the weights" + reverse.get(short[n], ""),
                     interval=claims.rate_interval(with_scratch(n)))
if "target_share" in T:
    is_target = torch.isin(clf.predict(samples["full fine-tune"]), target).numpy()
    run.claims.check("full_target_digits", ">= 90% of the full fine-tuning's samples are target digits",
                     T.loc["full fine-tune", "target_share"], ">=", 0.9, source="ours, a control of the method",
                     interval=claims.rate_interval(is_target))
longest = curves.groupby("model").last()  # each longer run's last snapshot
ours = "ours, replications/06_reverse_split.md"
for n in partial:
    rp_long, step = longest.loc[n, "rp_vs_scratch"], int(longest.loc[n, "step"])
    detail = (f"after {step} steps; {T.loc[n, 'rp_vs_scratch']:.3f} after {variants[n].trained_steps}; "
              f"full fine-tune {full_rp:.3f}")
    interval = claims.rate_interval(with_scratch(n, last))
    if short[n] == "head":
        run.claims.check("head_long_reproduces_less", f"3'a: {n} trained longer: RP with scratch <= the full "
                         "fine-tuning's - 0.1", rp_long, "<=", full_rp - 0.1, source=ours, detail=detail,
                         interval=interval)
    else:
        run.claims.check(f"{short[n]}_long_reproduces", f"3'b: {n} trained longer: RP with scratch >= the full "
                         "fine-tuning's - 0.1", rp_long, ">=", full_rp - 0.1, source=ours, detail=detail,
                         interval=interval)
run.finish()

# %% [markdown]
# ## What we found
#
# At the `cpu` profile (1,000 seeds) full fine-tuning reproduces the from-scratch model as well as a second
# from-scratch training does (RP with scratch 0.886 against 0.891).
# Partial fine-tuning reproduces less only where little is trained: LoRA r4 (15% of the weights) 0.765 and the
# output head alone (0.1%) 0.086; LoRA's pass is marginal (95% interval over seeds 0.739-0.788 against a bound of
# 0.786). The decoder alone (47%) reaches 0.854, only 0.03 below the full fine-tuning, so
# the paper's claim 3 does not hold for the decoder, here or on the reverse split (0.822 against 0.854). The
# encoder alone (43%) reaches 0.877: either half of this U-Net, trained alone, lands on the from-scratch
# model's noise-to-image map. Trained three times as long, LoRA reaches 0.878 at 3,000 steps and 0.885 at 4,500,
# as high as the full fine-tuning, while the decoder stays at 0.861 / 0.838 and the head at 0.099 / 0.106 (none
# moves by more than 0.05 over its last interval): LoRA's pass of claim 3 is one of training time. Our restated
# claim 3' holds here and, pre-registered, held on the reverse split (decoder 0.847 and LoRA 0.876 against a
# bound of 0.754; head 0.085). On these digits, then, fine-tuning trained to where it is heading reproduces the
# from-scratch model whatever part of the network it trains, down to 15% of the weights; only the output head
# alone cannot move the map. How these claims and the longer runs came to be is in
# [notes/06_finetuning.md](../notes/06_finetuning.md).

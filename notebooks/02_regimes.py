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
# # 2. Memorization and generalization regimes (Figure 2)
#
# *Zhang et al., section 3.* Does reproducibility depend on how much data a model is trained on? Train
# U-Nets of doubling width on nested subsets of N training images, sample them from the same seeds, and
# follow two scores as N grows:
#
# - **RP** between each pair of widths: do models of different sizes map a noise to the same image?
# - **GL**: do the samples differ from every training image (generalization) or copy one (memorization)?
#
# The paper finds reproducibility in two regimes, **memorization** (small N: every model copies the same
# training image, because all of them converge to the optimal denoiser of the empirical distribution) and
# **generalization** (large N: new images, still the same across models), with a dip between them where N is
# near the models' capacity. The paper's CIFAR-10 U-Nets have widths 64/128/256; on 8x8 digits and two CPU
# cores we scale them to widths 4/8/16 (the `cpu` profile) so that the transition falls inside the 1,797
# digits available. At these widths two details of the paper's DDPM++ U-Net matter, and the sweep keeps them
# (`zoo.DDPMPP`): GroupNorm groups of at least 4 channels (a narrower rule would normalise each channel of a
# width-4 layer alone) and noise features that vary smoothly with $\ln\sigma$.
#
# How the training lengths and the learning rate were arrived at is told in
# [notes/02_regimes.md](../notes/02_regimes.md).

# %% tags=["parameters"]
import os

profile = os.environ.get("REPRO_PROFILE", "cpu")  # smoke | cpu | paper
overrides = {}  # e.g. {"seeds": 200}; settings of reprolib.profiles.Regimes

# %%
import subprocess
import sys
import time

if "google.colab" in sys.modules:  # Colab starts without the library; Binder and local runs have it
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "reprolib @ git+https://github.com/reprocompanion/companion"], check=True)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from reprolib import data, disjoint, fitting, metrics, notebook, plotting, regimes, zoo

run = notebook.start("02", profile, overrides)
P, store = run.P, run.store
full = data.load(P.data)
seeds = list(range(100_000, 100_000 + P.seeds))
models = zoo.regimes(P)
pairs_cfg = zoo.disjoint(P)
print(f"profile {profile}: sizes {P.sizes}, widths {P.widths}, {P.train_seeds} training seed(s), "
      f"{len(models)} models, {len(seeds)} seeds; disjoint-data pairs at N = {P.disjoint_sizes}, "
      f"width(s) {P.disjoint_widths}")

# %% [markdown]
# ## Training the sweep
#
# Every model of one N sees the same nested subset (the first N images of one seeded permutation of the data
# set). The trainings run in one-thread worker processes, one per core, and land in the store: notebook 03 reuses
# them, and an interrupted sweep resumes where it stopped. The narrow U-Nets of one training length train together
# as one stacked model per process (`reprolib.stacked`, where `benchmarks/results.md` measured it to pay on a CPU:
# width 4, and width 8 from four models; on a GPU every width), each with its own data, draws, optimiser and EMA,
# as if alone up to round-off.
# How long each N trains, and at which learning rate, is in `reprolib.profiles`: at the cpu profile lr 3e-3,
# 5,000 steps for N <= 32 and 3,000 for the rest (the next section says how convergence is judged).

# %%
t0 = time.perf_counter()
fitting.fit_all(zoo.plan("02", P, store), store, P)
print(f"training: {time.perf_counter() - t0:.0f} s")

# %% [markdown]
# ## Has each model converged?
#
# Two tests, both read from the run itself. The **training loss** (mean per 100 steps): its relative change
# between the means of the last two tenths of training. The **memorized fraction** (the ratio test below) of
# each model's samples at every EMA snapshot: the loss flattens early at small N, while the model is still
# settling which images it copies. A model counts as converged when its loss moved by at most 5% and its
# memorized fraction by at most 0.05 over the last snapshot interval.
#
# At the cpu profile the training length of N <= 32 (5,000 steps) is the first multiple of 1,000 at which every width passes the
# second test. The middle sizes, near the models' capacity, need not pass it within the budget: their
# memorized fraction can keep rising slowly. The models still moving are listed below; where they are, the RP
# of the figure is that of models caught between the two regimes at a fixed training budget, not of a limit.

# %%
t0 = time.perf_counter()
curves = regimes.training_curves(models, store, seeds[:P.curve_seeds], P)
losses = {key: np.array(fitting.training_losses(cfg, store)) for key, cfg in models.items()}
fig, axes = plt.subplots(2, len(P.widths), figsize=(4 * len(P.widths), 5.5), sharey="row", squeeze=False)
for (n, w, s), g in curves.groupby(["n", "width", "seed"]):
    if s:
        continue
    col = P.widths.index(w)
    axes[0, col].plot(np.arange(1, len(losses[(n, w, s)]) + 1) * 100, losses[(n, w, s)], label=f"N={n}")
    axes[1, col].plot(g["step"], g["memorized"], marker=".", label=f"N={n}")
    axes[0, col].set(title=f"width {w}", yscale="log")
    axes[1, col].set(xlabel="step", ylim=(-0.02, 1.02))
axes[0, 0].set_ylabel("training loss")
axes[1, 0].set_ylabel("memorized fraction")
axes[0, -1].legend(fontsize=7, ncol=2)
fig.tight_layout()
plotting.save(fig, "02_training_curves")
convergence = pd.DataFrame({"memorized": curves.sort_values("step").groupby(["n", "width", "seed"])["memorized"].last(),
                            "memorized change": regimes.last_change(curves)})
convergence.insert(0, "loss drift", [regimes.loss_drift(losses[key]) for key in convergence.index])
convergence["converged"] = (convergence["loss drift"].abs() <= 0.05) & (convergence["memorized change"].abs() <= 0.05)
print(f"convergence curves: {time.perf_counter() - t0:.0f} s")
moving = convergence[~convergence["converged"]]
print(f"{len(convergence) - len(moving)} of {len(convergence)} models converged by both tests; still moving: "
      + (", ".join(f"N={n} width {w}" for n, w, _ in moving.index) or "none"))
convergence.round(3)

# %% [markdown]
# ## Sampling and scoring
#
# Each model integrates the PF-ODE (Heun, 18 steps) from the same seeds. RP uses the pixel correlation above
# 0.9 (calibrated in notebook 01). For GL we need a copy detector: on 8x8 digits a correlation cannot tell a
# copy from a close relative (a real digit's nearest *other* digit correlates 0.94 on average), so a sample
# counts as memorized when its nearest training image is more than three times closer than the second nearest
# (the ratio test of Carlini et al. 2023). GL = 1 - the memorized fraction. The correlation version of GL
# (nearest training image above 0.9) is plotted too, to show why it is not used.

# %%
t0 = time.perf_counter()
sim = metrics.backend(P.similarity, device=P.device, pixel_threshold=P.pixel_threshold)
samples = regimes.sweep_samples(models, store, seeds, P)
table = regimes.model_table(samples, P, sim)
pairs = regimes.pair_table(samples, sim)
print(f"sampling and scoring: {time.perf_counter() - t0:.0f} s")
pairs.pivot_table(index="n", columns="pair", values="rp").join(table.pivot_table(index="n", columns="width", values="gl").add_prefix("GL w")).round(3)

# %% [markdown]
# ## Figure 2: RP and GL against N
#
# The regimes are shaded from the data, not by hand: **memorization** where at least 90% of every width's
# samples are copies, **generalization** where at most 10% of every width's samples are. Error bars span the
# training seeds when the profile trains more than one.

# %%
summary = regimes.summarise(pairs)
mem_until, gen_from = regimes.regime_bounds(table)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for i, (pair, g) in enumerate(summary.groupby("pair")):
    axes[0].errorbar(g["n"], g["rp"], yerr=g["rp_err"], marker="o", capsize=2, label=pair,
                     color=plotting.pair_colour(i))
chance = summary.groupby("n")["chance"].max()
axes[0].plot(chance.index, chance.values, "k:", label="chance (max over pairs)")
axes[0].set(xscale="log", xlabel="training-set size N", ylabel="RP", ylim=(-0.02, 1.02), title="Reproducibility")
gl = table.groupby(["n", "width"])[["gl", "gl_corr"]].mean().reset_index()
for w, g in gl.groupby("width"):
    colour = plotting.width_colour(w, P.widths)
    axes[1].plot(g["n"], g["gl"], marker="o", label=f"GL, width {w}", color=colour)
    axes[1].plot(g["n"], g["gl_corr"], ls="--", alpha=0.5, color=colour)
axes[1].plot([], [], "k--", alpha=0.5, label=f"GL by correlation > {sim.default_threshold}")
axes[1].set(xscale="log", xlabel="training-set size N", ylabel="GL", ylim=(-0.02, 1.02), title="Generalization")
for ax in axes:
    plotting.shade_regimes(ax, table["n"], mem_until, gen_from)
    ax.legend(fontsize=7)
fig.tight_layout()
plotting.save(fig, "02_rp_gl_vs_n")
print(f"memorization regime up to N={mem_until}, generalization from N={gen_from}")

# %% [markdown]
# ## Samples beside their nearest training images
#
# At the smallest N every width draws the same training image for a seed; at the largest, new digits that
# still agree across widths. Each block: one row per width, then the nearest training image of the widest
# model's sample.

# %%
for n in (min(P.sizes), max(P.sizes)):
    rows = {f"width {w}": samples[(n, w, 0)][:12] for w in P.widths}
    train_n = full.subset(n).images
    _, idx = metrics.nearest(sim, rows[f"width {max(P.widths)}"], train_n)
    rows["nearest training image"] = train_n[idx]
    fig = plotting.image_grid(rows, title=f"N = {n}")
    plotting.save(fig, f"02_samples_n{n}")

# %% [markdown]
# ## The dip taken apart
#
# Why is the dip so shallow here (to about 0.5) when the paper's falls to 0.02-0.18? RP and GL above use two
# rules: two samples agree when their pixel correlation is above 0.9, and a sample is a copy when it is much
# nearer one training image than any other (the ratio test). The bars sort the seeds of each width pair by what
# the two samples are, and stack each kind's share of the agreeing seeds, so the bars add up to the RP above:
# both samples copy the same training image; both copy, but different images; only one copies, and the other
# is still nearest that same image; only one copies, the other is nearest another image; neither copies.
#
# The lines ask what the dip becomes when one rule decides both questions, as the paper does with SSCD > 0.6:
# a sample copies an image, and two samples agree, when their correlation is above one threshold $t$, set on
# real images only (a real image "copies" another real one 5% of the time). The analysis was pre-registered
# in [replications/02_dip_decomposition.md](../replications/02_dip_decomposition.md); its terms are explained in
# [notes/02_regimes.md](../notes/02_regimes.md).

# %%
t_copy = regimes.t_copy(sim, full.subset(max(P.sizes)).images)  # the largest training set of the sweep
parts = regimes.decompose(samples, P, sim, [t_copy])
depth = regimes.depth_table(parts["pairs"]).set_index("rule")
pair_names = sorted(parts["pairs"]["pair"].unique(), key=lambda p: [int(w) for w in p.split(" vs ")])
stack = ["SAME", "DIFF", "ONE near-same", "ONE rest", "NONE"]  # regimes.decompose's seed types, in plain words:
plain = dict(zip(stack, ["both copy the same image", "both copy, different images", "one copies, the other near it",
                         "one copies, the other elsewhere", "neither copies"]))
colors = dict(zip(stack, ["tab:blue", "tab:purple", "tab:orange", "tab:red", "tab:gray"]))
sizes = sorted(P.sizes)
gl_colors = dict(zip(sorted(P.widths), ["yellowgreen", "tab:green", "darkgreen", "teal"]))
fig, axes = plt.subplots(1, len(pair_names), figsize=(4.2 * len(pair_names), 3.6), sharey=True, squeeze=False)
for ax, pair in zip(axes[0], pair_names):
    types = parts["types"][(parts["types"].rule == "ratio") & (parts["types"].pair == pair)]
    bottom = np.zeros(len(sizes))
    for kind in stack:
        c = types[types.type == kind].groupby("n")["contribution"].mean().reindex(sizes).fillna(0).to_numpy()
        ax.bar(range(len(sizes)), c, bottom=bottom, color=colors[kind], alpha=0.75,
               label=f"RP from seeds where {plain[kind]}")
        bottom += c
    one = parts["pairs"][(parts["pairs"].rule == "one") & (parts["pairs"].pair == pair)].groupby("n")[["rp", "chance"]].mean()
    ax.plot(range(len(sizes)), one["rp"].reindex(sizes), "k-o", label=f"RP with one threshold ($t$ = {t_copy:.3f})")
    ax.plot(range(len(sizes)), one["chance"].reindex(sizes), "k:", label="chance at that threshold")
    gl = parts["models"][parts["models"].rule == "one"].groupby(["width", "n"])["gl"].mean()
    for w in pair.split(" vs "):
        ax.plot(range(len(sizes)), gl[int(w)].reindex(sizes), color=gl_colors[int(w)], ls="--",
                label=f"GL with one threshold, width {w}")
    ax.set(title=pair, xticks=range(len(sizes)), xticklabels=sizes, xlabel="training-set size N", ylim=(0, 1.02))
axes[0, 0].set_ylabel("RP (bars: this notebook's two rules) / GL")
legend = {}
for ax in axes[0]:
    legend.update(zip(*ax.get_legend_handles_labels()[::-1]))
legend = dict(sorted(legend.items(), key=lambda kv: not kv[0].startswith("RP from seeds")))  # the bars first
fig.tight_layout()
fig.legend(legend.values(), legend.keys(), loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=3, fontsize=7)
plotting.save(fig, "02_dip_decomposition")
ratio, one = depth.loc["ratio"], depth.loc["one"]
print(f"one threshold t = {t_copy:.4f}")
print(f"this notebook's two rules: the dip is {ratio.depth:.3f} deep; pairs where one width copies >= 90% of its "
      f"samples and the other <= 10%: {ratio.straddling or 'none'}")
print(f"one threshold: the dip is {one.depth:.3f} deep; such pairs: {one.straddling or 'none'}; their highest RP "
      f"above chance {one.E:.3f}; lowest pair RP at the smallest N {one.end_small:.3f}, at the largest "
      f"{one.end_large:.3f}")
seed_types = parts["types"][parts["types"].rule == "ratio"]
seed_types.pivot_table(index=["n", "pair"], columns="type", values="seeds").fillna(0).astype(int).rename(columns=plain)

# %% [markdown]
# What this shows:
#
# - **The two rules make the dip shallow, but not alone.** The one pair whose widths straddle the transition
#   (one copies, the other does not: widths 4 and 16 at N = 64) still agrees on 0.528 of its seeds, mostly seeds
#   where width 4's sample, not a copy, correlates above 0.9 with the image width 16 copies. Judged by one
#   threshold ($t$ = 0.976), the straddling pair (4 vs 16 at N = 128) agrees on 0.010 of seeds, the paper's
#   depth. But the same threshold lowers RP at the largest N to 0.376: two widths' new digits rarely correlate
#   above 0.976. No single pixel threshold gives the paper's whole shape (high at both ends, near chance between).
# - **A wider gap between widths does not deepen it enough**: widths 4 and 32 straddle more cleanly, but their
#   lowest RP is only 0.07 below that of 4 and 16 (0.416 against 0.488, in the replication's run).
# - **Longer training does not either**: trained three times as long (9,000 steps), the middle sizes converge,
#   and the lowest RP of widths 4 and 16 barely moves (0.488 to 0.474).
#
# The pre-registered readings behind these lines and their verdicts are in
# [notes/02_regimes.md](../notes/02_regimes.md) and the replication's result.

# %% [markdown]
# ## Models trained on disjoint data
#
# Do two models agree because they remember the same images, or because they learned the same distribution?
# Pair each model of the sweep with one trained on N *other* images: set A is the sweep's own (the first N of its
# permutation), set B the first N of a seeded draw from the images outside A's largest set, so that the two never
# share an image at any N. B's model also starts from another training seed; the pair shares only its
# architecture. While each model copies its own training set the pair can agree only by chance; once both have
# learned the distribution, the paper's mechanism says they agree like the same-data pairs above. The bars say,
# per N, on what fraction of seeds both models copy their own images, one does, or neither. At the cpu profile
# the pairs are trained at width 8 only, which keeps the cold run's training on two cores within budget (the
# mnist and paper profiles pair every width); N stops at 896, the largest set that leaves room for a second.
# The claims were pre-registered in [replications/02_disjoint_data.md](../replications/02_disjoint_data.md).

# %%
t0 = time.perf_counter()
pair_x = regimes.sweep_samples(pairs_cfg, store, seeds, P)
pairs_dis = disjoint.pair_table(pair_x, pairs_cfg, sim)
agreed = disjoint.agree(pair_x, sim)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
mean_same = summary.groupby("n")["rp"].mean()
axes[0].plot(mean_same.index, mean_same.values, "k-o", alpha=0.35, label="same data, mean over width pairs")
for w, g in pairs_dis.groupby("width"):
    colour = plotting.width_colour(w, P.widths)
    axes[0].plot(g["n"], g["rp"], marker="s", color=colour, label=f"disjoint data, width {w}")
    axes[0].plot(g["n"], g["chance"], ls=":", color=colour, label=f"its chance, width {w}")
    gl_w = table[table.width == w].groupby("n")["gl"].mean()
    axes[0].plot(gl_w.index, gl_w.values, ls="--", alpha=0.6, color=colour, label=f"GL, width {w}")
axes[0].set(xscale="log", xlabel="training-set size N", ylabel="RP / GL", ylim=(-0.02, 1.02),
            title="Agreement across disjoint training sets")
plotting.shade_regimes(axes[0], table["n"], mem_until, gen_from)
axes[0].legend(fontsize=7)
w0 = min(P.disjoint_widths)
kinds = pairs_dis[pairs_dis.width == w0].set_index("n")[list(disjoint.KINDS)]
bottom = np.zeros(len(kinds))
for kind, colour in zip(disjoint.KINDS, ["tab:blue", "tab:orange", "tab:gray"]):
    axes[1].bar(range(len(kinds)), kinds[kind], bottom=bottom, color=colour, alpha=0.75, label=kind)
    bottom += kinds[kind].to_numpy()
axes[1].set(xticks=range(len(kinds)), xticklabels=kinds.index, xlabel="training-set size N", ylim=(0, 1.02),
            ylabel="fraction of seeds", title=f"Does each model copy its own images? (width {w0})")
axes[1].legend(fontsize=7)
fig.tight_layout()
plotting.save(fig, "02_disjoint_data")
print(f"disjoint pairs: {time.perf_counter() - t0:.0f} s")
pairs_dis.round(3)

# %% [markdown]
# ## Claims
#
# Figure 2's claims, with thresholds written before the run that judges them (never tuned to pass); the
# paper's own numbers (CIFAR-10, widths 64/128/256, SSCD) stand beside ours in the table:
# 1. RP is high at the smallest N and at the full set: **>= 0.6** for every width pair at both ends
#    (`rp_smallest_n`, `rp_largest_n`: the lowest pair);
# 2. and lower in between: the lowest mean RP (over pairs) among the middle sizes is **at least 0.1 below**
#    the lower of the two ends (`dip`: the depth of the dip);
# 3. GL rises from near 0 to near 1: mean GL **<= 0.1** at the smallest N (`gl_smallest_n`) and **>= 0.9** at
#    the largest (`gl_largest_n`);
# 4. samples at the smallest N pass the memorization ratio test: **>= 90%** memorized for every width
#    (`memorized_smallest_n`: the lowest width).
#
# Ours, pre-registered in [replications/02_disjoint_data.md](../replications/02_disjoint_data.md) before the run
# that judged them:
# 5. at the smallest N the disjoint pair agrees at most like chance: RP **<= 3 x chance + 0.05**
#    (`disjoint_small_n`);
# 6. at the largest N it agrees **within 0.1** of the lowest same-data width pair at the sweep's next size
#    (`disjoint_large_n`);
# 7. the N where its RP first reaches half-way between its two ends lies **within one doubling** of the N where
#    the same width's GL first reaches 0.5 (`disjoint_tracks_gl`).
#
# At the `smoke` profile the models train for a few steps only: the table shows verdicts that mean nothing.

# %%
per_seed = regimes.per_seed(samples, P, sim)
regimes.claims(table, summary, run.claims, per_seed)  # with 95% intervals over seeds
disjoint.claims(pairs_dis, agreed, per_seed["agree"], disjoint.gl_by_width(per_seed["copies"], P.widths), run.claims)
run.finish()

# %% [markdown]
# ## What we found
#
# At the cpu profile all nine claims hold. RP between the width pairs is 0.64-0.73 at N = 16 and 0.84-0.89 at
# N = 1,797, and the mean over pairs dips to 0.56 at N = 32; GL rises from 0.00 at N = 16 to 1.00 at
# N = 1,797. 18 of the 24 models are converged by both tests; the 6 still moving are all in the middle
# (N = 64 at every width, N = 128 at widths 8 and 16, N = 256 at width 16, each with a loss drift within 3.2%),
# while the memorization regime (N <= 32) and the generalization regime (N >= 512) are converged. The shape is
# the paper's, two regimes of high RP with a dip between them (on 8x8 digits and widths 4-16 instead of
# CIFAR-10 and widths 64-256), but the dip is shallower: to 0.56 here, against RP about 0.02-0.18 at the
# paper's dip, and at the size where our models are still moving at this training budget. Over the 500 seeds
# three verdicts are marginal: the lowest pair at N = 16 (4 vs 8, 0.640) has a 95% interval of 0.598-0.678, which
# straddles its 0.6, the dip's depth, 0.123, is 0.095-0.173 against its 0.1, and the disjoint curve's distance
# from GL, 0.97 doublings, is 0.83-1.12 against its 1.
#
# **Disjoint training sets.** Two width-8 models that share no training image agree like chance while both copy
# their own images (RP 0.036 at N = 16, chance 0.004; both copy on every seed) and almost like the same-data
# pairs once neither does (0.804 at N = 896, against 0.816 for the lowest same-data pair at N = 1,024 and 0.75 at
# N = 512). The rise is late: half-way at N = 182, while width 8's GL reaches 0.5 at N = 93, so the pair stops
# copying before it agrees (at N = 128, 0.60 of seeds have neither model copying, yet RP is 0.29). The dip's
# kind of disagreement shows at N = 64 and 128, where on 0.23 and 0.34 of seeds one model copies and the other
# does not. Over three training replicates all three hold in each (`02.disjoint_small_n` 0.036 / 0.032 / 0.028,
# `02.disjoint_large_n` 0.804 / 0.782 / 0.788, `02.disjoint_tracks_gl` 0.97 / 0.97 / 0.92 doublings).

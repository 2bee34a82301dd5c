"""Figure 2's dip taken apart and measured with one rule: the commands of replications/02_dip_decomposition.md.

``analyse`` (Part 1) scores notebook 02's cpu sweep read from ``--sweep-store``: it trains nothing and writes
nothing there. ``designs`` (Part 2) trains M3 (widths 4 and 16 at N = 64-256, 9,000 steps) and M4 (width 32 at
N = 128-512, 3,000 steps) into ``$REPRO_STORE`` and scores them against the sweep's models, with Part 1's t_copy.
Every table goes to ``--out``; ``summary.md`` holds the verdict lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from reprolib import data, fitting, metrics, profiles, regimes, zoo
from reprolib.store import Store

THRESHOLDS = [0.80, 0.85, 0.90, 0.95, 0.97, 0.98, 0.99]
M3 = dict(sizes=[64, 128, 256], widths=[4, 16], steps=9000)
M4 = dict(sizes=[128, 256, 512], widths=[32], steps=3000)


def md(df) -> str:
    """A table for summary.md (fixed-width text in a code block)."""
    return "```\n" + df.to_string() + "\n```"


def say(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def sweep(store_root: str):
    """Notebook 02's cpu settings, models, seeds, and its store sealed (read-only); stops if anything is missing."""
    P = profiles.settings("02", "cpu")
    models, seeds = zoo.regimes(P), list(range(100_000, 100_000 + P["seeds"]))
    store = regimes.Sealed(Store(store_root))
    try:
        for cfg in models.values():
            fitting.is_fitted(cfg, store)
        samples = regimes.sweep_samples(models, store, seeds, P)
    except regimes.Missing as err:
        sys.exit(f"--sweep-store {store_root} lacks notebook 02's cpu sweep at this commit ({err}). Run notebook 02 "
                 f"at cpu first (make figures, or paper_figures.py --only 02 --profile cpu), then point --sweep-store "
                 f"at its store.")
    return P, models, seeds, store, samples


def one_rule_tables(out: Path, d: dict, prefix: str = "") -> None:
    cols = ["t", "n", "pair", "rp", "chance"]
    d["types"].to_csv(out / f"{prefix}types.csv", index=False)
    d["pairs"][d["pairs"].rule == "one"][cols].to_csv(out / f"{prefix}one_rule.csv", index=False)
    d["models"][d["models"].rule == "one"][["t", "n", "width", "copy", "gl"]].to_csv(
        out / f"{prefix}models_one_rule.csv", index=False)


def summary_append(out: Path, title: str, lines: list[str]) -> None:
    path = out / "summary.md"
    text = path.read_text() if path.exists() else "# Figure 2's dip, taken apart (replications/02_dip_decomposition.md)\n"
    head = f"\n## {title}\n"
    if head in text:  # a rerun replaces its own section
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + (text[nxt:] if nxt >= 0 else "")
    path.write_text(text.rstrip("\n") + "\n" + head + "\n" + "\n".join(lines) + "\n")


def analyse(args) -> None:
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    say(f"Part 1: reading notebook 02's sweep from {args.sweep_store}")
    P, models, seeds, store, samples = sweep(args.sweep_store)
    sim = metrics.PixelSimilarity()
    full = data.load(P["data"])
    t = regimes.t_copy(sim, full.images)
    (out / "t_copy.json").write_text(json.dumps({"t_copy": t, "quantile": 0.95, "images": len(full.images)}))
    say(f"t_copy = {t:.4f}; scoring 24 models at {len(THRESHOLDS) + 1} thresholds")
    d = regimes.decompose(samples, P, sim, THRESHOLDS + [t])
    one_rule_tables(out, d)
    depth = regimes.depth_table(d["pairs"])
    depth.to_csv(out / "depth.csv", index=False)
    d["alike"].to_csv(out / "alike.csv", index=False)

    # M1's check: notebook 02's table, recomputed from the same banks
    ratio = d["pairs"][d["pairs"].rule == "ratio"]
    mem = d["models"][d["models"].rule == "ratio"]
    check = ratio.pivot_table(index="n", columns="pair", values="rp").join(
        mem.pivot_table(index="n", columns="width", values="copy").add_prefix("memorized w"))
    check.round(3).to_csv(out / "check_notebook02.csv")

    types = d["types"]
    at = types[(types.rule == "ratio")]
    row = depth[depth.rule == "ratio"].iloc[0]
    tc = depth[(depth.rule == "one") & (depth.t == t)].iloc[0]
    one = d["pairs"][(d["pairs"].rule == "one") & (d["pairs"].t == t)]
    gl_tc = d["models"][(d["models"].rule == "one") & (d["models"].t == t)]
    lines = [f"Wall time {time.perf_counter() - t0:.0f} s. t_copy = {t:.4f} (95th percentile over the 1,797 digits of "
             f"the highest correlation with any other digit).", "",
             "M1 check, notebook 02's table recomputed (RP at Pearson > 0.9, memorized by the ratio test):", "",
             check.round(3).pipe(md), "",
             f"Notebook 02's rule: depth {row.depth:.3f} (relative {row.relative_depth:.3f}), ends' lowest pair "
             f"{row.end_small:.3f} / {row.end_large:.3f}, straddling: {row.straddling or 'none'}; E = {row.E:.3f}.", ""]
    cross = ratio[ratio.straddles]
    for n, pair in zip(cross["n"], cross["pair"]):
        g = at[(at.n == n) & (at.pair == pair)].set_index("type")
        lines.append(f"- straddling at notebook 02's rule, N = {n}, {pair}: ONE is {g.loc['ONE', 'seeds']} seeds, share of "
                     f"agreeing {g.loc['ONE', 'share']:.3f}, RP within {g.loc['ONE', 'rp']:.3f}; near-copies of the "
                     f"same image {g.loc['ONE', 'near_same']:.3f} of ONE, RP within them "
                     f"{g.loc['ONE near-same', 'rp']:.3f}, within the rest {g.loc['ONE rest', 'rp']:.3f}; agreeing "
                     f"ONE seeds that are near-same: "
                     f"{g.loc['ONE near-same', 'share'] / g.loc['ONE', 'share'] if g.loc['ONE', 'share'] else float('nan'):.3f}")
    lines += ["", "Types at notebook 02's rule: seeds of each type, RP within it, its share of the agreeing seeds:", "",
              at[at.type.isin(regimes.TYPES)].pivot_table(index=["n", "pair"], columns="type",
                                                          values=["seeds", "rp", "share"]).round(3).pipe(md), "",
              "Fraction of the 24 x 500 samples that the one rule's copy test and the ratio test classify alike:", "",
              d["alike"].round(3).pipe(md), "",
              "Depth and E at every rule:", "", depth.drop(columns="straddling").round(3).pipe(md), "",
              f"One rule at t_copy: RP per pair and N, chance; GL per width:", "",
              one.pivot_table(index="n", columns="pair", values=["rp", "chance"]).round(3).pipe(md), "",
              gl_tc.pivot_table(index="n", columns="width", values="gl").round(3).pipe(md), "",
              f"Straddling at t_copy: {tc.straddling or 'none'}.", ""]
    v = regimes.rules_verdict(bool(tc.straddling), tc.E, tc.ends)
    lines += [f"**Reading 1 (rules): {v}** — (a) straddles: {bool(tc.straddling)}, (b) E_t_copy = {tc.E:.3f} "
              f"(<= 0.2: {tc.E <= 0.2}), (c) ends' lowest pair RP_t_copy = {tc.end_small:.3f} (N = 16) / "
              f"{tc.end_large:.3f} (N = 1,797), >= 0.6: {tc.ends >= 0.6}.",
              f"Claims 02.straddle_rp and 02.ends_one_rule: {'added (both hold)' if v == 'supported' else 'not added'}."]
    (out / "verdicts.json").write_text(json.dumps({"rules": v, "E": tc.E, "ends": tc.ends, "t_copy": t}))
    summary_append(out, "Part 1: notebook 02's models", lines)
    say(f"Part 1 done in {time.perf_counter() - t0:.0f} s: reading 1 {v}; {out / 'summary.md'}")


def designs(args) -> None:
    t0 = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    P, sweep_models, seeds, sweep_store, sweep_samples = sweep(args.sweep_store)
    store = Store()
    if Path(store.root).resolve() == Path(args.sweep_store).resolve():
        sys.exit("REPRO_STORE is the sweep store: Part 2 trains into a store of its own.")
    P3 = profiles.settings("02", "cpu", sizes=M3["sizes"], widths=M3["widths"],
                           steps={n: M3["steps"] for n in M3["sizes"]})
    P4 = profiles.settings("02", "cpu", sizes=M4["sizes"], widths=M4["widths"],
                           steps={n: M4["steps"] for n in M4["sizes"]})
    m3, m4 = zoo.regimes(P3), zoo.regimes(P4)
    say(f"Part 2: training {len(m3) + len(m4)} models into {store.root}, {P['n_jobs']} at a time")
    fitting.fit_all([*m3.values(), *m4.values()], store, P)
    t_train = time.perf_counter() - t0
    say(f"training done in {t_train:.0f} s; sampling snapshots")

    full = data.load(P["data"])
    banks, conv = {}, []
    for design, models, steps in (("M3", m3, range(2000, M3["steps"] + 1, 1000)),
                                  ("M4", m4, range(1000, M4["steps"] + 1, 1000))):
        for (n, w, s), cfg in models.items():
            train_n = full.subset(n).images
            memorized = {}
            for step in steps:
                banks[(design, n, w, step)] = x = regimes.bank(cfg, step, store, seeds, P)
                memorized[step] = float(metrics.memorized(x, train_n).double().mean())
            losses = fitting.training_losses(cfg, store)
            for step in steps:
                row = dict(design=design, n=n, width=w, step=step, memorized=memorized[step])
                if step - 1000 in memorized:
                    row.update(regimes.convergence(memorized, losses, step))
                conv.append(row)
            say(f"{design} N={n} width {w}: memorized " + ", ".join(f"{k}: {v:.2f}" for k, v in memorized.items()))
    t_sample = time.perf_counter() - t0 - t_train
    conv = pd.DataFrame(conv)
    conv.to_csv(out / "converge.csv", index=False)

    t_file = out / "t_copy.json"
    if not t_file.exists():
        sys.exit(f"{t_file} is missing: run `analyse` first (Part 1 computes t_copy).")
    t = json.loads(t_file.read_text())["t_copy"]
    sim = metrics.PixelSimilarity()
    rows = []

    def score(design, n, step, group, pairs=None):
        d = regimes.decompose(group, P, sim, THRESHOLDS + [t])
        for (rule, at, pair), g in d["pairs"].groupby(["rule", "t", "pair"]):
            if pairs and pair not in pairs:
                continue
            ty = d["types"]
            ty = ty[(ty.rule == rule) & (ty.t == at) & (ty.pair == pair) & ty.type.isin(regimes.TYPES)]
            rows.append(dict(design=design, n=n, pair=pair, step=step, rule=rule, t=at, rp=g["rp"].iloc[0],
                             chance=g["chance"].iloc[0], straddles=bool(g["straddles"].iloc[0]),
                             types=" ".join(f"{a}:{b}" for a, b in zip(ty["type"], ty["seeds"]))))

    # M3: 4 vs 16 at every snapshot from 3,000, and its 3,000-step snapshots against notebook 02's models
    for n in M3["sizes"]:
        for step in range(3000, M3["steps"] + 1, 1000):
            score("M3", n, step, {(n, w, 0): banks[("M3", n, w, step)] for w in M3["widths"]})
        for w in M3["widths"]:
            rows.append(dict(design="M3 check", n=n, pair=f"{w} at 3,000 vs notebook 02", step=3000, rule="ratio",
                             t=0.9, rp=metrics.rp_score(sim, banks[("M3", n, w, 3000)], sweep_samples[(n, w, 0)]),
                             chance=float("nan")))
    # M4: width 32 at 3,000 steps beside notebook 02's widths of the same N
    for n in M4["sizes"]:
        group = {(n, w, 0): sweep_samples[(n, w, 0)] for w in P["widths"]}
        group[(n, 32, 0)] = banks[("M4", n, 32, M4["steps"])]
        score("M4", n, M4["steps"], group)
    scored = pd.DataFrame(rows)
    scored.to_csv(out / "designs.csv", index=False)
    t_score = time.perf_counter() - t0 - t_train - t_sample

    m3c = conv[(conv.design == "M3") & conv["converged"].notna()]
    k = regimes.first_converged(m3c.assign(converged=m3c["converged"].astype(bool)), 4000)
    lines = [f"Wall time: training {t_train:.0f} s, sampling {t_sample:.0f} s, scoring {t_score:.0f} s "
             f"(t_copy = {t:.4f} from Part 1).", "", "Convergence (notebook 02's test at each snapshot):", "",
             conv.round(3).pipe(md), "", f"M3 k_N (first snapshot from 4,000 where both widths pass): "
             + ", ".join(f"N={n}: {v or 'not converged within budget'}" for n, v in k.items()), ""]
    verdicts = {}
    for rule, at, label in (("ratio", 0.9, "notebook 02's rule"), ("one", t, "t_copy")):
        s = scored[(scored.rule == rule) & (scored.t == at)]
        m4s = s[s.design == "M4"]
        d_w = regimes.shift(m4s[m4s.pair == "4 vs 32"]["rp"], m4s[m4s.pair == "4 vs 16"]["rp"])
        m3s = s[(s.design == "M3") & (s.pair == "4 vs 16")]
        conv_n = [n for n, v in k.items() if v]
        after = [m3s[(m3s.n == n) & (m3s.step == k[n])]["rp"].iloc[0] for n in conv_n]
        before = [m3s[(m3s.n == n) & (m3s.step == 3000)]["rp"].iloc[0] for n in conv_n]
        d_c = regimes.shift(after, before)
        last = regimes.shift(m3s[m3s.step == M3["steps"]]["rp"], m3s[m3s.step == 3000]["rp"])
        lines += [f"### At {label} (t = {at:.4f})", "",
                  "M4 (step 3,000): RP / chance per pair:", "",
                  m4s.pivot_table(index="n", columns="pair", values="rp").round(3).pipe(md), "",
                  "straddling pairs: " + (", ".join(f"N={n} {p}" for n, p in zip(m4s[m4s.straddles]["n"],
                                                                                 m4s[m4s.straddles]["pair"])) or "none"),
                  "", f"D_w = {d_w:.3f}", "",
                  "M3, 4 vs 16 per snapshot:", "",
                  m3s.pivot_table(index="step", columns="n", values="rp").round(3).pipe(md), "",
                  "straddling: " + (", ".join(f"N={n} step {st}" for n, st in zip(m3s[m3s.straddles]["n"],
                                                                               m3s[m3s.straddles]["step"])) or "none"),
                  "", f"D_c = {d_c:.3f} over converged N {conv_n or 'none'}; at 9,000 steps over all three N "
                      f"(direction only): {last:.3f}", ""]
        verdicts[rule] = dict(d_w=d_w, d_c=d_c, d_last=last)
    gap = regimes.shift_verdict(verdicts["ratio"]["d_w"])
    conv_v = regimes.shift_verdict(verdicts["ratio"]["d_c"], opposite=True)
    if conv_v == "not testable":
        conv_v = "not testable within budget"
    part1 = json.loads((out / "verdicts.json").read_text()) if (out / "verdicts.json").exists() else None
    lines += ["M3 check, RP (Pearson > 0.9) of the long runs' 3,000-step snapshot against notebook 02's model:", "",
              scored[scored.design == "M3 check"][["n", "pair", "rp"]].round(3).pipe(md), "",
              f"**Reading 2 (gap): {gap}** (D_w = {verdicts['ratio']['d_w']:.3f} at notebook 02's rule, "
              f"{verdicts['one']['d_w']:.3f} at t_copy).",
              f"**Reading 3 (convergence): {conv_v}** (D_c = {verdicts['ratio']['d_c']:.3f} at notebook 02's rule, "
              f"{verdicts['one']['d_c']:.3f} at t_copy)."]
    if part1:
        v4 = regimes.digits_verdict(part1["rules"], gap, conv_v, part1["E"])
        lines.append(f"**Reading 4 (digits): {v4}** (reading 1: {part1['rules']}, E_t_copy = {part1['E']:.3f}).")
    summary_append(out, "Part 2: two changes of design", lines)
    say(f"Part 2 done in {time.perf_counter() - t0:.0f} s; {out / 'summary.md'}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn in (("analyse", analyse), ("designs", designs)):
        p = sub.add_parser(name)
        p.add_argument("--sweep-store", required=True, help="store of notebook 02's latest cpu run (read only)")
        p.add_argument("--out", required=True, help="folder of the tables and summary.md")
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()

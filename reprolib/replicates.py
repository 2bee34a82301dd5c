"""Claims across training replicates: how a verdict varies between training runs, not only between sampling seeds.

A training replicate r (the setting ``replicate``, ``profiles.training_seed``) trains every model again with its
training seeds moved, on the same data, and samples it on the same seeds. ``paper_figures.py --replicates R`` runs
every notebook at replicates 0 .. R-1 and hands their claims to ``combine``, which gives each claim:

- its value in each replicate, their range, and in how many of them it holds (k of R);
- a two-level interval (``two_level``): the replicates resampled, then the seeds within each; for a claim between
  models that carries its replicate level crossed over every pairing of replicates (``crossed``), each training's
  replicates resampled on their own;
- its verdict by the rule pre-registered in replications/training_replicates.md: the verdict of the majority of
  the replicates; a claim whose verdict differs between replicates is *unstable*.

The combined record, ``results/claims_<profile>_replicates.json`` (``to_json``), names the unstable claims, which
a single-replicate run reads (``unstable``) so that a verdict one training run decides is listed, not failed.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .paths import repo_root


def two_level(values, draws=None, level: float = 0.95, resamples: int = 2000, seed: int = 0, between=None,
              dof=None):
    """(mean, low, high): the mean of a claim's values over R training replicates and its ``level`` interval, by a
    two-level bootstrap (Davison & Hinkley 1997, sec. 3.8): R replicates drawn with replacement, then in each a
    resample of its seeds (one of its seed bootstrap's ``draws``, ``claims.Interval``; a replicate without draws
    contributes its value).

    The two levels are read apart. Each replicate's value already holds its seed noise, so the spread of the
    replicates alone measures training and seeds together; adding the seed level on top would count the seeds
    twice (the interval then covers 98% where it says 95%, at R = 3). So the half-width is the replicate level's,
    made a Student-t interval for small R (Hesterberg 2015, the expanded percentile interval: t_{R-1} sqrt(R /
    (R-1)) times the bootstrap's sd), and never narrower than the seed level's own (z times the sd of the mean of
    R seed resamples): replicates that agree more closely than their seeds can tell do not make the interval
    vanish. One replicate (R = 1) gives the percentile interval of its seed bootstrap.

    ``values``: (R,) or (studies, R) for many studies at once; ``draws``: None, or (R, K) / (studies, R, K).
    ``between`` and ``dof``: the replicate level resampled otherwise, with its degrees of freedom (``crossed``:
    each training's replicates on their own), (B,) or (studies, B); by default the replicates resampled whole,
    R - 1."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    single = v.ndim == 1
    v = np.atleast_2d(v)
    d = v[..., None] if draws is None else np.asarray(draws, dtype=float).reshape(v.shape + (-1,))
    studies, R = v.shape
    rng = np.random.default_rng(seed)
    rows = np.arange(studies)[:, None, None]
    outer = rng.integers(0, R, (studies, resamples, R))
    inner = rng.integers(0, d.shape[-1], (studies, resamples, R))
    if between is None:
        between = v[rows, outer].mean(-1)  # the replicates resampled
    between = np.atleast_2d(np.asarray(between, dtype=float))
    dof = np.broadcast_to(np.asarray(R - 1 if dof is None else dof, dtype=float), (studies,))
    within = (d[rows, outer, inner] - v[rows, outer]).mean(-1)  # then the seeds within each, as a deviation
    mean, tail = v.mean(1), (1 - level) / 2
    if R == 1:
        low, high = np.quantile(between + within, tail, axis=1), np.quantile(between + within, 1 - tail, axis=1)
    else:
        half = np.maximum(stats.t.ppf(1 - tail, dof) * math.sqrt(R / (R - 1)) * between.std(1, ddof=1),
                          stats.norm.ppf(1 - tail) * within.std(1, ddof=1))
        low, high = mean - half, mean + half
    return (float(mean[0]), float(low[0]), float(high[0])) if single else (mean, low, high)


class Crossed(NamedTuple):
    """``crossed``'s replicate level: ``draws`` (resamples,) and ``dof`` for ``two_level``; ``shares`` (lineages,):
    each lineage's part of the summed variances, what its own replicates move."""

    draws: np.ndarray
    dof: float
    shares: np.ndarray


def crossed(rates, groups, reduce=np.min, resamples: int = 2000, seed: int = 0):
    """The replicate level of a claim between models, each training's replicates resampled on its own
    (replications/training_replicates.md, addendum): ``Crossed`` (draws, dof, shares), the first two for
    ``two_level``'s ``between`` and ``dof``.

    ``rates``: (pairs, R, R) or (studies, pairs, R, R), the value of each pair of rows with its first row from
    training replicate r and its second from s (on all seeds); ``groups``: (pairs, 2) ints, the training lineage of
    each side (rows of one lineage share a replicate: only their diagonal is read). A resample draws R replicates
    per lineage with replacement; world i pairs every lineage's i-th draw; the claim is ``reduce`` over the pairs
    in each world, averaged over the worlds. ``dof`` is Satterthwaite's (Welch 1947): each lineage resampled alone
    gives its share v_g of the variance with R - 1 degrees of freedom, dof = (R - 1) (sum v_g)^2 / sum v_g^2."""
    r = np.asarray(rates, dtype=float)
    single = r.ndim == 3
    r = r[None] if single else r
    g = np.asarray(groups, dtype=int)
    pairs, R, G = r.shape[1], r.shape[2], int(g.max()) + 1
    rng = np.random.default_rng(seed)
    p = np.arange(pairs)[:, None]

    def worlds(idx):  # idx: (resamples, G, R), the replicate of each lineage in each world
        values = r[:, p, idx[:, g[:, 0]], idx[:, g[:, 1]]]  # (studies, resamples, pairs, R)
        return reduce(values, axis=-2).mean(-1)

    draws = worlds(rng.integers(0, R, (resamples, G, R)))
    alone = np.stack([worlds(np.where(np.arange(G)[None, :, None] == k, rng.integers(0, R, (resamples, G, R)),
                                      np.arange(R))).var(-1) for k in range(G)], -1)  # (studies, G)
    total = alone.sum(-1)
    dof = np.where(total > 0, (R - 1) * total ** 2 / np.maximum((alone ** 2).sum(-1), 1e-300), R - 1)
    shares = alone / np.where(total > 0, total, 1)[:, None]
    return Crossed(draws[0], float(dof[0]), shares[0]) if single else Crossed(draws, dof, shares)


def every_world(rates, groups, reduce=np.min, most: int = 100_000, seed: int = 0):
    """The claim in every world, each lineage of ``groups`` at each of its R replicates: (values (W,), replicates
    (W, G)), the lineages in ``np.unique(groups)``'s order. All R^G worlds where there are at most ``most``, else
    ``most`` of them drawn at random."""
    r = np.asarray(rates, dtype=float)
    ids, g = np.unique(np.asarray(groups, dtype=int), return_inverse=True)
    g, R = g.reshape(-1, 2), r.shape[-1]
    if R ** len(ids) <= most:
        idx = np.array(list(itertools.product(range(R), repeat=len(ids))))
    else:
        idx = np.random.default_rng(seed).integers(0, R, (most, len(ids)))
    return reduce(r[np.arange(len(g)), idx[:, g[:, 0]], idx[:, g[:, 1]]], axis=-1), idx


@dataclass(frozen=True)
class Replicated:
    """One claim over R training replicates (``combine``)."""

    id: str
    statement: str
    source: str
    op: str
    threshold: float
    values: tuple  # per replicate, NaN where it could not be measured
    holds: tuple  # per replicate
    mean: float
    low: float | None  # the two-level interval (``two_level``)
    high: float | None
    expected: bool  # the verdict recorded for the profile (expected_verdicts.toml)
    judged: bool
    crossed: bool = False  # the interval resampled each training's replicates on its own (``crossed``)

    @property
    def k(self) -> int:
        return sum(self.holds)

    @property
    def verdict(self) -> bool:
        """The majority's verdict (replications/training_replicates.md); a tie does not hold (and is not
        ``decided``)."""
        return 2 * self.k > len(self.holds)

    @property
    def decided(self) -> bool:
        """Whether the replicates have a majority (an even count can split evenly)."""
        return 2 * self.k != len(self.holds)

    @property
    def unstable(self) -> bool:
        return 0 < self.k < len(self.holds)

    @property
    def unexpected(self) -> bool:
        """The majority's verdict differs from the record's: what changes ``expected_verdicts.toml``."""
        return self.judged and self.decided and self.verdict != self.expected

    def spread(self) -> str:
        """"k of R hold, range a-b": what a single run's table says of an unstable claim."""
        finite = [x for x in self.values if not math.isnan(x)]
        span = f"{min(finite):.3f}-{max(finite):.3f}" if finite else "n/a"
        return f"{self.k} of {len(self.holds)} replicates hold, range {span}"


def combine(runs: list[dict]) -> dict[str, list[Replicated]]:
    """{stem: [Replicated]} of ``runs``, one {stem: [claims.Claim]} per replicate (0 first); a claim missing from
    a replicate (its notebook failed) counts there as not measured."""
    out: dict[str, list[Replicated]] = {}
    for stem, first in runs[0].items():
        rows = []
        for c in first:
            found = [next((x for x in run.get(stem, []) if x.id == c.id), None) for run in runs]
            values = np.array([math.nan if x is None else x.value for x in found])
            holds = tuple(bool(x is not None and x.holds) for x in found)
            measured = [(x.value, x.draws or (x.value,)) for x in found if x is not None and not math.isnan(x.value)]
            low = high = None
            mean = math.nan
            # a claim between models carries its replicate level crossed over every replicate's trainings: the
            # same in each replicate's run, so the first that has it gives it (only when all were measured)
            cross = next((x for x in found if x is not None and x.between), None)
            cross = cross if len(measured) == len(runs) > 1 else None
            if measured:
                k = max(len(dr) for _, dr in measured)
                # a replicate without a seed bootstrap (or with one of another size) contributes its value alone
                draws = np.array([dr if len(dr) == k else (val,) * k for val, dr in measured])
                mean, low, high = two_level([val for val, _ in measured], draws, between=cross and cross.between,
                                            dof=cross and cross.between_dof)
                low, high = (low, high) if math.isfinite(low) and math.isfinite(high) else (None, None)
            rows.append(Replicated(c.id, c.statement, c.source, c.op, c.threshold, tuple(values.tolist()), holds,
                                   mean, low, high, c.expected, c.judged, cross is not None))
        out[stem] = rows
    return out


def _num(x) -> str:
    return "n/a" if x is None or math.isnan(x) else (f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.3f}")


def summary(by_stem: dict[str, list[Replicated]], profile: str) -> list[str]:
    """Lines that say how many claims hold by the majority rule over the replicates, which are unstable (k of R,
    range), and which majority verdicts differ from the record."""
    rows = [r for rs in by_stem.values() for r in rs]
    R = len(rows[0].values) if rows else 0
    if rows and not rows[0].judged:
        return [f"- Over {R} training replicates: not judged at {profile}, the models are barely trained."]
    paper = [r for r in rows if not r.source.startswith("ours")]
    ours = [r for r in rows if r.source.startswith("ours")]
    unstable = [r for r in rows if r.unstable]
    lines = [f"- Over {R} training replicates (replications/training_replicates.md), by the majority's verdict: the "
             f"paper's claims {sum(r.verdict for r in paper)} of {len(paper)} hold, ours {sum(r.verdict for r in ours)}"
             f" of {len(ours)}" + (f"; {sum(not r.decided for r in rows)} split evenly (no majority)"
                                   if any(not r.decided for r in rows) else "") + ".",
             f"- Unstable (the replicates' verdicts differ): {len(unstable)}"]
    lines += [f"  - {r.id}: {r.spread()}, needs {r.op} {_num(r.threshold)}" for r in unstable]
    changed = [r for r in rows if r.unexpected]
    if changed:
        lines.append(f"- Majority verdicts that differ from reprolib/expected_verdicts.toml [{profile}]: "
                     f"{len(changed)}")
        lines += [f"  - {r.id}: {'holds' if r.verdict else 'does not hold'} in {r.k} of {R}, recorded as "
                  f"{'holding' if r.expected else 'not holding'}" for r in changed]
    return lines


def report(by_stem: dict[str, list[Replicated]], profile: str, here: str = "") -> str:
    """The replicates report in Markdown: ``summary``, then per notebook each claim's value in every replicate,
    the two-level interval, k of R and the verdict."""
    rows = [r for rs in by_stem.values() for r in rs]
    R = len(rows[0].values) if rows else 0
    lines = [f"# Claims at the `{profile}` profile over {R} training replicates", ""]
    if here:
        lines.append(f"- Machine: {here}")
    lines.append("- Each replicate trains every model again with its training seeds moved (initial weights, "
                 "minibatches, training noise), on the same data, and samples it on the same seeds. A verdict is "
                 "the majority's; the interval resamples the replicates, then the seeds within each "
                 "(`replicates.two_level`); marked x, a claim between models whose interval resamples each "
                 "training's replicates on its own (`replicates.crossed`).")
    lines += summary(by_stem, profile)
    head = ["claim", "threshold"] + [f"r{i}" for i in range(R)] + ["mean [two-level 95%]", "k of R", "verdict"]
    for stem, rs in by_stem.items():
        lines += ["", f"## {stem}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rs:
            interval = f" [{_num(r.low)}, {_num(r.high)}]" if r.low is not None else ""
            interval += " x" if r.crossed and interval else ""
            word = ("holds" if r.verdict else "does not hold") if r.decided else "tie"
            word += " (unstable)" if r.unstable else ""
            word += " (differs from the record)" if r.unexpected else ""
            lines.append("| " + " | ".join([r.id, f"{r.op} {_num(r.threshold)}", *map(_num, r.values),
                                             _num(r.mean) + interval, f"{r.k} of {R}", word]) + " |")
    return "\n".join(lines) + "\n"


def to_json(by_stem: dict[str, list[Replicated]], machine: dict) -> str:
    """The combined record: the machine, and per claim its values, verdicts, interval and whether it is unstable."""
    def row(r: Replicated) -> dict:
        return {"id": r.id, "source": r.source, "statement": r.statement, "op": r.op, "threshold": r.threshold,
                "values": [None if math.isnan(x) else x for x in r.values], "holds": list(r.holds),
                "mean": None if math.isnan(r.mean) else r.mean, "low": r.low, "high": r.high, "k": r.k,
                "verdict": r.verdict, "unstable": r.unstable, "spread": r.spread(), "expected": r.expected,
                "judged": r.judged, "crossed": r.crossed}

    rows = [r for rs in by_stem.values() for r in rs]
    return json.dumps({"machine": machine, "replicates": len(rows[0].values) if rows else 0,
                       "claims": {stem: [row(r) for r in rs] for stem, rs in by_stem.items()}}, indent=1,
                      allow_nan=False)


def from_json(text: str) -> dict[str, list[Replicated]]:
    """The combined claims of a record ``to_json`` wrote (one written before it kept ``expected`` and ``judged``:
    judged, as recorded)."""
    def nan(x):
        return float("nan") if x is None else x

    return {stem: [Replicated(row["id"], row["statement"], row["source"], row["op"], row["threshold"],
                              tuple(nan(x) for x in row["values"]), tuple(row["holds"]), nan(row["mean"]),
                              row["low"], row["high"], row.get("expected", row["verdict"]), row.get("judged", True),
                              row.get("crossed", False))
                   for row in rows] for stem, rows in json.loads(text)["claims"].items()}


def record_file(profile: str) -> Path | None:
    """The committed replicate record: ``REPRO_REPLICATES`` when set (tests), else
    ``results/claims_<profile>_replicates.json`` of the checkout (None outside one)."""
    if os.environ.get("REPRO_REPLICATES"):
        return Path(os.environ["REPRO_REPLICATES"])
    root = repo_root()
    return root / "results" / f"claims_{profile}_replicates.json" if root is not None else None


def unstable(profile: str, path: Path | str | None = None) -> dict[str, str]:
    """{claim id: "k of R replicates hold, range a-b"} of the claims the replicate record of ``profile`` found
    unstable; empty when there is none, or when it cannot be read (a line says so)."""
    path = Path(path) if path else record_file(profile)
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {row["id"]: row["spread"] for rows in data["claims"].values() for row in rows if row["unstable"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"ignored the replicate record {path}: not one ({type(err).__name__}: {err})")
        return {}

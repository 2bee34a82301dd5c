"""Claims as data: what a notebook checks, the value it measured, the threshold and the verdict.

A notebook records each claim with ``Claims.check``; ``Claims.show`` renders them as its last table and hands
them to ``paper_figures.py`` inside the executed notebook (a display output of type ``MIME``), which collects every
notebook's claims into one report (``report``) and compares each verdict with the one recorded for the profile in
``expected_verdicts.toml`` (``expected``): a paper claim recorded as not holding at a profile is a finding, not a
failure; a verdict that differs from the record is a regression, in either direction.

The record of a profile is those verdicts plus the values of the run that made them,
``results/claims_<profile>.json`` (``record``), which names the machine layout it was made on (``machine.layout``:
device, GPU, thread counts). A run on another layout is a *replicate*: there float32 sums are split otherwise and
give other bits, so a value near its threshold may cross it; a verdict that differs from the record is then
reported beside the record's value, with its margin, and not taken for a regression.

A claim measured over sampling seeds carries the value's 95% bootstrap interval over them (``bootstrap``); one
whose interval straddles its threshold is *marginal*, marked in the table and the summary. The verdict stays
the point value's against the threshold written before the run.

Claim ids are ``<notebook>.<name>`` and stay fixed across runs, so records and reports can name them.
"""

from __future__ import annotations

import html
import json
import math
import operator
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import machine, replicates
from .paths import repo_root

MIME = "application/vnd.reprolib.claims+json"
EXPECTED_FILE = Path(__file__).with_name("expected_verdicts.toml")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
# Values are compared with their thresholds at this many decimals: a claim's value is often a difference of two
# fractions of seeds, which a float lands a round-off below its exact value (0.745 - 0.645 = 0.09999999999999998,
# against ">= 0.1"); no claim's resolution is finer (1 / seeds, seeds <= 10^4).
DECIMALS = 9


def _compare(op: str, value: float, threshold: float) -> bool:
    return bool(_OPS[op](round(value, DECIMALS), round(threshold, DECIMALS)))


@dataclass(frozen=True)
class Claim:
    id: str  # "<notebook>.<name>", stable across runs
    statement: str  # the claim in words, threshold included
    source: str  # "paper, Fig. 2" or "ours, replications/<file>.md"
    value: float  # what this run measured (the quantity compared with the threshold)
    op: str  # one of >=, <=, >, <
    threshold: float
    holds: bool
    profile: str
    judged: bool  # whether verdicts mean anything at this profile (not at smoke: models barely trained)
    expected: bool  # the verdict recorded for this profile (holds, unless expected_verdicts.toml says not)
    paper: str = ""  # the paper's own number, where it gives one
    detail: str = ""  # other measured numbers that explain the value
    replicate: bool = False  # measured on another machine layout than the record's (``record``)
    low: float | None = None  # the value's 95% bootstrap interval over the seeds (``bootstrap``), where given
    high: float | None = None
    # the bootstrap distribution over the seeds that interval was read off, as DRAW_QUANTILES of its quantiles:
    # what a second level of resampling draws from (``replicates.two_level``)
    draws: tuple | None = None
    unstable: str = ""  # its verdict differs between training replicates (``replicates``): k of R, and the range
    # a claim between models in a run of replicates: its replicate level with each training resampled on its own
    # (``replicates.crossed``), as DRAW_QUANTILES quantiles, and that level's degrees of freedom
    between: tuple | None = None
    between_dof: float | None = None

    @property
    def ours(self) -> bool:
        return self.source.startswith("ours")

    @property
    def unexpected(self) -> bool:
        return self.judged and self.holds != self.expected

    @property
    def margin(self) -> float:
        """By how much the claim holds: value - threshold for >= and >, threshold - value for <= and <
        (negative: by how much it misses; NaN when the value could not be measured)."""
        return self.value - self.threshold if self.op in (">=", ">") else self.threshold - self.value

    @property
    def marginal(self) -> bool:
        """Whether the value's 95% interval straddles the threshold, its two ends getting different verdicts: a
        resampling of the seeds could turn the verdict (an end on the threshold of a claim "<= t" still holds).
        The verdict itself stays the point value's, against the threshold written before the run."""
        if self.low is None or math.isnan(self.low) or math.isnan(self.high):
            return False
        return _compare(self.op, self.low, self.threshold) != _compare(self.op, self.high, self.threshold)

    def verdict(self) -> str:
        word = "holds" if self.holds else "does not hold"
        if self.marginal:
            word += " (marginal)"
        if not self.judged:
            return f"{word} (not judged at {self.profile})"
        if self.unstable:
            word += f" (unstable across training replicates: {self.unstable})"
        recorded = f"recorded as {'holding' if self.expected else 'not holding'} at {self.profile}"
        if self.unexpected and self.unstable:
            return f"{word}: differs from the majority of the replicates ({recorded})"
        if self.unexpected and self.replicate:
            return (f"{word}: differs from the record (a replicate: another machine layout or training run; "
                    f"{recorded})")
        if self.unexpected:
            return f"{word}: UNEXPECTED, {recorded}"
        return word if self.holds else f"{word} (recorded finding at {self.profile})"

    def line(self) -> str:
        """One line for a console: id, verdict, value against threshold."""
        return (f"{self.id}: {self.verdict()}: {_num(self.value)}, needs {self.op} {_num(self.threshold)} "
                f"({self.statement})")


def expected(profile: str, path: Path | str | None = None) -> dict[str, str]:
    """{claim id: why} of the claims recorded as not holding at ``profile``; every other claim is expected to hold.

    The record is ``EXPECTED_FILE`` unless ``path`` or ``REPRO_EXPECTED`` names another (the runner's tests do).
    """
    path = Path(path or os.environ.get("REPRO_EXPECTED") or EXPECTED_FILE)
    if not path.exists():
        return {}
    with path.open("rb") as f:
        table = tomllib.load(f).get(profile, {})
    return {cid: entry.get("why", "") for cid, entry in table.items() if not entry.get("holds", True)}


class Record(NamedTuple):
    """The run that made a profile's record: its machine layout (None when the record does not say: an old
    record, or none at all), that machine in words, and {claim id: value}."""

    layout: dict | None
    machine: str
    values: dict[str, float]


def record_file(profile: str) -> Path | None:
    """The record's values: ``REPRO_RECORD`` when set (tests), else ``results/claims_<profile>.json`` of the
    checkout (None outside one)."""
    if os.environ.get("REPRO_RECORD"):
        return Path(os.environ["REPRO_RECORD"])
    root = repo_root()
    return root / "results" / f"claims_{profile}.json" if root is not None else None


def read_json(text: str) -> tuple[dict | None, dict[str, list[Claim]]]:
    """({"layout", "describe"} of the machine or None, {stem: [Claim]}) of a claims JSON (``to_json``); the old
    format, {stem: [claim dicts]}, has no machine."""
    data = json.loads(text)
    made_on, by_stem = (data["machine"], data["claims"]) if {"machine", "claims"} <= set(data) else (None, data)
    return made_on, {stem: [_from_json(d) for d in cs] for stem, cs in by_stem.items()}


def record(profile: str, path: Path | str | None = None) -> Record:
    """The record of ``profile`` (``path``, else ``record_file``): empty, with no layout, when there is none."""
    path = Path(path) if path else record_file(profile)
    if path is None or not path.exists():
        return Record(None, "", {})
    made_on, by_stem = read_json(path.read_text(encoding="utf-8"))
    made_on = made_on or {}
    values = {c.id: c.value for cs in by_stem.values() for c in cs}
    return Record(made_on.get("layout"), made_on.get("describe", ""), values)


def is_replicate(layout: dict, rec: Record) -> bool:
    """Whether a run on ``layout`` replicates the record on another machine layout (a record that names none
    is taken to be this one's; one whose layout names no CPU, made before layouts did, was made on a CPU
    nobody wrote down, so on another machine as far as anyone can tell)."""
    return rec.layout is not None and rec.layout != layout


class Claims:
    """The claims of one notebook run: ``check`` each one, then ``show`` the table (the notebook's last output).
    ``replicate``: the run's machine layout is not the record's (``is_replicate``)."""

    def __init__(self, notebook: str, profile: str, judged: bool, expected_file: Path | str | None = None,
                 replicate: bool = False):
        self.notebook, self.profile, self.judged, self.replicate = notebook, profile, judged, replicate
        self._not_holding = expected(profile, expected_file)
        self._unstable = replicates.unstable(profile)
        self.items: list[Claim] = []

    def check(self, name: str, statement: str, value, op: str, threshold, *, source: str = "paper",
              paper: str = "", detail: str = "", interval: tuple[float, float] | None = None,
              between: tuple | None = None) -> Claim:
        """Record the claim ``value op threshold``; ``source`` is "paper, <where>" or "ours, <file>";
        ``interval``: the value's 95% interval (``bootstrap``); one with an end that is NaN or infinite is absent;
        ``between``: (draws, dof) of ``replicates.crossed``, in a run of replicates, for a claim between models.

        A value that is not a number (NaN, None) does not hold: a claim that cannot be measured is not met.
        """
        if op not in _OPS:
            raise ValueError(f"unknown comparison {op!r}; use one of {', '.join(_OPS)}")
        cid = f"{self.notebook}.{name}"
        if any(c.id == cid for c in self.items):
            raise ValueError(f"claim {cid!r} is checked twice")
        value = float("nan") if value is None else float(value)
        threshold = float(threshold)
        # An interval with an end that is not a number (no resample had a value, or a ratio over a zero) says
        # nothing about the seeds: it is recorded as absent.
        low, high = (None, None) if interval is None else map(float, interval)
        if low is None or not (math.isfinite(low) and math.isfinite(high)):
            low = high = None
        draws = getattr(interval, "draws", None) if low is not None else None
        crossed, dof = (None, None) if between is None else (_quantiles(between[0]), float(between[1]))
        claim = Claim(id=cid, statement=statement, source=source, value=value, op=op, threshold=threshold,
                      holds=not math.isnan(value) and _compare(op, value, threshold), profile=self.profile,
                      judged=self.judged, expected=cid not in self._not_holding, paper=paper, detail=detail,
                      replicate=self.replicate, low=low, high=high, draws=draws,
                      unstable=self._unstable.get(cid, ""), between=crossed, between_dof=dof)
        self.items.append(claim)
        return claim

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": "\n".join(c.line() for c in self.items), "text/html": html_table(self.items),
                "text/markdown": markdown_table(self.items),
                # One JSON string, not JSON numbers: JupyterLab rewrites numbers as JavaScript prints them (10.0 as
                # 10) when it saves, which would change a committed notebook that was only opened.
                MIME: json.dumps([_jsonable(c) for c in self.items], allow_nan=False)}

    def show(self) -> None:
        """Display the table: rendered in Jupyter, and read back by ``paper_figures.py`` from the executed copy."""
        from IPython.display import display

        display(self)
        if not self.judged:
            print(f"At the {self.profile} profile the models are barely trained: verdicts are shown, not meaningful.")


DRAW_QUANTILES = 50  # how many quantiles of a seed bootstrap a claim keeps (``Claim.draws``)


def _quantiles(values) -> tuple:
    """DRAW_QUANTILES evenly spaced quantiles of a bootstrap's values: what a claim keeps of a distribution."""
    return tuple(round(float(q), 6) for q in np.quantile(values, (np.arange(DRAW_QUANTILES) + 0.5) / DRAW_QUANTILES))


class Interval(tuple):
    """(low, high) of a bootstrap, with ``draws``: DRAW_QUANTILES evenly spaced quantiles of the resampled values
    it was read off, which a claim keeps for a second level of resampling (``replicates.two_level``)."""

    draws: tuple | None

    def __new__(cls, low: float, high: float, values=None):
        self = super().__new__(cls, (low, high))
        self.draws = None if values is None or len(values) == 0 else _quantiles(values)
        return self


def bootstrap(statistic, n: int, replicates: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """The percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) of a claim's value over its ``n``
    seeds: ``statistic(idx)`` recomputes the value on the seeds ``idx`` (``replicates`` resamples with
    replacement, from a fixed generator, so a run's interval is reproducible). For a value that is a minimum over
    pairs, the statistic takes the minimum on each resample, and the interval is the minimum's."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(replicates)], dtype=float)
    values = values[~np.isnan(values)]  # a resample that leaves a group without seeds has no value
    if values.size == 0:
        return Interval(math.nan, math.nan)
    tail = (1 - level) / 2
    return Interval(float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail)), values)


def agreement(sim, pairs, sets: dict, threshold: float, chance: bool = False) -> np.ndarray:
    """(pairs, seeds) booleans: for each pair (a, b) of names in ``sets``, which seeds' samples agree above
    ``threshold`` (on mismatched seeds, ``metrics.unpaired``, for ``chance``): the rows whose means are the RPs
    (``metrics.rp_score``), for ``rate_interval`` to resample."""
    from . import metrics

    score = metrics.unpaired if chance else metrics.paired
    return np.stack([(score(sim, sets[a], sets[b]) > threshold).numpy() for a, b in pairs])


def crossed_rates(sim, pairs, by_replicate: list[dict], threshold: float, chance: bool = False) -> np.ndarray:
    """(pairs, R, R): the RP of each pair (a, b) with a's samples from training replicate r and b's from
    replicate s (``by_replicate[r]``: {name: samples}), or their chance rate: what ``replicates.crossed``
    resamples."""
    R = len(by_replicate)
    return np.array([[[agreement(sim, [(a, b)], {a: by_replicate[r][a], b: by_replicate[s][b]}, threshold,
                                 chance).mean() for s in range(R)] for r in range(R)] for a, b in pairs])


def rate_interval(hits, reduce=np.min, chance=None, floor: float = 0.0) -> tuple[float, float]:
    """``bootstrap`` of a claim on rates over seeds: ``hits`` (pairs, seeds) says, per pair of models, which seeds
    agree (RP is its row mean); the value is ``reduce`` over pairs of the rate, or of the rate over the chance
    rate (``chance``: the same for mismatched seeds, floored at ``floor``). Seeds are resampled jointly across
    pairs, as every pair is measured on the same seeds."""
    rates = np.atleast_2d(np.asarray(hits, dtype=float))
    base = None if chance is None else np.atleast_2d(np.asarray(chance, dtype=float))

    def value(idx):
        r = rates[:, idx].mean(1)
        return reduce(r if base is None else r / np.maximum(base[:, idx].mean(1), floor))

    return bootstrap(value, rates.shape[1])


def _num(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e-2 and x != 0 else f"{x:.3f}"


def _signed(x: float) -> str:
    return ("+" if x >= 0 else "") + _num(x)


_COLUMNS = ("claim", "source", "statement", "measured", "threshold", "margin", "paper", "verdict")


def _row(c: Claim) -> tuple[str, ...]:
    interval = f" [{_num(c.low)}, {_num(c.high)}]" if c.low is not None else ""
    measured = _num(c.value) + interval + (f" ({c.detail})" if c.detail else "")
    return (c.id, c.source, c.statement, measured, f"{c.op} {_num(c.threshold)}", _signed(c.margin), c.paper or "",
            c.verdict())


def markdown_table(claims) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(esc(v) for v in _row(c)) + " |" for c in claims]
    return "\n".join(lines)


def html_table(claims) -> str:
    head = "".join(f"<th>{h}</th>" for h in _COLUMNS)
    body = []
    for c in claims:
        style = (' style="color:#b60"' if c.replicate else ' style="color:#b00"') if c.unexpected else ""
        body.append("<tr>" + "".join(f"<td{style}>{html.escape(v)}</td>" for v in _row(c)) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _jsonable(c: Claim) -> dict:
    """The claim as JSON can hold it: a NaN value (not measurable) becomes null."""
    d = asdict(c)
    d["value"] = None if math.isnan(c.value) else c.value
    return d


def _from_json(d: dict) -> Claim:
    tupled = {k: None if d.get(k) is None else tuple(d[k]) for k in ("draws", "between")}
    return Claim(**{**d, "value": math.nan if d["value"] is None else float(d["value"]), **tupled})


def from_notebook(nb: dict) -> list[Claim]:
    """The claims a notebook displayed (in an executed copy, as ``nbformat`` or plain JSON)."""
    found = []
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data")
            items = data.get(MIME, []) if isinstance(data, dict) else []
            found += [_from_json(item) for item in (json.loads(items) if isinstance(items, str) else items)]
    return found


def report(by_notebook: dict[str, list[Claim]], profile: str, header: str = "", here: str = "",
           replicate_of: Record | None = None) -> str:
    """The claims report in Markdown: the machine and a summary (``summary``), then each notebook's table."""
    claims = [c for cs in by_notebook.values() for c in cs]
    parts = [f"# Claims at the `{profile}` profile", ""]
    if header:
        parts += [header, ""]
    parts += summary(claims, profile, here, replicate_of) + [""]
    for stem, cs in by_notebook.items():
        parts += [f"## {stem}", "", markdown_table(cs) if cs else "(no claims recorded: the notebook failed early)", ""]
    return "\n".join(parts)


def summary(claims: list[Claim], profile: str, here: str = "", replicate_of: Record | None = None) -> list[str]:
    """Lines that say on which machine (``here``: ``machine.describe`` of the run), how many of the paper's claims
    hold, which do not (with their values), and what changed. ``replicate_of``: the record this run replicates
    on another machine layout, whose values the verdicts that differ are shown beside, with their margins."""
    lines = []
    if here:
        lines.append(f"- Machine: {here}" + (f"; a replicate: the record was made on {replicate_of.machine}"
                                             if replicate_of is not None else ""))
    paper = [c for c in claims if not c.ours]
    ours = [c for c in claims if c.ours]
    if claims and not claims[0].judged:
        return lines + [f"- Not judged at {profile}: the models are barely trained, so verdicts mean nothing here "
                        f"({sum(c.holds for c in claims)} of {len(claims)} claims would hold)."]

    def missed(c: Claim) -> str:
        return (f"  - does not hold: {c.id}: {_num(c.value)}, needs {c.op} {_num(c.threshold)} ({c.statement})"
                + (f"; {c.detail}" if c.detail else "") + ("" if c.unexpected else "; a recorded finding"))

    lines.append(f"- The paper's claims: {sum(c.holds for c in paper)} of {len(paper)} hold at {profile}.")
    lines += [missed(c) for c in paper if not c.holds]
    if ours:
        lines.append(f"- Claims of ours: {sum(c.holds for c in ours)} of {len(ours)} hold.")
        lines += [missed(c) for c in ours if not c.holds]
    marginal = [c for c in claims if c.marginal]
    if marginal:
        lines.append(f"- Marginal (the 95% interval over seeds straddles the threshold): {len(marginal)}")
        lines += [f"  - {c.id}: {_num(c.value)} [{_num(c.low)}, {_num(c.high)}], needs {c.op} {_num(c.threshold)}"
                  for c in marginal]
    changed = [c for c in claims if c.unexpected]
    if changed and replicate_of is not None:
        lines.append(f"- Verdicts that differ from the record for {profile}: {len(changed)}, in a replicate on {here} "
                     f"(the record was made on {replicate_of.machine}); they do not fail the run (with --strict or "
                     "--publish they do)")
        lines += [f"  - {_beside(c, replicate_of)}" for c in changed]
    elif changed:
        lines.append(f"- Verdicts that differ from the record for {profile}: {len(changed)}")
        lines += [f"  - {c.line()}" for c in changed]
    return lines


def _beside(c: Claim, rec: Record) -> str:
    """A claim whose verdict differs from the record, beside the record's value and verdict."""
    word = lambda holds: "holds" if holds else "does not hold"  # noqa: E731
    return (f"{c.id}: record {_num(rec.values.get(c.id, math.nan))} ({word(c.expected)}), this run {_num(c.value)} "
            f"({word(c.holds)}); needs {c.op} {_num(c.threshold)}, margin {_signed(c.margin)} ({c.statement})")


def to_json(by_notebook: dict[str, list[Claim]], P: dict) -> str:
    """The claims of a run (``P``: its resolved settings) and the machine they were measured on."""
    return json.dumps({"machine": {"layout": machine.layout(P), "describe": machine.describe(P)},
                       "claims": {stem: [_jsonable(c) for c in cs] for stem, cs in by_notebook.items()}}, indent=1)

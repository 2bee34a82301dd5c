"""What every notebook does first and last: settings, store, a header naming the run, and the claims table.

    run = notebook.start("01", profile, overrides)   # P, store, claims; shows profile, commit, date
    ...
    run.claims.check("rp", "every pair: RP >= 0.6", rp.min(), ">=", 0.6, source="paper, Fig. 1")
    run.finish()                                      # claims table; the header gains the wall time
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from dataclasses import dataclass, field

from . import __version__, claims, machine, profiles
from .paths import repo_root
from .store import Store


def commit() -> str:
    """The checkout's commit (short hash, "+ local changes" when tracked files differ), or "" outside git."""
    root = repo_root()
    if root is None:
        return ""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return rev + (" + local changes" if dirty else "")


@dataclass
class Run:
    notebook: str
    P: dict
    store: Store
    claims: claims.Claims
    started: float = field(default_factory=time.perf_counter)
    stamp: str = ""
    rev: str = ""
    _handle: object = None
    _written: int = field(default_factory=lambda: Store.written)  # the store's writes before this run

    def header(self, wall: str = "running") -> str:
        import torch

        parts = [f"profile **{self.P['profile']}**", f"commit `{self.rev or 'unknown'}`", f"executed {self.stamp}",
                 f"wall time {wall}", f"reprolib {__version__}, torch {torch.__version__}", self.where()]
        if self.P.get("replicate"):
            parts.insert(1, f"training replicate {self.P['replicate']}")
        return f"Notebook {self.notebook}: " + " · ".join(parts)

    def where(self) -> str:
        """Where this run computes (``machine.describe``)."""
        import torch

        return machine.describe({**self.P, "threads": torch.get_num_threads()})

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def finish(self) -> None:
        """Show the claims table and put the wall time into the header (the notebook's first output): when this run
        computed nothing, it says so and gives the time of the cold run that filled the store (``Store.cold_run``)."""
        self.claims.show()
        wall = _duration(self.elapsed())
        if Store.written == self._written:
            wall += ", every result read from the store"
            cold = self.store.cold_run(self.P["profile"])
            if cold:
                # the same machine unless this run's description says something the cold run's does not (a
                # notebook that trains nothing names no training workers)
                same = set(self.where().split(" · ")) <= set(cold["machine"].split(" · "))
                wall += (f" (filled from empty by a run of all {len(cold['notebooks'])} notebooks in "
                         f"{_duration(cold['wall_s'])} at commit `{cold['commit'] or 'unknown'}` on {cold['date']}"
                         + ("" if same else f", on {cold['machine']}") + ")")
        if self._handle is not None:
            self._handle.update(_markdown(self.header(wall)))
        print(f"wall time {wall}")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def _settings(P):
    """The settings as a table of name, value and meaning (``Settings.table``), folded under the header."""
    from IPython.display import HTML

    summary = f"<summary>settings of this run ({type(P).__name__})</summary>"
    return HTML(f"<details>{summary}{P.table().to_html()}</details>")


def start(notebook: str, profile: str | None = None, overrides: dict | None = None) -> Run:
    """Settings of ``notebook`` at ``profile`` with ``overrides``, the store, an empty claims table (marked as a
    replicate when this machine's layout is not the record's, ``claims.is_replicate``), and a header (profile,
    commit, date, versions, machine) shown now and completed with the wall time by ``Run.finish``."""
    P = profiles.settings(notebook, profile, **(overrides or {}))
    problems = machine.unusable(P, overrides or {})
    if problems:  # before any work, as the runner would have refused them
        raise ValueError("\n".join(problems))
    machine.apply(P)  # the kernel's thread count, on which its samples' bits depend
    record = claims.record(P["profile"])
    # another machine, or another training replicate (its verdicts are combined with the others' by the runner)
    replicate = claims.is_replicate(machine.layout(P), record) or P.get("replicate", 0) > 0
    run = Run(notebook, P, Store(), claims.Claims(notebook, P["profile"], judged=P["claims_strict"],
                                                  replicate=replicate),
              stamp=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), rev=commit())
    from IPython.display import display

    run._handle = display(_markdown(run.header()), display_id=True)
    display(_settings(P))
    if P.get("replicate"):
        print(f"training replicate {P['replicate']}: every training seed moved by {profiles.REPLICATE_STRIDE} x "
              f"{P['replicate']} (replications/training_replicates.md); a verdict that differs from the record is "
              "marked in the claims table, and judged over the replicates by `paper_figures.py --replicates`")
    elif replicate:
        print(f"a replicate: the record of {P['profile']} was made on {record.machine}; a verdict that differs from "
              "it is marked in the claims table, not taken for a regression")
    if overrides:
        print(f"overrides: {overrides}")
    return run

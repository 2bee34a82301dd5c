"""Artifacts (trained weights, checkpoints, sample banks) keyed by a hash of the whole config.

A config is any JSON-able dict; its key is the SHA-256 of its canonical JSON. Files are written
atomically (temporary file, then ``os.replace``), so an interrupted run never leaves half a file, and
read with ``torch.load(weights_only=True)``, so a store never executes code it did not write.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from .paths import store_dir

FORMAT = "reprolib-artifact-v1"


class StoreError(RuntimeError):
    """A stored file is missing, corrupt, or belongs to another config."""


def config_key(config: dict) -> str:
    """Short stable key: SHA-256 of the canonical JSON of ``config``."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    """A folder of artifacts: ``<root>/<kind>/<key>/<name>.pt`` plus ``config.json`` beside them."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else store_dir()

    def folder(self, kind: str, config: dict) -> Path:
        return self.root / kind / config_key(config)

    def path(self, kind: str, config: dict, name: str) -> Path:
        return self.folder(kind, config) / f"{name}.pt"

    def exists(self, kind: str, config: dict, name: str) -> bool:
        return self.path(kind, config, name).exists()

    def save(self, kind: str, config: dict, name: str, payload: dict) -> Path:
        folder = self.folder(kind, config)
        folder.mkdir(parents=True, exist_ok=True)
        cfg_file = folder / "config.json"
        if not cfg_file.exists():
            tmp = cfg_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(config, sort_keys=True, indent=1, default=str))
            os.replace(tmp, cfg_file)
        path = self.path(kind, config, name)
        atomic_save({"format": FORMAT, "key": config_key(config), "payload": payload}, path)
        return path

    def load(self, kind: str, config: dict, name: str) -> dict:
        """The payload saved under (kind, config, name); StoreError says what is wrong and what to do."""
        return load_artifact(self.path(kind, config, name), config_key(config))

    def remove(self, kind: str, config: dict, name: str) -> None:
        self.path(kind, config, name).unlink(missing_ok=True)


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

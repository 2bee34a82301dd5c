"""What the settings choose, as the store sees it: every notebook's resolved settings and the keys of every model
its training plan holds (without the code digest, which follows the code, not the settings), at a profile.

``python -m tests.planned`` rewrites ``tests/data/planned.json``, which ``test_settings.py`` compares with: a
change to the settings' code that changes any of it would re-key models or banks. Rewrite it only for a change
that is meant to change what is computed, and say so in the commit."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

SNAPSHOT = Path(__file__).resolve().parent / "data" / "planned.json"
PROFILES = ("cpu", "mnist")
MACHINE = dict(device="cpu", n_jobs=2, threads=2)  # the machine's own settings are no key


def planned(profile: str) -> dict:
    from reprolib import profiles, zoo
    from reprolib.store import Store

    out = {}
    with tempfile.TemporaryDirectory() as root:
        for nid in profiles.SETTINGS:
            P = profiles.settings(nid, profile, **{k: v for k, v in MACHINE.items()
                                                   if k in profiles.SETTINGS[nid][profile]})
            models = zoo.plan(nid, P, Store(root)) if nid != "08" else []
            keys = sorted(repr({k: v for k, v in c.key_dict().items() if k != "code"}) for c in models)
            out[nid] = {"settings": {k: repr(P[k]) for k in sorted(P)}, "models": keys}
    return out


def main() -> int:
    SNAPSHOT.write_text(json.dumps({p: planned(p) for p in PROFILES}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

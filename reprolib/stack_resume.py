"""A stack of models checkpointed and resumed as one unit, so that a killed stack resumes into its own bits.

``stacked.Stacked`` trains K models as one; ``loop.run`` alone would write each model's checkpoint under its own
key, one file after another, and a kill between two of those writes would leave the members at different steps,
no longer one stack's state (issue 39). This module is how stacks train: the K checkpoints of one step go to the
store as one file, under the stack's own key, or not at all; a resume restores every member from it and trains
the same stack on. Members already final (a kill between the final writes) train along, as their company, and
are not written again. Which models form a stack is the plan's business (``fitting.schedule`` groups the whole
plan, stored models included), never what happens to be stored.

Nothing here changes a number: the stack and its arithmetic are ``stacked`` and ``loop``'s, whose code keys the
models. What a stack's checkpoint holds is each member's own checkpoint, as ``loop.run`` gives it.
"""

from __future__ import annotations

from . import codehash, loop, stacked
from . import train as train_lib
from .store import Store
from .train import KIND


def key(cfgs) -> dict:
    """The store key of a stack's checkpoint: its members' keys, in order, and the training code."""
    return {"stack": [c.key_dict() for c in cfgs], "code": codehash.of(KIND)}


class _Unit:
    """The store as ``loop.run`` sees it while training one stack: its members' checkpoints are gathered and
    written as one file when all K are in for a step; everything else passes through."""

    def __init__(self, store: Store, cfgs):
        self.store, self.keys, self.unit = store, [c.key_dict() for c in cfgs], key(cfgs)
        store.clear_leftovers(KIND, self.unit)  # a half-written checkpoint of a killed run
        self.pending: dict[int, dict] = {}
        self.saved = self.store.load(KIND, self.unit, "checkpoint") if store.exists(KIND, self.unit, "checkpoint") \
            else self._legacy()
        self.finals_before = [store.exists(KIND, k, "final") for k in self.keys]

    def _legacy(self) -> dict | None:
        """Members' own checkpoints (older code wrote them one by one): a unit only if all are there at one step."""
        found = [self.store.load(KIND, k, "checkpoint") if self.store.exists(KIND, k, "checkpoint") else None
                 for k in self.keys]
        steps = {ck["step"] for ck in found if ck is not None}
        return {"step": steps.pop(), "members": found} if None not in found and len(steps) == 1 else None

    def _member(self, config) -> int | None:
        return self.keys.index(config) if config in self.keys else None

    def exists(self, kind, config, name):
        k = self._member(config) if kind == KIND else None
        if k is not None and name == "checkpoint":
            return self.saved is not None
        return self.store.exists(kind, config, name)

    def load(self, kind, config, name):
        k = self._member(config) if kind == KIND else None
        if k is not None and name == "checkpoint":
            return self.saved["members"][k]
        return self.store.load(kind, config, name)

    def save(self, kind, config, name, payload):
        k = self._member(config) if kind == KIND else None
        if k is not None and name == "checkpoint":
            self.pending[k] = payload
            if len(self.pending) == len(self.keys) and len({p["step"] for p in self.pending.values()}) == 1:
                members = [self.pending[i] for i in range(len(self.keys))]
                self.store.save(KIND, self.unit, "checkpoint", {"step": members[0]["step"], "members": members})
                self.pending = {}
            return None
        if k is not None and name == "final" and self.finals_before[k]:
            return None  # the same bits are stored already: a kill came between the final writes
        return self.store.save(kind, config, name, payload)

    def remove(self, kind, config, name):
        k = self._member(config) if kind == KIND else None
        if k is not None and name == "checkpoint":
            self.store.remove(kind, config, name)  # an older run's own checkpoint
            if k == len(self.keys) - 1:  # every member is final now
                self.store.remove(KIND, self.unit, "checkpoint")
            return
        self.store.remove(kind, config, name)

    def __getattr__(self, name):
        return getattr(self.store, name)


def train(cfgs, store: Store | None = None, device=None, progress: bool = True, callback=None) -> list:
    """Train the stack ``cfgs`` (``stacked.check``) from its last checkpoint, or from the start, unless every member
    is final; returns their EMA denoisers in order. ``callback(step, losses)`` as ``loop.run``'s."""
    import torch

    cfgs = list(cfgs)
    stacked.check(cfgs)
    store = store or Store()
    if not all(train_lib.is_trained(c, store) for c in cfgs):
        unit = _Unit(store, cfgs)
        loop.run(stacked.Stacked(cfgs, unit, torch.device(device or "cpu"), progress), unit, progress, callback)
    return [train_lib.train(c, store, device, progress=False) for c in cfgs]

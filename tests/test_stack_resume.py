"""A stack checkpointed and resumed as one unit (``stack_resume``): killed at any write, it resumes into the bits
of the uninterrupted stack, and which models form a stack is the plan's, not the store's."""

from __future__ import annotations

import pytest
import torch

from reprolib import fitting, loop, stack_resume, stacked, zoo
from reprolib.store import Store
from reprolib.train import KIND, TrainConfig, train

NET = {"kind": "unet", "width": 4, **zoo.DDPMPP}
BASE = TrainConfig(net=NET, n=40, steps=8, batch=16, lr=3e-3, warmup=2, ema_halflife=4, ckpt_every=2,
                   snapshot_every=4)
CFGS = [BASE, BASE.replace(n=24, subset_seed=3, seed=1), BASE.replace(n=None, classes=(1, 7), seed=2)]


class Killed(Exception):
    pass


def _writes(monkeypatch, kill_at=None) -> list:
    """Counts the store's writes; the ``kill_at``-th (0-based) raises before it is written, as a kill would."""
    seen, save = [], Store.save

    def counted(self, kind, config, name, payload):
        if kill_at is not None and len(seen) == kill_at:
            raise Killed(name)
        seen.append(name)
        return save(self, kind, config, name, payload)

    monkeypatch.setattr(Store, "save", counted)
    return seen


def _finals(store) -> list:
    return [store.load(KIND, c.key_dict(), "final") for c in CFGS]


def _same_bits(a: list, b: list) -> None:
    for x, y in zip(a, b):
        assert x["losses"] == y["losses"]
        for name in x["ema"]:
            assert torch.equal(x["ema"][name], y["ema"][name]), name


def test_a_stack_killed_at_any_write_resumes_into_the_uninterrupted_bits(tmp_path, monkeypatch):
    job = stacked.Stack(tuple(CFGS))
    with monkeypatch.context() as m:
        writes = _writes(m)
        fitting.fit(job, Store(tmp_path / "straight"), progress=False)
    assert writes.count("checkpoint") == 3 and writes.count("final") == 3  # steps 2, 4, 6: one file each
    straight = _finals(Store(tmp_path / "straight"))
    for at in range(len(writes)):
        store = Store(tmp_path / f"killed{at}")
        with monkeypatch.context() as m:
            _writes(m, kill_at=at)
            with pytest.raises(Killed):
                fitting.fit(job, store, progress=False)
        fitting.fit(job, store, progress=False)
        _same_bits(_finals(store), straight)
        assert not store.exists(KIND, stack_resume.key(CFGS), "checkpoint")  # nothing left over


def test_members_checkpointed_apart_resume_together_or_from_the_start(tmp_path):
    """Checkpoints older code wrote one per member: a unit when all are at one step, else the stack starts over."""
    straight = Store(tmp_path / "straight")
    stack_resume.train(CFGS, straight, progress=False)
    for name, skew in (("together", False), ("skewed", True)):
        store = Store(tmp_path / name)
        with pytest.raises(Killed):  # as older code left them: loop.run on the plain store, a file per member
            loop.run(stacked.Stacked(CFGS, store, torch.device("cpu"), progress=False), store, progress=False,
                     callback=lambda s, l: s == 4 and _raise(Killed()))
        if skew:  # the first member a checkpoint further on, as a kill between member writes left it
            with pytest.raises(Killed):
                train(CFGS[0], store, progress=False, callback=lambda s, l: s == 6 and _raise(Killed()))
        steps = [store.load(KIND, c.key_dict(), "checkpoint")["step"] for c in CFGS]
        assert steps == ([6, 4, 4] if skew else [4, 4, 4])
        stack_resume.train(CFGS, store, progress=False)
        _same_bits(_finals(store), _finals(straight))
        assert not any(store.exists(KIND, c.key_dict(), "checkpoint") for c in CFGS)


def _raise(exc):
    raise exc


def test_a_stack_is_the_plans_whatever_the_store_holds(tmp_path):
    store = Store(tmp_path)
    train(CFGS[1], store, progress=False)  # one member stored alone, as an older run or another plan may leave it
    jobs, _, _ = fitting.schedule(CFGS, store)
    assert jobs == [stacked.Stack(tuple(CFGS))]  # the stack of the plan, not of what is missing
    before = store.load(KIND, CFGS[1].key_dict(), "final")
    fitting.fit(jobs[0], store, progress=False)
    _same_bits([store.load(KIND, CFGS[1].key_dict(), "final")], [before])  # a stored model is not written again
    assert fitting.schedule(CFGS, store)[0] == []

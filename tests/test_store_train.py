"""The artifact store (atomic, checked files) and the training loop (seeded, resumable, cached).

Every store here lives under tmp_path; the default store is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest
import torch

from reprolib import store as store_lib
from reprolib.store import Store, StoreError, atomic_save, atomic_write, clear_leftovers, config_key, load_artifact
from reprolib.train import KIND, TrainConfig, is_trained, losses, train, trained_threads


def _tmp_files(root):
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- config keys


def test_config_key_is_canonical():
    a = {"x": 1, "y": [1, 2], "z": {"b": 2, "a": 1}}
    b = {"z": {"a": 1, "b": 2}, "y": [1, 2], "x": 1}
    assert config_key(a) == config_key(b)
    assert config_key(a) != config_key({**a, "x": 2})
    assert len(config_key(a)) == 16 and int(config_key(a), 16) >= 0


# ---------------------------------------------------------------- Store


def test_round_trip(tmp_path):
    st = Store(tmp_path)
    cfg = {"model": "a", "n": 3}
    payload = {"w": torch.randn(3, 4), "i": torch.arange(5), "nested": {"b": torch.ones(2, dtype=torch.bool)},
               "losses": [0.5, 0.25], "step": 7, "name": "x"}
    assert not st.exists("k", cfg, "final")
    path = st.save("k", cfg, "final", payload)
    assert path == tmp_path / "k" / config_key(cfg) / "final.pt" and path.exists()
    assert st.exists("k", cfg, "final")
    back = st.load("k", cfg, "final")
    assert set(back) == set(payload)
    for key in ("w", "i"):
        assert torch.equal(back[key], payload[key])
    assert torch.equal(back["nested"]["b"], payload["nested"]["b"])
    assert back["losses"] == [0.5, 0.25] and back["step"] == 7 and back["name"] == "x"
    assert json.loads((path.parent / "config.json").read_text()) == cfg
    assert _tmp_files(tmp_path) == []
    # overwrite is atomic too and replaces the content
    st.save("k", cfg, "final", {"w": torch.zeros(1)})
    assert torch.equal(st.load("k", cfg, "final")["w"], torch.zeros(1))
    assert _tmp_files(tmp_path) == []
    st.remove("k", cfg, "final")
    assert not st.exists("k", cfg, "final")
    st.remove("k", cfg, "final")  # removing twice is fine


def test_default_root_follows_repro_store(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_STORE", str(tmp_path / "here"))
    assert Store().root == tmp_path / "here"


def test_missing_artifact(tmp_path):
    with pytest.raises(StoreError, match="No artifact"):
        Store(tmp_path).load("k", {"a": 1}, "final")


def test_corrupt_file(tmp_path):
    st, cfg = Store(tmp_path), {"a": 1}
    path = st.save("k", cfg, "final", {"w": torch.ones(3)})
    path.write_bytes(b"\x00garbage\xffnot a torch file" * 10)
    with pytest.raises(StoreError) as err:
        st.load("k", cfg, "final")
    msg = str(err.value)
    assert "corrupt" in msg and "Delete" in msg and str(path) in msg


def test_truncated_file(tmp_path):
    st, cfg = Store(tmp_path), {"a": 1}
    path = st.save("k", cfg, "final", {"w": torch.randn(1000)})
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(StoreError, match="corrupt"):
        st.load("k", cfg, "final")


def test_foreign_torch_file_without_format_tag(tmp_path):
    st, cfg = Store(tmp_path), {"a": 1}
    path = st.path("k", cfg, "final")
    path.parent.mkdir(parents=True)
    torch.save({"ema": {"w": torch.ones(2)}}, path)
    with pytest.raises(StoreError, match="format"):
        st.load("k", cfg, "final")
    torch.save([1, 2, 3], path)  # not even a dict
    with pytest.raises(StoreError):
        st.load("k", cfg, "final")


def test_file_copied_from_another_config(tmp_path):
    st = Store(tmp_path)
    src = st.save("k", {"a": 1}, "final", {"w": torch.ones(2)})
    dst = st.path("k", {"a": 2}, "final")
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(StoreError) as err:
        st.load("k", {"a": 2}, "final")
    assert config_key({"a": 1}) in str(err.value) and config_key({"a": 2}) in str(err.value)
    assert torch.equal(st.load("k", {"a": 1}, "final")["w"], torch.ones(2))  # the original is fine
    assert torch.equal(load_artifact(dst)["w"], torch.ones(2))  # no key given: only the tag is checked


def test_store_never_unpickles_arbitrary_objects(tmp_path):
    """weights_only loading: a pickle that would run code is refused as corrupt, and never runs."""
    st, cfg = Store(tmp_path), {"a": 1}
    path = st.path("k", cfg, "final")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    torch.save({"format": store_lib.FORMAT, "key": config_key(cfg), "payload": _Evil(str(marker))}, path)
    with pytest.raises(StoreError, match="corrupt"):
        st.load("k", cfg, "final")
    assert not marker.exists()


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_failed_save_leaves_old_file_and_no_tmp(tmp_path, monkeypatch):
    path = tmp_path / "a" / "x.pt"
    atomic_save({"v": 1}, path)

    def broken(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(store_lib.torch, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"v": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"v": 1}
    assert _tmp_files(tmp_path) == []


def test_a_store_that_cannot_be_written_says_where_and_why(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreError, match=r"Cannot write .*a-file/store/k/.*/final\.pt \(Not a directory.*REPRO_STORE"):
        Store(blocker / "store").save("k", {"a": 1}, "final", {"v": 1})


def test_a_full_disk_says_where_and_why_and_leaves_no_half_file(tmp_path, monkeypatch):
    def full(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(store_lib.torch, "save", full)
    with pytest.raises(StoreError, match=r"Cannot write .*final\.pt \(the write failed: PytorchStreamWriter failed "
                                         r"writing file data/0: file write failed; [\d,]+ MiB free there\)"):
        Store(tmp_path).save("k", {"a": 1}, "final", {"v": 1})
    assert _tmp_files(tmp_path) == [] and not list(tmp_path.rglob("final.pt"))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_artifacts_are_created_with_the_umask(tmp_path, umask):
    """A store shared with workers of another user needs group/other bits wherever the umask grants them."""
    before = os.umask(umask)
    try:
        path = Store(tmp_path).save("k", {"a": 1}, "final", {"w": torch.ones(2)})
    finally:
        os.umask(before)
    for p in (path, path.parent / "config.json"):
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name


def test_atomic_save_fsyncs_the_file_before_the_rename(tmp_path, monkeypatch):
    """The bytes reach the disk before the name does: a power loss cannot leave a renamed empty file."""
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst)

    monkeypatch.setattr(store_lib.os, "fsync", fsync)
    monkeypatch.setattr(store_lib.os, "replace", replace)
    path = tmp_path / "a" / "x.pt"
    atomic_save({"v": torch.arange(3)}, path)
    inode = path.stat().st_ino
    assert ("fsync", inode) in events and ("replace", inode) in events
    assert events.index(("fsync", inode)) < events.index(("replace", inode))


def test_clearing_leftovers_spares_a_writer_at_work(tmp_path):
    path, seen = tmp_path / "x.bin", []

    def write(f):
        f.write(b"part")
        seen.append(clear_leftovers(tmp_path))  # another process starting the same training, mid-write
        seen.append(list(tmp_path.glob("*.tmp")))

    atomic_write(path, write)
    assert seen[0] == [] and len(seen[1]) == 1, "a file being written is not a leftover"
    assert path.read_bytes() == b"part" and _tmp_files(tmp_path) == []
    dead = tmp_path / "x.bin.0badc0de.tmp"
    dead.write_bytes(b"half")
    assert clear_leftovers(tmp_path) == [dead] and not dead.exists() and path.exists()


# ---------------------------------------------------------------- training

TINY = TrainConfig(net={"kind": "mlp", "width": 32, "depth": 1}, steps=40, batch=16, ckpt_every=10, n=64,
                   warmup=5, ema_halflife=5)


class Stop(Exception):
    pass


def _stop_at(step_to_stop, seen):
    def cb(step, loss):
        seen.append(step)
        if step == step_to_stop:
            raise Stop
    return cb


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _differs(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """TINY trained without interruption: (EMA state, store root)."""
    root = tmp_path_factory.mktemp("reference")
    torch.set_num_threads(1)
    model = train(TINY, Store(root), progress=False)
    return _state(model), root


def test_interrupted_run_resumes_bit_identically(tmp_path, reference):
    st, seen = Store(tmp_path), []
    with pytest.raises(Stop):
        train(TINY, st, progress=False, callback=_stop_at(25, seen))
    assert seen == list(range(26))
    assert st.exists(KIND, TINY.key_dict(), "checkpoint") and not is_trained(TINY, st)
    assert st.load(KIND, TINY.key_dict(), "checkpoint")["step"] == 20
    assert _tmp_files(tmp_path) == []

    seen2 = []
    model = train(TINY, st, progress=False, callback=_stop_at(-1, seen2))
    assert seen2 == list(range(20, 40)), "the second run must resume from the step-20 checkpoint"
    _assert_identical(_state(model), reference[0])
    assert is_trained(TINY, st) and not st.exists(KIND, TINY.key_dict(), "checkpoint")
    assert _tmp_files(tmp_path) == []


def test_checkpoint_frequency_does_not_change_the_result(tmp_path, reference):
    cfg = TINY.replace(ckpt_every=7)
    assert cfg.key_dict() == TINY.key_dict()
    with pytest.raises(Stop):
        train(cfg, Store(tmp_path), progress=False, callback=_stop_at(30, []))
    _assert_identical(_state(train(cfg, Store(tmp_path), progress=False)), reference[0])


def test_finished_model_is_loaded_not_retrained(reference):
    state, root = reference
    calls = []
    model = train(TINY, Store(root), progress=False, callback=lambda s, l: calls.append(s))
    assert calls == []
    _assert_identical(_state(model), state)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_same_config_same_weights_and_seed_matters(tmp_path, reference):
    state = reference[0]
    _assert_identical(_state(train(TINY, Store(tmp_path / "again"), progress=False)), state)
    other = _state(train(TINY.replace(seed=1), Store(tmp_path / "seed1"), progress=False))
    assert _differs(other, state)
    assert config_key(TINY.replace(seed=1).key_dict()) != config_key(TINY.key_dict())


def _train_at(threads, cfg, store, **kw):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return train(cfg, store, progress=False, **kw)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_config_and_thread_count_give_the_same_bits(tmp_path, threads):
    """What train.py promises: same config, device and thread count -> same weights (not: any thread count)."""
    first = _state(_train_at(threads, TINY, Store(tmp_path / "a")))
    _assert_identical(_state(_train_at(threads, TINY, Store(tmp_path / "b"))), first)
    assert trained_threads(TINY, Store(tmp_path / "a")) == [threads]


def test_thread_counts_are_recorded_across_a_resume_and_keep_the_key(tmp_path, reference):
    assert trained_threads(TINY, Store(reference[1])) == [1]
    st = Store(tmp_path)
    with pytest.raises(Stop):
        _train_at(2, TINY, st, callback=_stop_at(15, []))
    assert st.load(KIND, TINY.key_dict(), "checkpoint")["threads"] == [2]
    _train_at(1, TINY, st)
    assert trained_threads(TINY, st) == [2, 1]
    assert st.folder(KIND, TINY.key_dict()) == tmp_path / KIND / config_key(TINY.key_dict())  # metadata, not key


def test_training_moves_the_weights(reference):
    from reprolib.train import build, training_set

    torch.manual_seed(TINY.seed)  # the initial weights train() starts from
    init = _state(build(TINY, (1, 8, 8)))
    assert init.keys() == reference[0].keys()
    assert _differs(init, reference[0])
    # the zero-initialised output layer has been trained
    assert float(reference[0]["net.out.1.weight"].abs().sum()) > 0
    ds = training_set(TINY)
    assert len(ds) == 64 and torch.equal(ds.images, training_set(TINY).images)


def test_recorded_losses_match_across_a_resume(tmp_path):
    """``losses`` (mean per 100 steps) should not depend on where a run was interrupted."""
    cfg = TINY.replace(steps=200, ckpt_every=100, batch=4)
    whole = train(cfg, Store(tmp_path / "whole"), progress=False)
    with pytest.raises(Stop):
        train(cfg, Store(tmp_path / "cut"), progress=False, callback=_stop_at(150, []))
    resumed = train(cfg, Store(tmp_path / "cut"), progress=False)
    _assert_identical(_state(resumed), _state(whole))
    assert losses(cfg, Store(tmp_path / "cut")) == losses(cfg, Store(tmp_path / "whole"))
    assert len(losses(cfg, Store(tmp_path / "whole"))) == 2


def test_recorded_losses_match_across_an_odd_resume(tmp_path):
    cfg = TINY.replace(steps=200, ckpt_every=50, batch=4)
    train(cfg, Store(tmp_path / "whole"), progress=False)
    whole = losses(cfg, Store(tmp_path / "whole"))
    with pytest.raises(Stop):
        train(cfg, Store(tmp_path / "cut"), progress=False, callback=_stop_at(75, []))
    train(cfg, Store(tmp_path / "cut"), progress=False)
    assert losses(cfg, Store(tmp_path / "cut")) == pytest.approx(whole, rel=1e-9)


def test_conditional_training_runs(tmp_path):
    cfg = TINY.replace(conditional=True, steps=6, ckpt_every=3)
    model = train(cfg, Store(tmp_path), progress=False)
    assert model.net.embed.label is not None and model.net.embed.label.num_embeddings == 11
    x = torch.randn(3, 1, 8, 8)
    out = model(x, 1.0, torch.tensor([0, 5, 10]))
    assert out.shape == x.shape and torch.isfinite(out).all()


_KILLED_MID_CHECKPOINT = """
import json, os, signal, sys
import torch
from reprolib.store import Store
from reprolib.train import TrainConfig, train

def killed(obj, f, *args, **kwargs):  # the first checkpoint: half written, then the process dies
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.set_num_threads(1)
torch.save = killed
train(TrainConfig(**json.loads(sys.argv[1])), Store(sys.argv[2]), progress=False)
"""


def test_checkpoint_left_by_a_killed_run_is_cleared_when_training_starts_again(tmp_path, reference):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILLED_MID_CHECKPOINT),
                          json.dumps(asdict(TINY)), str(tmp_path)], env=env, capture_output=True, text=True)
    assert run.returncode == -9, run.stderr
    folder = Store(tmp_path).folder(KIND, TINY.key_dict())
    left = _tmp_files(tmp_path)
    assert [p.parent for p in left] == [folder] and left[0].name.startswith("checkpoint.pt.")

    at_first_step = []
    model = train(TINY, Store(tmp_path), progress=False,
                  callback=lambda step, loss: at_first_step.append(_tmp_files(tmp_path)) if step == 0 else None)
    assert at_first_step == [[]], "the leftover must go when the training starts, before its first checkpoint"
    _assert_identical(_state(model), reference[0])
    assert _tmp_files(tmp_path) == []

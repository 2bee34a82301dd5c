"""Optional training features: class filters, fine-tuning from a parent, partial training, EMA snapshots."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from reprolib import banks, profiles, zoo
from reprolib.store import Store, config_key
from reprolib.train import TrainConfig, build, mark_trainable, snapshot, train, training_set

TINY = TrainConfig(n=40, net={"kind": "mlp", "width": 16, "depth": 1}, steps=20, batch=8, ckpt_every=10)


def test_optional_fields_join_the_key_only_when_set():
    assert set(TINY.key_dict()) == {"data", "n", "subset_seed", "net", "formulation", "conditional", "label_dropout",
                                    "steps", "batch", "lr", "warmup", "ema_halflife", "seed", "code"}
    assert config_key(TINY.replace(classes=(0, 1)).key_dict()) != config_key(TINY.key_dict())


def test_classes_keep_only_those_labels_and_stay_nested():
    small = training_set(TINY.replace(classes=(5, 6, 7, 8, 9), n=30))
    big = training_set(TINY.replace(classes=(5, 6, 7, 8, 9), n=60))
    assert set(small.labels.tolist()) <= {5, 6, 7, 8, 9}
    assert torch.equal(small.images, big.images[:30])


def test_fine_tuning_starts_from_the_parent_and_freezes_what_is_not_trainable(tmp_path):
    store = Store(tmp_path)
    parent = train(TINY, store, progress=False)
    child_cfg = TINY.replace(classes=(5, 6, 7, 8, 9), init=asdict(TINY), trainable=("net.out",), seed=3)
    child = train(child_cfg, store, progress=False)
    changed = {k for k, v in child.state_dict().items() if not torch.equal(v, parent.state_dict()[k])}
    assert changed and all(k.startswith("net.out") for k in changed), changed
    full = train(child_cfg.replace(trainable=None), store, progress=False)
    assert any(not torch.equal(v, parent.state_dict()[k]) for k, v in full.state_dict().items() if not k.startswith("net.out"))


def test_snapshots_hold_the_ema_weights_along_the_way(tmp_path):
    store = Store(tmp_path)
    cfg = TINY.replace(snapshot_every=10)
    final = train(cfg, store, progress=False)
    last = snapshot(cfg, 20, store)
    assert all(torch.equal(v, final.state_dict()[k]) for k, v in last.state_dict().items())
    early = snapshot(cfg, 10, store)
    assert any(not torch.equal(v, final.state_dict()[k]) for k, v in early.state_dict().items())


def test_section6_encoder_and_decoder_fine_tunings_split_the_u_net_between_them():
    P = profiles.settings("06", "smoke")
    variants = zoo.section6(P)
    trained = {}
    for part in ("encoder", "decoder"):
        cfg = variants[f"{part} fine-tune"].cfg
        assert cfg.init == asdict(variants["pre-trained"].cfg)
        model = build(cfg, P["shape"])
        assert mark_trainable(model, cfg) > 0
        trained[part] = {k for k, p in model.named_parameters() if p.requires_grad}
    assert not trained["encoder"] & trained["decoder"]
    every = {k for k, _ in build(variants["scratch"].cfg, P["shape"]).named_parameters()}
    rest = every - trained["encoder"] - trained["decoder"]
    assert rest and all(k.startswith("net.embed") for k in rest), rest  # only the noise embedding stays frozen in both


@pytest.mark.parametrize("part", [{"lora": {"rank": 2}}, {"trainable": ("net.out",)}], ids=["lora", "head"])
def test_a_longer_run_passes_through_the_shorter_one(tmp_path, part):
    """With warm-up but no decay, the snapshot after k steps of a longer run is the k-step model, for a LoRA
    fine-tuning (its adapters start from the same draws) and a partial one alike: notebook 06 reads its partial
    fine-tunings off longer runs (``zoo.section6``) and samples the snapshot, never a k-step run."""
    store = Store(tmp_path)
    train(TINY, store, progress=False)
    child = TINY.replace(classes=(5, 6, 7, 8, 9), init=asdict(TINY), seed=3, **part)
    short = train(child, store, progress=False)
    longer = child.replace(steps=3 * child.steps, snapshot_every=child.steps)
    final = train(longer, store, progress=False)
    first = snapshot(longer, child.steps, store)
    assert all(torch.equal(v, short.state_dict()[k]) for k, v in first.state_dict().items())
    assert any(not torch.equal(v, final.state_dict()[k]) for k, v in first.state_dict().items())
    P = {"sample_steps": 3, "shape": (1, 8, 8), "device": "cpu"}
    seeds = range(4)
    read_off = banks.generate(zoo.Variant("partial", longer, snapshot=child.steps), store, seeds, P)
    assert torch.equal(read_off, banks.samples(child, store, seeds, P))


def test_section6_trains_its_partial_fine_tunings_once_as_longer_runs(tmp_path):
    P = profiles.settings("06", "cpu")
    variants = zoo.section6(P)
    full = variants["full fine-tune"].cfg
    partial = zoo.section6_partial(variants)
    assert partial == ["decoder fine-tune", f"LoRA r{P['lora_rank']} fine-tune", "head fine-tune"]
    for name in partial:
        v = variants[name]
        assert v.snapshot == v.trained_steps == full.steps == 1500
        assert v.cfg.steps == P["long_factor"] * full.steps and v.cfg.snapshot_every == full.steps
        assert v.cfg.replace(steps=full.steps, snapshot_every=None, trainable=None, lora=None) == full
    assert variants["encoder fine-tune"].snapshot is None and variants["encoder fine-tune"].cfg.steps == full.steps
    long = zoo.section6_long(variants, ["decoder fine-tune", "head fine-tune"])
    assert list(long) == ["decoder fine-tune", "head fine-tune"]
    assert all(v.cfg == variants[name].cfg and v.snapshot is None for name, v in long.items())
    plan = zoo.plan("06", P, Store(tmp_path))
    trained_1500 = [c for c in plan if c.init is not None and c.steps == full.steps]
    assert trained_1500 == [full, variants["encoder fine-tune"].cfg]  # the partial ones only as longer runs
    assert len(plan) == len({repr(c) for c in plan}) == 8  # pre-training, 2 from scratch, full, encoder, 3 longer

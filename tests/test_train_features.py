"""Optional training features: class filters, fine-tuning from a parent, partial training, EMA snapshots."""

from __future__ import annotations

from dataclasses import asdict

import torch

from reprolib import profiles, zoo
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


def test_a_longer_run_passes_through_the_shorter_one(tmp_path):
    """With warm-up but no decay, the snapshot after k steps of a longer run is the k-step model, for a LoRA
    fine-tuning too (its adapters start from the same draws): notebook 06 reads its fine-tunings off longer runs."""
    store = Store(tmp_path)
    train(TINY, store, progress=False)
    child = TINY.replace(classes=(5, 6, 7, 8, 9), init=asdict(TINY), lora={"rank": 2}, seed=3)
    short = train(child, store, progress=False)
    longer = child.replace(steps=3 * child.steps, snapshot_every=child.steps)
    final = train(longer, store, progress=False)
    first = snapshot(longer, child.steps, store)
    assert all(torch.equal(v, short.state_dict()[k]) for k, v in first.state_dict().items())
    assert any(not torch.equal(v, final.state_dict()[k]) for k, v in first.state_dict().items())


def test_section6_long_trains_the_named_fine_tunings_longer_and_nothing_else():
    P = profiles.settings("06", "cpu")
    variants = zoo.section6(P)
    long = zoo.section6_long(P, variants, ["decoder fine-tune", "head fine-tune"])
    assert list(long) == ["decoder fine-tune", "head fine-tune"]
    for name, v in long.items():
        short = variants[name].cfg
        assert v.cfg.steps == P["long_factor"] * short.steps and v.cfg.snapshot_every == short.steps
        assert v.cfg.replace(steps=short.steps, snapshot_every=None) == short

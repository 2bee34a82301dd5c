"""Stacked training (reprolib.stacked): each model as if trained alone, under its own key, resumable."""

from dataclasses import asdict

import pytest
import torch

from reprolib import fitting, stack_resume, stacked, zoo
from reprolib.store import Store
from reprolib.train import KIND, TrainConfig, losses, train

NET = {"kind": "unet", "width": 4, **zoo.DDPMPP}
BASE = TrainConfig(net=NET, n=40, steps=30, batch=16, lr=3e-3, warmup=5, ema_halflife=10, ckpt_every=10,
                   snapshot_every=10)
# Round-off only: the batched kernels sum in another order than the single model's. Measured over these 30 steps
# of Adam at lr 3e-3: at most ~1.1e-6 in a weight (EMA ~2e-7); the bound leaves a margin, and a wrong minibatch,
# noise draw, Adam or EMA step moves weights by ~1e-3 or more. One exception: attention's key bias, whose exact
# gradient is zero (softmax ignores a shift shared by all keys). Its computed gradient is round-off (~1e-10), which
# Adam normalises into steps of up to lr, so it walks by round-off in either path and is compared apart: it
# changes nothing the network computes, which ``_assert_same_function`` checks.
ATOL = 1e-5


def _cfgs(formulation="edm", conditional=False):
    base = BASE.replace(formulation=formulation, conditional=conditional)
    return [base, base.replace(n=24, subset_seed=3, seed=1), base.replace(n=None, classes=(1, 7), seed=2)]


def _final(cfg, store):
    return store.load(KIND, cfg.key_dict(), "final")


def _assert_same_function(a, b, conditional):
    gen = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(64, 1, 8, 8, generator=gen), torch.exp(torch.randn(64, generator=gen) * 1.2 - 1.2)
    labels = torch.randint(0, 11, (64,), generator=gen) if conditional else None
    torch.testing.assert_close(a(x, sigma, labels), b(x, sigma, labels), rtol=0, atol=ATOL)


class Stop(Exception):
    pass


def _stop_at(at):
    def callback(step, loss):
        if step == at:
            raise Stop

    return callback


def _without_key_bias(state):
    out = dict(state)
    for k, v in state.items():
        if k.endswith("attn.in_proj_bias"):
            c = len(v) // 3
            out[k] = torch.cat([v[:c], v[2 * c:]])  # query and value parts; the key part is round-off's
    return out


def _assert_close_states(a, b, atol=ATOL):
    assert a.keys() == b.keys()
    if atol:
        a, b = _without_key_bias(a), _without_key_bias(b)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= atol, f"largest weight difference {worst:.2e} > {atol:.0e}"
    return worst


@pytest.mark.parametrize("formulation,conditional", [("edm", False), ("ddpm", True)])
def test_stacked_training_equals_training_each_model_alone(tmp_path, formulation, conditional):
    cfgs = _cfgs(formulation, conditional)
    together, alone = Store(tmp_path / "stacked"), Store(tmp_path / "alone")
    models = stack_resume.train(cfgs, together, progress=False)
    assert len(models) == len(cfgs)
    for cfg, model in zip(cfgs, models):
        train(cfg, alone, progress=False)
        mine, theirs = _final(cfg, together), _final(cfg, alone)
        _assert_close_states(mine["ema"], theirs["ema"])
        _assert_close_states(model.state_dict(), theirs["ema"])
        _assert_same_function(model, train(cfg, alone, progress=False), conditional)
        assert len(mine["losses"]) == len(theirs["losses"]) == 0  # 30 steps: no full 100-step window
        assert mine["threads"] == theirs["threads"] == [torch.get_num_threads()]
        for step in (10, 20, 30):  # snapshots under the model's own key
            _assert_close_states(together.load(KIND, cfg.key_dict(), f"ema_{step}")["ema"],
                                 alone.load(KIND, cfg.key_dict(), f"ema_{step}")["ema"])
        assert not together.exists(KIND, cfg.key_dict(), "checkpoint")
    # the models really differ from one another (own data, seed, draws)
    a, b = (_final(c, together)["ema"] for c in cfgs[:2])
    assert max((a[k] - b[k]).abs().max().item() for k in a) > 1e-2


def test_losses_match_alone_and_a_later_train_loads_without_training(tmp_path):
    cfgs = [BASE.replace(steps=200, ckpt_every=100, snapshot_every=None), BASE.replace(steps=200, ckpt_every=100,
                                                                                       snapshot_every=None, seed=5)]
    together, alone = Store(tmp_path / "s"), Store(tmp_path / "a")
    seen = []
    stack_resume.train(cfgs, together, progress=False, callback=lambda step, ls: seen.append(ls))
    assert len(seen) == 200 and all(len(ls) == 2 for ls in seen)
    for k, cfg in enumerate(cfgs):
        train(cfg, alone, progress=False)
        mine, theirs = losses(cfg, together), losses(cfg, alone)
        assert len(mine) == len(theirs) == 2
        torch.testing.assert_close(torch.tensor(mine), torch.tensor(theirs), rtol=1e-3, atol=0)
        assert mine[0] == pytest.approx(sum(ls[k] for ls in seen[:100]) / 100)

        def never(step, loss):
            raise AssertionError("trained again")

        loaded = train(cfg, together, progress=False, callback=never)  # loads: no step runs
        _assert_close_states(loaded.state_dict(), _final(cfg, together)["ema"], atol=0)


def test_an_interrupted_stack_resumes_to_the_uninterrupted_result(tmp_path):
    cfgs = _cfgs()
    straight, broken = Store(tmp_path / "straight"), Store(tmp_path / "broken")
    stack_resume.train(cfgs, straight, progress=False)
    with pytest.raises(Stop):
        stack_resume.train(cfgs, broken, progress=False, callback=_stop_at(14))
    assert broken.load(KIND, stack_resume.key(cfgs), "checkpoint")["step"] == 10  # the stack's, one file
    for cfg in cfgs:  # nothing under a model's own key
        assert not broken.exists(KIND, cfg.key_dict(), "checkpoint")
        assert not broken.exists(KIND, cfg.key_dict(), "final")
    with pytest.raises(KeyboardInterrupt):  # a second interruption, by Ctrl-C this time
        stack_resume.train(cfgs, broken, progress=False, callback=lambda s, l: s == 25 and _raise(KeyboardInterrupt))
    assert broken.load(KIND, stack_resume.key(cfgs), "checkpoint")["step"] == 20
    stack_resume.train(cfgs, broken, progress=False)
    for cfg in cfgs:  # the same stack from the same state: the same arithmetic, bit for bit
        _assert_close_states(_final(cfg, broken)["ema"], _final(cfg, straight)["ema"], atol=0)


def _raise(exc):
    raise exc


def test_train_train_checkpoints_at_one_step_resume_as_a_stack_but_not_the_reverse(tmp_path):
    """Members train.train left at one step resume as one stack (at different steps it starts over, see
    test_stack_resume); a stack's checkpoint is the stack's own, so train.train starts a member over."""
    cfgs = _cfgs()[:2]
    alone = Store(tmp_path / "alone")
    for cfg in cfgs:
        train(cfg, alone, progress=False)
    # both interrupted alone at the same step: resumed as one stack, Adam's state restacked
    b = Store(tmp_path / "alone-same-step")
    for cfg in cfgs:
        with pytest.raises(Stop):
            train(cfg, b, progress=False, callback=_stop_at(14))
    stack_resume.train(cfgs, b, progress=False)
    for cfg in cfgs:
        _assert_close_states(_final(cfg, b)["ema"], _final(cfg, alone)["ema"])
    # a stack interrupted, then each model trained alone: from the start, into the model alone's bits
    s = Store(tmp_path / "stack-then-alone")
    with pytest.raises(Stop):
        stack_resume.train(cfgs, s, progress=False, callback=_stop_at(14))
    for cfg in cfgs:
        train(cfg, s, progress=False)
        _assert_close_states(_final(cfg, s)["ema"], _final(cfg, alone)["ema"], atol=0)


def test_fine_tunings_of_different_trained_parts_stack(tmp_path):
    parent = BASE.replace(classes=(0, 1, 2), n=None, seed=10, snapshot_every=None)
    tune = BASE.replace(classes=(5, 6), n=None, seed=2, init=asdict(parent), snapshot_every=None)
    cfgs = [tune, tune.replace(trainable=("net.up", "net.head")), tune.replace(trainable=("net.head",))]
    together, alone = Store(tmp_path / "s"), Store(tmp_path / "a")
    stack_resume.train(cfgs, together, progress=False)  # trains the parent (alone) first
    parent_w = _final(parent, together)["ema"]
    for cfg in cfgs:
        train(cfg, alone, progress=False)
        mine = _final(cfg, together)["ema"]
        _assert_close_states(mine, _final(cfg, alone)["ema"])
        if cfg.trainable:  # what a fine-tuning freezes stays the parent's, exactly
            frozen = [k for k in mine if not k.startswith(cfg.trainable)]
            assert frozen and all(torch.equal(mine[k], parent_w[k]) for k in frozen)


@pytest.mark.parametrize("change,words", [
    (dict(steps=31), "steps"), (dict(lr=1e-3), "lr"), (dict(net={**NET, "width": 8}), "net"),
    (dict(formulation="ddpm"), "formulation"), (dict(batch=8), "batch"),
])
def test_configs_that_differ_in_more_than_data_and_seed_cannot_stack(tmp_path, change, words):
    with pytest.raises(ValueError, match=words):
        stack_resume.train([BASE, BASE.replace(seed=1, **change)], Store(tmp_path), progress=False)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_lora_precision_and_duplicates_are_refused(tmp_path):
    for bad, words in [(dict(lora={"rank": 2}), "LoRA"), (dict(precision="bf16"), "precision")]:
        with pytest.raises(ValueError, match=words):
            stacked.check([BASE.replace(**bad), BASE.replace(seed=1, **bad)])
    student = BASE.replace(formulation="distill4", init=asdict(BASE))  # each student distils its own teacher
    with pytest.raises(ValueError, match="teacher"):
        stacked.check([student, student.replace(seed=1)])
    with pytest.raises(ValueError, match="twice"):
        stacked.check([BASE, BASE.replace(ckpt_every=7)])  # ckpt_every is no part of the key
    with pytest.raises(ValueError, match="TrainConfig"):
        stacked.check([BASE, "not a config"])


def test_group_gathers_what_pays_and_leaves_the_rest():
    w16, w8 = (BASE.replace(net={**NET, "width": w}) for w in (16, 8))
    a, b, c = BASE, BASE.replace(seed=1), BASE.replace(n=8)
    other_steps = BASE.replace(steps=50, seed=3)
    jobs = stacked.group([w16, a, b, other_steps, c, w16.replace(seed=1), b, w8, w8.replace(seed=1)], max_size=2)
    # a, b, c: two stacks of at most 2 (a and c, b alone); w8 needs more models to pay; w16 never does
    assert jobs == [w16, stacked.Stack((a, c)), b, other_steps, w16.replace(seed=1), w8, w8.replace(seed=1)]
    assert stacked.min_stack(w16) is None and stacked.min_stack(BASE.replace(lora={"rank": 2})) is None
    w8s = [w8.replace(seed=s) for s in range(stacked.min_stack(w8))]
    assert stacked.group(w8s) == [stacked.Stack(tuple(w8s))]


def test_fit_all_trains_stacks_and_singles_each_under_its_own_key(tmp_path):
    store = Store(tmp_path)
    w16 = BASE.replace(net={**NET, "width": 16}, steps=12, snapshot_every=None)
    cfgs = [BASE.replace(steps=12, seed=s) for s in range(3)] + [w16]
    times = fitting.fit_all(cfgs, store, {"device": "cpu", "n_jobs": 1})
    assert any("stacked" in label for label in times) and len(times) == 2  # one stack of three, one alone
    assert all(fitting.is_fitted(c, store) for c in cfgs)
    assert fitting.fit_all(cfgs, store, {"device": "cpu", "n_jobs": 1}) == {}  # nothing left to train

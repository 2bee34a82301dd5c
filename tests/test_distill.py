"""Progressive distillation (``formulations.Progressive``): the student's target against two teacher Euler (= DDIM) steps
computed with the samplers, and a briefly trained student against its teacher on a tiny case."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from reprolib import fitting, formulations, networks, samplers, zoo
from reprolib.formulations import Denoiser
from reprolib.store import Store
from reprolib.train import TrainConfig, train


def test_grids_nest_and_follow_karras():
    """Halving the step count keeps every other level; the levels are Karras's ramp at i / N."""
    for n in (1, 2, 4, 8, 16):
        torch.testing.assert_close(formulations.grid(2 * n)[::2], formulations.grid(n))
    g = formulations.grid(4)
    assert float(g[0]) == pytest.approx(80.0)
    ramp = torch.arange(4, dtype=torch.float64) / 4
    torch.testing.assert_close(g, (80 ** (1 / 7) + ramp * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7)
    # the student's sampler: its native schedule is its grid, then 0
    s = samplers.schedule(Denoiser(networks.build("mlp", width=8, depth=1), "distill4"), 4, "native")
    torch.testing.assert_close(s, torch.cat([formulations.grid(4).float(), torch.zeros(1)]))


def test_a_student_reads_its_network_as_edm_does():
    """Same weights, same D: a student starts as its teacher (EDM preconditioning under another name)."""
    torch.manual_seed(0)
    net = networks.build("mlp", width=16, depth=1)
    x, sigma = torch.randn(5, 1, 8, 8) * 3, torch.tensor([0.01, 0.5, 2.0, 20.0, 80.0])
    torch.testing.assert_close(Denoiser(net, "distill4")(x, sigma), Denoiser(net, "edm")(x, sigma), rtol=0, atol=0)


def _teacher(seed=0):
    torch.manual_seed(seed)
    return Denoiser(networks.build("unet", in_channels=1, resolution=8, width=8), "edm").eval().requires_grad_(False)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_target_makes_one_student_step_land_on_two_teacher_steps(n):
    """For every student level i: one Euler step from s_i with D = target lands where the teacher's two Euler
    steps on the 2N grid land (``samplers.euler``), including the last step to 0, where target = x''."""
    teacher = _teacher()
    f = formulations.build(f"distill{n}")
    f.teacher = teacher
    student_levels = torch.cat([formulations.grid(n), torch.zeros(1, dtype=torch.float64)]).float()
    teacher_levels = torch.cat([formulations.grid(2 * n), torch.zeros(1, dtype=torch.float64)]).float()
    g = torch.Generator().manual_seed(1)
    for i in range(n):
        x = torch.randn(6, 1, 8, 8, generator=g) * student_levels[i]
        target = f.target(x, torch.full((6,), i))
        two = samplers.euler(lambda x_, s_: teacher(x_, s_), x, teacher_levels[2 * i:2 * i + 3])
        one = samplers.euler(lambda x_, s_: target, x, student_levels[i:i + 2])
        torch.testing.assert_close(one, two, rtol=1e-4, atol=1e-4 * float(two.abs().max()))
        if i == n - 1:
            torch.testing.assert_close(target, two)


def test_a_student_needs_its_teacher(tmp_path):
    cfg = TrainConfig(n=16, net={"kind": "mlp", "width": 8, "depth": 1}, formulation="distill2", steps=2, batch=4)
    with pytest.raises(ValueError, match="init"):
        train(cfg, Store(tmp_path), progress=False)


def test_a_briefly_trained_student_moves_toward_its_teachers_two_steps(tmp_path):
    """A one-step student (distill1) of a small teacher, trained by the one training loop (teacher as ``init``):
    its one Euler step from sigma_max moves toward the teacher's two steps on the same noise, from where it started
    (the teacher's own one step)."""
    store = Store(tmp_path)
    net = {"kind": "mlp", "width": 32, "depth": 1}
    teacher_cfg = TrainConfig(n=64, net=net, steps=60, batch=32, warmup=10, ema_halflife=5)
    student_cfg = teacher_cfg.replace(formulation="distill1", init=asdict(teacher_cfg), steps=150, lr=1e-3,
                                      warmup=10, ema_halflife=5)
    teacher = train(teacher_cfg, store, progress=False)
    student = train(student_cfg, store, progress=False)
    z = samplers.noise(range(64), (1, 8, 8))
    two = samplers.euler(teacher, 80 * z, torch.cat([formulations.grid(2).float(), torch.zeros(1)]))
    start = samplers.euler(teacher, 80 * z, torch.tensor([80.0, 0.0]))
    got = samplers.sample(student, range(64), (1, 8, 8), "euler", 1, "native")
    before, after = float(((start - two) ** 2).mean()), float(((got - two) ** 2).mean())
    assert after < 0.75 * before, (before, after)


def test_fit_all_trains_a_student_after_its_teacher(tmp_path, monkeypatch):
    """The zoo's distilled chain: each round starts from the previous; fit_all starts the student only once its
    teacher is trained, and the teacher first, as it has the longest chain of work behind it."""
    teacher = TrainConfig(n=16, net={"kind": "mlp", "width": 8, "depth": 1}, steps=3, batch=4)
    student = zoo.distilled(teacher, {"steps_scale": 0.005})
    chain = fitting.ancestors(student)
    assert [c.formulation for c in chain] == ["distill8", "distill16", "edm"] and chain[-1] == teacher
    assert student.formulation == f"distill{zoo.DISTILL_STEPS}"
    order, fit = [], fitting.fit
    monkeypatch.setattr(fitting, "fit", lambda cfg, store, **kw: order.append(cfg) or fit(cfg, store, **kw))
    other = teacher.replace(seed=5)
    store = Store(tmp_path)
    fitting.fit_all([student, other, teacher], store, {"device": "cpu", "n_jobs": 1})
    assert order[0] == teacher and sorted(map(repr, order[1:])) == sorted(map(repr, [other, student]))
    assert all(fitting.is_fitted(c, store) for c in [student, other, teacher, *chain])

"""benchmarks/bench_flops.py: what it counts for one training step, on which the floor it reports rests. No timing
is asserted."""

from __future__ import annotations

import _scripts
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from reprolib import stacked
from reprolib.train import TrainConfig, build, training_set

NET = {"kind": "unet", "width": 4, "group_size": 4, "noise_scale": 1.0}
CFG = TrainConfig(net=NET, n=32, steps=10, batch=8, snapshot_every=None)


@pytest.fixture(scope="module")
def bench():
    return _scripts.load("benchmarks/bench_flops.py")  # it puts benchmarks/ on sys.path for its bench_jobs


def test_a_step_counts_a_forward_pass_and_its_backward(bench):
    ds = training_set(CFG)
    net = build(CFG, ds.shape).net
    with FlopCounterMode(display=False) as counter:
        net(ds.images[:CFG.batch], torch.zeros(CFG.batch))
    forward = counter.get_total_flops()
    step = bench.step_flops(CFG)
    # backward: a weight gradient for every layer and an input gradient for all but the first, each about a
    # forward's work; the loss itself is elementwise (not counted)
    assert 2.5 * forward < step <= 3 * forward


def test_a_stack_counts_what_its_models_count_alone(bench):
    other = CFG.replace(seed=1, n=16)
    assert bench.step_flops(stacked.Stack((CFG, other))) == bench.step_flops(CFG) + bench.step_flops(other)


def test_plan_totals_are_each_jobs_steps_times_its_step(bench):
    jobs, ones = bench.plan_totals({}.fromkeys(bench.bench_jobs.jobs(), 1.0))
    assert len(jobs) == len(ones) > 20
    # per step 1: a job's total is its steps (a stack's once, the ancestors it trains itself added)
    assert all(total >= job.steps for job, total in zip(jobs, ones))
    assert sum(ones) > sum(job.steps for job in jobs)  # the distilled student's first rounds

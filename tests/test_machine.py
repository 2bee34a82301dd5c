"""The reader's machine (reprolib.machine): settings that follow it, trainings at one thread whatever the caller's,
stacks as a GPU would train them, and what a failed training leaves behind."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import pytest
import torch

from reprolib import fitting, machine, profiles, progress, stack_resume, stacked, sweep, zoo
from reprolib.store import Store
from reprolib.train import TrainConfig, is_trained, trained_threads

from test_stacked import BASE, _assert_close_states, _cfgs, _final


@pytest.fixture
def cores(monkeypatch):
    """``cores(n)``: this process may run on n cores (what ``os.sched_getaffinity`` says)."""
    def set_cores(n):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_cores


@pytest.mark.parametrize("n", [1, 2, 16, 64])
def test_workers_follow_the_usable_cores_and_kernels_keep_the_records_threads(cores, monkeypatch, n):
    cores(n)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert machine.usable_cores() == n
    for notebook in ("01", "02", "06"):
        P = profiles.settings(notebook, "cpu")
        assert (P["device"], P["n_jobs"], P["threads"]) == ("cpu", n, profiles.RECORD_THREADS)
        assert profiles.settings(notebook, "paper")["threads"] == n  # "auto" above the cpu rung
    assert "n_jobs" not in profiles.settings("08", "cpu")  # 08 trains nothing


def test_a_gpu_is_used_where_there_is_one_with_the_profiles_workers(cores, monkeypatch):
    cores(16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profiles.settings("02", "cpu")["device"] == "cuda"
    assert profiles.settings("02", "cpu")["n_jobs"] == profiles.GPU_WORKERS["cpu"]
    assert profiles.settings("02", "paper")["n_jobs"] == profiles.GPU_WORKERS["paper"] == 1
    cores(4)
    assert profiles.settings("02", "cpu")["n_jobs"] == 4  # never more workers than cores to drive them
    P = profiles.settings("02", "cpu", device="cpu", n_jobs=3, threads=5)  # an override wins
    assert (P["device"], P["n_jobs"], P["threads"]) == ("cpu", 3, 5)


def test_on_several_gpus_the_workers_are_the_profiles_per_card(cores, monkeypatch):
    cores(64)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert machine.workers("auto", "cuda", gpu_workers=3) == 12
    assert machine.workers("auto", "cuda:2", gpu_workers=3) == 3  # one named card
    cores(8)
    assert machine.workers("auto", "cuda", gpu_workers=3) == 8


def test_trainings_spread_over_the_gpus_and_share_one_only_when_there_are_more(tmp_path):
    with contextlib.ExitStack() as held:
        first = [held.enter_context(machine.gpu("cuda", tmp_path, count=4)) for _ in range(4)]
        assert sorted(first) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]  # one each
        more = [held.enter_context(machine.gpu("cuda", tmp_path, count=4)) for _ in range(5)]
        assert sorted(more[:4]) == sorted(first) and more[4] == "cuda:0"  # then a second on each, in turn
    with machine.gpu("cuda", tmp_path, count=4) as again:
        assert again == "cuda:0"  # released when a training ends
    for given, count in (("cpu", 4), ("cuda:3", 4), ("cuda", 1), ("cuda", 0)):
        with machine.gpu(given, tmp_path, count=count) as on:
            assert on == given


def test_worker_processes_claim_different_gpus(tmp_path):
    """Workers are processes: a card one holds is not another's (the lock is a file's, not a thread's)."""
    code = ("import os, sys, time; from reprolib import machine\n"
            "with machine.gpu('cuda', sys.argv[1], count=2) as on:\n"
            "    print(on, flush=True)\n"
            "    while not os.path.exists(sys.argv[2]): time.sleep(0.05)\n")
    release = tmp_path / "release"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "locks"), str(release)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        held = sorted(p.stdout.readline().strip() for p in procs)  # both hold a card at once here
    finally:
        release.touch()
        for p in procs:
            p.wait(timeout=60)
    assert held == ["cuda:0", "cuda:1"]


@pytest.mark.parametrize("name,value", [("n_jobs", 0), ("n_jobs", "many"), ("threads", -1), ("threads", 1.5)])
def test_bad_machine_settings_are_refused(name, value):
    [message] = profiles.validate("02", "cpu", {name: value})
    assert "'auto' or a positive integer" in message


def test_layout_says_what_numbers_depend_on():
    P = profiles.settings("02", "cpu", device="cpu")
    assert machine.layout(P) == {"device": "cpu", "cpu": machine.cpu(), "accelerator": None, "train_threads": 1,
                                 "threads": 2}
    assert machine.layout({**P, "threads": 16}) != machine.layout(P)
    assert machine.layout({**P, "n_jobs": 7}) == machine.layout(P)  # how many workers changes no number
    line = machine.describe(P)
    assert line.startswith(f"cpu ({machine.cpu()}) · ") and f"{P['n_jobs']} training worker" in line
    assert "kernel 2 threads" in line


def test_kernels_pin_their_threads(monkeypatch):
    torch.set_num_threads(1)
    machine.apply({"threads": 2})
    assert torch.get_num_threads() == 2


# ---------------------------------------------------------------- trainings: one thread, whatever the caller has


def _tiny(seed=0):
    return TrainConfig(net={"kind": "mlp", "width": 16, "depth": 1}, n=32, steps=4, batch=8, warmup=1, seed=seed)


def test_a_training_in_this_process_runs_on_one_thread_and_gives_the_callers_count_back(tmp_path):
    store = Store(tmp_path)
    torch.set_num_threads(2)
    sweep.run_all(fitting.fit, [_tiny()], store, n_jobs=1, progress=False)
    assert trained_threads(_tiny(), store) == [machine.TRAIN_THREADS] == [1]
    assert torch.get_num_threads() == 2


def test_a_failed_training_drops_its_progress_entry(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.ENV, str(tmp_path))

    def fails(cfg, store, progress=False):
        from reprolib import progress as p

        p.update("train", "a model that fails", 0, 5000)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sweep._run(fails, _tiny(), str(tmp_path / "store"), 1)
    said = json.loads((tmp_path / f"{os.getpid()}.json").read_text())
    assert "train" not in said["work"]


def test_after_a_failed_job_nothing_new_starts_and_the_running_ones_finish(tmp_path):
    """Two workers: job 0 fails at once while job 1 trains; job 2 waits for nothing but must not start."""
    store = Store(tmp_path)
    bad = _tiny(0).replace(net={"kind": "nonsense"})
    slow, never = _tiny(1).replace(steps=200), _tiny(2)
    with pytest.raises(ValueError, match="nonsense"):
        sweep.run_scheduled(fitting.fit, [bad, slow, never], [3.0, 2.0, 1.0], [[], [], []], store, n_jobs=2,
                            progress=False)
    assert is_trained(slow, store) and not is_trained(never, store)


# ---------------------------------------------------------------- stacks as a GPU trains them


def test_the_papers_u_nets_train_one_per_job_on_a_gpu_so_a_sweep_spreads_over_the_cards(tmp_path):
    paper = profiles.settings("02", "paper", device="cuda", n_jobs=1)
    jobs, _, _ = fitting.schedule(list(zoo.regimes(paper).values()), Store(tmp_path), device="cuda",
                              max_stack=fitting.max_stack(paper))
    assert fitting.max_stack(paper) == 1 and jobs and all(isinstance(j, TrainConfig) for j in jobs)
    cpu = profiles.settings("02", "cpu", device="cuda", n_jobs=1)
    assert fitting.max_stack(cpu) is None and fitting.max_stack({**paper, "device": "cpu"}) is None
    jobs, _, _ = fitting.schedule(list(zoo.regimes(cpu).values()), Store(tmp_path), device="cuda",
                              max_stack=fitting.max_stack(cpu))
    assert all(isinstance(j, stacked.Stack) for j in jobs)  # the digits U-Nets stack: launch-bound on a GPU


def test_on_a_gpu_every_same_shape_group_stacks_whatever_its_kind_and_size():
    P = profiles.settings("02", "cpu", device="cpu")
    sweep_cfgs = list(zoo.regimes(P).values())
    on_cpu = stacked.group(sweep_cfgs)
    on_gpu = stacked.group(sweep_cfgs, device="cuda")
    assert all(isinstance(j, TrainConfig) or j.cfgs[0].net["width"] <= 8 for j in on_cpu)  # as measured on a CPU
    # on a GPU: one stack per (width, length): widths 4/8/16, 5,000 steps (N <= 32) and 3,000 (the rest)
    assert sorted((j.cfgs[0].net["width"], j.steps, len(j.cfgs)) for j in on_gpu) == [
        (w, steps, k) for w in (4, 8, 16) for steps, k in ((3000, 6), (5000, 2))]
    s1 = {v.name: v.cfg for v in zoo.section1(profiles.settings("01", "cpu", device="cpu"))}
    jobs = stacked.group(list({repr(c): c for c in s1.values()}.values()), device="cuda")
    pairs = [j for j in jobs if isinstance(j, stacked.Stack)]
    assert [len(j.cfgs) for j in pairs] == [2]  # the two EDM U-Nets of different seeds; the rest differ in kind
    assert stacked.min_stack(s1["MLP EDM (Heun)"], "cuda") == 2 and stacked.min_stack(s1["MLP EDM (Heun)"]) is None
    assert stacked.min_stack(s1["U-Net distilled (4 steps)"], "cuda") is None  # a teacher of its own
    assert stacked.min_stack(BASE.replace(precision="bf16"), "cuda") is None
    assert stacked.min_stack(BASE.replace(lora={"rank": 2}), "cuda") is None


def test_a_stack_under_the_math_attention_kernel_a_gpu_uses_trains_each_model_as_alone(tmp_path, monkeypatch):
    """On CUDA the stacked step runs attention on the math kernel (the fused ones fail under vmap): the same
    computation here on the CPU gives each model what it gets alone, up to round-off."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    used = []

    def math_kernel(device):
        used.append(device)
        return sdpa_kernel([SDPBackend.MATH])

    monkeypatch.setattr(stacked, "_attention", math_kernel)
    cfgs = _cfgs()
    alone, together = Store(tmp_path / "alone"), Store(tmp_path / "together")
    for cfg in cfgs:
        fitting.fit(cfg, alone, progress=False)
    stack_resume.train(cfgs, together, progress=False)
    assert used, "the stacked step did not ask for its attention kernels"
    for cfg in cfgs:
        _assert_close_states(_final(cfg, together)["ema"], _final(cfg, alone)["ema"])


def test_the_math_kernel_is_what_a_stack_off_the_cpu_may_use():
    with stacked._attention(torch.device("cuda")):
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.mem_efficient_sdp_enabled()  # and only inside the step

"""The training pool's scheduler (``sweep.run_scheduled``) and the cost model that orders it (``fitting.cost``)."""

from dataclasses import asdict

import _scripts
import pytest

from reprolib import banks, fitting, stacked, sweep, zoo
from reprolib.store import Store, config_key
from reprolib.train import TrainConfig, is_trained


def test_priority_is_the_longest_chain_of_work_behind_a_job():
    # a -> b -> c (b waits for a, c for b); d alone; e waits for a
    costs = [1.0, 2.0, 3.0, 5.0, 0.5]
    after = [[], [0], [1], [], [0]]
    assert sweep.priorities(costs, after) == [6.0, 5.0, 3.0, 5.0, 0.5]


def test_one_worker_runs_ready_jobs_by_priority_and_never_before_what_they_wait_for(tmp_path):
    order = []
    costs = [1.0, 2.0, 3.0, 5.5, 0.5]
    after = [[], [0], [1], [], [0]]
    sweep.run_scheduled(lambda job, store, progress: order.append(job), list("abcde"), costs, after,
                        Store(tmp_path), n_jobs=1, progress=False)
    # a heads the longest chain (6) though d alone costs more (5.5); then d, b, c; e (0.5) last
    assert order == list("adbce")


def _tiny(seed, **kw):
    return TrainConfig(n=16, net={"kind": "mlp", "width": 8, "depth": 1}, steps=4, batch=4, seed=seed, **kw)


def test_two_workers_train_every_job_and_a_child_after_its_parent(tmp_path):
    parent = _tiny(0)
    child = _tiny(1).replace(init=asdict(parent))
    jobs = [child, _tiny(2), parent]
    store = Store(tmp_path)
    times = fitting.fit_all(jobs, store, {"device": "cpu", "n_jobs": 2})
    assert sorted(times) == sorted(fitting.describe(j) for j in jobs)  # the parent trained once, by its own job
    assert all(is_trained(j, store) for j in jobs)
    assert fitting.fit_all(jobs, store, {"device": "cpu", "n_jobs": 2}) == {}


def test_cost_is_steps_times_the_measured_step_of_its_kind():
    cfg = _tiny(0)
    assert fitting.cost(cfg, {fitting.cost_class(cfg): 0.01}) == pytest.approx(0.04)
    assert fitting.cost(cfg, {}) is None
    stack = stacked.Stack((cfg, cfg.replace(seed=1)))
    assert fitting.cost_class(stack).startswith("2 stacked ")
    # where one job's kind was never measured, every job falls back to the same stand-in (steps x width)
    wide = cfg.replace(net={"kind": "mlp", "width": 16, "depth": 1})
    assert fitting.cost(cfg) is None and fitting.costs([cfg, wide]) == [32.0, 64.0]


def test_every_job_of_the_cpu_profile_has_a_measured_cost():
    from reprolib import profiles

    store = Store("/nonexistent-store-for-planning")
    for nb in ("01", "02", "04", "05", "06", "07"):
        jobs = stacked.group(list({repr(c): c for c in zoo.plan(nb, profiles.settings(nb, "cpu"), store)}.values()))
        missing = [fitting.cost_class(j) for j in jobs if fitting.cost(j) is None]
        assert not missing, f"notebook {nb}: no measured step cost for {missing} (benchmarks/bench_jobs.py --write)"


def test_the_cpu_plan_starts_the_long_chains_first():
    """06's pre-trained model (every fine-tuning waits for it) and 01's consistency model (6,000 steps) start the
    pool; 01's EDM U-Net counts the distilled student's chain, whose first two rounds the student's job trains."""
    from reprolib import profiles

    store = Store("/nonexistent-store-for-planning")
    configs = [c for nb in ("01", "06") for c in zoo.plan(nb, profiles.settings(nb, "cpu"), store)]
    jobs, costs, after = fitting.schedule(configs, store)
    prio = sweep.priorities(costs, after)
    first = [jobs[j] for j in sorted(range(len(jobs)), key=lambda j: -prio[j])[:2]]
    assert sorted((c.formulation, c.classes) for c in first) == [("ct", None), ("edm", (0, 1, 2, 3, 4))]
    student = next(j for j, c in enumerate(jobs) if c.formulation == "distill4")
    teacher = next(j for j, c in enumerate(jobs) if c == fitting.ancestors(jobs[student])[-1])
    rounds = fitting.ancestors(jobs[student])[:-1]
    assert [c.formulation for c in rounds] == ["distill8", "distill16"]
    assert costs[student] == pytest.approx(sum(fitting.cost(c) for c in [jobs[student], *rounds]))
    assert prio[teacher] == pytest.approx(costs[teacher] + costs[student])


def test_a_cycle_of_waiting_jobs_is_refused_not_waited_on(tmp_path):
    with pytest.raises(ValueError, match="cycle"):
        sweep.run_scheduled(lambda job, store, progress: None, ["a", "b"], [1.0, 1.0], [[1], [0]], Store(tmp_path),
                            n_jobs=1, progress=False)


def test_a_sample_bank_asked_for_twice_at_once_is_drawn_once(tmp_path):
    """Two notebooks side by side (paper_figures.py --jobs) asking for one bank: the second waits for the first."""
    import threading
    import time

    import torch

    store, draws, out = Store(tmp_path), [], {}

    def draw():
        draws.append(1)
        time.sleep(0.5)
        return torch.full((2, 1, 8, 8), 3.0)

    def ask(name):
        out[name] = banks._bank(store, {"bank": 1}, draw)

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(draws) == 1
    assert torch.equal(out[0], out[1]) and out[0].max() == 1.0  # clipped to [-1, 1], stored, loaded by the other


def test_makespan_simulates_list_scheduling_with_exact_costs():
    # a -> b -> c; d alone; e waits for a. Two workers: a and d start at 0, b when a ends (1); when b ends (3), c
    # (priority 3) and e (0.5) are ready for one free worker: c goes first, e when d ends (5.5); c ends last (6).
    costs = [1.0, 2.0, 3.0, 5.5, 0.5]
    after = [[], [0], [1], [], [0]]
    end, starts = sweep.makespan(costs, after, 2)
    assert starts[0] == starts[3] == 0.0 and starts[1] == 1.0 and starts[2] == 3.0
    assert end == 6.0 and starts[4] == 5.5
    assert sweep.makespan(costs, after, 1)[0] == sum(costs)  # one worker: the work, end to end
    assert sweep.makespan(costs, after, 10)[0] == max(sweep.priorities(costs, after))  # many: the longest chain


def test_the_plan_benchmark_gives_the_cpu_plans_time_on_w_workers(capsys):
    bench = _scripts.load("benchmarks/bench_plan.py")
    assert bench.main(["--workers", "1", "64"]) == 0
    out = capsys.readouterr().out
    jobs, costs, after = bench.plan("cpu")
    length, chain = bench.critical_path(costs, after)
    assert f"| 1 | {sum(costs) / 60:.1f} |" in out and f"| 64 | {length / 60:.1f} |" in out
    assert all(chain[i] in after[chain[i + 1]] for i in range(len(chain) - 1))  # a chain of waits


def test_a_model_two_processes_ask_for_at_once_is_trained_once(tmp_path, monkeypatch):
    """Two runs on one store (or two workers of a cluster): the second waits for the model, then loads it; stacks
    that share a model wait for each other in one order, so neither deadlocks nor stores the shared model twice. A
    stack trains whole (its stored member as company: a model's bits depend on its stack, ``stack_resume``)."""
    import threading

    from reprolib import loop

    net = {"kind": "unet", "width": 4, "group_size": 4, "noise_scale": 1.0}
    a, b, c = (TrainConfig(net=net, n=32, steps=30, batch=8, seed=s, snapshot_every=None) for s in range(3))
    store, trained, finals, run, save = Store(tmp_path), [], [], loop.run, Store.save

    def counting(job, *args, **kwargs):
        trained.append(sorted(config_key(k) for k in job.keys))
        return run(job, *args, **kwargs)

    def saving(self, kind, config, name, payload):
        if name == "final":
            finals.append(config_key(config))
        return save(self, kind, config, name, payload)

    monkeypatch.setattr(loop, "run", counting)
    monkeypatch.setattr(Store, "save", saving)
    key = lambda cfg: config_key(cfg.key_dict())  # noqa: E731
    for jobs, runs, once in (([a, a], [[a]], [a]),  # a: trained here, then company below
                             ([stacked.Stack((a, b)), stacked.Stack((c, b))], [[a, b], [c, b]], [b, c])):
        trained.clear()
        finals.clear()
        threads = [threading.Thread(target=fitting.fit, args=(job, store), kwargs={"progress": False}) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "the two trainings wait for each other forever"
        assert sorted(trained) == sorted(sorted(map(key, r)) for r in runs)
        assert sorted(finals) == sorted(map(key, once)) and all(is_trained(x, store) for x in once)


def test_the_plan_benchmark_gives_the_paper_plans_wall_time_on_gpus_from_the_measured_rates(capsys):
    bench = _scripts.load("benchmarks/bench_plan.py")
    rates = _scripts.load("benchmarks/gpu_hours.py").load_rates()
    assert bench.main(["--profile", "paper", "--gpu-rates", str(_scripts.ROOT / "benchmarks" / "gpu_rates_h200.json"),
                       "--workers", "1", "64"]) == 0
    out = capsys.readouterr().out
    jobs, costs, after = bench.plan("paper", "cuda", bench.gpu_step_costs(rates, "tf32"))
    length, _ = bench.critical_path(costs, after)
    assert not any(isinstance(j, stacked.Stack) for j in jobs)  # one paper U-Net per GPU
    assert f"| 1 | {sum(costs) / 3600:.1f} |" in out and f"| 64 | {length / 3600:.1f} |" in out
    assert length < sum(costs) / 8  # many GPUs pay: no chain holds most of the work
    assert "GPU h (float32)" in out


def test_the_plan_benchmark_gives_no_paper_sampling_hours_for_another_profile(capsys):
    bench = _scripts.load("benchmarks/bench_plan.py")
    assert bench.main(["--profile", "mnist", "--gpu-rates", str(_scripts.ROOT / "benchmarks" / "gpu_rates_h200.json"),
                       "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "the mnist plan's training on W GPUs" in out
    assert "GPU h (float32)" not in out and "sampling is not estimated here" in out


def test_an_edit_to_how_a_bank_is_drawn_or_stored_gives_it_a_new_key(tmp_path, monkeypatch):
    """banks.py lives outside every digested module: the digest of its code (banks.stored_as) joins every bank's
    and table's key, so an edit to how a bank is drawn (the sampler's arguments) or stored (the clip) re-keys it."""
    import inspect
    import sys

    import torch

    store, draws = Store(tmp_path), []

    def draw():
        draws.append(1)
        return torch.full((2, 1, 8, 8), 3.0)

    from reprolib import codehash

    key, before = {"bank": 1, "code": codehash.of("samples")}, banks.stored_as()
    assert banks._bank(store, key, draw).max() == 1.0 and banks._bank(store, key, draw).max() == 1.0
    assert len(draws) == 1  # stored, then loaded
    source = inspect.getsource(sys.modules["reprolib.banks"])
    assert banks.stored_as() == banks.storing_digest(source)
    for old, new in (("clamp(-1, 1)", "clamp(-2, 2)"),  # a reader widens the clip
                     ("P['shape'], sampler, steps, schedule", "P['shape'], sampler, steps + 1, schedule"),
                     ('P["shape"], sampler, steps, schedule', 'P["shape"], sampler, steps + 1, schedule')):
        if old in source:  # the draw code of ``samples`` or the clip of ``_bank``
            assert banks.storing_digest(source.replace(old, new)) != banks.stored_as()
    assert banks.storing_digest(source.replace('"""Samples of a trained', '"""Samples drawn from a trained')) \
        == banks.stored_as()  # a docstring is no code
    edited = banks.storing_digest(source.replace("clamp(-1, 1)", "clamp(-2, 2)"))
    monkeypatch.setattr(banks, "stored_as", lambda: edited)
    banks._bank(store, key, draw)
    assert len(draws) == 2  # a new key: drawn again, not the bank clipped the old way
    # and `python -m reprolib.codehash` lists the bank drawn by the old code as stale, not the new one
    assert codehash.stale(tmp_path) == [store.folder("samples", {**key, "stored": before})]

"""Store keys follow the code: an edit to what computes an artifact gives it a new key, a comment edit does not.

The end-to-end tests edit a temporary copy of the package and run it in fresh processes, as a researcher would
edit and re-run; the store and the copy live under tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import reprolib
from reprolib import codehash
from reprolib.store import Store, config_key
from reprolib.train import KIND, TrainConfig, is_trained, train

SOURCE = '''"""A module."""

import math


def f(x, y=2):
    """Doubles, then adds."""
    return 2 * x + y  # why: because


class A:
    """A class."""

    def g(self):
        return math.pi
'''


def test_docstrings_comments_and_layout_are_not_code():
    same = SOURCE.replace('"""Doubles, then adds."""', '"""Something else entirely,\n    over two lines."""')
    same = same.replace("# why: because", "# another reason").replace("\n\nclass", "\n\n\n# a note\nclass")
    same = same.replace("return 2 * x + y", "return (2 * x\n            + y)")
    assert codehash.source_digest(same) == codehash.source_digest(SOURCE)
    no_docstrings = SOURCE.replace('    """Doubles, then adds."""\n', "").replace('"""A module."""\n', "")
    assert codehash.source_digest(no_docstrings) == codehash.source_digest(SOURCE)


@pytest.mark.parametrize("edit", [
    ("2 * x", "3 * x"), ("y=2", "y=3"), ("math.pi", "math.e"), ("+ y", "- y"),
    ("def g(self):\n        return", "def g(self):\n        'doc'\n        x = 1\n        return")])
def test_any_change_of_code_is_a_new_digest(edit):
    assert codehash.source_digest(SOURCE.replace(*edit)) != codehash.source_digest(SOURCE)


def test_an_artifact_covers_the_modules_that_compute_it_and_what_they_import():
    weights = codehash.modules(*codehash.CODE["diffusion"])
    assert {"train", "networks", "formulations", "data", "lora"} <= set(weights)
    assert not set(weights) & codehash.NOT_CODE  # storage, progress reports and wiring are no part of it
    assert "samplers" not in weights and "samplers" in codehash.modules(*codehash.CODE["samples"])
    assert set(codehash.modules(*codehash.CODE["closed-form samples"])) >= {"gaussian", "patches", "optimal",
                                                                            "samplers", "data"}
    # closed_form imports the store's wiring (its banks, tables and trainings): that stops the walk
    assert not {"banks", "fitting", "zoo"} & set(codehash.modules("closed_form"))


def test_every_artifact_key_holds_its_code():
    cfg = TrainConfig(net={"kind": "mlp", "width": 8, "depth": 1}, steps=3, batch=4)
    assert cfg.key_dict()["code"] == codehash.of("diffusion")
    from reprolib import baselines

    assert baselines.GANConfig().key_dict()["code"] == codehash.of("gan")
    assert baselines.VAEConfig().key_dict()["code"] == codehash.of("vae")
    assert len({codehash.of(k) for k in ("diffusion", "samples", "dps", "classifier")}) == 4


# ---------------------------------------------------------------- end to end, in a copy of the package

RUN = """
import json, sys
import torch
from reprolib import banks, samplers
from reprolib.store import Store
from reprolib.train import TrainConfig

torch.set_num_threads(1)
trained, sampled = [], []
real_sample = samplers.sample
samplers.sample = lambda *a, **k: sampled.append(1) or real_sample(*a, **k)
cfg = TrainConfig(net={"kind": "mlp", "width": 16, "depth": 1}, n=32, steps=6, batch=8, warmup=2, ema_halflife=2)
store = Store(sys.argv[1])
from reprolib import train as train_lib
model = train_lib.train(cfg, store, progress=False, callback=lambda step, loss: trained.append(step))
x = banks.samples(cfg, store, range(4), {"sample_steps": 3, "device": "cpu", "shape": (1, 8, 8)})
print(json.dumps({"trained": len(trained), "sampled": len(sampled), "key": cfg.key_dict()["code"],
                  "x": x.flatten()[:4].tolist()}))
"""


@pytest.fixture
def package(tmp_path):
    """A copy of reprolib to edit, and a function running the script above against it in a fresh process."""
    copy = tmp_path / "copy"
    shutil.copytree(Path(reprolib.__file__).parent, copy / "reprolib", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def run():
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(RUN), str(tmp_path / "store")], env=env,
                             cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def edit(module, old, new):
        path = copy / "reprolib" / f"{module}.py"
        text = path.read_text()
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new))

    return run, edit


def test_an_edited_network_retrains_and_an_edited_comment_does_not(package):
    run, edit = package
    first = run()
    assert first["trained"] == 6 and first["sampled"] == 1
    again = run()
    assert again["trained"] == 0 and again["sampled"] == 0 and again["key"] == first["key"]

    # Comments and docstrings of the network: the same code, so the same model and the same samples.
    edit("networks", '    """A residual MLP on flattened pixels: a backbone with no spatial prior at all."""',
         '    """A residual MLP on flattened pixels (reworded)."""\n    # a comment a researcher added')
    edit("networks", "            h = h + b[\"mlp\"](b[\"norm\"](h) + b[\"emb\"](emb))",
         "            h = h + b[\"mlp\"](b[\"norm\"](h) + b[\"emb\"](emb))  # residual update")
    commented = run()
    assert commented["trained"] == 0 and commented["sampled"] == 0 and commented["key"] == first["key"]

    # The network's forward: a new model, trained, and its own samples.
    edit("networks", "            h = h + b[\"mlp\"]", "            h = h + 0.5 * b[\"mlp\"]")
    edited = run()
    assert edited["trained"] == 6 and edited["sampled"] == 1 and edited["key"] != first["key"]
    assert edited["x"] != first["x"]


def test_an_edited_sampler_samples_again_without_retraining(package):
    run, edit = package
    first = run()
    edit("samplers", "    s = (sigma_max ** (1 / rho) + ramp", "    s = 1.0 * (sigma_max ** (1 / rho) + ramp")
    sampler_edit = run()
    assert sampler_edit["trained"] == 0 and sampler_edit["sampled"] == 1 and sampler_edit["key"] == first["key"]


# ---------------------------------------------------------------- pruning


def test_prune_lists_then_deletes_what_the_current_code_never_reads(tmp_path, capsys):
    store = Store(tmp_path)
    cfg = TrainConfig(net={"kind": "mlp", "width": 8, "depth": 1}, n=16, steps=3, batch=4, warmup=1)
    train(cfg, store, progress=False)
    old = {k: v for k, v in cfg.key_dict().items() if k != "code"}  # a key from before keys held code
    other = {**cfg.key_dict(), "code": "0123456789abcdef"}  # a key of other code (an edit since, another checkout)
    for key in (old, other):
        store.save(KIND, key, "final", {"ema": {}, "losses": []})
    samples_of_old = {"model": old, "sampler": "heun", "code": codehash.of("samples")}
    store.save("samples", samples_of_old, "x", {"x": torch.zeros(1)})
    stale = {store.folder(KIND, old), store.folder(KIND, other), store.folder("samples", samples_of_old)}

    assert set(codehash.stale(tmp_path)) == stale
    assert codehash.main(["--store", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert all(str(folder) in listed for folder in stale) and "--delete" in listed
    assert all(folder.exists() for folder in stale)  # listing deletes nothing

    assert codehash.main(["--store", str(tmp_path), "--delete"]) == 0
    assert not any(folder.exists() for folder in stale)
    assert is_trained(cfg, store) and codehash.stale(tmp_path) == []
    assert store.folder(KIND, cfg.key_dict()) == tmp_path / KIND / config_key(cfg.key_dict())
    command = subprocess.run([sys.executable, "-m", "reprolib.codehash", "--store", str(tmp_path)],
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert command.returncode == 0 and "0 folder(s)" in command.stdout, command.stderr

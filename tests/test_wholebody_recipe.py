"""The real-data recipe (configs/wholebody.py + configs/wholebody_hand.py) end to end, tiny.

A COCO-WholeBody fixture is converted with `data.convert`, then both configs train from a
torchvision-style ImageNet `.pth` through `data.sources`, and `evaluate` scores the pair: the
commands of docs/REAL_DATA.md, at tiny sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

torch = pytest.importorskip("torch")

TINY = ["--config.data.image_size=32", "--config.model.width=8",
        "--config.model.deconv_filters=16", "--config.model.heatmap_size=8",
        "--config.model.sigma=1.0", "--config.data.num_workers=0",
        "--config.train.batch_size=2", "--config.train.epochs=0", "--config.train.num_steps=2",
        "--config.train.eval_every_steps=2", "--config.train.checkpoint_every_steps=2",
        "--config.train.log_every_steps=1", "--config.optim.warmup_steps=1"]


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The three-signer COCO-WholeBody fixture of test_convert, converted at 32 px."""
    from signlang_jax.data import convert
    from tests.test_convert import write_fixture

    source = tmp_path_factory.mktemp("coco")
    write_fixture(source, "coco-wholebody")
    out = source / "coco_wholebody"
    assert convert.main(["coco-wholebody", "--ann", str(source / "ann.json"), "--images",
                         str(source), "--out", str(out), "--size", "32", "--min-box", "16"]) == 0
    return out


def test_the_recipe_trains_the_pair_from_imagenet_weights_and_evaluates(converted, tmp_path):
    from tests.test_interop import torchvision_style_state_dict

    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision_style_state_dict(), weights)
    common = [f"--config.data.sources=coco={converted}:1.0",
              f"--config.model.pretrained_backbone={weights}", *TINY]
    body, hand = tmp_path / "body", tmp_path / "hand"
    done = _python("signlang_jax.main", "--config", "configs/wholebody.py", "--workdir",
                   str(body), *common)
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((body / "config.json").read_text())
    assert saved["model"]["pretrained_backbone"] == str(weights)
    assert saved["optim"]["schedule"] == "step" and saved["train"]["batch_size"] == 2
    done = _python("signlang_jax.main", "--config", "configs/wholebody_hand.py", "--workdir",
                   str(hand), *common)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((hand / "config.json").read_text())["model"]["udp"] is True
    report = tmp_path / "eval"
    done = _python("signlang_jax.evaluate", "--checkpoint", str(body), "--hand-checkpoint",
                   str(hand), "--data-root", str(converted), "--split", "all", "--out",
                   str(report))
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((report / "metrics.json").read_text())
    assert "body_plus_hand_stage" in metrics["hands"]


def test_the_recipe_without_its_weights_file_stops_naming_it(converted, tmp_path):
    missing = tmp_path / "weights" / "resnet18-f37072fd.pth"
    done = _python("signlang_jax.main", "--config", "configs/wholebody.py", "--workdir",
                   str(tmp_path / "run"), f"--config.data.sources=coco={converted}:1.0",
                   f"--config.model.pretrained_backbone={missing}", *TINY)
    assert done.returncode != 0
    assert f"pretrained weights {missing}: no such file" in done.stderr
    assert "Traceback" not in done.stderr

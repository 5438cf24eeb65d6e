"""Shared fixtures: tiny valid datasets written on the fly, and a small config."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from configs import default
from signlang_jax.keypoints import KEYPOINT_NAMES

# Compiled XLA programs are cached on disk and shared with subprocess tests
# (none of the imports above loads jax, so this is in time).
ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def write_sample(root: Path, stem: str, rng: np.random.Generator, size: tuple[int, int] = (64, 48),
                 ext: str = ".png") -> dict:
    """Write one valid image + label under root; return the label dict."""
    width, height = size
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "images" / f"{stem}{ext}"), image)
    keypoints = [
        {"name": name, "x": round(float(rng.uniform(0, width - 1)), 2),
         "y": round(float(rng.uniform(0, height - 1)), 2), "visible": int(rng.random() < 0.8)}
        for name in KEYPOINT_NAMES
    ]
    label = {"image": f"{stem}{ext}", "width": width, "height": height, "keypoints": keypoints,
             "bbox": [1.0, 2.0, width - 3.0, height - 4.0]}
    (root / "labels" / f"{stem}.json").write_text(json.dumps(label))
    return label


def write_dataset(root: Path, num: int, seed: int = 0, size: tuple[int, int] = (64, 48)) -> Path:
    """Write `num` valid samples named 000000.. under root."""
    rng = np.random.default_rng(seed)
    for i in range(num):
        write_sample(root, f"{i:06d}", rng, size)
    return root


def interrupt_nth_encode(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Make the n-th `cv2.imencode` call raise KeyboardInterrupt (Ctrl-C while writing)."""
    real, calls = cv2.imencode, []

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cv2, "imencode", interrupted)


@pytest.fixture
def tiny_config(tmp_path: Path):
    """The default config shrunk for tests: 32 px input, batch 4, no worker processes."""
    config = default.get_config()
    config.data.root = str(tmp_path / "data")
    config.data.image_size = 32
    config.data.num_workers = 0
    config.train.batch_size = 4
    return config


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic 64x64 samples, rendered once per test session."""
    from signlang_jax.synth import generate_dataset

    root = tmp_path_factory.mktemp("synth")
    generate_dataset(root, 24, seed=0, size=64, workers=1)
    return root


@pytest.fixture
def train_config(synth_root: Path):
    """tests/tiny_config.py on the session's synthetic data."""
    from tests import tiny_config

    config = tiny_config.get_config()
    config.data.root = str(synth_root)
    return config


@pytest.fixture(scope="session")
def tiny_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir trained for 4 steps with tests/tiny_config.py (checkpoints at 2 and 4)."""
    from signlang_jax.training.train import train_and_evaluate
    from tests import tiny_config

    config = tiny_config.get_config()
    config.data.root = str(synth_root)
    config.train.num_steps = 4
    workdir = tmp_path_factory.mktemp("tiny_run")
    train_and_evaluate(config, workdir)
    return workdir


def checkpoint_arrays(workdir: Path, config, step: int | None = None) -> dict:
    """Every array of the training state saved at `step` (default: latest) of a workdir."""
    import jax

    from signlang_jax.training import checkpoints, train

    _, state, _ = train.create_state(config, 10)
    # With this process's sharding: a checkpoint written by several processes restores here.
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            state)
    manager = checkpoints.make_checkpoint_manager(Path(workdir) / "checkpoints", config,
                                                  read_only=True)
    try:
        step = manager.latest_step() if step is None else step
        restored = checkpoints.restore_checkpoint(manager, step, abstract, None)
    finally:
        manager.close()
    flat = jax.tree_util.tree_flatten_with_path(restored)[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def memorise_four_samples(config, steps: int = 300) -> tuple[float, float, dict]:
    """Train `config`'s model on 4 training samples (one fixed batch) for `steps` steps;
    (first loss, last loss, val metrics on those 4 samples)."""
    from signlang_jax.data.pipeline import make_dataset
    from signlang_jax.data.sources import SampleSource, load_split
    from signlang_jax.training import train as train_lib
    from signlang_jax.training import validation

    samples = load_split(config.data, "train")[:4]
    graphdef, state, schedule = train_lib.create_state(config, steps)
    trainer = train_lib.make_trainer(config, graphdef, state, schedule)
    batch = next(iter(make_dataset(config, "val", samples=samples, num_workers=0)))
    placed = train_lib.device_batch(batch, trainer.batch_sharding)
    losses = []
    for _ in range(steps):
        state, metrics = trainer.train_step(state, placed)
        losses.append(metrics["loss"])
    place = lambda b: train_lib.device_batch(b, trainer.batch_sharding)
    val, _ = validation.validate(trainer.eval_step, place, state, config, SampleSource(samples))
    return float(losses[0]), float(losses[-1]), val

"""Resume, recovery and start-up checks: the defects a first week of real use runs into."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from signlang_jax.codec import heatmap_loss
from signlang_jax.data.iterator import DataChangedError
from signlang_jax.errors import CheckpointError, ConfigError, TrainingError
from signlang_jax.training import checkpoints
from signlang_jax.training import steps as steps_lib
from signlang_jax.training import train as train_lib
from tests.conftest import ROOT, checkpoint_arrays


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _copy_run(run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's 4-step run (checkpoints 2 and 4)."""
    return Path(shutil.copytree(run, tmp_path / "run"))


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_rerunning_a_resume_command_continues_its_own_checkpoints(train_config, tiny_run,
                                                                  tmp_path, capsys):
    """`main --workdir run2 --resume run1` twice: the second run continues run2."""
    train_config.train.num_steps = 6
    train_lib.train_and_evaluate(train_config, tmp_path / "w2", resume=str(tiny_run))
    assert "resumed from step 4" in capsys.readouterr().err
    train_config.train.num_steps = 8
    train_lib.train_and_evaluate(train_config, tmp_path / "w2", resume=str(tiny_run))
    err = capsys.readouterr().err
    assert f"--resume {tiny_run} ignored: {tmp_path / 'w2'} already has checkpoints" in err
    assert "resumed from step 6" in err
    assert _steps(tmp_path / "w2") == [6, 8]


def test_resume_takes_the_checkpoint_syntax(train_config, tiny_run, tmp_path, capsys):
    train_config.train.num_steps = 4
    train_lib.train_and_evaluate(train_config, tmp_path / "w", resume=f"{tiny_run}:2")
    err = capsys.readouterr().err
    assert f"--resume: starting from {tiny_run / 'checkpoints' / '2'}" in err
    assert "resumed from step 2" in err and _steps(tmp_path / "w") == [4]
    with pytest.raises(CheckpointError, match=r"step 3 is not in .*available: \[2, 4\]"):
        train_lib.train_and_evaluate(train_config, tmp_path / "w3", resume=f"{tiny_run}:3")


def _add_sample(data: Path) -> None:
    """A new sample: a copy of the first one under a new stem."""
    label = json.loads((data / "labels" / "000000.json").read_text())
    image = data / "images" / label["image"]
    label["image"] = "extra" + image.suffix
    shutil.copy(image, data / "images" / label["image"])
    (data / "labels" / "extra.json").write_text(json.dumps(label))


def test_changed_data_is_refused_unless_asked_to_restart_the_epoch(train_config, tiny_run,
                                                                   tmp_path, capsys):
    run = _copy_run(tiny_run, tmp_path)
    data = Path(shutil.copytree(train_config.data.root, tmp_path / "data"))
    train_config.data.root = str(data)
    train_config.data.val_fraction = 0.25
    _add_sample(data)
    train_config.train.num_steps = 6
    with pytest.raises(DataChangedError, match="the training split changed") as error:
        train_lib.train_and_evaluate(train_config, run)
    assert "on_data_change=restart_epoch" in str(error.value)
    assert _steps(run) == [2, 4]  # nothing written

    train_config.train.on_data_change = "restart_epoch"
    train_lib.train_and_evaluate(train_config, run)
    err = capsys.readouterr().err
    assert "the data changed since step 4 (the training split changed" in err
    assert "the data order starts anew" in err and "resumed from step 4" in err
    assert _steps(run) == [4, 6]


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("batch_size", 8, "train.batch_size was 4, now 8"),
    ("num_workers", 1, "data.num_workers was 0, now 1"),
])
def test_batch_size_or_workers_changed_at_resume_are_named(train_config, tiny_run, tmp_path,
                                                           flag, value, message):
    run = _copy_run(tiny_run, tmp_path)
    section = train_config.train if flag == "batch_size" else train_config.data
    section[flag] = value
    train_config.train.num_steps = 6
    with pytest.raises(DataChangedError) as error:
        train_lib.train_and_evaluate(train_config, run)
    assert message in str(error.value) and "architecture" not in str(error.value)


def test_config_changes_warn_and_every_start_is_kept(train_config, tiny_run, tmp_path, capsys):
    run = _copy_run(tiny_run, tmp_path)
    first = json.loads((run / "config.json").read_text())
    train_config.model.sigma = 1.5
    train_config.train.num_steps = 6
    train_lib.train_and_evaluate(train_config, run)
    err = capsys.readouterr().err
    assert f"WARNING {run / 'config.json'}: this config differs" in err
    assert "model.sigma: checkpoint 1.0, this config 1.5" in err
    assert "train.num_steps: checkpoint 4, this config 6" in err
    history = sorted(p.name for p in (run / "config_history").iterdir())
    assert history == ["000-step0.json", "001-step4.json"]
    assert json.loads((run / "config_history" / "000-step0.json").read_text()) == first
    assert json.loads((run / "config.json").read_text())["model"]["sigma"] == 1.5


def _truncate_arrays(step_dir: Path) -> None:
    for path in (step_dir / "state").rglob("d/*"):
        os.truncate(path, 10)


def test_damaged_latest_checkpoint_falls_back_to_the_previous_step(train_config, tiny_run,
                                                                   tmp_path, capsys):
    run = _copy_run(tiny_run, tmp_path)
    _truncate_arrays(run / "checkpoints" / "4")
    damaged_files = sorted(p.name for p in (run / "checkpoints" / "4").rglob("*"))
    step2 = checkpoint_arrays(run, train_config, 2)
    train_config.train.num_steps = 6
    train_lib.train_and_evaluate(train_config, run)
    err = capsys.readouterr().err
    assert err.count("WARNING skipping checkpoint step 4") == 1
    assert "cannot be read (damaged or incomplete?)" in err
    assert f"left in place at {(run / 'checkpoints' / '4').absolute()}" in err
    assert "resumed from step 2" in err
    # The damaged step is neither overwritten nor deleted, and is listed for a person to inspect.
    assert sorted(p.name for p in (run / "checkpoints" / "4").rglob("*")) == damaged_files
    assert 4 in _steps(run) and 6 in _steps(run)
    assert list(json.loads((run / "damaged_checkpoints.json").read_text())) == ["4"]
    assert checkpoint_arrays(run, train_config, 6).keys() == step2.keys()


def test_no_restorable_checkpoint_lists_every_step(train_config, tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path)
    for step in (2, 4):
        _truncate_arrays(run / "checkpoints" / str(step))
    train_config.train.num_steps = 6
    with pytest.raises(CheckpointError, match=r"can be restored:\n  step 4: .*damaged.*\n"
                                              r"  step 2: .*damaged"):
        train_lib.train_and_evaluate(train_config, run)
    assert _steps(run) == [2, 4]


def test_another_architecture_is_named_as_such(train_config, tiny_run):
    train_config.model.width = 16
    _, state, _ = train_lib.create_state(train_config, 10)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    manager = checkpoints.make_checkpoint_manager(tiny_run / "checkpoints", train_config,
                                                  read_only=True)
    try:
        with pytest.raises(CheckpointError, match=r"another architecture[\s\S]*"
                                                  r"0\.backbone\.bn1\.bias: checkpoint \(8,\), "
                                                  r"this model \(16,\)"):
            checkpoints.restore_checkpoint(manager, 4, abstract, None)
    finally:
        manager.close()


@jax.custom_vjp
def _inf_gradient(x: jax.Array) -> jax.Array:
    return x


_inf_gradient.defvjp(lambda x: (x, None), lambda _, g: (g * jnp.inf,))


def _finite_loss_inf_gradients(*args):
    return _inf_gradient(heatmap_loss(*args))


def test_inf_gradient_with_finite_loss_skips_the_step(train_config, tiny_run, tmp_path,
                                                      monkeypatch, capsys):
    """Global-norm clipping computes inf / inf = NaN: without the guard the params become NaN."""
    run = _copy_run(tiny_run, tmp_path)
    step4 = checkpoint_arrays(run, train_config, 4)
    monkeypatch.setattr(steps_lib, "heatmap_loss", _finite_loss_inf_gradients)
    train_config.train.num_steps = 6
    train_lib.train_and_evaluate(train_config, run)
    out = capsys.readouterr().out
    assert re.search(r"step 5 skipped: loss 0\.\d+, gradient norm (inf|nan) \(not finite\)", out)
    _assert_same(checkpoint_arrays(run, train_config, 6), step4)  # nothing changed, all finite

    train_config.optim.max_skipped_steps = 1
    train_config.train.num_steps = 10
    with pytest.raises(TrainingError, match=r"not finite for 2 steps in a row \(up to step 8"
                                            r".*last checkpoint \(step 6\) holds a finite"):
        train_lib.train_and_evaluate(train_config, run)
    assert _steps(run) == [4, 6]
    monkeypatch.undo()
    train_lib.train_and_evaluate(train_config, run)  # a healthy run goes on from there
    assert all(np.isfinite(v).all() for v in checkpoint_arrays(run, train_config, 10).values())


def _main(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "signlang_jax.main", "--config",
                           str(ROOT / "tests" / "tiny_config.py"), *flags], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_main_defaults_the_workdir_and_names_the_data_fields(tmp_path):
    proc = _main(tmp_path, f"--config.data.root={tmp_path / 'nothing'}")
    assert proc.returncode == 1, proc.stderr
    assert "workdir: runs/tiny_config (set --workdir to choose another)" in proc.stderr
    assert "is not a directory: set --config.data.root=DIR" in proc.stderr
    assert "--config.data.synthetic_num=N" in proc.stderr and "--data-root" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_main_reports_every_bad_field_before_any_work(tmp_path):
    proc = _main(tmp_path, "--workdir", str(tmp_path / "w"), "--config.train.batch_size=0",
                 "--config.train.eval_every_steps=0", "--config.augment.flip_prob=1.5")
    assert proc.returncode == 1
    for line in ("--config.train.batch_size=0: must be a positive integer",
                 "--config.train.eval_every_steps=0: must be a positive integer",
                 "--config.augment.flip_prob=1.5: must be a number in [0, 1]"):
        assert line in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


def test_validate_config_runs_before_the_workdir_is_touched(train_config, tmp_path):
    train_config.train.checkpoint_every_steps = 0
    with pytest.raises(ConfigError, match="checkpoint_every_steps=0"):
        train_lib.train_and_evaluate(train_config, tmp_path / "w")
    assert not (tmp_path / "w").exists()


class _Manager:
    """The two methods `best_step` / `select_step` read of an orbax manager."""

    directory = "runs/x/checkpoints"

    def __init__(self, metrics: dict[int, dict]) -> None:
        self._metrics = metrics

    def all_steps(self) -> list[int]:
        return list(self._metrics)

    def metrics(self, step: int) -> dict:
        return self._metrics[step]


def test_best_follows_the_configured_metric_and_its_direction():
    manager = _Manager({
        2: {"val/pck@0.1": 0.9, "val/hand_pck@0.2": 0.2, "val/loss": 0.03},
        4: {"val/pck@0.1": 0.8, "val/hand_pck@0.2": 0.5, "val/loss": 0.01},
        6: {},  # saved without validation
        8: {"val/pck@0.1": 0.85, "val/loss": 0.02},  # written before hand PCK existed
    })
    assert checkpoints.best_step(manager, "val/pck@0.1") == 2
    assert checkpoints.best_step(manager, "val/hand_pck@0.2") == 4
    assert checkpoints.best_step(manager, "val/loss") == 4  # a loss is minimised
    assert checkpoints.select_step(manager, "best", "val/pck@0.05") == 8  # none scored: latest
    assert checkpoints.select_step(manager, None, "val/loss") == 8


def test_compilation_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    from signlang_jax.training import compile_cache

    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("SIGNLANG_JAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.cache_directory() == tmp_path / "signlang_jax" / "xla"
    monkeypatch.setenv("SIGNLANG_JAX_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.cache_directory() == tmp_path / "mine"
    monkeypatch.setenv("SIGNLANG_JAX_CACHE_DIR", "off")
    assert compile_cache.cache_directory() is None
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert compile_cache.cache_directory() == tmp_path / "jax"  # JAX's own variable first


def test_another_optimizer_is_named_as_such_and_inference_reads_only_the_model(
        train_config, tiny_run, tmp_path):
    """A run resumed with another optimizer is refused as such (not as an architecture), and
    inference does not need the optimizer's state at all: it restores the model alone."""
    from signlang_jax.inference.predictor import load_model

    run = _copy_run(tiny_run, tmp_path)
    train_config.optim.name = "sgd"  # Adam's moments are in the checkpoint, SGD has a trace
    train_config.train.num_steps = 6
    with pytest.raises(CheckpointError, match=r"the state of another optimizer[\s\S]*1\.opt_state"):
        train_lib.train_and_evaluate(train_config, run)
    config = json.loads((run / "config.json").read_text())
    config["optim"]["name"] = "sgd"  # config.json no longer describes the optimizer state
    (run / "config.json").write_text(json.dumps(config))
    model, _, step = load_model(run, "latest")
    assert step == 4
    saved = checkpoint_arrays(tiny_run, _adam(train_config), 4)
    [key] = [k for k in saved if k.startswith("[0]") and "final_layer" in k and "kernel" in k]
    np.testing.assert_array_equal(np.asarray(model.head.final_layer.kernel[...]), saved[key])


def _adam(config):
    config = config.copy_and_resolve_references()
    config.optim.name = "adam"
    return config

"""Training: overfitting, exact resume, NaN guard, dtype policy, sharding, config checks."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from signlang_jax.data.pipeline import make_dataset
from signlang_jax.training import checkpoints, distributed, optimizer
from signlang_jax.training import steps as steps_lib
from signlang_jax.training import train as train_lib
from tests.conftest import ROOT, checkpoint_arrays, memorise_four_samples

_params = checkpoint_arrays


def _run_main(workdir: Path, data: Path, *extra: str, wait: bool = True
              ) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "signlang_jax.main", "--config", "tests/tiny_config.py",
           "--workdir", str(workdir), f"--config.data.root={data}", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_schedule_warmup_then_cosine(train_config):
    optim = train_config.optim
    optim.lr, optim.warmup_steps, optim.final_lr_fraction = 1.0, 4, 0.0
    schedule = optimizer.make_schedule(optim, 12)
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 2, 4, 8, 12)],
                               [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
    optim.schedule = "step"
    schedule = optimizer.make_schedule(optim, 14)  # 10 decay steps: drops at 7 and 9 after warmup
    np.testing.assert_allclose([float(schedule(s)) for s in (5, 10, 11, 13)],
                               [1.0, 1.0, 0.1, 0.01], atol=1e-7)


def test_overfit_tiny_model_reaches_high_pck(train_config):
    """A tiny model memorises 4 samples: PCK@0.1 on those samples goes near 1."""
    config = train_config
    config.data.image_size = 64
    config.model.heatmap_size = 16
    config.model.width = 16
    config.model.deconv_filters = 32
    config.model.sigma = 1.5
    config.optim.lr = 5e-3
    config.optim.warmup_steps = 10
    first, last, metrics = memorise_four_samples(config)
    assert last < 0.2 * first
    assert metrics["val/pck@0.1"] > 0.9, metrics


def test_bf16_step_keeps_float32_params(train_config):
    train_config.model.dtype = "bfloat16"
    graphdef, state, schedule = train_lib.create_state(train_config, 10)
    trainer = train_lib.make_trainer(train_config, graphdef, state, schedule)
    batch = next(iter(make_dataset(train_config, "train", num_workers=0)))
    new_state, metrics = trainer.train_step(state, train_lib.device_batch(
        batch, trainer.batch_sharding))
    model, _ = nnx.merge(graphdef, new_state)
    for kind in (nnx.Param, nnx.BatchStat):
        leaves = jax.tree.leaves(nnx.state(model, kind))
        assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))


def test_incompatible_config_refused(train_config, tmp_path):
    data = Path(train_config.data.root)
    first = _run_main(tmp_path / "w", data, "--config.train.num_steps=2")
    assert first.returncode == 0, first.stderr
    other = _run_main(tmp_path / "w", data, "--config.train.num_steps=4",
                      "--config.model.name=resnet34")
    assert other.returncode == 1
    assert "model.name: checkpoint 'resnet18', this config 'resnet34'" in other.stderr
    assert "Traceback" not in other.stderr


def test_nan_loss_stops_and_keeps_good_checkpoint(train_config, tmp_path, monkeypatch):
    """NaN targets give a NaN loss: steps are skipped (BatchNorm statistics included), then the
    run stops after optim.max_skipped_steps in a row; every checkpoint stays finite."""
    train_config.train.num_steps = 4
    train_lib.train_and_evaluate(train_config, tmp_path)
    before = _params(tmp_path, train_config)

    def poisoned(*args, **kwargs):
        return jnp.full(args[0].shape[:1] + (8, 8, 64), jnp.nan)

    monkeypatch.setattr(steps_lib, "render_heatmaps", poisoned)
    train_config.train.num_steps = 8
    train_config.optim.max_skipped_steps = 2
    with pytest.raises(train_lib.TrainingError,
                       match=r"not finite for 3 steps in a row \(up to step 7.*step 6\)"):
        train_lib.train_and_evaluate(train_config, tmp_path)
    for step in (4, 6):  # step 6 was saved after two skipped steps: the state of step 4
        after = _params(tmp_path, train_config, step)
        for key in before:
            np.testing.assert_array_equal(before[key], after[key])
            assert np.isfinite(after[key]).all()


SHARDED_SCRIPT = """
import sys, numpy as np, jax
from tests import tiny_config
from signlang_jax.training import train as t
from signlang_jax.data.pipeline import make_dataset
config = tiny_config.get_config()
config.data.root = sys.argv[1]
# SGD: Adam's first steps are ~lr * sign(g), which turns 1e-9 reduction-order differences in
# near-zero gradients into lr-sized parameter differences; SGD shows the sharding is exact.
config.optim.name = "sgd"
config.optim.warmup_steps = 0
graphdef, state, schedule = t.create_state(config, 10)
trainer = t.make_trainer(config, graphdef, state, schedule)
state = jax.device_put(state, trainer.state_sharding)
batch = next(iter(make_dataset(config, "train", num_workers=0)))
for _ in range(2):
    state, metrics = trainer.train_step(state, t.device_batch(batch, trainer.batch_sharding))
flat = jax.tree_util.tree_flatten_with_path(state)[0]
np.savez(sys.argv[2], loss=np.asarray(metrics["loss"]), grad_norm=np.asarray(metrics["grad_norm"]),
         devices=jax.device_count(),
         **{jax.tree_util.keystr(k): np.asarray(v) for k, v in flat})
"""


def test_four_devices_match_one(train_config, tmp_path):
    results = []
    for devices in (1, 4):
        out = tmp_path / f"out{devices}.npz"
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT, train_config.data.root,
                               str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        results.append(dict(np.load(out)))
    one, four = results
    assert int(one["devices"]) == 1 and int(four["devices"]) == 4
    assert one.keys() == four.keys()
    for key in one.keys() - {"devices"}:
        np.testing.assert_allclose(one[key], four[key], atol=1e-5, rtol=1e-5, err_msg=key)


def test_no_recompilation_after_the_first_step(train_config, tmp_path, monkeypatch):
    """Steps, validations and checkpoints after the first ones lower (compile) nothing.

    Every jit cache miss lowers a jaxpr to MLIR (even when the persistent cache then skips the
    backend compile), so counting that event catches any retrace: a changed shape, dtype,
    sharding or static argument.
    """
    lowered = []  # (train calls so far, phase, function name)
    phase = {"name": "setup", "train": 0, "eval": 0}

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append((phase["train"], phase["name"], kwargs.get("fun_name")))

    def counted(name, fn):
        def call(*args, **kwargs):
            phase[name] += 1
            phase["name"] = f"{name} call {phase[name]}"
            try:
                return fn(*args, **kwargs)
            finally:
                phase["name"] = f"after {name} call {phase[name]}"
        return call

    make_trainer = train_lib.make_trainer

    def make_counted_trainer(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        return dataclasses.replace(trainer, train_step=counted("train", trainer.train_step),
                                   eval_step=counted("eval", trainer.eval_step))

    monkeypatch.setattr(train_lib, "make_trainer", make_counted_trainer)
    train_config.train.num_steps = 8
    train_config.train.eval_every_steps = 4
    train_config.train.checkpoint_every_steps = 2
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        train_lib.train_and_evaluate(train_config, tmp_path)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert phase["train"] == 8 and phase["eval"] >= 2
    assert any(name == "train call 1" for _, name, _ in lowered)  # the listener works
    repeated = [(name, fun) for _, name, fun in lowered
                if name.startswith(("train call", "eval call"))
                and name not in ("train call 1", "eval call 1")]
    assert not repeated, f"recompiled in a later step: {repeated}"
    # After the first validation + checkpoint cycle (step 4) nothing at all is compiled.
    late = [(name, fun) for step, name, fun in lowered if step > 4]
    assert not late, f"compiled after step 4: {late}"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _outputs_of_successful(procs: list[subprocess.Popen], timeout: float) -> list[str]:
    """Wait for every process of a multi-process job; assert each exited 0; their outputs."""
    outputs = []
    for proc in procs:
        try:
            outputs.append(proc.communicate(timeout=timeout)[0])
        finally:
            proc.kill()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    return outputs


def test_two_processes_match_one_process_on_the_same_global_batch(train_config, tmp_path):
    """jax.distributed with 2 CPU processes (gloo): the collectively written checkpoint equals a
    single process trained on the same global batches (each = process 0's + process 1's shard).
    """
    steps = 3
    flags = ["--config.optim.name=sgd", "--config.optim.warmup_steps=0",
             f"--config.train.num_steps={steps}", f"--config.train.eval_every_steps={steps}",
             f"--config.train.checkpoint_every_steps={steps}",
             f"--config.distributed.coordinator=127.0.0.1:{_free_port()}",
             "--config.distributed.num_processes=2", "--config.distributed.timeout=120"]
    workdir = tmp_path / "two"
    outputs = _outputs_of_successful([
        _run_main(workdir, Path(train_config.data.root), *flags,
                  f"--config.distributed.process_id={i}", wait=False) for i in range(2)], 400)
    # Both processes report the same global validation metrics.
    finals = [next(line for line in out.splitlines() if line.startswith("final "))
              for out in outputs]
    assert finals[0] == finals[1]

    config = train_config
    config.optim.name, config.optim.warmup_steps, config.train.num_steps = "sgd", 0, steps
    shards = [make_dataset(config, "train", shard_index=i, shard_count=2, num_workers=0)
              for i in range(2)]
    graphdef, state, schedule = train_lib.create_state(config, steps)
    trainer = train_lib.make_trainer(config, graphdef, state, schedule)
    for _, *parts in zip(range(steps), *shards, strict=False):
        batch = {k: np.concatenate([part[k] for part in parts]) for k in ("image", "keypoints")}
        state, _ = trainer.train_step(state, train_lib.device_batch(batch, trainer.batch_sharding))
    reference = {jax.tree_util.keystr(k): np.asarray(v)
                 for k, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    two = _params(workdir, config, steps)
    assert two.keys() == reference.keys()
    for key in reference:
        np.testing.assert_allclose(two[key], reference[key], atol=1e-5, rtol=1e-5, err_msg=key)


REPLICA_SCRIPT = """
import sys, jax, jax.numpy as jnp, numpy as np, ml_collections
from jax.sharding import NamedSharding, PartitionSpec as P
from signlang_jax.training import distributed as t
port, pid = sys.argv[1], int(sys.argv[2])
t.initialize_distributed(ml_collections.ConfigDict({"coordinator": f"127.0.0.1:{port}",
    "num_processes": 2, "process_id": pid, "auto": False, "timeout": 60}))
mesh = jax.make_mesh((2,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
def replicated(local):  # each process supplies its own copy of a "replicated" array
    device = jax.local_devices()[0]
    return jax.make_array_from_single_device_arrays(
        local.shape, NamedSharding(mesh, P()), [jax.device_put(local, device)])
same = {"w": replicated(np.ones(3, np.float32)), "step": replicated(np.zeros((), np.int32))}
t.check_replicas_agree(same)
drifted = np.ones(3, np.float32) + (1e-7 if pid == 1 else 0.0)  # below float32 printing noise
try:
    t.check_replicas_agree({"w": replicated(drifted)})
except t.TrainingError as e:
    print("REFUSED", e)
"""


def test_replica_check_catches_a_drift_between_processes(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outputs = _outputs_of_successful([
        subprocess.Popen([sys.executable, "-c", REPLICA_SCRIPT, str(port), str(i)], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)], 200)
    for out in outputs:
        assert "REFUSED the 2 processes hold different model states (1 arrays differ, " \
               "e.g. ['w'])" in out, out


@pytest.mark.parametrize(("flag", "message"), [
    ("--config.distributed.num_processes=2", "coordinator is empty"),
    ("--config.distributed.coordinator=localhost", "expected HOST:PORT"),
])
def test_bad_distributed_settings_are_refused(train_config, tmp_path, flag, message):
    extra = [flag]
    if "coordinator=" in flag:
        extra += ["--config.distributed.num_processes=2", "--config.distributed.process_id=0"]
    proc = _run_main(tmp_path / "w", Path(train_config.data.root), *extra)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_process_id_out_of_range_is_refused():
    import ml_collections

    dist = ml_collections.ConfigDict({"coordinator": "127.0.0.1:1234", "num_processes": 2,
                                      "process_id": 2, "auto": False, "timeout": 5})
    with pytest.raises(ValueError, match=r"distributed.process_id=2: must be in 0..1"):
        distributed.initialize_distributed(dist)


def test_gradient_accumulation_updates_every_k_steps(train_config):
    train_config.optim.accumulate_steps = 2
    train_config.optim.warmup_steps = 0
    graphdef, state, schedule = train_lib.create_state(train_config, 10)
    trainer = train_lib.make_trainer(train_config, graphdef, state, schedule)
    batch = train_lib.device_batch(next(iter(make_dataset(train_config, "train",
                                                          num_workers=0))),
                                   trainer.batch_sharding)

    def kernel(state):
        model, _ = nnx.merge(graphdef, state)
        return np.asarray(model.head.final_layer.kernel[...])

    start = kernel(state)
    state, _ = trainer.train_step(state, batch)
    np.testing.assert_array_equal(kernel(state), start)  # first micro-step: no update
    state, _ = trainer.train_step(state, batch)
    assert not np.array_equal(kernel(state), start)


def test_help_lists_config_fields():
    from signlang_jax.main import config_help

    text = config_help()
    assert '--config.model.name="resnet18"  resnet18 | resnet34 | resnet50' in text
    assert "--config.train.batch_size=16  global batch size" in text
    assert "--config.data.root=" in text and "--config.augment.flip_prob=0.5" in text


def test_resume_from_another_run(train_config, tiny_run, tmp_path, capsys):
    train_config.train.num_steps = 6
    train_lib.train_and_evaluate(train_config, tmp_path / "w2", resume=str(tiny_run))
    assert "resumed from step 4" in capsys.readouterr().err
    steps = sorted(int(p.name) for p in (tmp_path / "w2" / "checkpoints").iterdir()
                   if p.name.isdigit())
    assert steps[-1] == 6 and 4 not in steps  # the source run is read, not copied
    assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir() if p.name.isdigit()) == [
        "2", "4"]  # and left untouched
    with pytest.raises(checkpoints.CheckpointError, match="does not exist"):
        train_lib.train_and_evaluate(train_config, tmp_path / "w3", resume=str(tmp_path / "x"))


def test_checkpoints_record_val_metrics_for_best(tiny_run, train_config):
    manager = checkpoints.make_checkpoint_manager(tiny_run / "checkpoints", train_config,
                                                  read_only=True)
    metric = train_config.train.best_metric
    assert metric == "val/hand_pck@0.2"  # the default: responds to hand precision
    assert metric in manager.metrics(4)  # saved after validation
    assert not manager.metrics(2)  # no validation at step 2
    assert checkpoints.best_step(manager, metric) == 4
    manager.close()


def test_weight_average_by_hand_then_evaluation_and_inference_use_it(train_config, tmp_path):
    """optim.ema: average <- d average + (1 - d) model, d = min(decay, (1 + s) / (10 + s)); the
    checkpoint's average is what validation saw and what inference restores."""
    from signlang_jax.inference.restore import load_checkpoint
    from signlang_jax.training.train import train_and_evaluate

    train_config.optim.ema = True
    train_config.optim.ema_decay = 0.5
    graphdef, state, schedule = train_lib.create_state(train_config, 10)
    trainer = train_lib.make_trainer(train_config, graphdef, state, schedule)
    batch = train_lib.device_batch(next(iter(make_dataset(train_config, "train",
                                                          num_workers=0))),
                                   trainer.batch_sharding)

    def kernels(state):
        model, _, average = nnx.merge(graphdef, state)
        return (np.asarray(model.head.final_layer.kernel[...]),
                np.asarray(average.head.final_layer.kernel[...]))

    model0, average0 = kernels(state)
    np.testing.assert_array_equal(model0, average0)  # the average starts at the weights
    state, _ = trainer.train_step(state, batch)  # step 0: d = min(0.5, 1 / 10) = 0.1
    model1, average1 = kernels(state)
    np.testing.assert_allclose(average1, 0.1 * average0 + 0.9 * model1, rtol=1e-5, atol=1e-7)
    state, _ = trainer.train_step(state, batch)  # step 1: d = min(0.5, 2 / 11)
    model2, average2 = kernels(state)
    d = 2 / 11
    np.testing.assert_allclose(average2, d * average1 + (1 - d) * model2, rtol=1e-5, atol=1e-7)

    train_config.train.num_steps = 3
    workdir = tmp_path / "ema_run"
    train_and_evaluate(train_config, workdir)
    from tests.conftest import checkpoint_arrays

    saved = checkpoint_arrays(workdir, train_config)
    loaded = load_checkpoint(workdir)
    final = [v for k, v in saved.items() if "[2]" in k and "final_layer" in k and "kernel" in k]
    raw = [v for k, v in saved.items() if "[0]" in k and "final_layer" in k and "kernel" in k]
    assert len(final) == 1 and not np.array_equal(final[0], raw[0])
    np.testing.assert_array_equal(np.asarray(loaded.model.head.final_layer.kernel[...]), final[0])
    # Switching the average off (or on) on resume changes the checkpoint's layout: refused.
    other = _run_main(workdir, Path(train_config.data.root), "--config.train.num_steps=4")
    assert other.returncode == 1 and "optim.ema" in other.stderr, other.stderr


def test_rendered_data_follows_synthetic_others(tmp_path):
    # `prepare_data` renders WORKDIR/data with the config's second-person fraction: the images
    # are `render_sample(..., others=1.0)`'s, not the one-person ones; the labels are the same.
    import json

    import cv2

    from signlang_jax.synth import render_sample
    from tests import tiny_config

    config = tiny_config.get_config()
    config.data.root = ""
    config.data.synthetic_num, config.data.synthetic_size = 3, 32
    config.data.synthetic_others = 1.0
    root = Path(train_lib.prepare_data(config, tmp_path).data.root)
    assert root == tmp_path / "data"
    closer = 0
    for index in range(3):
        both, label = render_sample(config.data.synthetic_seed, index, 32, others=1.0)
        alone = render_sample(config.data.synthetic_seed, index, 32)[0]
        assert json.loads((root / "labels" / f"{index:06d}.json").read_text()) == label
        written = cv2.imread(str(root / "images" / f"{index:06d}.jpg"))[..., ::-1].astype(int)
        closer += int(np.abs(written - both).mean() < np.abs(written - alone).mean())
    assert closer >= 2  # the second person is in frame in most samples

"""Training, top to bottom: state, steps, starting or resuming a run, the loop.

The model and optimizer are Flax NNX objects, but the hot path is functional: they are split once
into a static graphdef and a state pytree, and `jax.jit` runs `train_step(state, batch)` with the
state donated (flax's recommended fast form; `nnx.jit` costs ~10 ms of Python per step). Heatmap
targets are rendered inside the step from the batch's keypoints (see `signlang_jax.codec`).

Data parallelism: a 1D mesh over every device ('data'); the batch is sharded over it and the state
replicated, so the same code runs on one CPU, 8 GPUs or many hosts (each process feeds its shard,
see `make_dataset`). BatchNorm under jit with a sharded batch uses global-batch statistics.

Elsewhere in `signlang_jax.training`: the state and the step functions in `steps`,
checkpoints (naming, saving, restoring with recovery) in `checkpoints`, validation in
`validation`, the optimizer in `optimizer`, config checks in `config_check`, the workdir's config
history in `config_history`, multi-process helpers in `distributed`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from signlang_jax.data.iterator import BatchIterator, make_iterator
from signlang_jax.data.sources import records_for
from signlang_jax.errors import TrainingError
from signlang_jax.models.layers import xla_compiler_options
from signlang_jax.training import checkpoints as ckpt
from signlang_jax.training.checkpoint_specs import locate
from signlang_jax.training.config_check import validate_config
from signlang_jax.training.config_history import (
    config_differences,
    format_config_warnings,
    load_previous_config,
    record_config,
)
from signlang_jax.training.damaged import read_damaged
from signlang_jax.training.distributed import check_replicas_agree, sync_processes
from signlang_jax.training.metric_log import MetricLogger
from signlang_jax.training.steps import create_state, eval_step, is_finite, train_step
from signlang_jax.training.validation import check_metric_source, validate

__all__ = ["Trainer", "TrainingError", "create_state", "device_batch", "make_trainer",
           "train_and_evaluate", "train_step"]

# ------------------------------------------------------------------------ jitted steps on a mesh


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What the loop needs besides the state: shardings and the jitted functions."""

    state_sharding: object
    batch_sharding: NamedSharding
    train_step: Callable
    eval_step: Callable
    state_is_finite: Callable


def make_trainer(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, state: nnx.State,
                 schedule: optax.Schedule) -> Trainer:
    """Mesh over all devices, shardings, and the jitted train/eval steps."""
    # Auto axis: XLA propagates the batch sharding through the model (explicit sharding types
    # would need annotations on every reshape).
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    state_sharding = jax.tree.map(lambda _: replicated, state)
    options = xla_compiler_options()  # per backend: see models/layers.py
    train = jax.jit(functools.partial(train_step, graphdef, schedule, config),
                    donate_argnums=0, out_shardings=(state_sharding, replicated),
                    compiler_options=options)
    evaluate_ = jax.jit(functools.partial(eval_step, graphdef, config),
                        out_shardings=(replicated, replicated), compiler_options=options)
    return Trainer(state_sharding, NamedSharding(mesh, P("data")), train, evaluate_,
                   jax.jit(is_finite))


def device_batch(batch: dict, sharding: NamedSharding, keys: tuple[str, ...] = (
        "image", "keypoints")) -> dict:
    """Place this process's part of a batch on the devices as global sharded arrays."""
    return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


# ----------------------------------------------------------------------------- starting a run


def total_train_steps(config: ml_collections.ConfigDict, num_train: int) -> int:
    """train.num_steps if set, else epochs x (train samples // batch size)."""
    if config.train.num_steps > 0:
        return config.train.num_steps
    return config.train.epochs * max(num_train // config.train.batch_size, 1)


def prepare_data(config: ml_collections.ConfigDict, workdir: Path) -> ml_collections.ConfigDict:
    """Render the built-in synthetic dataset if the config asks for it and it is missing.

    Returns the config with `data.root` resolved (WORKDIR/data when it was empty).
    """
    data = config.data
    if data.synthetic_num <= 0 or data.format != "folder":
        if not data.root and not data.get("sources"):
            raise TrainingError("no dataset: set --config.data.root=DIR, or render the built-in "
                                "synthetic data with --config.data.synthetic_num=N")
        return config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.data.root = data.root or str(workdir / "data")
    root = Path(config.data.root)
    labels = root / data.labels_dir
    # Only process 0 writes; the others wait at the barrier (reached by every process, whether
    # or not it saw labels, so nobody reads a half-written folder).
    if jax.process_index() == 0 and not (labels.is_dir() and any(labels.iterdir())):
        from signlang_jax.synth import generate_dataset

        print(f"rendering {data.synthetic_num} synthetic samples into {root}", file=sys.stderr)
        generate_dataset(root, data.synthetic_num, data.synthetic_seed, size=data.synthetic_size,
                         progress=True, others=data.get("synthetic_others", 0.0))
    sync_processes("synthetic data written")  # the other processes read what process 0 wrote
    return config


def check_against(saved: dict | None, config: ml_collections.ConfigDict, source: str) -> None:
    """Refuse a config whose architecture differs from `saved`; warn about every other field."""
    if saved is None:
        return
    architecture, other = config_differences(saved, config.to_dict())
    if architecture:
        raise TrainingError(
            f"{source} was trained with another architecture and cannot be resumed with this "
            "config:\n  " + "\n  ".join(architecture)
            + f"\nUse a new --workdir, or the checkpoint's config ({source}).")
    if other and jax.process_index() == 0:
        print(format_config_warnings(other, source), file=sys.stderr)


def restore_or_initialize(config: ml_collections.ConfigDict, workdir: Path, manager: object,
                          graphdef: nnx.GraphDef, state: nnx.State, iterator: BatchIterator,
                          resume: str | None) -> tuple[int, nnx.State]:
    """(start step, state): the workdir's own newest intact checkpoint, else `resume`, else new.

    A workdir that has checkpoints always continues from them, so re-running a command that
    used --resume continues the new run instead of starting over from the source.
    """
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                            state)
    if manager.all_steps():
        if resume:
            _log(f"--resume {resume} ignored: {workdir} already has checkpoints; continuing "
                 "from its own latest")
        return ckpt.restore_newest_intact(manager, abstract, iterator)
    if resume:
        directory, chosen = locate(resume)
        check_against(load_previous_config(directory.parent), config,
                      str(directory.parent / "config.json"))
        source = ckpt.make_checkpoint_manager(directory, config, read_only=True)
        try:
            step = ckpt.select_step(source, chosen, config.train.best_metric)
            state = ckpt.restore_checkpoint(source, step, abstract, iterator)
        finally:
            source.close()
        _log(f"--resume: starting from {directory / str(step)}")
        return step, state
    if config.model.pretrained_backbone:  # fresh start only: a resume never needs the file
        return 0, load_pretrained(graphdef, state, config.model.pretrained_backbone)
    return 0, state


def load_pretrained(graphdef: nnx.GraphDef, state: nnx.State, path: str) -> nnx.State:
    """The state with its backbone initialised from a torch .pth (see interop.convert)."""
    try:
        from interop.convert import load_pretrained_backbone
    except ImportError as e:
        raise TrainingError(f"model.pretrained_backbone needs torch ({e}): install the export "
                            "extra, pip install -e '.[export]'") from None
    model, optimizer, *average = nnx.merge(graphdef, state)
    try:
        load_pretrained_backbone(model, path)
    except ValueError as e:  # a missing, unreadable or mismatched file, named by the message
        raise TrainingError(f"--config.model.pretrained_backbone={path!r}: {e}") from None
    if average:  # the average starts from the same weights
        nnx.update(average[0], jax.tree.map(jnp.copy, nnx.state(model)))  # own buffers
    return jax.device_put(nnx.state((model, optimizer, *average)),
                          jax.tree.map(lambda x: x.sharding, state))


def _log(message: str) -> None:
    print(message, file=sys.stderr)


# ----------------------------------------------------------------------------- the loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       resume: str | None = None) -> dict:
    """Train `config` in `workdir` (resuming from its own latest checkpoint); final metrics."""
    workdir = Path(workdir)
    validate_config(config, jax.device_count(), jax.process_count())
    workdir.mkdir(parents=True, exist_ok=True)
    config = prepare_data(config, workdir)
    check_against(load_previous_config(workdir), config, str(workdir / "config.json"))
    train_samples = records_for(config, "train")  # the one place the data source is chosen
    val_samples = records_for(config, "val")
    check_metric_source(config.train.best_metric, val_samples)
    steps = total_train_steps(config, len(train_samples))
    graphdef, state, schedule = create_state(config, steps)
    trainer = make_trainer(config, graphdef, state, schedule)
    state = jax.device_put(state, trainer.state_sharding)
    iterator = make_iterator(config, "train", source=train_samples)
    manager = ckpt.make_checkpoint_manager(workdir / "checkpoints", config)
    logger = None
    try:
        start, state = restore_or_initialize(config, workdir, manager, graphdef, state, iterator,
                                             resume)
        if iterator.restarted:
            _log(f"the data changed since step {start} ({iterator.restarted}); "
                 "train.on_data_change=restart_epoch: step and model continue, the data order "
                 "starts anew")
        if jax.process_index() == 0:
            record_config(workdir, config, start)
        if start:
            _log(f"resumed from step {start}")
        logger = MetricLogger(workdir, total=steps, initial=start,
                              enabled=jax.process_index() == 0)
        final = run_loop(config, trainer, state, iterator, manager, logger, val_samples, start,
                         steps)
        manager.wait_until_finished()
    finally:
        manager.close()
        iterator.close()
        if logger is not None:
            logger.close()
    return final


def run_loop(config: ml_collections.ConfigDict, trainer: Trainer, state: nnx.State,
             iterator: BatchIterator, manager: object, logger: MetricLogger,
             val_samples: object, start: int, steps: int) -> dict:
    """Steps `start + 1 .. steps` with logging, validation and checkpoints; final val metrics."""
    every = config.train
    damaged = set(read_damaged(Path(manager.directory).parent))
    guard = SkipGuard(config.optim.max_skipped_steps, start)
    pending: list[tuple[int, dict]] = []  # per-step device metrics not yet fetched
    # data_wait: seconds blocked in next(iterator) this window. JAX dispatches steps
    # asynchronously, so any time spent there is time the device could have been busy.
    window_start, window_images, data_wait = time.perf_counter(), 0, 0.0
    final: dict = {}
    for step in range(start + 1, steps + 1):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            wait_start = time.perf_counter()
            batch = next(iterator)
            data_wait += time.perf_counter() - wait_start
            state, metrics = trainer.train_step(state, device_batch(batch, trainer.batch_sharding))
        pending.append((step, metrics))
        window_images += config.train.batch_size
        is_eval = step % every.eval_every_steps == 0 or step == steps
        is_save = step % every.checkpoint_every_steps == 0 or is_eval
        if step % every.log_every_steps == 0 or is_save:
            values = guard.check(pending, logger.print)
            pending = []
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            values.update(images_per_sec=window_images / elapsed,
                          data_wait_fraction=data_wait / elapsed)
            logger.scalars(step, values, prefix="train/")
            window_start, window_images, data_wait = time.perf_counter(), 0, 0.0
        else:
            logger.advance(step)
        eval_metrics = None
        if is_eval:
            eval_metrics, drawn = validate(trainer.eval_step, _placer(trainer), state, config,
                                           val_samples, every.num_val_images)
            logger.scalars(step, eval_metrics)
            logger.skeletons(step, drawn)
            final = eval_metrics
            window_start = time.perf_counter()
        if is_save:
            if not bool(trainer.state_is_finite(state)):
                raise TrainingError(f"the training state is not finite at step {step}; it was "
                                    f"not saved. The last checkpoint (step {guard.last_saved}) "
                                    "is intact.")
            check_replicas_agree(state)
            if ckpt.save_unless_damaged(manager, step, state, iterator, eval_metrics, damaged,
                                   final=step == steps, log=logger.print):
                guard.last_saved = step
    if start >= steps:  # already trained: report the final checkpoint's metrics
        final, _ = validate(trainer.eval_step, _placer(trainer), state, config, val_samples)
        logger.scalars(start, final)
    return final


def _placer(trainer: Trainer) -> Callable[[dict], dict]:
    return lambda batch: device_batch(batch, trainer.batch_sharding)


class SkipGuard:
    """Counts the steps the train step skipped (non-finite loss or gradients); stops on a run."""

    def __init__(self, max_in_a_row: int, last_saved: int) -> None:
        self.max_in_a_row = max_in_a_row
        self.in_a_row = 0
        self.total = 0
        self.last_saved = last_saved

    def check(self, pending: list[tuple[int, dict]], log: Callable[[str], None]) -> dict:
        """Fetch pending step metrics; raise after too many skips in a row; the latest values."""
        host = jax.device_get([m for _, m in pending])
        for (step, _), values in zip(pending, host, strict=True):
            if not values["skipped"]:
                self.in_a_row = 0
                continue
            self.in_a_row += 1
            self.total += 1
            log(f"step {step} skipped: loss {float(values['loss'])}, gradient norm "
                f"{float(values['grad_norm'])} (not finite); the state is unchanged")
            if self.in_a_row > self.max_in_a_row:
                raise TrainingError(
                    f"the loss or gradients were not finite for {self.in_a_row} steps in a row "
                    f"(up to step {step}; optim.max_skipped_steps={self.max_in_a_row}); "
                    f"training stopped. The last checkpoint (step {self.last_saved}) holds a "
                    "finite state. Lower optim.lr, check the data with python -m "
                    "signlang_jax.data.validate, or enable optim.grad_clip.")
        latest = {k: float(v) for k, v in host[-1].items() if k != "skipped"}
        return {**latest, "skipped_steps": float(self.total)}

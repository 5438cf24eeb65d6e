"""Training and validation, top to bottom: state, optimizer, steps, checkpoints, the loop.

The model and optimizer are Flax NNX objects, but the hot path is functional: they are split once
into a static graphdef and a state pytree, and `jax.jit` runs `train_step(state, batch)` with the
state donated (flax's recommended fast form; `nnx.jit` costs ~10 ms of Python per step). Heatmap
targets are rendered inside the step from the batch's keypoints (see `signlang_jax.codec`).

Data parallelism: a 1D mesh over every device ('data'); the batch is sharded over it and the state
replicated, so the same code runs on one CPU, 8 GPUs or many hosts (each process feeds its shard,
see `make_dataset`). BatchNorm under jit with a sharded batch uses global-batch statistics.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from signlang_jax.codec import decode_heatmaps, heatmap_loss, render_heatmaps
from signlang_jax.data.pipeline import load_records, make_dataset, make_iterator
from signlang_jax.metrics import pck_counts, pck_summary
from signlang_jax.models import create_model
from signlang_jax.models.layers import xla_compiler_options

PCK_THRESHOLDS = (0.05, 0.1)
BEST_METRIC = "val/pck@0.1"
# Config fields that change parameter shapes or the meaning of the outputs: a workdir trained with
# other values cannot be resumed.
ARCHITECTURE_FIELDS = (
    "model.name", "model.width", "model.num_keypoints", "model.deconv_layers",
    "model.deconv_filters", "model.deconv_kernel", "model.final_kernel", "model.heatmap_size",
    "data.image_size",
)  # fmt: skip


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, incompatible checkpoint...); the message says why."""


# ----------------------------------------------------------------------------- config


def resolve_dtype(name: str) -> str:
    """'auto' -> bfloat16 on GPU/TPU, float32 on CPU (bf16 is no faster on CPU)."""
    if name == "auto":
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    if name not in ("float32", "bfloat16"):
        raise ValueError(f"model.dtype must be auto, float32 or bfloat16, got {name!r}")
    return name


def _get(config: ml_collections.ConfigDict, dotted: str) -> object:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def check_compatible(saved: dict, config: ml_collections.ConfigDict, source: str) -> None:
    """Raise `TrainingError` if `config` and `saved` differ in an architecture field."""
    saved_cfg = ml_collections.ConfigDict(saved)
    diffs = []
    for field in ARCHITECTURE_FIELDS:
        try:
            old = _get(saved_cfg, field)
        except (KeyError, AttributeError):
            continue
        new = _get(config, field)
        if old != new:
            diffs.append(f"{field}: checkpoint {old!r}, this config {new!r}")
    if diffs:
        raise TrainingError(
            f"{source} was trained with another architecture and cannot be resumed with this "
            "config:\n  " + "\n  ".join(diffs)
            + "\nUse a new --workdir, or the checkpoint's config (" + source + ").")


# ----------------------------------------------------------------------------- optimizer


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Learning rate per optimizer update: linear warmup, then cosine, step or constant."""
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    if optim.schedule == "cosine":
        after = optax.cosine_decay_schedule(optim.lr, decay_steps, alpha=optim.final_lr_fraction)
    elif optim.schedule == "step":
        boundaries = {int(b * decay_steps): optim.step_factor for b in optim.step_boundaries}
        after = optax.piecewise_constant_schedule(optim.lr, boundaries)
    elif optim.schedule == "constant":
        after = optax.constant_schedule(optim.lr)
    else:
        raise ValueError(f"optim.schedule must be cosine, step or constant, got "
                         f"{optim.schedule!r}")
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup), after], [warmup])


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain of `config.optim` (clipping, Adam/AdamW/SGD, accumulation), schedule."""
    schedule = make_schedule(optim, total_steps // optim.accumulate_steps)
    if optim.name == "adam":
        base = optax.adam(schedule, b1=optim.b1, b2=optim.b2)
    elif optim.name == "adamw":
        base = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    elif optim.name == "sgd":
        base = optax.sgd(schedule, momentum=optim.b1, nesterov=True)
    else:
        raise ValueError(f"optim.name must be adam, adamw or sgd, got {optim.name!r}")
    parts = [optax.clip_by_global_norm(optim.grad_clip)] if optim.grad_clip > 0 else []
    tx = optax.chain(*parts, base)
    if optim.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=optim.accumulate_steps)
    return tx, schedule


# ----------------------------------------------------------------------------- processes


def initialize_distributed(dist: ml_collections.ConfigDict) -> bool:
    """Join a multi-process job described by `dist` (= config.distributed); False if single.

    Must run before anything touches a JAX device. On CPU the processes talk over gloo (TCP), so
    a job can be tested on one machine; on GPUs XLA uses NCCL.
    """
    if not dist.coordinator and not dist.auto:
        if dist.num_processes != 1 or dist.process_id != 0:
            raise ValueError("distributed.num_processes/process_id are set but "
                             "distributed.coordinator is empty: pass "
                             "--config.distributed.coordinator=HOST:PORT (or distributed.auto)")
        return False
    kwargs: dict = {"initialization_timeout": int(dist.timeout)}
    if dist.coordinator:
        if not re.fullmatch(r"\S+:\d+", dist.coordinator):
            raise ValueError(f"distributed.coordinator={dist.coordinator!r}: expected HOST:PORT")
        if dist.num_processes < 1:
            raise ValueError(f"distributed.num_processes={dist.num_processes}: must be >= 1")
        if not 0 <= dist.process_id < dist.num_processes:
            raise ValueError(f"distributed.process_id={dist.process_id}: must be in "
                             f"0..{dist.num_processes - 1} (distributed.num_processes="
                             f"{dist.num_processes})")
        kwargs.update(coordinator_address=dist.coordinator, num_processes=dist.num_processes,
                      process_id=dist.process_id)
    # CPU-only jobs (tests, CPU clusters) need a collectives backend; GPUs ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def sync_processes(name: str) -> None:
    """Barrier across processes (no-op with one): e.g. wait for process 0 to write data."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _gather_hosts(tree: dict) -> dict:
    """Concatenate every process's arrays along axis 0 (identity with one process)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def check_replicas_agree(state: nnx.State) -> None:
    """Raise if the processes' replicas of the state differ (no-op with one process).

    Each process fingerprints its own copy (per-array sums in float64); a mismatch means the
    hosts diverged (different code, config or data order) and checkpoints would be wrong.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    floats = [(jax.tree_util.keystr(path), x)
              for path, x in jax.tree_util.tree_flatten_with_path(state)[0]
              if jnp.issubdtype(x.dtype, jnp.floating)]
    names = [name for name, _ in floats]
    local = np.asarray([np.asarray(x.addressable_data(0), np.float64).sum() for _, x in floats])
    # Sent as int32 pairs: JAX would round float64 to float32 (x64 is off) and hide small drifts.
    everyone = np.asarray(multihost_utils.process_allgather(local.view(np.int32)))
    everyone = everyone.reshape(len(everyone), -1, 2)  # (processes, arrays, 2 words)
    differs = np.flatnonzero((everyone != everyone[0]).any(axis=(0, 2)))
    if len(differs):
        listed = ", ".join(names[i] for i in differs[:5])
        raise TrainingError(f"the {jax.process_count()} processes hold different model states "
                            f"({len(differs)} arrays differ, e.g. {listed}): run the same code, "
                            "config and data on every host")


# ----------------------------------------------------------------------------- state and steps


@dataclasses.dataclass(frozen=True)
class Trainer:
    """What the loop needs besides the state: static graph, mesh, shardings and jitted steps."""

    graphdef: nnx.GraphDef
    mesh: jax.sharding.Mesh
    state_sharding: object
    batch_sharding: NamedSharding
    train_step: Callable
    eval_step: Callable
    schedule: optax.Schedule


def model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.model with `dtype` resolved for this backend."""
    cfg = ml_collections.ConfigDict(config.model.to_dict())
    cfg.dtype = resolve_dtype(config.model.dtype)
    return cfg


def create_state(config: ml_collections.ConfigDict, total_steps: int
                 ) -> tuple[nnx.GraphDef, nnx.State, optax.Schedule]:
    """Fresh model + optimizer, split into (graphdef, state), and the lr schedule."""
    # rbg keys: the default threefry sampler compiles once per parameter shape (~15 s at init).
    model = create_model(model_config(config), nnx.Rngs(jax.random.key(config.seed, impl="rbg")))
    tx, schedule = make_optimizer(config.optim, total_steps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graphdef, state = nnx.split((model, optimizer))
    return graphdef, state, schedule


def _images(batch: dict) -> jax.Array:
    # uint8 crosses to the device; the model normalises [0, 1] input itself.
    return batch["image"].astype(jnp.float32) / 255.0


def train_step(graphdef: nnx.GraphDef, schedule: optax.Schedule, config: ml_collections.ConfigDict,
               state: nnx.State, batch: dict) -> tuple[nnx.State, dict]:
    """One optimizer step: render targets, forward, weighted MSE, backward, update."""
    model, optimizer = nnx.merge(graphdef, state)
    model.train()
    keypoints = batch["keypoints"]
    targets = render_heatmaps(keypoints, config.data.image_size, config.model.heatmap_size,
                              config.model.sigma)

    def loss_fn(model: nnx.Module) -> jax.Array:
        return heatmap_loss(model(_images(batch)), targets, keypoints[..., 2])

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    step = optimizer.step[...]
    optimizer.update(model, grads)
    updates = step // config.optim.accumulate_steps
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(updates)}
    return nnx.state((model, optimizer)), metrics


def eval_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict, state: nnx.State,
              batch: dict) -> tuple[jax.Array, jax.Array]:
    """Predicted keypoints (N, K, 3) in input pixels and per-sample loss (N,), eval-mode BN."""
    model, _ = nnx.merge(graphdef, state)
    model.eval()
    keypoints = batch["keypoints"]
    predicted = model(_images(batch))
    targets = render_heatmaps(keypoints, config.data.image_size, config.model.heatmap_size,
                              config.model.sigma)
    weights = keypoints[..., 2][:, None, None, :]
    per_sample = jnp.mean(jnp.square(predicted - targets) * weights, axis=(1, 2, 3))
    return decode_heatmaps(predicted, config.data.image_size), per_sample


def make_trainer(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, state: nnx.State,
                 schedule: optax.Schedule) -> Trainer:
    """Mesh over all devices, shardings, and the jitted train/eval steps."""
    # Auto axis: XLA propagates the batch sharding through the model (explicit sharding types
    # would need annotations on every reshape).
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
    replicated = NamedSharding(mesh, P())
    state_sharding = jax.tree.map(lambda _: replicated, state)
    batch_sharding = NamedSharding(mesh, P("data"))
    if config.train.batch_size % jax.device_count():
        raise ValueError(f"train.batch_size={config.train.batch_size} is not divisible by the "
                         f"{jax.device_count()} devices")
    options = xla_compiler_options()  # per backend: see models/layers.py
    train = jax.jit(functools.partial(train_step, graphdef, schedule, config),
                    donate_argnums=0, out_shardings=(state_sharding, replicated),
                    compiler_options=options)
    evaluate_ = jax.jit(functools.partial(eval_step, graphdef, config),
                        out_shardings=(replicated, replicated), compiler_options=options)
    return Trainer(graphdef, mesh, state_sharding, batch_sharding, train, evaluate_, schedule)


def device_batch(batch: dict, sharding: NamedSharding, keys: tuple[str, ...] = (
        "image", "keypoints")) -> dict:
    """Place this process's part of a batch on the devices as global sharded arrays."""
    return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


# ----------------------------------------------------------------------------- checkpoints


def make_checkpoint_manager(directory: Path, config: ml_collections.ConfigDict,
                            read_only: bool = False) -> ocp.CheckpointManager:
    """orbax manager keeping the last `train.keep_checkpoints` plus the best by val PCK@0.1.

    The two policies are combined with `AnyPreservationPolicy`: a best-only policy can delete the
    latest checkpoint and send a resume back in time.
    """
    policies = ocp.checkpoint_managers
    preservation = policies.AnyPreservationPolicy([
        policies.LatestN(n=config.train.keep_checkpoints),
        policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1,
                       keep_checkpoints_without_metrics=False),
    ])
    # best_fn only makes orbax store each checkpoint's metrics (the policy above decides what
    # is kept); without it `metrics()` is empty and no checkpoint can be "best".
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation, best_fn=lambda m: m[BEST_METRIC], best_mode="max",
        cleanup_tmp_directories=True, create=not read_only, read_only=read_only,
        enable_async_checkpointing=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def best_step(manager: ocp.CheckpointManager) -> int | None:
    """The kept step with the highest val PCK@0.1, or None if none has metrics."""
    scored = []
    for step in manager.all_steps():
        metrics = manager.metrics(step)
        if metrics and BEST_METRIC in metrics:
            scored.append((metrics[BEST_METRIC], step))
    return max(scored)[1] if scored else None


def resolve_checkpoint(path: str | Path) -> tuple[Path, int | None]:
    """(checkpoint directory, step) from a workdir, a checkpoints dir or a step dir.

    step None means the latest; the string 'best' after a directory (DIR:best) selects the best.
    """
    path = Path(path)
    if path.name.isdigit() and path.is_dir():
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    if path.is_dir():
        return path, None
    raise TrainingError(f"checkpoint {path} does not exist (expected a workdir, its "
                        "checkpoints/ folder or a step folder such as checkpoints/1000)")


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: nnx.State,
                    iterator: object, metrics: dict | None = None) -> None:
    """Asynchronously save state and data-iterator position at `step`."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data_iter=grain.checkpoint.CheckpointSave(iterator))
    manager.save(step, args=args, metrics=metrics, force=True)


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, abstract_state: nnx.State,
                       iterator: object | None) -> nnx.State:
    """Restore the state (and, given an iterator, its position) saved at `step`."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
        items["data_iter"] = grain.checkpoint.CheckpointRestore(iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except ValueError as e:
        raise TrainingError(f"checkpoint {manager.directory}/{step} does not match this model "
                            f"(another backbone, width or keypoint count?): {e}") from None
    return restored["state"]


# ----------------------------------------------------------------------------- validation


def _val_batches(config: ml_collections.ConfigDict, samples: Sequence) -> Iterator[dict]:
    """This process's val batches, padded with fully masked batches to the same count everywhere.

    Every process must call the (collective) eval step equally often, but with P processes the
    shards hold ceil(N / P) or floor(N / P) samples and can differ by one batch.
    """
    count = jax.process_count()
    if len(samples) < count:
        raise ValueError(f"the val split has {len(samples)} samples, fewer than the {count} "
                         "processes")
    local_batch = config.train.batch_size // count
    num_batches = math.ceil(math.ceil(len(samples) / count) / local_batch)
    template = None
    for template in make_dataset(config, "val", source=samples, num_workers=0):
        num_batches -= 1
        yield template
    empty = {k: np.zeros_like(v) for k, v in template.items()}
    empty["index"][:] = -1
    for _ in range(num_batches):
        yield empty


def evaluate(trainer: Trainer, state: nnx.State, config: ml_collections.ConfigDict,
             samples: Sequence, max_images: int = 0) -> tuple[dict, list]:
    """Val loss and PCK (overall, per group) over the whole val split.

    Returns (metrics, images): up to `max_images` (image, predicted keypoints) pairs for drawing.
    With several processes each reads its shard and every process gets the same global metrics.
    """
    zeros = np.zeros(len(samples[0]["keypoints"]), np.int64)
    counts = {t: (zeros, zeros) for t in PCK_THRESHOLDS}
    loss_sum, n = 0.0, 0
    images = []
    for local in _val_batches(config, samples):
        predicted, per_sample = trainer.eval_step(state, device_batch(local,
                                                                      trainer.batch_sharding))
        predicted, per_sample = np.asarray(predicted), np.asarray(per_sample)
        # The step's outputs are global (replicated); so must the labels they are scored on be.
        keys = ("keypoints", "bbox", "mask") + (("image",) if len(images) < max_images else ())
        batch = _gather_hosts({k: local[k] for k in keys})
        mask = batch["mask"]
        loss_sum += float(per_sample[mask].sum())
        n += int(mask.sum())
        for t in PCK_THRESHOLDS:
            correct, total = pck_counts(predicted, batch["keypoints"], batch["bbox"], t, mask)
            counts[t] = (counts[t][0] + correct, counts[t][1] + total)
        for i in np.flatnonzero(mask)[: max(0, max_images - len(images))]:
            images.append((batch["image"][i], predicted[i]))
    metrics = {"val/loss": loss_sum / max(n, 1)}
    for t in PCK_THRESHOLDS:
        summary = pck_summary(*counts[t])
        for group in ("all", "body", "left_hand", "right_hand", "face"):
            key = f"val/pck@{t}" if group == "all" else f"val/pck@{t}/{group}"
            metrics[key] = summary[group]
    return metrics, images


# ----------------------------------------------------------------------------- the loop


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
        if not data.root:
            raise ValueError("set --config.data.root=DIR (or data.synthetic_num > 0)")
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
                         progress=True)
    sync_processes("synthetic data written")  # the other processes read what process 0 wrote
    return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path,
                       resume: str | None = None) -> dict:
    """Train `config` in `workdir` (resuming from its latest checkpoint); return final metrics."""
    from signlang_jax.metric_log import MetricLogger

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = prepare_data(config, workdir)
    config_path = workdir / "config.json"
    if config_path.exists():
        check_compatible(json.loads(config_path.read_text()), config, str(config_path))
    ckpt_dir = workdir / "checkpoints"

    train_samples = load_records(config.data, "train")
    val_samples = load_records(config.data, "val")
    steps = total_train_steps(config, len(train_samples))
    graphdef, state, schedule = create_state(config, steps)
    _check_output_size(graphdef, state, config)
    trainer = make_trainer(config, graphdef, state, schedule)
    state = jax.device_put(state, trainer.state_sharding)
    iterator = make_iterator(config, "train", source=train_samples)
    manager = make_checkpoint_manager(ckpt_dir, config)

    start = 0
    if resume is not None:
        source_dir, source_step = resolve_checkpoint(resume)
        source_cfg = source_dir.parent / "config.json"
        if source_cfg.exists():
            check_compatible(json.loads(source_cfg.read_text()), config, str(source_cfg))
        source = make_checkpoint_manager(source_dir, config, read_only=True)
        start = source_step if source_step is not None else source.latest_step()
        if start is None:
            raise TrainingError(f"no checkpoint in {source_dir}")
        state = restore_checkpoint(source, start, _abstract(state), iterator)
        source.close()
    elif manager.latest_step() is not None:
        start = manager.latest_step()
        state = restore_checkpoint(manager, start, _abstract(state), iterator)
    elif config.model.pretrained_backbone:  # fresh start only: a resume never needs the file
        state = jax.device_put(load_pretrained(graphdef, state, config.model.pretrained_backbone),
                               trainer.state_sharding)
    if jax.process_index() == 0:
        config_path.write_text(config.to_json_best_effort(indent=2))

    logger = MetricLogger(workdir, total=steps, initial=start, enabled=jax.process_index() == 0)
    if start:
        logger.print(f"resumed from step {start}")
    every = config.train
    pending: list[tuple[int, dict]] = []  # per-step device metrics not yet checked
    # data_wait: seconds blocked in next(iterator) this window. JAX dispatches steps
    # asynchronously, so any time spent there is time the device could have been busy.
    window_start, window_images, data_wait = time.perf_counter(), 0, 0.0
    last_saved = start
    final: dict = {}
    try:
        for step in range(start + 1, steps + 1):
            with jax.profiler.StepTraceAnnotation("train", step_num=step):
                wait_start = time.perf_counter()
                batch = next(iterator)
                data_wait += time.perf_counter() - wait_start
                state, metrics = trainer.train_step(state, device_batch(batch,
                                                                        trainer.batch_sharding))
            pending.append((step, metrics))
            window_images += config.train.batch_size
            is_eval = step % every.eval_every_steps == 0 or step == steps
            is_save = step % every.checkpoint_every_steps == 0 or is_eval
            if step % every.log_every_steps == 0 or is_save:
                values = _check_finite(pending, last_saved)
                pending = []
                elapsed = time.perf_counter() - window_start
                values["images_per_sec"] = window_images / max(elapsed, 1e-9)
                values["data_wait_fraction"] = data_wait / max(elapsed, 1e-9)
                logger.scalars(step, values, prefix="train/")
                window_start, window_images, data_wait = time.perf_counter(), 0, 0.0
            else:
                logger.advance(step)
            eval_metrics = None
            if is_eval:
                eval_metrics, drawn = evaluate(trainer, state, config, val_samples,
                                               every.num_val_images)
                logger.scalars(step, eval_metrics)
                logger.skeletons(step, drawn)
                final = eval_metrics
                window_start = time.perf_counter()
            if is_save:
                check_replicas_agree(state)
                save_checkpoint(manager, step, state, iterator, eval_metrics)
                last_saved = step
        if start >= steps:  # already trained: report the final checkpoint's metrics
            final, _ = evaluate(trainer, state, config, val_samples)
            logger.scalars(start, final)
        manager.wait_until_finished()
    finally:
        manager.close()
        iterator.close()
        logger.close()
    return final


def load_pretrained(graphdef: nnx.GraphDef, state: nnx.State, path: str) -> nnx.State:
    """The state with its backbone initialised from a torch .pth (see interop.convert)."""
    try:
        from interop.convert import load_pretrained_backbone
    except ImportError as e:
        raise TrainingError(f"model.pretrained_backbone needs torch ({e}): install the export "
                            "extra, pip install -e '.[export]'") from None
    model, optimizer = nnx.merge(graphdef, state)
    load_pretrained_backbone(model, path)
    return nnx.state((model, optimizer))


def _abstract(state: nnx.State) -> nnx.State:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def _check_output_size(graphdef: nnx.GraphDef, state: nnx.State,
                       config: ml_collections.ConfigDict) -> None:
    size = config.data.image_size

    def forward(state: nnx.State) -> jax.Array:
        model, _ = nnx.merge(graphdef, state)
        return model(jnp.zeros((1, size, size, 3), jnp.float32))

    shape = jax.eval_shape(forward, state).shape
    expected = (1, config.model.heatmap_size, config.model.heatmap_size, config.model.num_keypoints)
    if shape != expected:
        raise ValueError(f"the model maps {size}x{size} inputs to heatmaps {shape[1:]}, but "
                         f"model.heatmap_size={config.model.heatmap_size} and "
                         f"model.num_keypoints={config.model.num_keypoints} expect "
                         f"{expected[1:]}; set model.heatmap_size={shape[1]} or change the head")


def _check_finite(pending: list[tuple[int, dict]], last_saved: int) -> dict:
    """Fetch pending step metrics; stop on the first non-finite loss; return the latest."""
    host = jax.device_get([m for _, m in pending])
    for (step, _), values in zip(pending, host, strict=True):
        if not math.isfinite(float(values["loss"])):
            raise TrainingError(
                f"the loss became {float(values['loss'])} at step {step}; training stopped. "
                f"The last checkpoint (step {last_saved}) was written before it and is intact. "
                "Lower optim.lr, check the data with python -m signlang_jax.data.validate, or "
                "enable optim.grad_clip.")
    return {k: float(v) for k, v in host[-1].items()}


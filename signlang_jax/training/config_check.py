"""Config checks at the start of training: every field, before anything is built.

`validate_config` checks every field of `configs/default.py` before anything is built, so a typo
costs a second instead of a compile (or a crash an hour in): it collects every problem and raises
one `ConfigError` with a line per bad field, written as the override flag that fixes it, e.g.
`--config.train.batch_size=6: must be divisible by the 4 devices`. Fields a config adds beyond the
default are not checked (experiments may carry notes). ml_collections already refuses most type
changes on the command line, but lets None, bools for ints and the elements of tuples through, and
a config file may build a field from scratch, so types are checked here too.

What a workdir remembers of earlier starts (and how a resume compares with it) is
`signlang_jax.training.config_history`.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from configs import default
from signlang_jax.data.hand_crops import NUM_HAND_KEYPOINTS
from signlang_jax.data.mixture import parse_sources
from signlang_jax.data.sources import FORMATS
from signlang_jax.errors import ConfigError
from signlang_jax.keypoints import NUM_KEYPOINTS
from signlang_jax.models import BACKBONE_STRIDE, BACKBONES, DTYPES, HEADS
from signlang_jax.models.layers import DECONV_IMPLS, DECONV_PADDING
from signlang_jax.training.validation import (
    HAND_METRIC_NAMES,
    METRIC_NAMES,
    metric_names,
    split_source_metric,
)
from signlang_jax.training.value_checks import (
    FRACTION,
    FRACTION_BELOW_1,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    Check,
    boolean,
    boundaries,
    coordinator,
    integer,
    is_int,
    number,
    one_of,
    string,
)

# Enums the trainer dispatches on (train.py's make_optimizer / make_schedule).
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "constant")
DATA_CHANGE_POLICIES = ("refuse", "restart_epoch")
FINAL_KERNELS = (1, 3)  # models/head.py: 1x1 or 3x3 (padding 1) keep the heatmap size
MAX_DECONV_LAYERS = 5
# config.task -> the model's keypoint count: the whole-body detector or the hand model.
TASK_KEYPOINTS = {"wholebody": NUM_KEYPOINTS, "hand": NUM_HAND_KEYPOINTS}


# ----------------------------------------------------------------------------- field checks


def _keypoint_count(value: object) -> str | None:
    ok = is_int(value) and value in TASK_KEYPOINTS.values()
    return None if ok else (f"must be {NUM_KEYPOINTS} (the keypoint schema's size, "
                            f"keypoints.py) or {NUM_HAND_KEYPOINTS} for the hand model")


def _sources(value: object) -> str | None:
    try:
        parse_sources(value)
    except ValueError as e:
        return str(e).split(": ", 1)[-1]
    return None


def _best_metric(value: object) -> str | None:
    names = tuple(dict.fromkeys(METRIC_NAMES + HAND_METRIC_NAMES))
    if isinstance(value, str) and split_source_metric(value)[1] in names:
        return None
    return ("must be one of " + ", ".join(repr(n) for n in names)
            + ", or 'val/SOURCE/...' with a data.sources name")


# Every field of configs/default.py and its own rule; rules across fields are in _cross_checks.
FIELD_CHECKS: dict[str, Check] = {
    "seed": integer(),
    "task": one_of(tuple(TASK_KEYPOINTS)),
    "data.root": string,
    "data.sources": _sources,
    "data.format": one_of(FORMATS),
    "data.images_dir": string,
    "data.labels_dir": string,
    "data.image_size": POSITIVE_INT,
    "data.val_fraction": FRACTION_BELOW_1,
    "data.num_workers": NON_NEGATIVE_INT,
    "data.worker_buffer_size": POSITIVE_INT,
    "data.read_threads": NON_NEGATIVE_INT,
    "data.skip_invalid": boolean,
    "data.decode_check": boolean,
    "data.synthetic_num": NON_NEGATIVE_INT,
    "data.synthetic_size": POSITIVE_INT,
    "data.synthetic_seed": integer(),
    "data.synthetic_others": FRACTION,
    "data.occluded_weight": FRACTION,
    "augment.flip_prob": FRACTION,
    "augment.scale_min": POSITIVE,
    "augment.scale_max": POSITIVE,
    "augment.rotation_prob": FRACTION,
    "augment.rotation_deg": NON_NEGATIVE,
    "augment.shift_frac": FRACTION,
    "augment.color_prob": FRACTION,
    "augment.brightness": FRACTION,
    "augment.contrast": FRACTION,
    "augment.saturation": FRACTION,
    "augment.hue_deg": NON_NEGATIVE,
    "augment.blur_prob": FRACTION,
    "augment.blur_sigma_max": NON_NEGATIVE,
    "model.name": one_of(tuple(BACKBONES)),
    "model.width": POSITIVE_INT,
    "model.num_keypoints": _keypoint_count,
    "model.deconv_layers": integer(1, MAX_DECONV_LAYERS),
    "model.deconv_filters": POSITIVE_INT,
    "model.deconv_kernel": one_of(tuple(sorted(DECONV_PADDING))),
    "model.final_kernel": one_of(FINAL_KERNELS),
    "model.heatmap_size": POSITIVE_INT,
    "model.sigma": POSITIVE,
    "model.dtype": one_of(("auto", *DTYPES)),
    "model.deconv_impl": one_of(("auto", *DECONV_IMPLS)),
    "model.pretrained_backbone": string,
    "model.udp": boolean,
    "model.head": one_of(HEADS),
    "model.simcc_split": POSITIVE_INT,
    "model.simcc_hidden": POSITIVE_INT,
    "optim.name": one_of(OPTIMIZERS),
    "optim.lr": POSITIVE,
    "optim.b1": FRACTION_BELOW_1,
    "optim.b2": FRACTION_BELOW_1,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.schedule": one_of(SCHEDULES),
    "optim.warmup_steps": NON_NEGATIVE_INT,
    "optim.final_lr_fraction": FRACTION,
    "optim.step_boundaries": boundaries,
    "optim.step_factor": FRACTION,
    "optim.grad_clip": NON_NEGATIVE,
    "optim.accumulate_steps": POSITIVE_INT,
    "optim.max_skipped_steps": NON_NEGATIVE_INT,
    "optim.ema": boolean,
    "optim.ema_decay": FRACTION_BELOW_1,
    "train.batch_size": POSITIVE_INT,
    "train.epochs": NON_NEGATIVE_INT,  # >= 1 unless num_steps > 0: see _cross_checks
    "train.num_steps": NON_NEGATIVE_INT,
    "train.log_every_steps": POSITIVE_INT,
    "train.eval_every_steps": POSITIVE_INT,
    "train.checkpoint_every_steps": POSITIVE_INT,
    "train.keep_checkpoints": POSITIVE_INT,
    "train.best_metric": _best_metric,
    "train.on_data_change": one_of(DATA_CHANGE_POLICIES),
    "train.num_val_images": NON_NEGATIVE_INT,
    "hand_crop.margin": NON_NEGATIVE,
    "hand_crop.min_side": NON_NEGATIVE,
    "hand_crop.fallback_side": POSITIVE,
    "hand_crop.score_threshold": FRACTION,
    "hand_crop.min_points": integer(1, NUM_HAND_KEYPOINTS),
    "hand_crop.reach": number("", lambda v: True),
    "hand_crop.align": boolean,
    "hand_crop.shift": NON_NEGATIVE,
    "hand_crop.scale_min": POSITIVE,
    "hand_crop.scale_max": POSITIVE,
    "hand_crop.rotation_deg": number(" in [0, 180]", lambda v: 0 <= v <= 180),
    "distributed.coordinator": coordinator,
    "distributed.num_processes": POSITIVE_INT,
    "distributed.process_id": NON_NEGATIVE_INT,
    "distributed.auto": boolean,
    "distributed.timeout": POSITIVE_INT,
}

_MISSING = object()


def _lookup(config: object, field: str) -> tuple[object, str | None]:
    """(value, None) of a dotted field, or (_MISSING, the first missing prefix)."""
    node = config
    parts = field.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, (Mapping, ml_collections.ConfigDict)) or part not in node:
            return _MISSING, ".".join(parts[: i + 1])
        node = node[part]
    return node, None


def _flag(field: str, value: object) -> str:
    """How the user sets `field`: --config.FIELD=VALUE (strings quoted, so '' is visible)."""
    return f"--config.{field}={value!r}"


def _cross_checks(values: dict[str, object], device_count: int, process_count: int
                  ) -> list[str]:
    """Rules between fields, on fields that passed their own check (`values`)."""
    problems = []
    batch = values.get("train.batch_size")
    if batch is not None:
        if batch % device_count:
            problems.append(f"{_flag('train.batch_size', batch)}: must be divisible by the "
                            f"{device_count} devices")
        if batch % process_count:
            problems.append(f"{_flag('train.batch_size', batch)}: must be divisible by the "
                            f"{process_count} processes")
    epochs, steps = values.get("train.epochs"), values.get("train.num_steps")
    if epochs == 0 and steps == 0:
        problems.append(f"{_flag('train.epochs', epochs)}: must be a positive integer when "
                        "train.num_steps=0")
    scale_min, scale_max = values.get("augment.scale_min"), values.get("augment.scale_max")
    if scale_min is not None and scale_max is not None and scale_min > scale_max:
        problems.append(f"{_flag('augment.scale_min', scale_min)}: must be <= "
                        f"augment.scale_max={scale_max!r}")
    problems += _task_checks(values) + _sources_checks(values)
    size = values.get("data.image_size")
    if size is not None and size % BACKBONE_STRIDE:
        problems.append(f"{_flag('data.image_size', size)}: must be divisible by "
                        f"{BACKBONE_STRIDE} (the backbone's output stride)")
    elif size is not None:
        problems += _heatmap_size_check(values, size)
    problems += _distributed_checks(values)
    return problems


def _heatmap_size_check(values: dict[str, object], size: int) -> list[str]:
    """model.heatmap_size must be the head's output size for data.image_size."""
    layers, heatmap = values.get("model.deconv_layers"), values.get("model.heatmap_size")
    head, split = values.get("model.head", "heatmap"), values.get("model.simcc_split")
    if head == "simcc" and heatmap is not None and split is not None:
        if heatmap != size * split:
            return [f"{_flag('model.heatmap_size', heatmap)}: must be {size * split}, the SimCC "
                    f"head's bins for data.image_size={size} and model.simcc_split={split} "
                    "(image_size * simcc_split)"]
    elif head == "heatmap" and layers is not None and heatmap is not None:
        expected = size // BACKBONE_STRIDE * 2**layers
        if heatmap != expected:
            return [f"{_flag('model.heatmap_size', heatmap)}: must be {expected}, the model's "
                    f"output size for data.image_size={size} and model.deconv_layers={layers} "
                    f"(image_size / {BACKBONE_STRIDE} * 2 ** deconv_layers)"]
    return []


def _task_checks(values: dict[str, object]) -> list[str]:
    """The keypoint count and best metric must be the task's; hand jitter ranges ordered."""
    task = values.get("task")
    problems = []
    if task is None:
        return problems
    count = values.get("model.num_keypoints")
    if count is not None and count != TASK_KEYPOINTS[task]:
        problems.append(f"{_flag('model.num_keypoints', count)}: must be "
                        f"{TASK_KEYPOINTS[task]} for task={task!r}")
    metric = values.get("train.best_metric")
    source, overall = split_source_metric(metric) if metric is not None else ("", None)
    if metric is not None and overall not in metric_names(task):
        problems.append(f"{_flag('train.best_metric', metric)}: must be one of "
                        f"{', '.join(metric_names(task))} for task={task!r}")
    sources = [s.name for s in parse_sources(values.get("data.sources", ""))]
    if source and source not in sources:
        problems.append(f"{_flag('train.best_metric', metric)}: {source!r} is not a "
                        "data.sources name (" + (", ".join(sources) or "no data.sources") + ")")
    low, high = values.get("hand_crop.scale_min"), values.get("hand_crop.scale_max")
    if low is not None and high is not None and low > high:
        problems.append(f"{_flag('hand_crop.scale_min', low)}: must be <= "
                        f"hand_crop.scale_max={high!r}")
    return problems


def _sources_checks(values: dict[str, object]) -> list[str]:
    """data.sources replaces data.root and the synthetic data: neither may be set beside it."""
    problems, sources = [], parse_sources(values.get("data.sources", ""))
    root, synthetic = values.get("data.root"), values.get("data.synthetic_num")
    # configs/default.py's data.root is a placeholder every config inherits, not a choice.
    if sources and root and root != default.get_config().data.root:
        problems.append(f"{_flag('data.root', root)}: is not read when "
                        f"{_flag('data.sources', values['data.sources'])} is set (each source "
                        "names its own folder): drop --config.data.root, or drop "
                        f"--config.data.sources to train on {root} alone")
    if sources and synthetic:
        problems.append(f"{_flag('data.synthetic_num', synthetic)}: must be 0 with data.sources "
                        "(render the synthetic data first, e.g. python -m signlang_jax.synth, "
                        "and list its folder as a source)")
    return problems


def _distributed_checks(values: dict[str, object]) -> list[str]:
    """A multi-process job needs a coordinator (or auto) and a process id below the count."""
    count, rank = values.get("distributed.num_processes"), values.get("distributed.process_id")
    coordinator, auto = values.get("distributed.coordinator"), values.get("distributed.auto")
    problems = []
    if count is not None and rank is not None and rank >= count:
        problems.append(f"{_flag('distributed.process_id', rank)}: must be in 0..{count - 1} "
                        f"(distributed.num_processes={count})")
    if coordinator == "" and auto is False and (count not in (None, 1) or rank not in (None, 0)):
        problems.append(f"{_flag('distributed.coordinator', coordinator)}: must be HOST:PORT "
                        f"of process 0 when distributed.num_processes={count} and "
                        f"distributed.process_id={rank} (or set --config.distributed.auto=True)")
    return problems


def config_problems(config: ml_collections.ConfigDict, device_count: int,
                    process_count: int = 1) -> list[str]:
    """Every broken rule of `config`, one '--config.FIELD=VALUE: must be ...' line each."""
    problems, missing, values = [], [], {}
    for field, check in FIELD_CHECKS.items():
        value, absent = _lookup(config, field)
        if absent is not None:
            if absent not in missing:
                missing.append(absent)
                problems.append(f"--config.{absent}: missing (configs/default.py lists every "
                                "field; start your config from it)")
            continue
        broken = check(value)
        if broken is None:
            values[field] = value
        else:
            problems.append(f"{_flag(field, value)}: {broken}")
    return problems + _cross_checks(values, device_count, process_count)


def validate_config(config: ml_collections.ConfigDict, device_count: int,
                    process_count: int = 1) -> None:
    """Raise `ConfigError` listing every invalid field of `config` (no JAX device is touched)."""
    problems = config_problems(config, device_count, process_count)
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(f"the config has {len(problems)} {noun}; fix them on the command line "
                          "or in the config file:\n  " + "\n  ".join(problems))

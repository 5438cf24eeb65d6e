"""Checkpoints: naming one, choosing its step, saving, and restoring with recovery.

A run keeps its checkpoints in WORKDIR/checkpoints/<step>/ (orbax), each holding the training
state (model + optimizer), the data-iterator position and, after a validation, its metrics.
Every flag that names a checkpoint (`main --resume`, `evaluate/infer_image/to_onnx --checkpoint`)
uses one syntax, parsed by `parse_spec`:

    runs/x                     a workdir (or runs/x/checkpoints): its latest step
    runs/x/checkpoints/1200    that step folder
    runs/x:best                the kept step with the best `train.best_metric`
    runs/x:latest, runs/x:1200 the latest step, step 1200

Recovery: a checkpoint may be damaged (disk full, a copy cut short). Restoring the latest step
tries the kept steps newest first, warns once per skipped step with the reason, and fails with
every step's reason only when none restores. A damaged step is never moved or deleted: it is
listed in WORKDIR/damaged_checkpoints.json and kept by the retention policy until a person
removes it.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

from signlang_jax.data.iterator import DataChangedError
from signlang_jax.errors import CheckpointError, CheckpointMismatchError
from signlang_jax.training.validation import metric_mode

STEP_WORDS = ("best", "latest")
DAMAGED_FILE = "damaged_checkpoints.json"  # in the workdir, next to checkpoints/


# ----------------------------------------------------------------------------- naming


def parse_spec(spec: str | Path, step: str | int | None = None) -> tuple[Path, str | int | None]:
    """(path, step) from "PATH", "PATH:best|latest|N" and an optional separate step."""
    text = str(spec)
    suffix = None
    head, sep, tail = text.rpartition(":")
    if sep and head and not Path(text).exists() and (tail in STEP_WORDS or tail.isdigit()):
        text, suffix = head, tail
    if text in STEP_WORDS:
        raise CheckpointError(f"checkpoint {text!r}: name the run too, e.g. runs/x:{text}")
    if suffix is not None and step is not None and str(step) != suffix:
        raise CheckpointError(f"checkpoint {spec} and step {step} disagree; give one of them")
    chosen = step if step is not None else suffix
    if isinstance(chosen, str) and chosen.isdigit():
        chosen = int(chosen)
    if chosen is not None and not isinstance(chosen, int) and chosen not in STEP_WORDS:
        raise CheckpointError(f"step {chosen!r}: expected best, latest or a step number")
    return Path(text), chosen


def resolve_checkpoint(path: str | Path) -> tuple[Path, int | None]:
    """(checkpoints directory, step of a step folder or None) from any accepted path."""
    path = Path(path)
    if path.name.isdigit() and path.is_dir() and not (path / "checkpoints").is_dir():
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    if path.is_dir():
        return path, None
    raise CheckpointError(f"checkpoint {path} does not exist (expected a workdir such as runs/x, "
                          "its checkpoints/ folder or a step folder such as "
                          "runs/x/checkpoints/1000)")


def locate(spec: str | Path, step: str | int | None = None) -> tuple[Path, str | int | None]:
    """(checkpoints directory, step or "best"/"latest"/None) of a checkpoint spec."""
    path, chosen = parse_spec(spec, step)
    directory, folder_step = resolve_checkpoint(path)
    if folder_step is not None:
        if chosen is not None and chosen != folder_step:
            raise CheckpointError(f"{path} is step {folder_step} but step {chosen} was asked for")
        chosen = folder_step
    return directory, chosen


# ----------------------------------------------------------------------------- the manager


def make_checkpoint_manager(directory: Path, config: ml_collections.ConfigDict,
                            read_only: bool = False) -> ocp.CheckpointManager:
    """orbax manager keeping the last `train.keep_checkpoints`, the best and any damaged step.

    The policies are combined with `AnyPreservationPolicy`: a best-only policy can delete the
    latest checkpoint and send a resume back in time.
    """
    metric, mode = config.train.best_metric, metric_mode(config.train.best_metric)
    policies = ocp.checkpoint_managers
    keep = [policies.LatestN(n=config.train.keep_checkpoints),
            policies.BestN(get_metric_fn=_metric_getter(metric, mode), reverse=mode == "min",
                           n=1, keep_checkpoints_without_metrics=False)]
    damaged = sorted(read_damaged(directory.parent))
    if damaged:
        keep.append(policies.CustomSteps(steps=damaged))
    # best_fn only makes orbax store each checkpoint's metrics (the policy above decides what
    # is kept); without it `metrics()` is empty and no checkpoint can be "best".
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        best_fn=_metric_getter(metric, mode), best_mode=mode, cleanup_tmp_directories=True,
        create=not read_only, read_only=read_only, enable_async_checkpointing=True)
    return ocp.CheckpointManager(Path(directory).absolute(), options=options)


def _metric_getter(metric: str, mode: str) -> Callable[[dict], float]:
    # Checkpoints written before `metric` existed rank last instead of failing.
    worst = -math.inf if mode == "max" else math.inf

    def get(metrics: dict) -> float:
        value = metrics.get(metric)
        return worst if value is None or math.isnan(value) else float(value)
    return get


def best_step(manager: ocp.CheckpointManager, metric: str) -> int | None:
    """The kept step with the best `metric` (max, or min for losses); None if none has it."""
    sign = 1.0 if metric_mode(metric) == "max" else -1.0
    scored = []
    for step in manager.all_steps():
        value = (manager.metrics(step) or {}).get(metric)
        if value is not None and not math.isnan(value):
            scored.append((sign * value, step))
    return max(scored)[1] if scored else None


def select_step(manager: ocp.CheckpointManager, chosen: str | int | None, metric: str) -> int:
    """The step number for "latest"/None, "best" (latest if none is scored) or a number."""
    steps = sorted(manager.all_steps())
    if not steps:
        raise CheckpointError(f"no checkpoint in {manager.directory} (training saves them every "
                              "train.checkpoint_every_steps)")
    if chosen in (None, "latest"):
        return steps[-1]
    if chosen == "best":
        best = best_step(manager, metric)
        return steps[-1] if best is None else best
    if chosen not in steps:
        raise CheckpointError(f"step {chosen} is not in {manager.directory}; available: {steps}")
    return int(chosen)


# ----------------------------------------------------------------------------- save, restore


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: object,
                    iterator: object, metrics: dict | None = None) -> None:
    """Asynchronously save state and data-iterator position at `step`."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data_iter=grain.checkpoint.CheckpointSave(iterator))
    manager.save(step, args=args, metrics=metrics, force=True)


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, abstract_state: object,
                       iterator: object | None) -> object:
    """Restore the state (and, given an iterator, its position) saved at `step`.

    Raises `CheckpointMismatchError` for a checkpoint of another architecture or optimizer (its
    arrays differ in names or shapes from `abstract_state`), `CheckpointError` for a damaged
    one, and lets the iterator's `DataChangedError` through unchanged (the data changed, not the
    checkpoint).
    """
    step_dir = Path(manager.directory) / str(step)
    differences = structure_differences(step_dir / "state", abstract_state)
    if any(line.startswith("0.") for line in differences):  # entry 0 is the model
        raise CheckpointMismatchError(
            f"checkpoint {step_dir} holds another architecture than this config (another "
            "backbone, width or keypoint count?):\n  " + _listed(differences))
    if differences:  # only entry 1, the optimizer's state, differs
        raise CheckpointMismatchError(
            f"checkpoint {step_dir} holds the state of another optimizer than this config "
            "(optim.name, optim.accumulate_steps or optim.grad_clip changed? Change them in a "
            "new --workdir started with --resume):\n  " + _listed(differences))
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
        items["data_iter"] = grain.checkpoint.CheckpointRestore(iterator)
    try:
        with _quiet_asyncio():
            restored = manager.restore(step, args=ocp.args.Composite(**items))
    except DataChangedError:
        raise
    except (ValueError, OSError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {step_dir} cannot be read (damaged or incomplete?): "
                              f"{_first_line(e)}") from None
    return restored["state"]


def restore_newest_intact(manager: ocp.CheckpointManager, abstract_state: object,
                          iterator: object | None, warn: Callable[[str], None] | None = None
                          ) -> tuple[int, object]:
    """(step, state) of the newest step that restores; damaged steps are skipped and recorded.

    Architecture, optimizer and data mismatches are not damage: they are raised at once (every
    older step would fail the same way).
    """
    warn = warn or (lambda message: print(message, file=sys.stderr))
    reasons = {}
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            state = restore_checkpoint(manager, step, abstract_state, iterator)
        except CheckpointMismatchError:
            raise
        except CheckpointError as e:
            reasons[step] = str(e)
            warn(f"WARNING skipping checkpoint step {step}: {e}. It is left in place at "
                 f"{Path(manager.directory) / str(step)}; trying the previous step.")
            continue
        if reasons:
            record_damaged(Path(manager.directory).parent, reasons)
        return step, state
    record_damaged(Path(manager.directory).parent, reasons)
    raise CheckpointError(f"no checkpoint in {manager.directory} can be restored:\n  "
                          + "\n  ".join(f"step {s}: {r}" for s, r in reasons.items()))


def restore_model_variables(manager: ocp.CheckpointManager, step: int,
                            abstract_model_state: object) -> object:
    """Only the model's variables of step `step` (not the optimizer's moments): for inference.

    The training state is the pair (model, optimizer); a partial restore reads entry 0.
    """
    from flax import nnx

    step_dir = Path(manager.directory) / str(step)
    target = nnx.State({0: abstract_model_state})
    differences = structure_differences(step_dir / "state", target, partial=True)
    if differences:
        raise CheckpointMismatchError(f"checkpoint {step_dir} holds another architecture than "
                                      "its config.json describes:\n  " + _listed(differences))
    try:
        with _quiet_asyncio():
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    item=target, partial_restore=True,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(target))))
    except (ValueError, OSError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {step_dir} cannot be read (damaged or incomplete?): "
                              f"{_first_line(e)}") from None
    return restored["state"][0]


def structure_differences(state_dir: Path, abstract_state: object, partial: bool = False
                          ) -> list[str]:
    """Arrays whose names or shapes differ between a saved state and `abstract_state`.

    Reads only orbax's metadata file. `partial`: arrays saved but not asked for are fine.
    Unreadable metadata is reported by the restore itself, not here.
    """
    try:
        saved_tree = ocp.PyTreeCheckpointHandler().metadata(state_dir).tree
    except (ValueError, OSError, KeyError, AttributeError, TypeError):
        return []
    saved = {name: tuple(meta.shape) for name, meta in _named_leaves(saved_tree)}
    wanted = {name: tuple(leaf.shape) for name, leaf in _named_leaves(abstract_state)}
    lines = [f"{name}: checkpoint {saved[name]}, this model {shape}"
             for name, shape in wanted.items() if name in saved and saved[name] != shape]
    lines += [f"{name}: missing from the checkpoint" for name in wanted if name not in saved]
    if not partial:
        lines += [f"{name}: in the checkpoint, not in this model" for name in saved
                  if name not in wanted]
    return lines


def _listed(lines: list[str], most: int = 8) -> str:
    return "\n  ".join(lines[:most] + ([f"... and {len(lines) - most} more"]
                                       if len(lines) > most else []))


def _named_leaves(tree: object) -> list[tuple[str, object]]:
    def name(path: tuple) -> str:
        parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        return ".".join(parts[:-1] if parts and parts[-1] == "value" else parts)
    return [(name(p), leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def read_damaged(workdir: Path) -> dict[int, str]:
    """Steps recorded as damaged in WORKDIR/damaged_checkpoints.json (step -> reason)."""
    path = Path(workdir) / DAMAGED_FILE
    try:
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def record_damaged(workdir: Path, reasons: dict[int, str]) -> None:
    """Add `reasons` to WORKDIR/damaged_checkpoints.json (so the keep policy keeps them)."""
    if not reasons or jax.process_index() != 0 or not Path(workdir).is_dir():
        return
    merged = {**read_damaged(workdir), **reasons}
    path = Path(workdir) / DAMAGED_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({str(k): v for k, v in sorted(merged.items())}, indent=2))
    tmp.replace(path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class _quiet_asyncio:  # noqa: N801 (used as a context manager like a function)
    """Keep a failed orbax read to our one-line message.

    tensorstore's failed reads leave asyncio tasks whose exceptions nobody retrieves and
    callbacks that hit an already closed event loop; Python prints both (with tracebacks) when
    they are garbage collected, possibly much later. After a failure the asyncio logger is
    silenced for the rest of the process and those closed-loop errors are dropped.
    """

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is None:
            return
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        previous = sys.unraisablehook

        def hook(unraisable: object) -> None:
            if "Event loop is closed" not in str(getattr(unraisable, "exc_value", "")):
                previous(unraisable)
        sys.unraisablehook = hook
        gc.collect()

"""Checkpoints: naming one, choosing its step, saving, and restoring with recovery.

A run keeps its checkpoints in WORKDIR/checkpoints/<step>/ (orbax), each holding the training
state (model + optimizer), the data-iterator position and, after a validation, its metrics.
Which checkpoint a flag names: `signlang_jax.training.checkpoint_specs`.

Recovery: a checkpoint may be damaged (disk full, a copy cut short). Restoring the latest step
tries the kept steps newest first, warns once per skipped step with the reason, and fails with
every step's reason only when none restores. A damaged step is listed in
WORKDIR/damaged_checkpoints.json and kept by the retention policy until a person removes it; it
is not deleted or overwritten, and only moved in one case: when a run reaches its final step and
that step is recorded damaged, the damaged folder is moved to WORKDIR/damaged/STEP (its reason in
WORKDIR/damaged/STEP.txt) so that the final state is saved as checkpoints/STEP.

Only unreadable or inconsistent files are damage. A read that fails for another reason (out of
memory, RESOURCE_EXHAUSTED, any RuntimeError: none comes from the files) is tried again
RESTORE_TRIES times and then stops the run with `CheckpointUnavailableError`, naming the cause;
the step is not recorded and no older step is tried in its place.
"""

from __future__ import annotations

import errno
import gc
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp

from signlang_jax.data.iterator import DataChangedError
from signlang_jax.errors import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointUnavailableError,
)
from signlang_jax.training.damaged import (
    DAMAGED_FILE,
    RecordedDamaged,
    forget_damaged,
    read_damaged,
    record_damaged,
    set_aside_damaged,
)
from signlang_jax.training.validation import metric_mode

RESTORE_TRIES = 3  # reads of one step before a transient error stops the run
RESTORE_RETRY_DELAY_S = 2.0  # x the try number: time for another process to free its memory
# In a failed read's message, a status that says nothing about the files (absl codes from XLA
# and tensorstore; the latter raises ValueError for every status, damage or not).
_TRANSIENT_STATUS = re.compile(r"RESOURCE_EXHAUSTED|UNAVAILABLE|DEADLINE_EXCEEDED|out of memory",
                               re.IGNORECASE)
_TRANSIENT_ERRNOS = {errno.ENOMEM, errno.EAGAIN, errno.EINTR, errno.ETIMEDOUT, errno.EBUSY}


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
                           n=1, keep_checkpoints_without_metrics=False),
            RecordedDamaged(Path(directory).parent)]
    # best_fn only makes orbax store each checkpoint's metrics (the policy above decides what
    # is kept); without it `metrics()` is empty and no checkpoint can be "best".
    # A read-only manager (evaluation, export) saves nothing and cleans nothing up: said here,
    # orbax does not warn that it changed those settings itself.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep),
        best_fn=_metric_getter(metric, mode), best_mode=mode,
        cleanup_tmp_directories=not read_only, save_interval_steps=0 if read_only else 1,
        create=not read_only, read_only=read_only, enable_async_checkpointing=True)
    # ... and its notice on every read-only open is no problem either: dropped while opening.
    def notice(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")

    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(notice)
    try:
        return ocp.CheckpointManager(Path(directory).absolute(), options=options)
    finally:
        absl_logger.removeFilter(notice)


def _metric_getter(metric: str, mode: str) -> Callable[[dict], float]:
    # Checkpoints written before `metric` existed rank last instead of failing.
    worst = -math.inf if mode == "max" else math.inf

    def get(metrics: dict) -> float:
        value = metrics.get(metric)
        return worst if value is None or math.isnan(value) else float(value)
    return get


def best_step(manager: ocp.CheckpointManager, metric: str, exclude: Sequence[int] = ()
              ) -> int | None:
    """The kept step with the best `metric` (max, or min for losses); None if none has it."""
    sign = 1.0 if metric_mode(metric) == "max" else -1.0
    scored = []
    for step in (s for s in manager.all_steps() if s not in exclude):
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
    # "latest" and "best" never name a step recorded as damaged (kept only for inspection).
    damaged = read_damaged(Path(manager.directory).parent)
    intact = [s for s in steps if s not in damaged] or steps
    if chosen in (None, "latest"):
        return intact[-1]
    if chosen == "best":
        best = best_step(manager, metric, exclude=list(damaged))
        return intact[-1] if best is None else best
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


def save_unless_damaged(manager: ocp.CheckpointManager, step: int, state: object, iterator: object,
                        metrics: dict | None, damaged: set[int], final: bool,
                        log: Callable[[str], None]) -> bool:
    """Save `step` (True) unless it is a recorded damaged step kept for inspection (False).

    The final step is always saved: a damaged folder in its way is moved to WORKDIR/damaged/
    first (`damaged.set_aside_damaged`), so a run never ends without its final state.
    """
    if step in damaged and final:
        moved = set_aside_damaged(manager, step)
        damaged.discard(step)
        if moved is not None:
            log(f"step {step}: the damaged checkpoint {manager.directory}/{step} was moved to "
                f"{moved} (reason in {moved}.txt) to save the final state as step {step}")
    if step in damaged:  # never overwrite (or delete) a damaged step a person may inspect
        log(f"step {step}: not saved, {manager.directory}/{step} is a damaged checkpoint kept "
            "for inspection (see damaged_checkpoints.json)")
        return False
    save_checkpoint(manager, step, state, iterator, metrics)
    return True


def restore_checkpoint(manager: ocp.CheckpointManager, step: int, abstract_state: object,
                       iterator: object | None) -> object:
    """Restore the state (and, given an iterator, its position) saved at `step`.

    Raises `CheckpointMismatchError` for a checkpoint of another architecture or optimizer (its
    arrays differ in names or shapes from `abstract_state`), `CheckpointError` for a damaged
    one, `CheckpointUnavailableError` when the read keeps failing for another reason (see
    `_read`), and lets the iterator's `DataChangedError` through unchanged (the data changed,
    not the checkpoint).
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
    return _read(manager, step, ocp.args.Composite(**items))["state"]


def _read(manager: ocp.CheckpointManager, step: int, args: ocp.args.Composite) -> dict:
    """`manager.restore(step)`, tried again on a transient error; damage as `CheckpointError`.

    Damage (unreadable, missing or inconsistent files) fails at once. A transient error (see
    `_is_transient`) is tried RESTORE_TRIES times, then raised as `CheckpointUnavailableError`.
    """
    step_dir = Path(manager.directory) / str(step)
    for attempt in range(1, RESTORE_TRIES + 1):
        with _quiet_asyncio() as quiet:
            try:
                return manager.restore(step, args=args)
            except DataChangedError:
                raise
            except (ValueError, OSError, KeyError, RuntimeError, MemoryError) as e:
                quiet.failed = True
                transient, reason = _is_transient(e), _first_line(e)
        if not transient:
            raise CheckpointError(f"checkpoint {step_dir} cannot be read (damaged or "
                                  f"incomplete?): {reason}")
        if attempt < RESTORE_TRIES:
            delay = RESTORE_RETRY_DELAY_S * attempt
            print(f"WARNING reading checkpoint {step_dir} failed ({reason}), not because of its "
                  f"files; trying again in {delay:g} s ({attempt + 1} of {RESTORE_TRIES})",
                  file=sys.stderr)
            time.sleep(delay)
    raise CheckpointUnavailableError(
        f"checkpoint {step_dir} could not be read in {RESTORE_TRIES} tries: {reason}. This is not "
        "damage to its files (they were left as they are and not recorded as damaged). If it is "
        "out of memory, free memory (another process on the same accelerator?) and run the same "
        "command again.")


def _is_transient(error: BaseException) -> bool:
    """Whether a failed read says nothing about the checkpoint's files (out of memory...).

    orbax, tensorstore and grain report missing, truncated, corrupt or inconsistent files as
    ValueError (DATA_LOSS, NOT_FOUND, OUT_OF_RANGE, JSON errors), KeyError or OSError; none of
    them raises RuntimeError for a file, while XLA's errors (JaxRuntimeError) are RuntimeErrors.
    """
    if isinstance(error, MemoryError) or _TRANSIENT_STATUS.search(str(error)):
        return True
    if isinstance(error, OSError):
        return error.errno in _TRANSIENT_ERRNOS
    return isinstance(error, RuntimeError)


def restore_newest_intact(manager: ocp.CheckpointManager, abstract_state: object,
                          iterator: object | None, warn: Callable[[str], None] | None = None
                          ) -> tuple[int, object]:
    """(step, state) of the newest step that restores; damaged steps are skipped and recorded.

    Architecture, optimizer and data mismatches are not damage: they are raised at once (every
    older step would fail the same way), and so is a read that keeps failing for a reason that
    is not the files (`CheckpointUnavailableError`: an older step would lose progress for nothing).
    """
    warn = warn or (lambda message: print(message, file=sys.stderr))
    reasons = {}
    try:
        for step in sorted(manager.all_steps(), reverse=True):
            try:
                state = restore_checkpoint(manager, step, abstract_state, iterator)
            except (CheckpointMismatchError, CheckpointUnavailableError):
                raise  # not damage: an older step would not help
            except CheckpointError as e:
                reasons[step] = str(e)
                warn(f"WARNING skipping checkpoint step {step}: {e}. It is left in place at "
                     f"{Path(manager.directory) / str(step)}; trying the previous step.")
                continue
            workdir = Path(manager.directory).parent
            if step in read_damaged(workdir):  # recorded by mistake (an older version took a
                forget_damaged(workdir, [step])  # transient error for damage): it reads fine
                warn(f"checkpoint step {step} was recorded as damaged but restores intact; "
                     f"it is no longer listed in {DAMAGED_FILE}")
            return step, state
    finally:
        record_damaged(Path(manager.directory).parent, reasons)
    raise CheckpointError(f"no checkpoint in {manager.directory} can be restored:\n  "
                          + "\n  ".join(f"step {s}: {r}" for s, r in reasons.items()))


def restore_model_variables(manager: ocp.CheckpointManager, step: int,
                            abstract_model_state: object, averaged: bool = False) -> object:
    """Only the model's variables of step `step` (not the optimizer's moments): for inference.

    The training state is (model, optimizer), or (model, optimizer, average) with `optim.ema`;
    a partial restore reads entry 0, or 2 for the weights' moving average (`averaged`).
    """
    from flax import nnx

    step_dir = Path(manager.directory) / str(step)
    entry = 2 if averaged else 0
    target = nnx.State({entry: abstract_model_state})
    differences = structure_differences(step_dir / "state", target, partial=True)
    if differences:
        raise CheckpointMismatchError(f"checkpoint {step_dir} holds another architecture than "
                                      "its config.json describes:\n  " + _listed(differences))
    restored = _read(manager, step, ocp.args.Composite(state=ocp.args.PyTreeRestore(
        item=target, partial_restore=True,
        restore_args=ocp.checkpoint_utils.construct_restore_args(target))))
    return restored["state"][entry]


def structure_differences(state_dir: Path, abstract_state: object, partial: bool = False
                          ) -> list[str]:
    """Arrays whose names or shapes differ between a saved state and `abstract_state`.

    Reads only orbax's metadata file. `partial`: arrays saved but not asked for are fine.
    Unreadable metadata is reported by the restore itself, not here.
    """
    with _quiet_asyncio() as quiet:
        try:
            saved_tree = ocp.PyTreeCheckpointHandler().metadata(state_dir).tree
        except (ValueError, OSError, KeyError, AttributeError, TypeError):
            quiet.failed = True
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


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 300 else text[:300] + "..."


class _quiet_asyncio:  # noqa: N801 (used as a context manager like a function)
    """Scope of one orbax read in which a failure stays our one-line message.

    tensorstore's failed reads leave asyncio tasks whose exceptions nobody retrieves, and the
    other reads of the same restore go on in their threads and then hit the already closed
    event loop; Python prints both, with tracebacks. Inside the scope the asyncio logger is
    silenced and closed-loop errors are dropped. The caller sets `failed` when its read failed
    (and must have let go of the exception when the scope ends): the exit then collects the
    garbage and waits for those threads before it puts back the logger's level and the previous
    `sys.unraisablehook`.
    """

    def __enter__(self) -> _quiet_asyncio:
        self.failed = False
        self._logger = logging.getLogger("asyncio")
        self._level, self._previous = self._logger.level, sys.unraisablehook
        self._dropped = 0
        self._logger.setLevel(logging.CRITICAL)
        sys.unraisablehook = self._drop_closed_loop_errors
        return self

    def _drop_closed_loop_errors(self, unraisable: object) -> None:
        if "Event loop is closed" in str(getattr(unraisable, "exc_value", "")):
            self._dropped += 1
        else:
            self._previous(unraisable)

    def __exit__(self, kind: type | None, *exc: object) -> None:
        try:
            if self.failed and kind is None:
                self._settle()
        finally:
            # A hook someone else set meanwhile is theirs to take down.
            if sys.unraisablehook == self._drop_closed_loop_errors:
                sys.unraisablehook = self._previous
            self._logger.setLevel(self._level)

    def _settle(self, quiet_s: float = 0.1, most_s: float = 2.0) -> None:
        # Until no closed-loop error came for quiet_s (most_s at most): the failed read's
        # other reads finish on tensorstore's threads, each with an error.
        deadline = time.monotonic() + most_s
        while True:
            dropped = self._dropped
            gc.collect()  # frees the unretrieved tasks: their log lines come out here
            time.sleep(quiet_s)
            if self._dropped == dropped or time.monotonic() > deadline:
                return

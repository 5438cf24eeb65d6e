"""The record of damaged checkpoints: which steps could not be read, and why.

A step whose files cannot be read is listed in WORKDIR/damaged_checkpoints.json with its reason
(`record_damaged`, by the restore that found it) and kept by the retention policy
(`RecordedDamaged`) until a person removes it: never deleted, never overwritten. The one
exception is a run's final step: `set_aside_damaged` moves the damaged folder to
WORKDIR/damaged/STEP (its reason in WORKDIR/damaged/STEP.txt) so that the final state can be
saved as checkpoints/STEP.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from signlang_jax.files import write_atomic
from signlang_jax.training.distributed import sync_processes

DAMAGED_FILE = "damaged_checkpoints.json"  # in the workdir, next to checkpoints/
DAMAGED_DIR = "damaged"  # in the workdir: damaged steps moved out of the way of a final save


@dataclasses.dataclass
class RecordedDamaged:
    """Preservation policy: keep the steps listed in WORKDIR/damaged_checkpoints.json.

    The list is read at each decision, not when the manager is made: the restore that starts a
    run records damage after its manager exists, and that run's own saves must not delete it.
    """

    workdir: Path

    def should_preserve(self, checkpoints: Sequence[object], *, context: object) -> list[bool]:
        """One flag per orbax `PolicyCheckpointInfo`: True for a recorded damaged step."""
        damaged = read_damaged(self.workdir)
        return [info.step in damaged for info in checkpoints]


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
    _write_damaged(workdir, {**read_damaged(workdir), **reasons})


def forget_damaged(workdir: Path, steps: Sequence[int]) -> None:
    """Remove `steps` from WORKDIR/damaged_checkpoints.json (the file goes with the last one)."""
    recorded = read_damaged(workdir)
    if jax.process_index() != 0 or not set(steps) & set(recorded):
        return
    left = {step: reason for step, reason in recorded.items() if step not in steps}
    if left:
        _write_damaged(workdir, left)
    else:
        (Path(workdir) / DAMAGED_FILE).unlink()


def _write_damaged(workdir: Path, reasons: dict[int, str]) -> None:
    path = Path(workdir) / DAMAGED_FILE
    write_atomic(path, json.dumps({str(k): v for k, v in sorted(reasons.items())},
                                  indent=2).encode())


def set_aside_damaged(manager: ocp.CheckpointManager, step: int) -> Path | None:
    """Move the recorded damaged `step` to WORKDIR/damaged/ so that `step` can be saved again.

    For a run's final step, whose state has no later save to go to. The files are kept for
    inspection (WORKDIR/damaged/STEP, or STEP-1... if taken) with the recorded reason in a .txt
    of the same name; the step leaves damaged_checkpoints.json. Every process calls this;
    process 0 moves. Returns the new folder (None on other processes, or if it was gone).
    """
    manager.wait_until_finished()  # no save of an earlier step still writing next to it
    workdir = Path(manager.directory).parent
    moved = None
    if jax.process_index() == 0:
        reason = read_damaged(workdir).get(step, "no reason recorded")
        moved = _move_aside(Path(manager.directory) / str(step), workdir / DAMAGED_DIR, reason)
        forget_damaged(workdir, [step])
    sync_processes(f"damaged checkpoint {step} set aside")
    manager.reload()  # forget the step orbax listed when it opened the folder
    return moved


def _move_aside(step_dir: Path, into: Path, reason: str) -> Path | None:
    if not step_dir.is_dir():  # removed by a person (or moved by a run killed before the record)
        return None
    into.mkdir(exist_ok=True)
    target, n = into / step_dir.name, 0
    while target.exists():
        n += 1
        target = into / f"{step_dir.name}-{n}"
    # The reason first: a run killed between the two lines leaves a note, never a bare folder.
    write_atomic(target.with_name(target.name + ".txt"), (
        f"{step_dir} was recorded as damaged in {DAMAGED_FILE}: {reason}\n"
        f"Moved here on {time.strftime('%Y-%m-%d %H:%M:%S')} so that the run's final state could "
        f"be saved as step {step_dir.name}.\n").encode())
    step_dir.rename(target)
    return target

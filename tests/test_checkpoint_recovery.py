"""Checkpoint recovery: only damaged files are damage, a run always saves its final state, and a
failed read leaves nothing behind in the process.

Each test copies the session's 4-step tiny run (checkpoints 2 and 4, see tests/conftest.py).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from signlang_jax.training import checkpoints, damaged
from signlang_jax.training import train as train_lib
from tests.conftest import checkpoint_arrays

OOM = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB."


def _copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _steps(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _truncate_arrays(step_dir: Path) -> None:
    for path in (step_dir / "state").rglob("d/*"):
        os.truncate(path, 10)


def _abstract(config: object) -> object:
    _, state, _ = train_lib.create_state(config, 10)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        state)


def _failing_restore(monkeypatch: pytest.MonkeyPatch, error: BaseException, times: int
                     ) -> list[int]:
    """orbax's restore raises `error` on its first `times` calls; returns the steps asked for."""
    calls: list[int] = []
    real = ocp.CheckpointManager.restore

    def restore(self: ocp.CheckpointManager, step: int, *args: object, **kwargs: object) -> object:
        calls.append(step)
        if len(calls) <= times:
            raise error
        return real(self, step, *args, **kwargs)
    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    monkeypatch.setattr(checkpoints, "RESTORE_RETRY_DELAY_S", 0.0, raising=False)
    return calls


# ----------------------------------------------------------------------------- transient errors


def test_out_of_memory_while_resuming_is_retried_not_recorded(train_config, tiny_run, tmp_path,
                                                              monkeypatch, capsys):
    run = _copy_run(tiny_run, tmp_path)
    calls = _failing_restore(monkeypatch, jax.errors.JaxRuntimeError(OOM), times=2)
    train_config.train.num_steps = 6
    train_lib.train_and_evaluate(train_config, run)
    err = capsys.readouterr().err
    assert calls == [4, 4, 4]  # two failed tries, the third reads step 4
    assert "resumed from step 4" in err and "skipping checkpoint" not in err
    assert not (run / "damaged_checkpoints.json").exists()
    assert _steps(run) == [4, 6]


def test_out_of_memory_that_persists_stops_the_run_naming_the_cause(train_config, tiny_run,
                                                                    tmp_path, monkeypatch):
    run = _copy_run(tiny_run, tmp_path)
    calls = _failing_restore(monkeypatch, jax.errors.JaxRuntimeError(OOM), times=100)
    train_config.train.num_steps = 6
    with pytest.raises(checkpoints.CheckpointError, match="RESOURCE_EXHAUSTED") as error:
        train_lib.train_and_evaluate(train_config, run)
    assert not (run / "damaged_checkpoints.json").exists()
    assert "not recorded as damaged" in str(error.value)
    assert calls == [4] * checkpoints.RESTORE_TRIES  # no fall back to the older step 2
    assert _steps(run) == [2, 4]


TRANSIENT = {  # XLA's out of memory, tensorstore's (a ValueError), host memory, any runtime error
    "jax-oom": jax.errors.JaxRuntimeError(OOM), "tensorstore-oom": ValueError(OOM),
    "memory-error": MemoryError(), "runtime": RuntimeError("INTERNAL: stream is not in a state"),
    "enomem": OSError(errno.ENOMEM, "Cannot allocate memory")}
DAMAGE = {  # what truncated, zeroed, missing and corrupt files raise (seen on real damage)
    "data-loss": ValueError("DATA_LOSS: Error reading local file"),
    "missing-item": KeyError('Item "state" was not found in the checkpoint.'),
    "bad-json": json.JSONDecodeError("Expecting value", "", 0),
    "missing-file": FileNotFoundError(errno.ENOENT, "No such file or directory")}


@pytest.mark.parametrize("name", [*TRANSIENT, *DAMAGE])
def test_only_unreadable_files_count_as_damage(train_config, tiny_run, monkeypatch, name):
    error = TRANSIENT.get(name) or DAMAGE[name]
    calls = _failing_restore(monkeypatch, error, times=100)
    manager = checkpoints.make_checkpoint_manager(tiny_run / "checkpoints", train_config,
                                                  read_only=True)
    try:
        with pytest.raises(checkpoints.CheckpointError) as raised:
            checkpoints.restore_checkpoint(manager, 4, _abstract(train_config), None)
    finally:
        manager.close()
    unavailable = isinstance(raised.value, checkpoints.CheckpointUnavailableError)
    if name in TRANSIENT:
        assert unavailable and len(calls) == checkpoints.RESTORE_TRIES
        assert "not recorded as damaged" in str(raised.value)
    else:
        assert not unavailable and calls == [4]
        assert "damaged or incomplete" in str(raised.value)


# ----------------------------------------------------------------------------- the final state


@pytest.mark.parametrize("damage", ["truncated", "folder removed"])
def test_a_run_whose_final_step_is_recorded_damaged_saves_its_final_state(
        train_config, tiny_run, tmp_path, capsys, damage):
    from signlang_jax.inference.restore import load_checkpoint

    run = _copy_run(tiny_run, tmp_path)
    step4 = run / "checkpoints" / "4"
    if damage == "truncated":  # found damaged by this run
        _truncate_arrays(step4)
        damaged_files = _files(step4)
    else:  # recorded by an earlier run, then removed by a person
        shutil.rmtree(step4)
        damaged.record_damaged(run, {4: "cannot be read (earlier run)"})
    train_config.train.num_steps = 4
    train_lib.train_and_evaluate(train_config, run)
    printed = "".join(capsys.readouterr())
    assert "resumed from step 2" in printed and "not saved" not in printed
    assert 4 not in damaged.read_damaged(run)
    # The final state, bitwise the one of the uninterrupted run (resume is exact on CPU).
    expected = checkpoint_arrays(tiny_run, train_config, 4)
    saved = checkpoint_arrays(run, train_config, 4)
    assert saved.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(saved[key], expected[key], err_msg=key)
    assert load_checkpoint(f"{run}:latest").step == 4  # what inference finds
    manager = checkpoints.make_checkpoint_manager(run / "checkpoints", train_config)
    try:
        assert checkpoints.restore_newest_intact(manager, _abstract(train_config), None)[0] == 4
    finally:
        manager.close()
    if damage == "truncated":  # the damaged files are kept for inspection, with their reason
        assert f"moved to {run / 'damaged' / '4'}" in printed
        assert _files(run / "damaged" / "4") == damaged_files
        assert "cannot be read" in (run / "damaged" / "4.txt").read_text()


def test_a_step_found_damaged_is_kept_by_the_run_that_found_it(train_config, tiny_run,
                                                               tmp_path):
    """Recorded damaged during this run's restore, step 4 must not fall to `keep_checkpoints`."""
    run = _copy_run(tiny_run, tmp_path)
    _truncate_arrays(run / "checkpoints" / "4")
    shutil.rmtree(run / "checkpoints" / "4" / "metrics")  # so only the damage can keep it
    train_config.train.num_steps = 8
    train_lib.train_and_evaluate(train_config, run)
    assert list(damaged.read_damaged(run)) == [4]
    assert _steps(run) == [4, 6, 8]


# ----------------------------------------------------------------------------- side effects


def test_a_failed_restore_leaves_the_process_as_it_was(train_config, tiny_run, tmp_path):
    run = _copy_run(tiny_run, tmp_path)
    _truncate_arrays(run / "checkpoints" / "4")
    asyncio_logger = logging.getLogger("asyncio")
    level, hook = asyncio_logger.level, sys.unraisablehook
    manager = checkpoints.make_checkpoint_manager(run / "checkpoints", train_config,
                                                  read_only=True)
    try:
        for _ in range(2):
            with pytest.raises(checkpoints.CheckpointError, match="damaged or incomplete"):
                checkpoints.restore_checkpoint(manager, 4, _abstract(train_config), None)
            assert asyncio_logger.level == level
            assert sys.unraisablehook is hook  # put back, not one more hook stacked per failure
    finally:
        manager.close()


# ----------------------------------------------------------------------------- stale records


def test_a_step_recorded_damaged_that_restores_intact_is_forgotten(train_config, tiny_run,
                                                                     tmp_path, capsys):
    """An older version recorded transient errors as damage: such a step, read fine, is
    used and leaves the record (else it would be kept and never saved again, for good)."""
    run = _copy_run(tiny_run, tmp_path)
    damaged.record_damaged(run, {4: "cannot be read (an out-of-memory taken for damage)"})
    manager = checkpoints.make_checkpoint_manager(run / "checkpoints", train_config)
    try:
        step, _ = checkpoints.restore_newest_intact(manager, _abstract(train_config), None)
    finally:
        manager.close()
    assert step == 4 and damaged.read_damaged(run) == {}
    assert not (run / damaged.DAMAGED_FILE).exists()
    assert "recorded as damaged but restores intact" in capsys.readouterr().err


def test_inference_latest_and_best_skip_a_step_recorded_damaged(train_config, tiny_run,
                                                                 tmp_path):
    from signlang_jax.inference.restore import load_checkpoint

    run = _copy_run(tiny_run, tmp_path)
    _truncate_arrays(run / "checkpoints" / "4")
    damaged.record_damaged(run, {4: "cannot be read (truncated)"})
    assert load_checkpoint(f"{run}:latest").step == 2
    assert load_checkpoint(f"{run}:best").step == 2
    assert load_checkpoint(str(run)).step == 2
    with pytest.raises(checkpoints.CheckpointError, match="damaged or incomplete"):
        load_checkpoint(f"{run}:4")  # named on purpose: read, and refused with the reason

"""Chaos: a run SIGKILLed again and again (in a step, a checkpoint save, a validation) and
restarted with the same command ends bitwise identical to an uninterrupted run.

The kill moments come from a seed and from progress seen on disk (tests/run_helpers.py), so each
phase is hit on purpose, not by timing luck. The longer version is benchmarks/chaos.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

from tests import run_helpers as rh

SEED = int(os.environ.get("CHAOS_SEED", "0"))  # other kill moments: CHAOS_SEED=3 pytest ...
# Saving only with the validations (every 8 steps) leaves each restarted run a stretch of steps
# with no save in flight (a save takes longer than 8 tiny steps). Steps are cheap next to a
# process start (10-25 s here), most of the test's time.
STEPS, EVAL_EVERY = 24, 8
OVERRIDES = (f"--config.train.num_steps={STEPS}", f"--config.train.eval_every_steps={EVAL_EVERY}",
             f"--config.train.checkpoint_every_steps={EVAL_EVERY}",
             "--config.train.log_every_steps=1")


def _run_to_end(command: list[str], log: Path) -> str:
    proc = rh.start(command, log)
    try:
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        proc.kill()
    return log.read_text()


def test_killed_and_restarted_run_equals_uninterrupted(synth_root, tmp_path):
    def command(workdir: Path) -> list[str]:
        return rh.train_command(workdir, synth_root, "tests/tiny_config.py", *OVERRIDES)

    reference = tmp_path / "reference"
    _run_to_end(command(reference), tmp_path / "reference.log")

    chaos = tmp_path / "chaos"
    rng = random.Random(SEED)
    kills = []
    for i, phase in enumerate(rh.phase_order(SEED, 3)):
        resumed = max(rh.progress(chaos).committed, default=0)
        plan = rh.plan_kill(rng, phase, resumed, STEPS, EVAL_EVERY)
        log = tmp_path / f"chaos{i}.log"
        proc = rh.start(command(chaos), log)
        try:
            kill = rh.kill_at(proc, chaos, plan, EVAL_EVERY, STEPS)
        finally:
            proc.kill()
        assert kill.phase != "finished", f"{plan} never came:\n{log.read_text()[-3000:]}"
        assert ("resumed from step" in log.read_text()) == bool(resumed), log.read_text()[-3000:]
        kills.append(kill)
    out = _run_to_end(command(chaos), tmp_path / "final.log")
    assert "final val/loss=" in out

    hit = [(k.plan, k.phase, k.saving, k.committed) for k in kills]
    assert [k.phase for k in kills] == [k.plan.phase for k in kills], hit
    assert {k.phase for k in kills} == {"step", "save", "val"}, hit
    assert rh.progress(chaos).committed[-1] == STEPS
    assert not rh.progress(chaos).saving  # interrupted saves' tmp folders were cleaned up
    assert rh.compare_runs(reference, chaos, STEPS) == []
    # The logs survive the kills: validation metrics per group and TensorBoard events.
    assert any("val/pck@0.1/left_hand" in r for r in rh.progress(chaos).records)
    assert any(p.name.startswith("events") for p in (chaos / "tensorboard").iterdir())


def test_grain_workers_exit_when_only_the_trainer_is_killed(synth_root, tmp_path):
    """SIGKILL of the trainer alone (the OOM killer's way): its grain worker and grain's
    resource tracker must not run on forever, one more pair per crash."""
    workdir = tmp_path / "w"
    command = rh.train_command(workdir, synth_root, "tests/tiny_config.py",
                               "--config.data.num_workers=1", "--config.train.num_steps=400",
                               "--config.train.log_every_steps=1")
    proc = rh.start(command, tmp_path / "run.log")
    try:
        deadline = time.monotonic() + 240
        while not rh.progress(workdir).records and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rh.progress(workdir).records, (tmp_path / "run.log").read_text()[-3000:]
        workers = [pid for pid in rh.session_members(proc.pid) if pid != proc.pid]
        assert workers, "the run has no worker processes to orphan"
        os.kill(proc.pid, signal.SIGKILL)  # the trainer only, not its process group
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            alive = {pid: s for pid, s in rh.session_members(proc.pid).items() if s != "Z"}
            if not alive:
                break
            time.sleep(0.1)
        assert not alive, {pid: rh.command_name(pid) for pid in alive}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

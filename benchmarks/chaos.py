"""Chaos run: SIGKILL training many times (in steps, saves, commits, validations), restart it with
the same command each time, and check the end result is bitwise the uninterrupted run's.

    python benchmarks/chaos.py --kills 10 --steps 60 --seed 0 [--config tests/tiny_config.py]
        [--workers 1] [--kill-mode group|trainer] [--keep]

The long version of tests/test_chaos.py, on a larger config (64 px input, width 16) with grain
worker processes. `--kill-mode group` kills the trainer's whole process group (what a job
scheduler or the OOM killer of a container does); `trainer` kills only the trainer process, and
the grain workers must then exit on their own. After each kill the script lists what is left of
the killed run (its session: workers are found even once reparented) and removes stragglers.

Prints, per kill, the phase hit and the restart time of the resumed run: from process start to
its first metrics line, which (with train.log_every_steps=1) is the first step after the
checkpoint it resumed from. Ends with PASS or FAIL (exit code 1) of the comparison of the final
checkpoint (every array, bitwise), data position and metrics lines with the uninterrupted run;
processes a killed run left behind are counted (and fail the run with --fail-on-orphans).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from absl import logging

# The run helpers live with the chaos test (tests/run_helpers.py); `tests` is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import run_helpers as rh  # noqa: E402

PHASES = ("step", "save", "commit", "val")


def overrides(args: argparse.Namespace) -> list[str]:
    """Config flags of the chaos runs."""
    size = args.image_size
    return [f"--config.train.num_steps={args.steps}",
            f"--config.train.eval_every_steps={args.eval_every}",
            f"--config.train.checkpoint_every_steps={args.eval_every}",
            "--config.train.log_every_steps=1",
            f"--config.data.num_workers={args.workers}", f"--config.data.image_size={size}",
            f"--config.model.heatmap_size={size // 4}", f"--config.model.width={args.width}",
            f"--config.model.deconv_filters={2 * args.width}"]


def leftovers(session: int, wait_s: float) -> tuple[dict[int, str], float]:
    """Processes of a killed run's session still running after up to `wait_s` seconds.

    Returns ({pid: 'state command'} of the live ones, seconds until none was left or wait_s).
    Exited-but-unreaped processes (state Z) do not count: they hold no memory or files.
    """
    start = time.monotonic()
    while True:
        running = {pid: state for pid, state in rh.session_members(session).items()
                   if state != "Z"}
        if not running or time.monotonic() - start > wait_s:
            break
        time.sleep(0.05)
    return ({pid: f"{state} {rh.command_name(pid)}" for pid, state in running.items()},
            time.monotonic() - start)


def run_chaos(args: argparse.Namespace, base: Path) -> bool:
    """Reference run, chaos runs, comparison; prints as it goes; True if identical."""
    from signlang_jax.synth import generate_dataset

    data = base / "data"
    generate_dataset(data, args.samples, seed=0, size=args.image_size, workers=1)

    def command(workdir: Path) -> list[str]:
        return rh.train_command(workdir, data, args.config, *overrides(args))

    def run_to_end(workdir: Path, log: Path) -> tuple[bool, float | None, float]:
        """(exit 0?, seconds to the first new step, seconds in all) of one uninterrupted run."""
        started = time.monotonic()
        proc = rh.start(command(workdir), log)
        first = rh.first_step_s(proc, workdir, started, args.eval_every, args.steps)
        if proc.wait() != 0:
            print(f"run failed, see {log}")
            return False, first, time.monotonic() - started
        return True, first, time.monotonic() - started

    reference = base / "reference"
    ok, first, took = run_to_end(reference, base / "reference.log")
    if not ok:
        return False
    print(f"reference: {args.steps} steps in {took:.1f} s (first step after {first:.1f} s)")

    chaos = base / "chaos"
    rng = random.Random(args.seed)
    hits, restarts, stragglers, children = [], [], 0, set()
    for i, phase in enumerate(rh.phase_order(args.seed, args.kills, PHASES)):
        resumed = max(rh.progress(chaos).committed, default=0)
        plan = rh.plan_kill(rng, phase, resumed, args.steps, args.eval_every)
        started = time.monotonic()
        proc = rh.start(command(chaos), base / f"chaos{i}.log")
        kill = rh.kill_at(proc, chaos, plan, args.eval_every, args.steps,
                          whole_group=args.kill_mode == "group", started=started)
        left, gone_s = leftovers(proc.pid, args.orphan_wait)
        for pid in left:  # ours: started by this script, in the killed run's session
            os.kill(pid, signal.SIGKILL)
        stragglers += len(left)
        children |= {" ".join(name.split()[:4]) for name in kill.children.values()}
        hits.append(kill.phase)
        if resumed and kill.first_step_s is not None:
            restarts.append(kill.first_step_s)
        first = "-" if kill.first_step_s is None else f"{kill.first_step_s:.1f} s"
        print(f"kill {i + 1}: resumed from {resumed:>3}, plan {plan.phase}@{plan.at_step} "
              f"+{plan.delay_s * 1000:.0f} ms -> hit {kill.phase:<7} at step {kill.step:>3} "
              f"({kill.killed_after_s:.1f} s after start, first new step after {first}); "
              f"tmp left {kill.saving or '-'}; {len(kill.children)} child processes, "
              f"{'none left' if not left else f'{len(left)} LEFT {left}'} "
              f"after {gone_s:.1f} s")
    resumed = max(rh.progress(chaos).committed, default=0)
    ok, first, took = run_to_end(chaos, base / "final.log")
    if not ok:
        return False
    if resumed and first is not None:
        restarts.append(first)
    print(f"final run: resumed from {resumed}, first new step after {first:.1f} s, done after "
          f"{took:.1f} s")

    counts = {p: hits.count(p) for p in (*PHASES, "startup", "finished")}
    print("phases hit: " + ", ".join(f"{p} {n}" for p, n in counts.items() if n))
    if restarts:
        print(f"restart to first new step: min {min(restarts):.1f} s, "
              f"median {sorted(restarts)[len(restarts) // 2]:.1f} s, max {max(restarts):.1f} s "
              f"({len(restarts)} resumed runs)")
    print(f"trainer's child processes: {sorted(children) or 'none'}")
    print(f"processes left after kills ({args.kill_mode} mode): {stragglers}")
    problems = rh.compare_runs(reference, chaos, args.steps)
    for problem in problems[:20]:
        print("  " + problem)
    print("PASS: final checkpoint, data position and metrics bitwise equal to the "
          "uninterrupted run" if not problems else f"FAIL: {len(problems)} differences")
    if stragglers and args.fail_on_orphans:
        print(f"FAIL: {stragglers} processes outlived their killed trainer")
        return False
    return not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="tests/tiny_config.py")
    parser.add_argument("--workers", type=int, default=1, help="grain worker processes")
    parser.add_argument("--kill-mode", choices=("group", "trainer"), default="group",
                        help="SIGKILL the whole process group, or only the trainer process")
    parser.add_argument("--eval-every", type=int, default=8,
                        help="validation and checkpoint every this many steps")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--samples", type=int, default=48, help="synthetic samples")
    parser.add_argument("--orphan-wait", type=float, default=10.0,
                        help="seconds a killed run's processes get to exit on their own")
    parser.add_argument("--fail-on-orphans", action="store_true",
                        help="exit 1 also when a killed run left processes running")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    logging.set_verbosity(logging.ERROR)  # orbax warns that the state folder has no metadata
    if args.steps < 2 * args.eval_every:
        parser.error("--steps must be at least 2 x --eval-every")
    base = Path(tempfile.mkdtemp(prefix="chaos-"))
    print(f"work folder {base}; {args.kills} kills ({args.kill_mode} mode), {args.steps} steps, "
          f"seed {args.seed}, {args.workers} grain workers")
    try:
        ok = run_chaos(args, base)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""Restart-to-first-step time of a resumed training run, without and with the compilation cache.

    python benchmarks/restart_time.py [--reps 3] [--steps-per-run 2] [--keep DIR]

Trains configs/demo.py on 64 synthetic images for a few steps (a "seed" workdir), then resumes a
fresh copy of that workdir with the SAME command (train.num_steps = seed steps + steps-per-run)
`--reps` times per condition, the conditions alternating so machine noise hits both:

- cold: no persistent cache (SIGNLANG_JAX_CACHE_DIR=off, JAX_COMPILATION_CACHE_DIR unset): every
  restart compiles the train step (and the eval step) again;
- warm: SIGNLANG_JAX_CACHE_DIR=<temp>/xla, populated by one unmeasured resume of the same
  command, so every program comes from disk.

The resumed command must not change train.num_steps between the runs: the learning-rate schedule
(its decay length) is compiled into the train step, so a different num_steps is a different
program and a cache miss (--grow-steps measures that case: each resume of one workdir adds steps).

Measured per run: seconds from process launch to the first NEW line of WORKDIR/metrics.jsonl for
a step after the resume point (log_every_steps=1, so that is the first trained step), and the
whole process's wall time (which also includes the final validation and checkpoint). Prints
median, min and max per condition and the cold / warm ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.05


def train_command(workdir: Path, data: Path, num_steps: int) -> list[str]:
    """The training command, demo config shrunk to 64 images in `data`, logging every step."""
    return [sys.executable, "-m", "signlang_jax.main", "--config", str(ROOT / "configs/demo.py"),
            "--workdir", str(workdir), f"--config.data.root={data}",
            "--config.data.synthetic_num=64",
            f"--config.train.num_steps={num_steps}", "--config.train.log_every_steps=1",
            "--config.train.eval_every_steps=100000",
            "--config.train.checkpoint_every_steps=100000"]


def condition_env(cache: Path | None) -> dict[str, str]:
    """The environment of one condition: the given cache directory, or none ("off")."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")}
    env["SIGNLANG_JAX_CACHE_DIR"] = str(cache) if cache else "off"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def new_train_step(metrics: Path, offset: int, after: int) -> int | None:
    """The first train step > `after` logged in metrics.jsonl beyond byte `offset`, if any."""
    if not metrics.exists():
        return None
    with metrics.open() as f:
        f.seek(offset)
        for line in f:
            if not line.endswith("\n"):
                return None  # a line still being written
            record = json.loads(line)
            if record["step"] > after and "train/loss" in record:
                return record["step"]
    return None


def timed_run(workdir: Path, data: Path, resume_step: int, num_steps: int,
              env: dict[str, str], log: Path) -> tuple[float, float]:
    """(launch -> first new step logged, launch -> exit) in seconds for one resumed run."""
    metrics = workdir / "metrics.jsonl"
    offset = metrics.stat().st_size if metrics.exists() else 0
    first = None
    with log.open("w") as out:
        start = time.perf_counter()
        process = subprocess.Popen(train_command(workdir, data, num_steps), cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        while process.poll() is None:
            if first is None and new_train_step(metrics, offset, resume_step) is not None:
                first = time.perf_counter() - start
            time.sleep(POLL_SECONDS)
        total = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"training exited with {process.returncode}; last lines of {log}:\n"
                           + "\n".join(log.read_text().splitlines()[-20:]))
    if first is None:
        if new_train_step(metrics, offset, resume_step) is None:
            raise RuntimeError(f"no step after {resume_step} in {metrics}; see {log}")
        first = total  # logged within the last poll interval before the exit
    return first, total


def summary(values: list[float]) -> str:
    """median (min-max) with one decimal."""
    return f"{statistics.median(values):6.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    """Train the seed, resume alternately cold and warm, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="measured resumes per condition")
    parser.add_argument("--initial-steps", type=int, default=2, help="steps of the seed run")
    parser.add_argument("--steps-per-run", type=int, default=2, help="steps each resume adds")
    parser.add_argument("--grow-steps", action="store_true",
                        help="resume one workdir again and again, each time with a larger "
                        "num_steps (a new program each time: shows the cache missing)")
    parser.add_argument("--keep", default=None,
                        help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix="restart_time_"))
    base.mkdir(parents=True, exist_ok=True)
    seed, data, cache = base / "seed", base / "data", base / "xla"
    envs = {"cold": condition_env(None), "warm": condition_env(cache)}
    steps = args.initial_steps
    try:
        print(f"seed run ({steps} steps) in {seed}", file=sys.stderr)
        timed_run(seed, data, 0, steps, envs["cold"], base / "seed.log")

        def resume(name: str, log: str) -> tuple[float, float]:
            nonlocal steps
            if args.grow_steps:
                workdir, start = seed, steps
                steps += args.steps_per_run
            else:
                workdir, start = base / log, args.initial_steps
                shutil.rmtree(workdir, ignore_errors=True)
                shutil.copytree(seed, workdir)
            result = timed_run(workdir, data, start, start + args.steps_per_run, envs[name],
                               base / f"{log}.log")
            if not args.grow_steps:
                shutil.rmtree(workdir)
            return result

        resume("warm", "fill")  # populates the cache
        results: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": []}
        for rep in range(args.reps):
            for name in ("cold", "warm"):
                first, total = resume(name, f"{name}{rep}")
                results[name].append((first, total))
                print(f"  {name} {rep}: first new step {first:.1f} s, process {total:.1f} s",
                      file=sys.stderr)
        entries = sum(1 for p in cache.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
        how = "one workdir, num_steps growing" if args.grow_steps else "same command, fresh copies"
        print(f"\nresume of configs/demo.py (64 images, +{args.steps_per_run} steps per run, "
              f"{how}), {args.reps} runs per condition; cache: {entries} files, {size:.1f} MiB")
        print("condition   launch -> first new step [s]   whole process [s]")
        print("            median (min-max)               median (min-max)")
        for name, runs in results.items():
            print(f"{name:<10}  {summary([r[0] for r in runs]):<29}  "
                  f"{summary([r[1] for r in runs])}")
        ratio = [statistics.median(r[i] for r in results["cold"])
                 / statistics.median(r[i] for r in results["warm"]) for i in (0, 1)]
        print(f"cold / warm {ratio[0]:.2f}x{'':<24}{ratio[1]:.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

if __name__ == "__main__":
    main()

"""The video job on a Ray cluster: Ray Data over the input list, one model per actor.

The same "one video -> files" as the local job (`corpus.run_one`, so the same outputs, bitwise,
at the same `--threads`) scheduled by Ray instead of a loop: `map_batches` with a callable class
(`VideoActor`: it loads the model once, in its constructor) on a fixed pool of actors, one input
per call. Each actor asks for one CPU (one GPU with `--device cuda`). The driver appends each
input's manifest line as results stream back, so the manifest is written by one process and a
killed driver loses nothing already recorded. A failing video is recorded and skipped
(`run_one` never raises for it); a killed worker's video is run again: Ray Data restarts the
actor and retries its call (its defaults: `max_restarts` and `max_task_retries` of -1), and
outputs are written atomically, so a half-written file never appears.

Needs the `ray` extra (`pip install ".[ray]"`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from signlang_jax.data.videos import VideoInput
from signlang_jax.video.corpus import run_one
from signlang_jax.video.job import JobSettings
from signlang_jax.video.manifest import append_record, shard_file
from signlang_jax.video.model_spec import ModelSpec


def input_row(item: VideoInput) -> dict:
    """An input as a Ray Data row (strings only)."""
    return {"name": item.name, "path": str(item.path),
            "frames": json.dumps([str(f) for f in item.frames])}


def row_input(row: dict) -> VideoInput:
    """The input a row describes (`input_row`'s inverse)."""
    return VideoInput(str(row["name"]), Path(str(row["path"])),
                      tuple(Path(f) for f in json.loads(str(row["frames"]))))


class VideoActor:
    """One Ray actor: its own model, loaded once; runs the inputs it is sent."""

    def __init__(self, spec: ModelSpec, job: JobSettings, shard: tuple[int, int]) -> None:
        self.job, self.shard = job, shard
        self.model_info = spec.files()
        self.model = spec.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        """Run a batch of input rows; their manifest records, as JSON lines."""
        records = []
        for n in range(len(batch["name"])):
            item = row_input({key: batch[key][n] for key in ("name", "path", "frames")})
            record, _ = run_one(item, self.model, self.job, self.shard, self.model_info)
            records.append(json.dumps(record, sort_keys=True))
        return {"record": records}


def start_cluster(address: str, workers: int | None) -> None:
    """Connect to the cluster at `address`, or start a local one ('local')."""
    import ray

    # Ray Data logs its progress at INFO; the job prints a line per video itself.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    else:
        ray.init(address=address, log_to_driver=False, configure_logging=False)


def run_ray(todo: Sequence[VideoInput], spec: ModelSpec, job: JobSettings,
            shard: tuple[int, int], address: str, workers: int | None = None,
            actor: type = VideoActor) -> int:
    """Run every input on the Ray cluster at `address` ('local': start one here), appending
    each one's manifest line as it finishes; the number that failed. `actor`: the callable
    class each actor is (tests pass one that kills its own worker)."""
    try:
        import ray
        import ray.data
    except ImportError:
        print("ERROR --ray needs Ray: pip install 'signlang-jax[ray]' (or pip install -e "
              "'.[ray]' in a checkout)", file=sys.stderr)
        return len(todo)
    start_cluster(address, workers)
    gpu = spec.device == "cuda"
    resources = ray.cluster_resources()
    size = workers or max(1, int(resources.get("GPU" if gpu else "CPU", 1)))
    size = min(size, len(todo))
    # One thread per actor unless told otherwise: actors share the machine's cores.
    if spec.threads == 0 and not gpu:
        spec = dataclasses.replace(spec, threads=1)
    dataset = ray.data.from_items([input_row(item) for item in todo],
                                  override_num_blocks=len(todo))
    # Ray Data restarts a dead actor and retries its call without limit by default.
    results = dataset.map_batches(
        actor, fn_constructor_args=(spec, job, shard), batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=size), num_cpus=0 if gpu else 1,
        num_gpus=1 if gpu else 0)
    manifest = shard_file(job.out, shard)
    failed = frames = 0
    start = time.perf_counter()
    for row in results.iter_rows():
        record = json.loads(row["record"])
        append_record(manifest, record)
        failed += record["status"] == "failed"
        frames += record["frames"]
        note = record["error"] if record["status"] == "failed" else (
            f"{record['frames']} frames at {record['frames_per_second']} frames/s")
        print(f"{record['input']}: {note}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"{len(todo) - failed} of {len(todo)} videos done ({failed} failed) on {size} Ray "
          f"actors, {frames} frames, {frames / max(elapsed, 1e-9):.1f} frames/s overall; "
          f"manifest {manifest}", file=sys.stderr)
    return failed

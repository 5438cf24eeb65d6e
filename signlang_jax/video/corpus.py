"""Many inputs: which of them this worker runs (its shard, what is already done), running each
through `video.job`, and the manifest line each leaves (`video.manifest`).

A failing input is recorded as failed and skipped, never stopping the run; any exception is
caught (a corpus of thousands of files holds some that break a decoder in ways nobody lists).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from signlang_jax.data.videos import VideoInput
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.progress import progress
from signlang_jax.video.job import JobSettings, process_video
from signlang_jax.video.manifest import (
    append_record,
    make_record,
    read_manifest,
    shard_file,
    shard_of,
)


def in_shard(inputs: Sequence[VideoInput], shard: tuple[int, int]) -> list[VideoInput]:
    """The inputs of shard K of N (`manifest.shard_of` of each output name)."""
    index, count = shard
    return [item for item in inputs if shard_of(item.name, count) == index]


def select(inputs: Sequence[VideoInput], job: JobSettings, overwrite: bool, model: dict
           ) -> list[VideoInput]:
    """The inputs still to run: those without all their outputs (every input with
    `overwrite`). A skipped input whose manifest line names another model or other settings
    says so (its files are kept; --overwrite redoes them)."""
    records = read_manifest(job.out)
    settings = json.loads(json.dumps(job.describe()))  # as a manifest line holds it
    todo = []
    for item in inputs:
        outputs = job.outputs(item)
        if overwrite or not all(p.exists() for p in outputs):
            todo.append(item)
            continue
        record = records.get(item.name)
        other = ""
        if record is not None and record["status"] == "done" and (
                record.get("model") != model or record.get("settings") != settings):
            other = " from another model or other settings"
        print(f"skip {item.name}: {', '.join(p.name for p in outputs)} exist{other} "
              "(--overwrite redoes it)", file=sys.stderr)
    return todo


def run_one(item: VideoInput, model: RegionPredictor, job: JobSettings,
            shard: tuple[int, int], model_info: dict) -> tuple[dict, str]:
    """Process one input; (its manifest record, the line to print). Never raises for the
    input's own failures: they become a "failed" record."""
    start = time.perf_counter()
    try:
        sequence, fps = process_video(item, model, job)
    except Exception as e:  # noqa: BLE001 - recorded, and the run goes on
        seconds = time.perf_counter() - start
        message = str(e) if str(item.path) in str(e) else f"{item.path}: {e}"
        error = f"{type(e).__name__}: {message}"
        record = make_record(item.name, str(item.path), "failed", error=error, seconds=seconds,
                             shard=shard, model=model_info, settings=job.describe())
        return record, f"ERROR {error} (skipped)"
    seconds = time.perf_counter() - start
    stamps = sequence.timestamps
    frames = len(sequence.keypoints)
    step = 1.0 / sequence.fps if sequence.fps > 0 else 0.0
    duration = float(stamps[-1] - stamps[0]) + step if frames else 0.0
    outputs = [str(p.relative_to(job.out)) for p in job.outputs(item)]
    record = make_record(item.name, str(item.path), "done", outputs=outputs, frames=frames,
                         video_seconds=duration, seconds=seconds, shard=shard,
                         model=model_info, settings=job.describe())
    names = ", ".join(Path(o).name for o in outputs)
    message = (f"{item.name}: {frames} frames at {fps:.1f} frames/s, "
               f"{sequence.tracked.mean():.0%} tracked -> {names}")
    return record, message


def run_all(todo: Sequence[VideoInput], model: RegionPredictor, job: JobSettings,
            shard: tuple[int, int] = (0, 1), model_info: dict | None = None) -> int:
    """Process every input in turn, appending each one's manifest line; the number that
    failed."""
    manifest = shard_file(job.out, shard)
    failed, total_frames, start = 0, 0, time.perf_counter()
    for item in progress(todo, desc="videos", unit="video", position=0, dynamic_ncols=True):
        record, message = run_one(item, model, job, shard, model_info or {})
        append_record(manifest, record)
        tqdm.write(message, file=sys.stderr)
        failed += record["status"] == "failed"
        total_frames += record["frames"]
    elapsed = time.perf_counter() - start
    print(f"{len(todo) - failed} of {len(todo)} videos done ({failed} failed), {total_frames} "
          f"frames, {total_frames / max(elapsed, 1e-9):.1f} frames/s overall; manifest "
          f"{manifest}", file=sys.stderr)
    return failed

"""One input -> its files: decode, the per-frame processing, offline smoothing and the writers.

The one implementation of "one video -> files" that every way of scheduling a corpus runs: the
local loop (`video.corpus`) and the Ray runner alike.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from signlang_jax import __version__
from signlang_jax.data.sequence_files import KeypointSequence, write_npz, write_pose
from signlang_jax.data.videos import (
    VideoInfo,
    VideoInput,
    VideoReadError,
    clean_times,
    frame_rate,
    probe,
    read_frames,
    read_timed_frames,
)
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.progress import progress
from signlang_jax.video.hands import HandTrackingParams
from signlang_jax.video.offline import OfflineParams, smooth_offline
from signlang_jax.video.overlay import OverlayWriter, annotate
from signlang_jax.video.people import PersonParams
from signlang_jax.video.resample import resample
from signlang_jax.video.sequence import SequenceProcessor, describe
from signlang_jax.video.smoothing import OneEuroParams
from signlang_jax.video.tracking import TrackingParams


@dataclasses.dataclass(frozen=True)
class JobSettings:
    """Everything `process_video` needs besides the model and the input."""

    out: Path
    formats: tuple[str, ...]
    overlay: bool
    min_score: float
    batch_size: int
    frames_fps: float  # folders of frames and videos without a rate
    tracking: TrackingParams | None
    smoothing: OfflineParams | OneEuroParams | None  # offline (default), causal or none
    hands: HandTrackingParams | None = HandTrackingParams()
    output_fps: float | None = None  # resample the outputs to this constant rate
    people: PersonParams | None = PersonParams()  # None: whoever the whole frame's points are

    def describe(self) -> dict:
        """The settings as a JSON-ready dict (each output file and manifest line holds it)."""
        return {**describe(self.tracking, self.smoothing, self.hands, self.people),
                "formats": list(self.formats), "min_score": self.min_score,
                "batch_size": self.batch_size, "frames_fps": self.frames_fps,
                "output_fps": self.output_fps}

    def outputs(self, item: VideoInput) -> list[Path]:
        """The files `item` produces."""
        paths = [self.out / f"{item.name}.{fmt}" for fmt in self.formats]
        return paths + ([self.out / f"{item.name}.overlay.mp4"] if self.overlay else [])


def process_video(item: VideoInput, model: RegionPredictor, job: JobSettings,
                  position: int = 1) -> tuple[KeypointSequence, float]:
    """Run one input and write its outputs; (sequence, frames/s decode-to-file)."""
    start = time.perf_counter()
    info = probe(item, job.frames_fps)
    causal = job.smoothing if isinstance(job.smoothing, OneEuroParams) else None
    processor = SequenceProcessor(model, info.width, info.height, info.fps, job.tracking,
                                  causal, job.hands, job.people)
    results, stamps = _process_frames(item, info, processor, job.batch_size, position)
    if not results:
        raise VideoReadError(f"{item.path}: no frames decoded")
    keypoints = np.concatenate([r.keypoints for r in results])
    timestamps = clean_times(stamps, info.fps)
    if isinstance(job.smoothing, OfflineParams):
        keypoints = smooth_offline(keypoints, timestamps, job.smoothing)
    sequence = KeypointSequence(
        keypoints=keypoints, fps=frame_rate(timestamps, info.fps), width=info.width,
        height=info.height, tracked=np.concatenate([r.tracked for r in results]),
        region=np.concatenate([r.regions for r in results]),
        metadata={"model": model.description, "source": str(item.path),
                  "settings": json.dumps(describe(job.tracking, job.smoothing, job.hands,
                                                       job.people)),
                  "batch_size": str(job.batch_size), "signlang_jax_version": __version__},
        timestamps=timestamps)
    for path in job.outputs(item):  # outputs mirror the input's folders below --out
        path.parent.mkdir(parents=True, exist_ok=True)
    written = (sequence if job.output_fps is None
               else resample(sequence, job.output_fps, job.min_score))
    for fmt in job.formats:
        path = job.out / f"{item.name}.{fmt}"
        if fmt == "npz":
            write_npz(path, written)
        else:
            write_pose(path, written, min_score=job.min_score)
    if job.overlay:
        _write_overlay(item, info, sequence, job, np.concatenate([r.hand_regions for r in results]),
                       np.concatenate([r.hand_tracked for r in results]))
    return sequence, len(sequence.keypoints) / (time.perf_counter() - start)


def _process_frames(item: VideoInput, info: VideoInfo, processor: SequenceProcessor,
                    batch_size: int, position: int) -> tuple[list, list[float]]:
    """Decode `item` and run its frames through `processor` in batches; (the batches' results,
    every frame's time stamp)."""
    results, stamps = [], []
    bar = progress(total=info.num_frames or None, desc=item.name, unit="frame", position=position,
               leave=False, dynamic_ncols=True)
    try:
        batch: list[np.ndarray] = []
        times: list[float] = []
        for frame, seconds in read_timed_frames(item, info, prefetch=max(16, 2 * batch_size)):
            batch.append(frame)
            times.append(seconds)
            if len(batch) == batch_size:
                results.append(processor.process(batch, times))
                bar.update(len(batch))
                stamps += times
                batch, times = [], []
        if batch:
            results.append(processor.process(batch, times))
            bar.update(len(batch))
            stamps += times
    finally:
        bar.close()
    return results, stamps


def _write_overlay(item: VideoInput, info: VideoInfo, sequence: KeypointSequence,
                   job: JobSettings, hand_regions: np.ndarray, hand_tracked: np.ndarray) -> None:
    """NAME.overlay.mp4: the frames decoded again, annotated with the final keypoints, the
    body model's region and the hand crops."""
    overlay = OverlayWriter(job.out / f"{item.name}.overlay.mp4", info.fps, info.width,
                            info.height)
    try:
        for n, frame in enumerate(read_frames(item, info, prefetch=16)):
            if n >= len(sequence.keypoints):
                break
            overlay.write(annotate(frame, sequence.keypoints[n], sequence.region[n],
                                   bool(sequence.tracked[n]), job.min_score,
                                   hand_regions=hand_regions[n], hand_tracked=hand_tracked[n]))
    except BaseException:
        overlay.close(keep=False)
        raise
    overlay.close(keep=True)



"""`python -m signlang_jax.video INPUT... --out DIR`: videos -> keypoint sequences (.npz / .pose).

Each input (a video file, a folder searched recursively, a glob, or a folder of frames sorted by
name) gives one sequence of (T, 64, 3) keypoints - x, y in the original frame's pixels and a
score, with each frame's time stamp - written atomically as DIR/NAME.npz and/or DIR/NAME.pose
(NAME mirrors the input's path below its folder), optionally with an annotated
DIR/NAME.overlay.mp4.
The signer is found among the people in frame (--person) and tracked with a square region,
each hand's crop follows the hand's own previous points, and the keypoints are smoothed with
zero lag over the whole file (a robust local regression; --causal: the live demo's One Euro
filter instead) (docs/VIDEO.md). The model is a training checkpoint (--checkpoint, JAX) or an
exported ONNX file (--onnx: numpy, OpenCV and onnxruntime only). Finished videos are skipped on
a re-run
(--overwrite redoes them); an unreadable video is reported and skipped, and the exit code is 1
if anything failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from signlang_jax import __version__
from signlang_jax.data.sequence_files import KeypointSequence, write_npz, write_pose
from signlang_jax.data.videos import (
    VideoInfo,
    VideoInput,
    VideoReadError,
    clean_times,
    find_inputs,
    frame_rate,
    probe,
    read_frames,
    read_timed_frames,
)
from signlang_jax.errors import TrainingError
from signlang_jax.inference.onnx_runtime import load_onnx
from signlang_jax.inference.region import RegionPredictor, load_jax
from signlang_jax.video.arguments import FORMATS, build_parser
from signlang_jax.video.flags import flag_problems
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

    def outputs(self, item: VideoInput) -> list[Path]:
        """The files `item` produces."""
        paths = [self.out / f"{item.name}.{fmt}" for fmt in self.formats]
        return paths + ([self.out / f"{item.name}.overlay.mp4"] if self.overlay else [])


def settings_from(args: argparse.Namespace) -> JobSettings:
    """Validated settings from parsed arguments; ValueError names the bad flag."""
    formats = tuple(dict.fromkeys(f.strip() for f in args.format.split(",") if f.strip()))
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ValueError(f"--format {args.format!r}: expected a comma-separated list of "
                         f"{', '.join(FORMATS)}")
    problems = flag_problems(args)
    if problems:
        raise ValueError("\n".join(problems))
    if args.hand_onnx and not args.onnx or args.hand_checkpoint and not args.checkpoint:
        raise ValueError("--hand-onnx goes with --onnx, --hand-checkpoint with --checkpoint")
    tracking = None if args.no_tracking else TrackingParams(
        score_threshold=args.track_threshold, min_points=args.track_min_points,
        margin=args.track_margin)
    if args.no_smoothing:
        smoothing: OfflineParams | OneEuroParams | None = None
    elif args.causal:
        smoothing = OneEuroParams(
            min_cutoff=args.min_cutoff, beta=args.beta, d_cutoff=args.d_cutoff,
            score_threshold=args.smooth_threshold, jump_gate=args.jump_gate or None,
            confidence=None if args.smooth_confidence is None else tuple(args.smooth_confidence))
    else:
        smoothing = OfflineParams(window=args.smooth_window, degree=args.smooth_degree,
                                  outlier=args.smooth_outlier,
                                  score_threshold=args.smooth_threshold,
                                  cut_speed=args.smooth_cut_speed)
    hands = None if args.no_hand_tracking else HandTrackingParams()
    people = None if args.person == "any" else PersonParams(policy=args.person)
    return JobSettings(Path(args.out), formats, args.overlay, args.min_score, args.batch_size,
                       args.frames_fps, tracking, smoothing, hands, args.fps, people)


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
    bar = tqdm(total=info.num_frames or None, desc=item.name, unit="frame", position=position,
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


def load_model(args: argparse.Namespace) -> RegionPredictor:
    """The model the arguments name (JAX is imported only for --checkpoint)."""
    if args.onnx:
        return load_onnx(args.onnx, args.hand_onnx, args.hand_min_score, args.batch_size,
                         args.threads, args.hand_decoder)
    return load_jax(args.checkpoint, args.step, args.dtype, args.hand_checkpoint,
                    args.hand_min_score, args.batch_size, args.hand_decoder)


def main(argv: list[str] | None = None) -> int:
    """Process every input; return 0, or 1 if any input failed, 2 for bad arguments."""
    parser = build_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    try:
        job = settings_from(args)
    except ValueError as e:
        parser.error(str(e))
    if "pose" in job.formats:
        try:
            import pose_format  # noqa: F401  (fail before any work, not after the first video)
        except ImportError:
            parser.error("--format pose needs pose-format: pip install pose-format "
                         "(or the package's pose extra)")
    inputs, problems = find_inputs(args.inputs)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    try:
        _check_writable(job.out)
    except OSError as e:
        print(f"ERROR --out {job.out}: cannot write there ({e})", file=sys.stderr)
        return 1
    todo = []
    for item in inputs:
        if not args.overwrite and all(p.exists() for p in job.outputs(item)):
            print(f"skip {item.name}: {', '.join(p.name for p in job.outputs(item))} exist "
                  "(--overwrite redoes it)", file=sys.stderr)
        else:
            todo.append(item)
    if not todo:
        return 1 if problems else 0
    try:
        model = load_model(args)
    except ImportError as e:
        extra = "runtime" if args.onnx else "train"
        print(f"ERROR {e.name or e}: not installed; pip install 'signlang-jax[{extra}]' "
              f"(or pip install -e '.[{extra}]' in a checkout)", file=sys.stderr)
        return 1
    except (ValueError, OSError, TrainingError) as e:  # ConfigError, OnnxModelError, missing file
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    failed = _run_all(todo, model, job)
    return 1 if failed or problems else 0


def _check_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there, before any video is processed."""
    folder.mkdir(parents=True, exist_ok=True)
    probe_file = folder / f".write-test-{os.getpid()}"
    probe_file.write_bytes(b"")
    probe_file.unlink()


def _run_all(todo: list[VideoInput], model: RegionPredictor, job: JobSettings) -> int:
    """Process every input in turn; the number that failed."""
    failed, total_frames, start = 0, 0, time.perf_counter()
    for item in tqdm(todo, desc="videos", unit="video", position=0, dynamic_ncols=True):
        try:
            sequence, fps = process_video(item, model, job)
        except (VideoReadError, OSError, ValueError) as e:  # messages start with the file
            tqdm.write(f"ERROR {e} (skipped)", file=sys.stderr)
            failed += 1
            continue
        frames = len(sequence.keypoints)
        total_frames += frames
        tqdm.write(f"{item.name}: {frames} frames at {fps:.1f} frames/s, "
                   f"{sequence.tracked.mean():.0%} tracked -> "
                   f"{', '.join(p.name for p in job.outputs(item))}", file=sys.stderr)
    elapsed = time.perf_counter() - start
    print(f"{len(todo) - failed} of {len(todo)} videos done ({failed} failed), {total_frames} "
          f"frames, {total_frames / max(elapsed, 1e-9):.1f} frames/s overall", file=sys.stderr)
    return failed

"""`python -m signlang_jax.video INPUT... --out DIR`: videos -> keypoint sequences (.npz / .pose).

Each input (a video file, a folder of videos, a glob, or a folder of frames sorted by name) gives
one sequence of (T, 64, 3) keypoints - x, y in the original frame's pixels and a score - written
atomically as DIR/NAME.npz and/or DIR/NAME.pose, optionally with an annotated DIR/NAME.overlay.mp4.
The signer is tracked with a square region, each hand's crop follows the hand's own previous
points, and the keypoints are smoothed with zero lag over the whole file (a robust local
regression; --causal: the live demo's One Euro filter instead) (docs/VIDEO.md). The model is
a training checkpoint (--checkpoint, JAX) or an exported ONNX file (--onnx: numpy, OpenCV and
onnxruntime only). Finished videos are skipped on a re-run
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
from signlang_jax.inference.cli_args import add_dtype_argument
from signlang_jax.inference.hand_stage import DEFAULT_MIN_SCORE
from signlang_jax.inference.onnx_runtime import DECODERS, load_onnx
from signlang_jax.inference.region import RegionPredictor, load_jax
from signlang_jax.video.flags import flag_problems
from signlang_jax.video.hands import HandTrackingParams
from signlang_jax.video.offline import OfflineParams, smooth_offline
from signlang_jax.video.overlay import OverlayWriter, annotate
from signlang_jax.video.resample import resample
from signlang_jax.video.sequence import SequenceProcessor, describe
from signlang_jax.video.smoothing import OneEuroParams
from signlang_jax.video.tracking import TrackingParams

FORMATS = ("npz", "pose")
_T, _S, _O = TrackingParams(), OneEuroParams(), OfflineParams()


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.video", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders (searched recursively for videos and "
                        "folders of frames; outputs mirror their paths below --out), quoted "
                        "globs, or folders of frames (images sorted by name)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    _add_model_arguments(parser)
    _add_output_and_running_arguments(parser)
    _add_tracking_arguments(parser)
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model (one of --checkpoint or --onnx)")
    source = model.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="whole-body training workdir, optionally with "
                        ":best, :latest or :STEP (JAX)")
    source.add_argument("--onnx", help="whole-body ONNX file from python -m interop.to_onnx, "
                        "with or without --with-keypoints (onnxruntime; imports neither JAX "
                        "nor torch)")
    model.add_argument("--step", default=None, help="with --checkpoint: best, latest or a step")
    add_dtype_argument(model)
    model.add_argument("--hand-checkpoint", default=None,
                       help="with --checkpoint: hand-model workdir; refines both hands on "
                       "crops of the full-resolution frames (docs/HANDS.md)")
    model.add_argument("--hand-onnx", default=None, help="with --onnx: the exported hand model")
    model.add_argument("--hand-min-score", type=float, default=DEFAULT_MIN_SCORE,
                       help="a hand-model point replaces the body model's from this score "
                       "(default %(default)s)")
    model.add_argument("--hand-decoder", choices=DECODERS, default="dark",
                       help="how hand heatmaps become points: DARK's sub-pixel refinement "
                       "or argmax + quarter-pixel shift (default %(default)s; docs/HANDS.md)")
    model.add_argument("--threads", type=int, default=0,
                       help="with --onnx: onnxruntime intra-op threads (default %(default)s: "
                       "onnxruntime's own choice)")


def _add_output_and_running_arguments(parser: argparse.ArgumentParser) -> None:
    out = parser.add_argument_group("outputs")
    out.add_argument("--format", default="npz",
                     help="comma-separated output formats: npz, pose (pose-format's .pose, "
                     "needs the pose extra) (default %(default)s)")
    out.add_argument("--overlay", action="store_true",
                     help="also write NAME.overlay.mp4 with the skeleton and the tracked region")
    out.add_argument("--min-score", type=float, default=0.1,
                     help=".pose: points scoring below this are stored as missing "
                     "(confidence 0); overlay: not drawn (default %(default)s)")
    out.add_argument("--overwrite", action="store_true",
                     help="redo videos whose outputs exist (default: skip them)")
    run = parser.add_argument_group("running")
    run.add_argument("--batch-size", type=int, default=1,
                     help="frames per model call; the tracked region is updated between "
                     "batches, so 1 follows the signer frame by frame and 8 is faster but less "
                     "accurate (docs/VIDEO.md) (default %(default)s)")
    run.add_argument("--frames-fps", type=float, default=25.0,
                     help="frame rate of folders of frames (and of videos that store none) "
                     "(default %(default)s)")
    out.add_argument("--fps", type=float, default=None,
                     help="resample the outputs to this constant frame rate, linearly in time "
                     "(for tools that assume one rate; default: every decoded frame, with its "
                     "own time stamp)")


def _add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    track = parser.add_argument_group("tracking (docs/VIDEO.md)")
    track.add_argument("--no-tracking", action="store_true",
                       help="run every frame on the whole (letterboxed) frame")
    track.add_argument("--track-threshold", type=float, default=_T.score_threshold,
                       help="a point at or above this score is confident (default %(default)s)")
    track.add_argument("--track-min-points", type=int, default=_T.min_points,
                       help="fewer confident points: tracking is lost, re-detect on the whole "
                       "frame (default %(default)s)")
    track.add_argument("--track-margin", type=float, default=_T.margin,
                       help="region side = (1 + 2 margin) x the extent of the confident points "
                       "(default %(default)s)")
    track.add_argument("--no-hand-tracking", action="store_true",
                       help="place every hand crop from the body model's points, as on still "
                       "images (default: from the hand's own points on the previous frame)")
    smooth = parser.add_argument_group(
        "smoothing (docs/VIDEO.md): zero-lag over the whole file by default")
    smooth.add_argument("--no-smoothing", action="store_true", help="keep the raw keypoints")
    smooth.add_argument("--smooth-window", type=float, default=_O.window,
                        help="seconds: Gaussian sigma of the local fit's window (default "
                        "%(default)s)")
    smooth.add_argument("--smooth-degree", type=int, default=_O.degree, choices=(0, 1, 2),
                        help="degree of the local fit: 1 is exact at constant velocity, 2 at "
                        "constant acceleration (default %(default)s)")
    smooth.add_argument("--smooth-outlier", type=float, default=_O.outlier,
                        help="a point this many hand sizes (signer sizes for body and face) "
                        "off the fit is an outlier and refitted without (default %(default)s)")
    smooth.add_argument("--smooth-cut-speed", type=float, default=None,
                        help="signer sizes per second: a frame where the torso and head move "
                        "faster starts a new segment the smoothing does not cross (edited "
                        "videos with cuts; try 8) (default: never cut)")
    smooth.add_argument("--smooth-threshold", type=float, default=_O.score_threshold,
                        help="a point scoring below this is missing: left unchanged and not "
                        "used (default %(default)s)")
    causal = parser.add_argument_group(
        "causal smoothing: One Euro filter, as in live_demo (--causal)")
    causal.add_argument("--causal", action="store_true",
                        help="smooth frame by frame from past frames only, as the live demo "
                        "does, instead of over the whole file")
    causal.add_argument("--min-cutoff", type=float, default=_S.min_cutoff,
                        help="Hz: cutoff of a still point (lower = smoother, more lag) "
                        "(default %(default)s)")
    causal.add_argument("--beta", type=float, default=_S.beta,
                        help="cutoff gain per signer size per second of speed (higher = less "
                        "lag on fast signs) (default %(default)s)")
    causal.add_argument("--d-cutoff", type=float, default=_S.d_cutoff,
                        help="Hz: low-pass on the speed estimate (default %(default)s)")
    causal.add_argument("--jump-gate", type=float, default=_S.jump_gate,
                        help="signer sizes per second: hold back for one frame a point that "
                        "moves faster (0 = no gate) (default %(default)s)")
    causal.add_argument("--smooth-confidence", type=float, nargs=2, default=None,
                        metavar=("LOW", "HIGH"),
                        help="damp low-scoring points: a score <= LOW moves 5%% of the step, "
                        ">= HIGH all of it (off by default; 0.2 0.5 suits the body model alone)")


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
    return JobSettings(Path(args.out), formats, args.overlay, args.min_score, args.batch_size,
                       args.frames_fps, tracking, smoothing, hands, args.fps)


def process_video(item: VideoInput, model: RegionPredictor, job: JobSettings,
                  position: int = 1) -> tuple[KeypointSequence, float]:
    """Run one input and write its outputs; (sequence, frames/s decode-to-file)."""
    start = time.perf_counter()
    info = probe(item, job.frames_fps)
    causal = job.smoothing if isinstance(job.smoothing, OneEuroParams) else None
    processor = SequenceProcessor(model, info.width, info.height, info.fps, job.tracking,
                                  causal, job.hands)
    results, stamps = [], []
    bar = tqdm(total=info.num_frames or None, desc=item.name, unit="frame", position=position,
               leave=False, dynamic_ncols=True)
    try:
        batch: list[np.ndarray] = []
        times: list[float] = []
        for frame, seconds in read_timed_frames(item, info,
                                                prefetch=max(16, 2 * job.batch_size)):
            batch.append(frame)
            times.append(seconds)
            if len(batch) == job.batch_size:
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
                  "settings": json.dumps(describe(job.tracking, job.smoothing, job.hands)),
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
    parser = build_parser()
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

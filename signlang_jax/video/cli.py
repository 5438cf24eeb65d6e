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
a re-run (--overwrite redoes them); an unreadable video is reported and skipped, and the exit
code is 1 if anything failed.

With --shard K/N the worker takes only the inputs of shard K (a hash of each input's output
name: N workers given the same inputs cover each once), and every input leaves a line in
DIR/manifest/ when it finishes or fails (`python -m signlang_jax.video.manifest DIR` sums them
up; docs/VIDEO.md has a SLURM array script).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from signlang_jax.data.videos import find_inputs
from signlang_jax.errors import TrainingError
from signlang_jax.video.arguments import FORMATS, build_parser
from signlang_jax.video.corpus import in_shard, run_all, select
from signlang_jax.video.flags import flag_problems
from signlang_jax.video.hands import HandTrackingParams
from signlang_jax.video.job import JobSettings
from signlang_jax.video.manifest import parse_shard
from signlang_jax.video.model_spec import ModelSpec
from signlang_jax.video.offline import OfflineParams
from signlang_jax.video.people import PersonParams
from signlang_jax.video.smoothing import OneEuroParams
from signlang_jax.video.tracking import TrackingParams


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
    if args.workers is not None and not args.ray:
        raise ValueError("--workers goes with --ray (the local job runs one video at a time)")
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
    try:
        shard = parse_shard(args.shard) if args.shard else (0, 1)
    except ValueError as e:
        parser.error(str(e))
    found, problems = find_inputs(args.inputs)
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    inputs = in_shard(found, shard)
    if args.shard:
        print(f"shard {shard[0]}/{shard[1]}: {len(inputs)} of {len(found)} inputs",
              file=sys.stderr)
    try:
        _check_writable(job.out)
    except OSError as e:
        print(f"ERROR --out {job.out}: cannot write there ({e})", file=sys.stderr)
        return 1
    spec = ModelSpec.from_args(args)
    model_info = spec.files()
    todo = select(inputs, job, args.overwrite, model_info)
    if not todo:
        return 1 if problems else 0
    if args.ray:
        from signlang_jax.video.ray_runner import run_ray

        failed = run_ray(todo, spec, job, shard, args.ray, args.workers)
        return 1 if failed or problems else 0
    try:
        model = spec.load()
    except ImportError as e:
        extra = "runtime" if args.onnx else "train"
        print(f"ERROR {e.name or e}: not installed; pip install 'signlang-jax[{extra}]' "
              f"(or pip install -e '.[{extra}]' in a checkout)", file=sys.stderr)
        return 1
    except (ValueError, OSError, TrainingError) as e:  # ConfigError, OnnxModelError, missing file
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    failed = run_all(todo, model, job, shard, model_info)
    return 1 if failed or problems else 0


def _check_writable(folder: Path) -> None:
    """Create `folder` and prove a file can be written there, before any video is processed."""
    folder.mkdir(parents=True, exist_ok=True)
    probe_file = folder / f".write-test-{os.getpid()}"
    probe_file.write_bytes(b"")
    probe_file.unlink()



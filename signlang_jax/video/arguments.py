"""The command line of `python -m signlang_jax.video`: every flag, its default and its help.

`signlang_jax.video.cli` turns the parsed arguments into a job (`settings_from`, with the range
checks of `signlang_jax.video.flags`) and runs it.
"""

from __future__ import annotations

import argparse

from signlang_jax.inference.cli_args import add_dtype_argument
from signlang_jax.inference.hand_stage import DEFAULT_MIN_SCORE
from signlang_jax.inference.onnx_runtime import DECODERS
from signlang_jax.video.offline import OfflineParams
from signlang_jax.video.people import PERSON_POLICIES
from signlang_jax.video.smoothing import OneEuroParams
from signlang_jax.video.tracking import TrackingParams

FORMATS = ("npz", "pose")
_T, _S, _O = TrackingParams(), OneEuroParams(), OfflineParams()


def build_parser(description: str) -> argparse.ArgumentParser:
    """The command-line interface, with `description` at the top of --help."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.video", description=description)
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
    run.add_argument("--shard", default=None, metavar="K/N",
                     help="run only shard K of N (K from 0): inputs are assigned by a hash of "
                     "their output name, so N workers given the same inputs cover each exactly "
                     "once, e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; each "
                     "worker appends to its own DIR/manifest/shard-K-of-N.jsonl")
    run.add_argument("--ray", default=None, metavar="ADDRESS",
                     help="run the videos on a Ray cluster (pip install '.[ray]'): ADDRESS of "
                     "a running cluster (e.g. auto, or ray://host:10001), or 'local' to start "
                     "one on this machine; Ray Data with one model per actor, the same "
                     "per-video processing, outputs and manifest as without it (docs/VIDEO.md)")
    run.add_argument("--workers", type=int, default=None,
                     help="with --ray: actors, each with its own model (default: one per CPU "
                     "of the cluster, one per GPU with --device cuda)")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="--onnx: onnxruntime's CUDA execution provider (needs onnxruntime-gpu) "
                     "or the CPU; --checkpoint: must match what JAX sees (default %(default)s)")
    out.add_argument("--fps", type=float, default=None,
                     help="resample the outputs to this constant frame rate, linearly in time "
                     "(for tools that assume one rate; default: every decoded frame, with its "
                     "own time stamp)")


def _add_person_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--person", choices=(*PERSON_POLICIES, "any"), default="signer",
                       help="with several people in frame, whom to follow: 'signer' the one "
                       "with the widest shoulders, a little favouring the centre; 'left' / "
                       "'right' the leftmost / rightmost person (one run per participant of a "
                       "dialogue); each is then kept by the tracked region, and points out of "
                       "their reach are dropped. 'any': the whole frame's points, whoever they "
                       "are (the job before person finding). Default %(default)s")


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
    _add_person_argument(track)
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

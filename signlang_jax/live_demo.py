"""`python -m signlang_jax.live_demo`: skeleton overlay on a webcam or a video file, with FPS.

The same tracking and smoothing as `python -m signlang_jax.video` (one implementation:
`signlang_jax.video.sequence`), one frame at a time. Keys: t toggles tracking, s toggles
smoothing, q or Esc quits (the end of a video file also ends it). Headless machines:
--no-display with --out out.mp4 writes the annotated video instead of showing it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    from signlang_jax.inference.cli_args import (
        add_checkpoint_arguments,
        add_dtype_argument,
        add_hand_arguments,
    )

    parser = argparse.ArgumentParser(prog="python -m signlang_jax.live_demo",
                                     description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    add_dtype_argument(parser)
    add_hand_arguments(parser)
    parser.add_argument("--source", default="0",
                        help="camera index (default 0) or a video file path")
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None,
                        help="run the model on this JAX platform (default: JAX's choice)")
    parser.add_argument("--conf-threshold", type=float, default=0.3,
                        help="points scoring below this are not drawn")
    parser.add_argument("--out", default=None, help="also write the annotated video (.mp4)")
    parser.add_argument("--no-display", action="store_true", help="do not open a window")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = no)")
    parser.add_argument("--no-tracking", action="store_true",
                        help="start with tracking off (key t toggles it)")
    parser.add_argument("--no-smoothing", action="store_true",
                        help="start with smoothing off (key s toggles it)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo loop; return the exit code."""
    args = build_parser().parse_args(argv)
    import cv2
    import jax

    if args.device:
        # Takes effect because no JAX computation has run yet in this process.
        jax.config.update("jax_platforms", "cuda" if args.device == "gpu" else "cpu")

    from signlang_jax.errors import TrainingError
    from signlang_jax.inference.region import load_jax
    from signlang_jax.training import compile_cache
    from signlang_jax.video.overlay import annotate
    from signlang_jax.video.sequence import DEFAULT_SMOOTHING, DEFAULT_TRACKING, SequenceProcessor

    compile_cache.enable_compilation_cache()  # before any work (load_jax repeats it, harmless)
    if args.no_display and not args.out:
        print("ERROR --no-display without --out would produce nothing; add --out out.mp4",
              file=sys.stderr)
        return 2
    source = int(args.source) if args.source.isdigit() else args.source
    if isinstance(source, str) and not os.path.isfile(source):
        print(f"ERROR video file {source} does not exist", file=sys.stderr)
        return 1
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source} (no camera attached?)" if isinstance(source, int) else (
            f"video file {source} (unsupported format?)")
        print(f"ERROR cannot open {what}", file=sys.stderr)
        return 1
    if not args.no_display and not _display_available(cv2):
        print("ERROR no display available (opencv-python-headless has no GUI, or no screen): "
              "use --no-display --out out.mp4", file=sys.stderr)
        capture.release()
        return 1
    try:
        model = load_jax(args.checkpoint, args.step, args.dtype, args.hand_checkpoint,
                         args.hand_min_score, batch_size=1)
    except (TrainingError, ValueError, OSError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        capture.release()
        return 1
    rate = capture.get(cv2.CAP_PROP_FPS)
    rate = rate if 1.0 <= rate <= 1000.0 else 25.0  # cameras report 0, NaN or nonsense
    processor, tracking, smoothing = None, not args.no_tracking, not args.no_smoothing
    writer = None
    frames, start, fps = 0, time.perf_counter(), 0.0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            tick = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            if processor is None or (processor.height, processor.width) != rgb.shape[:2]:
                processor = SequenceProcessor(model, rgb.shape[1], rgb.shape[0], rate,
                                              DEFAULT_TRACKING if tracking else None,
                                              DEFAULT_SMOOTHING if smoothing else None)
            result = processor.process([rgb])
            now = time.perf_counter()
            fps = 0.9 * fps + 0.1 / max(now - tick, 1e-6) if frames else 1 / max(now - tick, 1e-6)
            caption = (f"{fps:.1f} FPS  smoothing {'on' if smoothing else 'off'}"
                       f"  (t: tracking, s: smoothing)")
            overlay = cv2.cvtColor(annotate(rgb, result.keypoints[0], result.regions[0],
                                            bool(result.tracked[0]), args.conf_threshold,
                                            caption), cv2.COLOR_RGB2BGR)
            if args.out:
                if writer is None:
                    h, w = overlay.shape[:2]
                    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), rate,
                                             (w, h))
                    if not writer.isOpened():
                        print(f"ERROR cannot write {args.out}", file=sys.stderr)
                        return 1
                writer.write(overlay)
            frames += 1
            if not args.no_display:
                cv2.imshow("signlang-jax (q / Esc to quit)", overlay)
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27):
                    break
                if key == ord("t"):
                    tracking = not tracking
                    processor.set_tracking(tracking)
                if key == ord("s"):
                    smoothing = not smoothing
                    processor.set_smoothing(smoothing)
            if args.max_frames and frames >= args.max_frames:
                break
    finally:
        capture.release()
        if writer is not None:
            writer.release()
        if not args.no_display:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - start
    print(f"{frames} frames, {frames / max(elapsed, 1e-9):.1f} FPS overall"
          + (f", wrote {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def _display_available(cv2: object) -> bool:
    """Whether OpenCV can open a window here."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get(
            "WAYLAND_DISPLAY"):
        return False
    try:
        cv2.namedWindow("signlang-jax (q / Esc to quit)")
    except cv2.error:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())

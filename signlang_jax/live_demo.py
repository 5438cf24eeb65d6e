"""`python -m signlang_jax.live_demo`: skeleton overlay on a webcam or a video file, with FPS.

Press q or Esc to quit (the end of a video file also ends it). Headless machines: --no-display
with --out out.mp4 writes the annotated video instead of showing it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    from signlang_jax.inference import (
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the demo loop; return the exit code."""
    args = build_parser().parse_args(argv)
    import cv2
    import jax

    if args.device:
        # Takes effect because no JAX computation has run yet in this process.
        jax.config.update("jax_platforms", "cuda" if args.device == "gpu" else "cpu")

    from signlang_jax.compile_cache import enable_compilation_cache
    from signlang_jax.draw import draw_skeleton
    from signlang_jax.inference import Predictor, load_hand_stage, load_model
    from signlang_jax.train import TrainingError

    enable_compilation_cache()

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
        model, config, _ = load_model(args.checkpoint, args.step, args.dtype)
        hand_stage = None if args.hand_checkpoint is None else load_hand_stage(
            args.hand_checkpoint, None, args.dtype, args.hand_min_score)
        predictor = Predictor(model, config, hand_stage=hand_stage)
    except (TrainingError, ValueError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        capture.release()
        return 1
    writer = None
    frames, start, fps = 0, time.perf_counter(), 0.0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            tick = time.perf_counter()
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            keypoints = predictor.predict_image(rgb)
            overlay = cv2.cvtColor(draw_skeleton(rgb, keypoints, args.conf_threshold,
                                                 draw_hidden=False), cv2.COLOR_RGB2BGR)
            now = time.perf_counter()
            fps = 0.9 * fps + 0.1 / max(now - tick, 1e-6) if frames else 1 / max(now - tick, 1e-6)
            cv2.putText(overlay, f"{fps:.1f} FPS", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        (0, 255, 255), 2, cv2.LINE_AA)
            if args.out:
                if writer is None:
                    h, w = overlay.shape[:2]
                    rate = capture.get(cv2.CAP_PROP_FPS) or 25.0
                    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), rate,
                                             (w, h))
                    if not writer.isOpened():
                        print(f"ERROR cannot write {args.out}", file=sys.stderr)
                        return 1
                writer.write(overlay)
            frames += 1
            if not args.no_display:
                cv2.imshow("signlang-jax (q / Esc to quit)", overlay)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
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

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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# cv2, JAX and the model code are imported inside the functions that use them: --help stays
# fast, and --device is set before anything starts JAX.
WINDOW = "signlang-jax (q / Esc to quit)"


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


class DemoError(Exception):
    """A problem with the source, the display, the model or --out: one ERROR line, exit 1."""


def main(argv: list[str] | None = None) -> int:
    """Run the demo loop; return the exit code."""
    args = build_parser().parse_args(argv)
    import jax

    if args.device:
        # Takes effect because no JAX computation has run yet in this process.
        jax.config.update("jax_platforms", "cuda" if args.device == "gpu" else "cpu")

    from signlang_jax.training import compile_cache

    compile_cache.enable_compilation_cache()  # before any work (load_jax repeats it, harmless)
    if args.no_display and not args.out:
        print("ERROR --no-display without --out would produce nothing; add --out out.mp4",
              file=sys.stderr)
        return 2
    try:
        view = run_demo(args)
    except DemoError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - view.started
    print(f"{view.frames} frames, {view.frames / max(elapsed, 1e-9):.1f} FPS overall"
          + (f", wrote {args.out}" if args.out else ""), file=sys.stderr)
    return 0


def run_demo(args: argparse.Namespace) -> LiveView:
    """Open the source, check the display, load the model, run the loop; the final view."""
    capture = open_capture(args.source)
    try:
        if not args.no_display and not _display_available():
            raise DemoError("no display available (opencv-python-headless has no GUI, or no "
                            "screen): use --no-display --out out.mp4")
        model = _load_model(args)
        view = LiveView(model, _frame_rate(capture), not args.no_tracking, not args.no_smoothing,
                        args.conf_threshold)
        _loop(capture, view, args)
    finally:
        capture.release()
    return view


def open_capture(source_flag: str) -> object:
    """The opened cv2.VideoCapture of --source: a camera index or a video file."""
    import cv2

    source = int(source_flag) if source_flag.isdigit() else source_flag
    if isinstance(source, str) and not os.path.isfile(source):
        raise DemoError(f"video file {source} does not exist")
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        what = f"camera {source} (no camera attached?)" if isinstance(source, int) else (
            f"video file {source} (unsupported format?)")
        raise DemoError(f"cannot open {what}")
    return capture


def _load_model(args: argparse.Namespace) -> object:
    """The `RegionPredictor` of --checkpoint (and --hand-checkpoint), one frame per batch."""
    from signlang_jax.errors import TrainingError
    from signlang_jax.inference.region import load_jax

    try:
        # Hands decoded as the video job does by default (DARK, docs/HANDS.md).
        return load_jax(args.checkpoint, args.step, args.dtype, args.hand_checkpoint,
                        args.hand_min_score, batch_size=1, hand_decoder="dark")
    except (TrainingError, ValueError, OSError) as e:
        raise DemoError(str(e)) from None


def _frame_rate(capture: object) -> float:
    """The source's frame rate, 25 where it reports none that makes sense."""
    import cv2

    rate = capture.get(cv2.CAP_PROP_FPS)
    return rate if 1.0 <= rate <= 1000.0 else 25.0  # cameras report 0, NaN or nonsense


class LiveView:
    """The state between frames: the sequence processor, the t/s toggles and the FPS average."""

    def __init__(self, model: object, rate: float, tracking: bool, smoothing: bool,
                 conf_threshold: float) -> None:
        self.model, self.rate, self.conf_threshold = model, rate, conf_threshold
        self.tracking, self.smoothing = tracking, smoothing
        self.processor = None  # made for the first frame's size, remade when the size changes
        self.last = None  # the last frame's BatchResult
        self.frames, self.fps, self.started = 0, 0.0, time.perf_counter()

    def overlay(self, frame: np.ndarray) -> np.ndarray:
        """The annotated BGR frame for one BGR frame, with the FPS and toggles as caption."""
        import cv2

        from signlang_jax.video.overlay import annotate

        tick = time.perf_counter()
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if self.processor is None or (self.processor.height,
                                      self.processor.width) != rgb.shape[:2]:
            self.processor = self._new_processor(rgb.shape[1], rgb.shape[0])
        result = self.last = self.processor.process([rgb])
        now = time.perf_counter()
        rate = 1 / max(now - tick, 1e-6)
        self.fps = 0.9 * self.fps + 0.1 * rate if self.frames else rate
        self.frames += 1
        caption = (f"{self.fps:.1f} FPS  smoothing {'on' if self.smoothing else 'off'}"
                   f"  (t: tracking, s: smoothing)")
        return cv2.cvtColor(annotate(rgb, result.keypoints[0], result.regions[0],
                                     bool(result.tracked[0]), self.conf_threshold, caption,
                                     result.hand_regions[0], result.hand_tracked[0]),
                            cv2.COLOR_RGB2BGR)

    def _new_processor(self, width: int, height: int) -> object:
        from signlang_jax.video.sequence import (
            DEFAULT_SMOOTHING,
            DEFAULT_TRACKING,
            SequenceProcessor,
        )

        return SequenceProcessor(self.model, width, height, self.rate,
                                 DEFAULT_TRACKING if self.tracking else None,
                                 DEFAULT_SMOOTHING if self.smoothing else None)

    def on_key(self, key: int) -> bool:
        """Apply a key: t toggles tracking, s smoothing; True for q or Esc (quit)."""
        if key in (ord("q"), 27):
            return True
        if key == ord("t"):
            self.tracking = not self.tracking
            self.processor.set_tracking(self.tracking)
        if key == ord("s"):
            self.smoothing = not self.smoothing
            self.processor.set_smoothing(self.smoothing)
        return False


def _loop(capture: object, view: LiveView, args: argparse.Namespace) -> None:
    """Annotate frames until the source ends, q / Esc or --max-frames; show and/or write them."""
    import cv2

    writer = None
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            overlay = view.overlay(frame)
            if args.out:
                if writer is None:
                    writer = _open_writer(args.out, view.rate, overlay.shape)
                writer.write(overlay)
            if not args.no_display:
                cv2.imshow(WINDOW, overlay)
                if view.on_key(cv2.waitKey(1) & 0xFF):
                    break
            if args.max_frames and view.frames >= args.max_frames:
                break
    finally:
        if writer is not None:
            writer.release()
        if not args.no_display:
            cv2.destroyAllWindows()


def _open_writer(path: str, rate: float, shape: tuple[int, ...]) -> object:
    """An opened mp4 cv2.VideoWriter for frames of `shape` (H, W, 3)."""
    import cv2

    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), rate, (shape[1], shape[0]))
    if not writer.isOpened():
        writer.release()
        raise DemoError(f"cannot write {path}")
    return writer


def _display_available() -> bool:
    """Whether OpenCV can open a window here."""
    import cv2

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get(
            "WAYLAND_DISPLAY"):
        return False
    try:
        cv2.namedWindow(WINDOW)
    except cv2.error:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())

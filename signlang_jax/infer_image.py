"""`python -m signlang_jax.infer_image`: draw predicted skeletons on images and save the keypoints.

For each image: an overlay (edges coloured by group; points below --conf-threshold hidden) and a
JSON file in the dataset's label schema (keypoints in the original image's pixels, `visible` =
score >= threshold, plus each point's `score`), so predictions can be reviewed or reused as labels.
--image may be a file (then --out is the overlay path; the JSON goes beside it) or a folder (then
--out is a folder receiving NAME.jpg and NAME.json for every image).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from signlang_jax.data.images import IMAGE_EXTENSIONS, read_image
from signlang_jax.data.problems import DatasetError
from signlang_jax.draw import GROUP_ENTRIES, draw_skeleton, with_legend, write_rgb
from signlang_jax.errors import TrainingError
from signlang_jax.files import write_atomic
from signlang_jax.inference.cli_args import (
    add_checkpoint_arguments,
    add_dtype_argument,
    add_hand_arguments,
)
from signlang_jax.inference.predictor import (
    DECODERS,
    Predictor,
    load_hand_stage,
    load_model,
)
from signlang_jax.keypoints import KEYPOINT_NAMES
from signlang_jax.progress import progress
from signlang_jax.training.compile_cache import enable_compilation_cache


def prediction_label(keypoints: np.ndarray, image_name: str, width: int, height: int,
                     threshold: float) -> dict:
    """Keypoints (K, 3) x, y, score as a label dict of the dataset schema (coordinates clamped)."""
    entries = []
    for name, (x, y, score) in zip(KEYPOINT_NAMES, keypoints, strict=True):
        entries.append({"name": name, "x": round(float(np.clip(x, 0, width)), 2),
                        "y": round(float(np.clip(y, 0, height)), 2),
                        "visible": int(score >= threshold), "score": round(float(score), 4)})
    shown = np.array([[e["x"], e["y"]] for e in entries if e["visible"]])
    label = {"image": image_name, "width": width, "height": height, "keypoints": entries}
    if len(shown) >= 2 and np.ptp(shown, axis=0).min() > 0:
        lo, hi = shown.min(0), shown.max(0)
        label["bbox"] = [round(float(v), 2) for v in (*lo, *(hi - lo))]
    return label


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.infer_image",
                                     description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    add_dtype_argument(parser)
    add_hand_arguments(parser)
    parser.add_argument("--image", required=True, help="an image file or a folder of images")
    parser.add_argument("--out", required=True,
                        help="overlay path for one image (JSON beside it), or output folder")
    parser.add_argument("--conf-threshold", type=float, default=0.3,
                        help="points scoring below this are hidden and saved as visible 0")
    parser.add_argument("--decoder", choices=DECODERS, default="argmax")
    parser.add_argument("--flip-test", action="store_true", help="average with the mirror image")
    parser.add_argument("--show", action="store_true", help="also show each overlay in a window")
    return parser


def image_targets(image: str | Path, out: str | Path) -> list[tuple[Path, Path]]:
    """(image, overlay path) pairs for --image and --out; ValueError naming a bad --image."""
    source = Path(image)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise ValueError(f"{source}: no .jpg/.jpeg/.png images in this folder")
        return [(p, Path(out) / f"{p.stem}.jpg") for p in images]
    if source.is_file():
        return [(source, Path(out))]
    raise ValueError(f"{source}: no such image or folder")


def write_prediction(predictor: Predictor, image_path: Path, overlay_path: Path,
                     threshold: float) -> np.ndarray:
    """Predict one image; write its overlay and its label JSON beside it; return the overlay."""
    image = read_image(image_path)
    keypoints = predictor.predict_image(image)
    overlay = with_legend(draw_skeleton(image, keypoints, threshold, draw_hidden=False),
                          GROUP_ENTRIES)
    overlay_path.parent.mkdir(parents=True, exist_ok=True)
    write_rgb(str(overlay_path), overlay)
    label = prediction_label(keypoints, image_path.name, image.shape[1], image.shape[0],
                             threshold)
    write_atomic(overlay_path.with_suffix(".json"), json.dumps(label, indent=1).encode())
    return overlay


def main(argv: list[str] | None = None) -> int:
    """Predict, draw, save; return the exit code."""
    args = build_parser().parse_args(argv)
    enable_compilation_cache()
    try:
        targets = image_targets(args.image, args.out)
    except ValueError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    try:
        model, config, step = load_model(args.checkpoint, args.step, args.dtype, "wholebody")
        hand_stage = None if args.hand_checkpoint is None else load_hand_stage(
            args.hand_checkpoint, None, args.dtype, args.hand_min_score, args.decoder)
        predictor = Predictor(model, config, args.decoder, args.flip_test, hand_stage)
    except (TrainingError, ValueError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    failures = 0
    for image_path, overlay_path in progress(targets, unit="img", disable=len(targets) == 1,
                                         file=sys.stderr):
        try:
            overlay = write_prediction(predictor, image_path, overlay_path, args.conf_threshold)
        except DatasetError as e:
            print(f"ERROR {e}", file=sys.stderr)
            failures += 1
            continue
        if args.show:
            _show(overlay)
    done = len(targets) - failures
    print(f"step {step}: wrote {done} overlay(s) and JSON to {Path(args.out)}", file=sys.stderr)
    return 1 if failures else 0


def _show(image: np.ndarray) -> None:
    import cv2

    try:
        cv2.imshow("signlang-jax", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.waitKey(0)
    except cv2.error:
        print("--show: no display available (opencv-python-headless has no GUI); the overlay "
              "was written to --out", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

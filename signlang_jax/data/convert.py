"""`python -m signlang_jax.data.convert FORMAT ...`: other datasets into our dataset layout.

    python -m signlang_jax.data.convert coco-wholebody --ann person_keypoints_wholebody.json \
        --images train2017/ --out coco_wb [--size 256] [--margin 0.25] [--min-box 32] \
        [--min-hand-points 0] [--workers 1] [--add]
    python -m signlang_jax.data.convert halpe --ann halpe_train.json --images hico/ --out halpe
    python -m signlang_jax.data.convert pose --pose poses/ --video videos/ --out my_signers

One sample per annotated person that passes the filters (not crowd, a box of positive size and
at least `--min-box` pixels, at least `--min-hand-points` labelled hand points), cut as a square
around the person box with `--margin` on each side and resized to `--size`, written as
images/NAME.jpg and labels/NAME.json (the standard layout the validator accepts), NAME being
IMAGE-STEM_ANNOTATION-ID (_aN added, N the annotation's index, where an id repeats). Points map to
our 64 by name (`signlang_jax.keypoint_maps`). Visibility: COCO v = 2 -> visible 1; v = 1
(labelled, occluded) -> visible 0 at its true place, clamped into the crop (as are points outside
it); v = 0 (not labelled) and the points of a hand the annotation marks invalid -> visible 0 at
(0, 0), where training never weights them, whatever data.occluded_weight says. Each label keeps
the person box (in crop pixels), the hand validity flags and where the sample came from.

The annotation file is checked whole before anything is written (a malformed field is named with
its file, entry and field). A missing or unreadable image is reported and its persons dropped;
the others are written and the exit status is 1. Prints what it kept and, per reason, what it
dropped. Writes nothing outside --out and refuses a non-empty --out unless --add; with --add,
samples already there identically (from an interrupted run) are skipped, and a sample that would
overwrite a different one is refused. When --out has split files (splits/val.txt,
splits/train.txt, e.g. from the `pose` converter), each new sample is appended to the one the
hash rule (`is_val_stem`, --val-fraction) picks, so samples of different converters share one
folder.

    python -m signlang_jax.data.convert pose --pose POSES/ --video VIDEOS/ --out signers

labels video frames from .pose files (MediaPipe Holistic or ours): see `convert_pose`.

Modules: `convert_output` (what every converter writes, and how), `convert_coco` (COCO-WholeBody
and Halpe), `convert_pose` and `convert_pose_input` (.pose files and their videos).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from signlang_jax.data import convert_pose
from signlang_jax.data.convert_coco import ConvertOptions, convert
from signlang_jax.data.convert_output import (
    ConvertError,
    add_common_arguments,
    print_dropped,
    print_skipped,
)
from signlang_jax.keypoint_maps import COCO_WHOLEBODY, HALPE

__all__ = ["ConvertError", "ConvertOptions", "build_parser", "convert", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface: one sub-command per format."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.data.convert",
                                     description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, what in (("coco-wholebody", "COCO-WholeBody v1.0"), ("halpe", "Halpe-FullBody")):
        sub = formats.add_parser(name, help=f"{what} annotation JSON and its images",
                                 description=f"{what} annotation JSON -> our dataset layout")
        sub.add_argument("--ann", required=True, help="the annotation JSON file")
        sub.add_argument("--images", required=True, help="folder of the images it names")
        add_common_arguments(sub)
        d = ConvertOptions()
        sub.add_argument("--min-box", type=float, default=d.min_box,
                         help="drop persons whose box is smaller (pixels, default %(default)s)")
        sub.add_argument("--min-hand-points", type=int, default=d.min_hand_points,
                         help="drop persons with fewer labelled hand points (default "
                         "%(default)s)")
        sub.add_argument("--workers", type=int, default=1,
                         help="processes cutting images, each image decoded once (default "
                         "%(default)s)")
    convert_pose.add_arguments(formats.add_parser(
        "pose", help="video frames labelled from .pose files (MediaPipe Holistic or ours)",
        description=convert_pose.__doc__.split("\n\n")[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one conversion; 0 on success, 1 on bad input or if an input was skipped."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size < 16 or args.margin < 0 or not 0 <= args.val_fraction < 1:
        parser.error("--size must be >= 16, --margin >= 0 and --val-fraction in [0, 1)")
    if args.format == "pose":
        return convert_pose.run(args, parser)
    if args.min_box < 0 or args.min_hand_points < 0 or args.workers < 1:
        parser.error("--min-box and --min-hand-points must be >= 0, --workers >= 1")
    layout = COCO_WHOLEBODY if args.format == "coco-wholebody" else HALPE
    options = ConvertOptions(args.size, args.margin, args.min_box, args.min_hand_points)
    skipped: list[str] = []
    try:
        kept, dropped = convert(layout, Path(args.ann), Path(args.images), Path(args.out),
                                options, args.add, args.val_fraction, args.workers,
                                lambda message: (print_skipped(message), skipped.append(message)))
    except (ConvertError, OSError) as e:  # OSError: --out cannot be written
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    print(f"kept {kept} persons -> {args.out}")
    print_dropped(dropped)
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())

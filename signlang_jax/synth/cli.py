"""Command line of `python -m signlang_jax.synth`: write a synthetic still-image dataset."""

from __future__ import annotations

import argparse
import sys

from signlang_jax.synth.stills import generate_dataset


def _positive(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}; expected an integer >= 1")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}; expected an integer >= 0")
    return value


def _fraction(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value}; expected a fraction in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of `python -m signlang_jax.synth`."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.synth",
        description="Write a synthetic dataset of a procedurally drawn signer: "
        "DIR/images/NNNNNN.jpg and DIR/labels/NNNNNN.json with the 64 keypoints of "
        "signlang_jax.keypoints. The same --seed gives identical files for any --workers.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output dataset folder")
    parser.add_argument("--num", required=True, type=_non_negative, metavar="N",
                        help="number of samples to write")
    parser.add_argument("--seed", required=True, type=_non_negative, metavar="S",
                        help="dataset seed; sample i depends only on (seed, i)")
    parser.add_argument("--size", type=_positive, default=512,
                        help="image width and height in pixels (default: 512)")
    parser.add_argument("--workers", type=_positive, default=None,
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--start-index", type=_non_negative, default=0,
                        help="index of the first sample, for writing a dataset in parts "
                        "(default: 0)")
    parser.add_argument("--others", type=_fraction, default=0.0, metavar="FRACTION",
                        help="fraction of samples that also show a second, smaller person "
                        "behind the signer; the signer's labels are unchanged (default: 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into DIR even if DIR/labels is not empty (files with the "
                        "same names are replaced, others are kept)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        generate_dataset(args.out, args.num, args.seed, size=args.size, workers=args.workers,
                         start_index=args.start_index, overwrite=args.overwrite, progress=True,
                         others=args.others)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0

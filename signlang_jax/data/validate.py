"""`python -m signlang_jax.data.validate`: check a whole dataset in one pass and report.

Lists every problem (file, field, what was expected), counts per kind, the visibility per
keypoint group and the split sizes; exits 1 if any label or image is invalid, else 0.
"""

from __future__ import annotations

import argparse
import sys

from signlang_jax.data.dataset import scan_dataset, split_samples
from signlang_jax.data.problems import DatasetError
from signlang_jax.data.report import format_report


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.data.validate", description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="dataset folder")
    parser.add_argument("--images-dir", default="images", help="image folder under the root")
    parser.add_argument("--labels-dir", default="labels", help="label folder under the root")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="validation fraction of the hash split (without splits/*.txt)")
    parser.add_argument("--no-decode", action="store_true",
                        help="only check that images exist, do not decode them (faster)")
    parser.add_argument("--max-problems", type=int, default=None,
                        help="print at most this many problems (all are counted)")
    parser.add_argument("--workers", type=int, default=4, help="threads decoding images")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Validate the dataset; print the report; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        scan = scan_dataset(args.data_root, args.images_dir, args.labels_dir,
                            decode=not args.no_decode, workers=args.workers)
    except DatasetError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 2
    print(format_report(scan, args.max_problems))
    try:
        sizes = {s: len(split_samples(scan, s, args.val_fraction)) for s in ("train", "val")}
    except DatasetError as e:
        print("\n".join(f"ERROR {p}" for p in e.problems))
        return 1
    print(f"splits: train {sizes['train']}, val {sizes['val']}")
    if scan.problems:
        print(f"INVALID: {len(scan.problems)} problems", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

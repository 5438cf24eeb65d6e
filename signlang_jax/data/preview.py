"""`python -m signlang_jax.data.preview`: a grid of augmented training samples with skeletons.

Shows exactly what the model is fed (the same pipeline, augmentation and flip permutation as
training), so a wrong label, a broken flip or a bad augmentation range is visible at a glance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ml_collections
import numpy as np

from configs import default
from signlang_jax.data.pipeline import make_dataset
from signlang_jax.data.problems import DatasetError
from signlang_jax.draw import draw_skeleton, image_grid, write_rgb


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.data.preview",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="dataset folder")
    parser.add_argument("--images-dir", default="images", help="image folder under the root")
    parser.add_argument("--labels-dir", default="labels", help="label folder under the root")
    parser.add_argument("--out", required=True, help="output image (.png or .jpg)")
    parser.add_argument("--num", type=int, default=16, help="number of samples (default 16)")
    parser.add_argument("--columns", type=int, default=4, help="grid columns (default 4)")
    parser.add_argument("--size", type=int, default=512, help="input size S (default 512)")
    parser.add_argument("--split", choices=("train", "val"), default="train",
                        help="train = augmented (default), val = letterboxed only")
    parser.add_argument("--seed", type=int, default=0, help="shuffle/augmentation seed")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="preview the valid samples of an invalid dataset")
    return parser


def render_preview(config: ml_collections.ConfigDict, split: str, num: int, columns: int
                   ) -> np.ndarray:
    """The grid image (RGB uint8) of `num` samples of `split` with their skeletons drawn."""
    tiles = []
    for batch in make_dataset(config, split, batch_size=1, num_workers=0, num_epochs=1):
        if batch["mask"][0]:
            tiles.append(draw_skeleton(batch["image"][0], batch["keypoints"][0]))
        if len(tiles) == num:
            break
    return image_grid(tiles, columns)


def main(argv: list[str] | None = None) -> int:
    """Write the preview grid; return the exit code."""
    args = build_parser().parse_args(argv)
    config = default.get_config()
    config.seed = args.seed
    config.data.root = args.data_root
    config.data.images_dir, config.data.labels_dir = args.images_dir, args.labels_dir
    config.data.image_size = args.size
    config.data.skip_invalid = args.skip_invalid
    try:
        grid = render_preview(config, args.split, args.num, args.columns)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(args.out, grid)
    except (DatasetError, OSError, ValueError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

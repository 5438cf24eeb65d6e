"""`python -m signlang_jax.evaluate`: score a checkpoint on a dataset in the seed layout.

Reports PCK@0.05/0.1 (overall, per group, per keypoint), end-point error in original-image
pixels, heatmap MSE per keypoint, mean OKS and COCO OKS AP/AR (pycocotools, our sigmas) for the
whole body, each part at whole-body scale, and each hand with its own box (OKS AP and
PCK@0.2, the hand benchmarks' convention). Writes metrics.json, a per-keypoint PCK bar chart and
a grid of the worst predictions (ground truth white, prediction coloured) to --out, by default
WORKDIR/eval/step_<N>_<split>[_<data folder>] of the checkpoint's training workdir.

With --hand-checkpoint (a hand model, docs/HANDS.md) the hands are refined on crops of the
original images, and the hands of the body model alone and of body + hand stage are reported side
by side (metrics.json "hands").

This module parses the flags, loads the models (`signlang_jax.inference`) and prints; the scoring
is `signlang_jax.evaluation.scoring` and the report `signlang_jax.evaluation.report`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from signlang_jax.data.dataset import ALL_SPLIT, SPLITS
from signlang_jax.data.problems import DatasetError
from signlang_jax.data.sources import FORMATS, PackedSource, SampleSource
from signlang_jax.errors import ConfigError, TrainingError
from signlang_jax.evaluation.report import format_hand_table, format_table, write_report
from signlang_jax.evaluation.scoring import (
    default_out_dir,
    predict_split,
    prepare_eval_data,
    split_metrics,
)
from signlang_jax.inference.cli_args import (
    add_checkpoint_arguments,
    add_dtype_argument,
    add_hand_arguments,
)
from signlang_jax.inference.predictor import (
    DECODERS,
    Predictor,
    load_for_inference,
    load_hand_stage,
)
from signlang_jax.inference.restore import LoadedCheckpoint
from signlang_jax.training.compile_cache import enable_compilation_cache

# Problems of the user's files, flags or checkpoint: one ERROR line, no traceback.
USER_ERRORS = (DatasetError, ConfigError, TrainingError, ValueError, OSError)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.evaluate",
                                     description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    add_dtype_argument(parser)
    add_hand_arguments(parser)
    parser.add_argument("--config", default=None,
                        help="optional Python config file (get_config(), e.g. configs/default.py) "
                        "whose data/augment fields replace the checkpoint's, e.g. "
                        "data.num_workers; the architecture and data.image_size always come "
                        "from the checkpoint")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder (default: the one the model was trained on; "
                        "required for a model trained on a mixture, data.sources)")
    parser.add_argument("--data-format", choices=FORMATS, default=None,
                        help="format of --data-root (default: the training config's data.format)")
    parser.add_argument("--images-dir", default=None, help="image folder under the root")
    parser.add_argument("--labels-dir", default=None, help="label folder under the root")
    parser.add_argument("--split", choices=(*SPLITS, ALL_SPLIT), default="val",
                        help="val (default) or train: the split of the training run (split "
                        "files or hash); all: every valid image of the folder, e.g. a separate "
                        "held-out set (folder datasets only)")
    parser.add_argument("--flip-test", action="store_true",
                        help="average with the prediction on the mirrored image")
    parser.add_argument("--decoder", choices=DECODERS, default="argmax",
                        help="argmax + quarter-pixel shift (default) or DARK refinement")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument("--out", default=None,
                        help="report folder (default: WORKDIR/eval/step_<N>_<split> of the "
                        "checkpoint's training workdir, with _<data folder name> added when "
                        "--data-root is not the training dataset)")
    parser.add_argument("--worst", type=int, default=8,
                        help="images in the worst-cases grid (0: no grid)")
    return parser


def load_run(args: argparse.Namespace) -> tuple[
        LoadedCheckpoint, Predictor, SampleSource | PackedSource, str | dict[str, str]]:
    """(checkpoint, predictor, records of the split, trained root) as the flags say."""
    loaded = load_for_inference(args.checkpoint, args.step, args.dtype, task="wholebody")
    fields = {"root": args.data_root, "format": args.data_format, "images_dir": args.images_dir,
              "labels_dir": args.labels_dir}
    records, trained_root = prepare_eval_data(loaded.config, args.config, fields, args.split,
                                              args.checkpoint)
    hand_stage = (None if args.hand_checkpoint is None else load_hand_stage(
        args.hand_checkpoint, None, args.dtype, args.hand_min_score, args.decoder))
    predictor = Predictor(loaded.model, loaded.config, args.decoder, args.flip_test, hand_stage)
    return loaded, predictor, records, trained_root


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate as the parsed flags say; print the table; write the report; return the exit code."""
    try:
        loaded, predictor, records, trained_root = load_run(args)
        config, step = loaded.config, loaded.step
        print(f"evaluating step {step} of {args.checkpoint} on {len(records)} {args.split} "
              f"images of {config.data.root} (decoder {args.decoder}, flip test "
              f"{'on' if args.flip_test else 'off'})", file=sys.stderr)
        result = predict_split(predictor, records, args.batch_size)
    except USER_ERRORS as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    metrics = split_metrics(
        result, {"checkpoint": str(args.checkpoint), "step": step, "split": args.split,
                 "data_root": str(config.data.root), "decoder": args.decoder,
                 "flip_test": args.flip_test},
        {"hand_checkpoint": str(args.hand_checkpoint), "hand_min_score": args.hand_min_score})
    print(format_table(metrics))
    print(format_hand_table(metrics["hands"]))
    out = Path(args.out) if args.out else default_out_dir(
        loaded.directory.parent, step, args.split, config.data.root, trained_root)
    try:
        write_report(out, metrics, records, result, args.worst)
    except OSError as e:
        print(f"ERROR cannot write the report to {out}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}/metrics.json, pck_per_keypoint.png"
          + (", worst.jpg" if args.worst > 0 else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; exit code 0, 1 for a user error, 130 when interrupted (Ctrl-C)."""
    args = build_parser().parse_args(argv)
    enable_compilation_cache()
    try:
        return evaluate(args)
    except KeyboardInterrupt:
        print("interrupted: evaluation stopped before its report was complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

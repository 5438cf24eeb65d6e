"""Command-line flags shared by every CLI that loads a trained model (no JAX import here, so the
onnxruntime-only video path can build its parser on a machine without JAX)."""

from __future__ import annotations

import argparse

from signlang_jax.inference.hand_stage import DEFAULT_MIN_SCORE

# Compute dtypes for inference; "trained" = the run's model.dtype ("auto": bf16 on GPU, f32 on CPU).
INFERENCE_DTYPES = ("float32", "bfloat16", "trained")


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The --checkpoint/--step pair every CLI that loads a trained model shares."""
    parser.add_argument("--checkpoint", required=True,
                        help="training workdir (or its checkpoints/ folder, or a step folder "
                        "such as runs/x/checkpoints/1600); a suffix :best, :latest or :STEP "
                        "picks the step")
    parser.add_argument("--step", default=None,
                        help="best (the kept step with the best train.best_metric of the run, by "
                        "default hand PCK@0.2; the default), latest, or a step number")


def add_dtype_argument(parser: argparse.ArgumentParser) -> None:
    """The --dtype flag every CLI that runs a trained model shares (values: INFERENCE_DTYPES)."""
    parser.add_argument("--dtype", choices=INFERENCE_DTYPES, default="float32",
                        help="compute dtype: float32 (the default; parity checks and export use "
                        "it), bfloat16 (faster on GPUs, no faster on CPU) or trained (the run's "
                        "own model.dtype: auto = bfloat16 on a GPU, float32 on CPU); the weights "
                        "stay float32")


def add_hand_arguments(parser: argparse.ArgumentParser) -> None:
    """The optional hand-stage flags (--hand-checkpoint, --hand-min-score) of the CLIs."""
    parser.add_argument("--hand-checkpoint", default=None,
                        help="hand-model training workdir (configs/hand.py), same syntax as "
                        "--checkpoint (best step by default): refine both hands on crops of "
                        "the original image (docs/HANDS.md)")
    parser.add_argument("--hand-min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help="merge rule: a hand-model point replaces the body model's when "
                        f"its score is at least this (default {DEFAULT_MIN_SCORE}; 0 = always)")

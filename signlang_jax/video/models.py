"""The keypoint model of the video job: a body model run on square regions of frames, with JAX or
onnxruntime behind it, plus the optional hand stage on crops of the full-resolution frames.

`load_onnx` imports onnxruntime only; `load_jax` imports JAX when called, never at import time,
so `python -m signlang_jax.video --onnx ...` runs where JAX and torch are not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from signlang_jax.crop import Region, apply_affine, crop_matrix, invert_affine
from signlang_jax.data.augment import warp_image
from signlang_jax.hand_stage import HandStage

BatchModel = Callable[[np.ndarray], np.ndarray]  # uint8 (N, S, S, 3) -> (N, K, 3) input pixels


class RegionPredictor:
    """(frames, square regions) -> (N, 64, 3) keypoints in frame pixels, hands refined."""

    def __init__(self, predict_batch: BatchModel, input_size: int,
                 hand_stage: HandStage | None, batch_size: int, description: str) -> None:
        self.predict_batch = predict_batch
        self.input_size = input_size
        self.hand_stage = hand_stage
        self.batch_size = batch_size
        self.description = description

    def predict(self, frames: Sequence[np.ndarray], regions: Sequence[Region]) -> np.ndarray:
        """Keypoints (N, 64, 3) of each RGB uint8 frame, the model seeing only its region."""
        size = self.input_size
        matrices = [crop_matrix(region, size) for region in regions]
        crops = np.stack([warp_image(f, m, size) for f, m in zip(frames, matrices, strict=True)])
        # Batches padded to a power of two up to batch_size: a jitted model compiles a few
        # shapes at most however the video's length and the re-detections fall.
        out = []
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            padded_size = min(self.batch_size, 1 << (len(chunk) - 1).bit_length())
            padded = np.zeros((padded_size, *chunk.shape[1:]), np.uint8)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self.predict_batch(padded))[:len(chunk)])
        keypoints = np.concatenate(out).astype(np.float32)
        for n, matrix in enumerate(matrices):
            keypoints[n, :, :2] = apply_affine(keypoints[n, :, :2], invert_affine(matrix))
        if self.hand_stage is not None:
            keypoints = self.hand_stage.refine(frames, keypoints)
        return keypoints


def load_onnx(body: str | Path, hand: str | Path | None, hand_min_score: float,
              batch_size: int, threads: int = 0) -> RegionPredictor:
    """A `RegionPredictor` on exported ONNX files (onnxruntime only)."""
    from signlang_jax.onnx_runtime import OnnxModel, OnnxModelError, hand_stage_from_onnx

    model = OnnxModel(body, threads)
    if model.task != "wholebody":
        raise OnnxModelError(f"{model.path}: metadata task={model.task!r}; expected the "
                             "whole-body model (give a hand model with --hand-onnx)")
    stage = None if hand is None else hand_stage_from_onnx(hand, hand_min_score,
                                                          threads=threads)
    described = f"onnx {model.path}" + ("" if hand is None else f" + hand {hand}")
    return RegionPredictor(model.predict_batch, model.input_size, stage, batch_size, described)


def load_jax(checkpoint: str, step: str | None, dtype: str, hand_checkpoint: str | None,
             hand_min_score: float, batch_size: int) -> RegionPredictor:
    """A `RegionPredictor` on training checkpoints (imports JAX)."""
    from signlang_jax.compile_cache import enable_compilation_cache
    from signlang_jax.errors import ConfigError
    from signlang_jax.inference import Predictor, load_for_inference, load_hand_stage

    enable_compilation_cache()
    loaded = load_for_inference(checkpoint, step, dtype)
    if loaded.config.get("task", "wholebody") != "wholebody":
        raise ConfigError(f"--checkpoint {checkpoint}: {loaded.directory} is a "
                          f"{loaded.config.task} model; give the whole-body model here and "
                          "the hand model as --hand-checkpoint")
    stage = None if hand_checkpoint is None else load_hand_stage(
        hand_checkpoint, None, dtype, hand_min_score)
    predictor = Predictor(loaded.model, loaded.config, hand_stage=None)
    described = f"jax {loaded.directory} step {loaded.step}" + (
        "" if hand_checkpoint is None else f" + hand {hand_checkpoint}")
    return RegionPredictor(predictor.predict_keypoints, predictor.image_size, stage, batch_size,
                           described)

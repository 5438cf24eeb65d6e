"""The keypoint model of the video job: a body model run on square regions of frames, with JAX or
onnxruntime behind it, plus the optional hand stage on crops of the full-resolution frames.

`load_jax` imports JAX when called, never at import time (`onnx_runtime.load_onnx` needs
onnxruntime only), so `python -m signlang_jax.video --onnx ...` runs where JAX and torch are
not installed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from signlang_jax.crop import Region, apply_affine, crop_matrix, invert_affine
from signlang_jax.data.augment import warp_image
from signlang_jax.inference.batching import predict_padded
from signlang_jax.inference.hand_stage import HandStage

BatchModel = Callable[[np.ndarray], np.ndarray]  # uint8 (N, S, S, 3) -> (N, K, 3) input pixels
# uint8 (N, S, S, 3) -> ((N, K, 3) input pixels, (N, K, H, W) heatmaps)
MapsModel = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class RegionPredictor:
    """(frames, square regions) -> (N, 64, 3) keypoints in frame pixels, hands refined.

    `predict_maps` (optional) also returns the body model's heatmaps, whose coordinates follow
    `udp` (`signlang_jax.dark.input_ratio`); the video job finds the people in a frame from
    their peaks (`signlang_jax.video.people`). Without it, only the decoded points are used.
    """

    def __init__(self, predict_batch: BatchModel, input_size: int,
                 hand_stage: HandStage | None, batch_size: int, description: str,
                 predict_maps: MapsModel | None = None, udp: bool = False) -> None:
        self.predict_batch = predict_batch
        self.input_size = input_size
        self.hand_stage = hand_stage
        self.batch_size = batch_size
        self.description = description
        self.predict_maps = predict_maps
        self.udp = udp

    def predict(self, frames: Sequence[np.ndarray], regions: Sequence[Region]) -> np.ndarray:
        """Keypoints (N, 64, 3) of each RGB uint8 frame, the model seeing only its region, hands
        refined on crops placed by the body model's points (the still-image rule)."""
        keypoints = self.predict_body(frames, regions)
        if self.hand_stage is not None:
            keypoints = self.hand_stage.refine(frames, keypoints)
        return keypoints

    def predict_body(self, frames: Sequence[np.ndarray], regions: Sequence[Region]
                     ) -> np.ndarray:
        """The body model's keypoints (N, 64, 3) in frame pixels, without the hand stage."""
        size = self.input_size
        matrices = [crop_matrix(region, size) for region in regions]
        crops = np.stack([warp_image(f, m, size) for f, m in zip(frames, matrices, strict=True)])
        keypoints = predict_padded(self.predict_batch, crops, self.batch_size).astype(np.float32)
        for n, matrix in enumerate(matrices):
            keypoints[n, :, :2] = apply_affine(keypoints[n, :, :2], invert_affine(matrix))
        return keypoints

    def predict_body_maps(self, frames: Sequence[np.ndarray], regions: Sequence[Region]
                          ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]] | None:
        """(keypoints (N, 64, 3) frame pixels, heatmaps (N, 64, H, W), each frame -> input
        affine) of the frames' regions; None when the model gives no heatmaps."""
        if self.predict_maps is None:
            return None
        size = self.input_size
        matrices = [crop_matrix(region, size) for region in regions]
        crops = np.stack([warp_image(f, m, size) for f, m in zip(frames, matrices, strict=True)])
        points, heatmaps = predict_padded(self.predict_maps, crops, self.batch_size)
        points = points.astype(np.float32)
        for n, matrix in enumerate(matrices):
            points[n, :, :2] = apply_affine(points[n, :, :2], invert_affine(matrix))
        return points, np.asarray(heatmaps, np.float32), matrices


def load_jax(checkpoint: str, step: str | None, dtype: str, hand_checkpoint: str | None,
             hand_min_score: float, batch_size: int, hand_decoder: str = "argmax"
             ) -> RegionPredictor:
    """A `RegionPredictor` on training checkpoints (imports JAX)."""
    from signlang_jax.inference.predictor import Predictor, load_for_inference, load_hand_stage
    from signlang_jax.training.compile_cache import enable_compilation_cache

    enable_compilation_cache()
    loaded = load_for_inference(checkpoint, step, dtype, task="wholebody")
    stage = None if hand_checkpoint is None else load_hand_stage(
        hand_checkpoint, None, dtype, hand_min_score, hand_decoder)
    predictor = Predictor(loaded.model, loaded.config, hand_stage=None)
    described = f"jax {loaded.directory} step {loaded.step}" + (
        "" if hand_checkpoint is None else f" + hand {hand_checkpoint}")

    def predict_maps(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keypoints, heatmaps = predictor.predict_batch(images)
        return keypoints, heatmaps.transpose(0, 3, 1, 2)  # NHWC -> the (N, K, H, W) of ONNX

    return RegionPredictor(predictor.predict_keypoints, predictor.image_size, stage, batch_size,
                           described, predict_maps,
                           bool(loaded.config.model.get("udp", False)))

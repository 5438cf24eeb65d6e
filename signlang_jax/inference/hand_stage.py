"""The hand stage: crop both hands from the frame around the body model's points, run the hand
model on the crops, map its points back into the frame and merge them into the 64 points.

    body keypoints (64, 3), frame pixels
      -> `hand_regions` (signlang_jax.crop): one square per hand, right hands mirrored
         (on video the squares come from the hand tracker instead: `signlang_jax.video.hands`)
      -> crops of the ORIGINAL frame, C x C -> hand model -> (21, 3) per crop, crop pixels
      -> inverse affine -> frame pixels -> merged where the hand model is confident

numpy only: the hand model is any callable `uint8 (M, C, C, 3) -> (M, 21, 3)` (x, y, score in
crop pixels), so the JAX predictor (`signlang_jax.inference.predictor.load_hand_stage`) and an
onnxruntime session (`signlang_jax.inference.onnx_runtime`) run exactly the same crops and merge.

Merge rule: a hand point of the body model is replaced by the hand model's when the hand model's
score (its heatmap peak) is at least `min_score`; the default 0 always replaces, which measured
best (docs/HANDS.md: against "score >= 0.2" and "where the hand score beats the body score").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from signlang_jax.crop import (
    HandCropRule,
    Region,
    apply_affine,
    hand_crop_matrix,
    hand_regions,
    invert_affine,
)
from signlang_jax.data.augment import warp_image
from signlang_jax.inference.batching import predict_padded
from signlang_jax.keypoints import GROUPS

HandModel = Callable[[np.ndarray], np.ndarray]
DEFAULT_MIN_SCORE = 0.0  # merge rule (docs/HANDS.md): 0 = the hand stage always replaces


@dataclasses.dataclass(frozen=True)
class HandCrop:
    """One hand crop of one frame: which image and hand, the frame -> crop affine, the pixels."""

    image_index: int
    hand: str
    matrix: np.ndarray
    pixels: np.ndarray


HandPlacement = tuple[int, str, Region]  # (image index, hand, its crop region in frame pixels)


def body_rule_placements(keypoints: np.ndarray, rule: HandCropRule) -> list[HandPlacement]:
    """Both hands' regions of every frame by the crop rule on (N, 64, 3) body-model points."""
    return [(n, hand, region) for n in range(len(keypoints))
            for hand, region in hand_regions(keypoints[n], rule).items() if region is not None]


def cut_placed_crops(images: Sequence[np.ndarray], placements: Sequence[HandPlacement],
                     size: int) -> list[HandCrop]:
    """The size x size crop of each placement (right hands mirrored)."""
    crops = []
    for n, hand, region in placements:
        matrix = hand_crop_matrix(region, hand, size)
        crops.append(HandCrop(n, hand, matrix, warp_image(images[n], matrix, size)))
    return crops


def cut_hand_crops(images: Sequence[np.ndarray], keypoints: np.ndarray, rule: HandCropRule,
                   size: int) -> list[HandCrop]:
    """Both hands' crops of every frame (hands without a region are left out).

    images: RGB uint8 frames of any size; keypoints: (N, 64, 3) body-model points in frame pixels.
    """
    return cut_placed_crops(images, body_rule_placements(keypoints, rule), size)


def merge_hand(keypoints: np.ndarray, hand: str, points: np.ndarray, min_score: float
               ) -> np.ndarray:
    """(64, 3) keypoints with `hand`'s points replaced by `points` (21, 3) where confident."""
    out = keypoints.copy()
    indices = np.asarray(GROUPS[hand])
    take = points[:, 2] >= min_score
    out[indices[take]] = points[take]
    return out


@dataclasses.dataclass
class HandStage:
    """Refines the hand points of body-model predictions with a hand model on frame crops."""

    predict_crops: HandModel
    crop_size: int
    rule: HandCropRule = dataclasses.field(default_factory=HandCropRule)
    min_score: float = DEFAULT_MIN_SCORE
    batch_size: int = 16  # most crops per hand-model call (calls padded to a power of 2)

    def hand_points(self, images: Sequence[np.ndarray], keypoints: np.ndarray
                    ) -> list[tuple[HandCrop, np.ndarray]]:
        """[(crop, its (21, 3) hand-model points in FRAME pixels)] for every hand of every frame."""
        return self.points_at(images, body_rule_placements(keypoints, self.rule))

    def points_at(self, images: Sequence[np.ndarray], placements: Sequence[HandPlacement]
                  ) -> list[tuple[HandCrop, np.ndarray]]:
        """[(crop, (21, 3) hand-model points in FRAME pixels)] for crops placed by the caller."""
        crops = cut_placed_crops(images, placements, self.crop_size)
        if not crops:
            return []
        pixels = np.stack([c.pixels for c in crops])
        predicted = predict_padded(self.predict_crops, pixels, self.batch_size)
        out = []
        for crop, points in zip(crops, predicted, strict=True):
            frame_xy = apply_affine(points[:, :2], invert_affine(crop.matrix))
            out.append((crop, np.concatenate([frame_xy, points[:, 2:3]], 1).astype(np.float32)))
        return out

    def refine(self, images: Sequence[np.ndarray], keypoints: np.ndarray) -> np.ndarray:
        """(N, 64, 3) keypoints with each hand's points merged from the hand model."""
        out = np.array(keypoints, np.float32, copy=True)
        for crop, points in self.hand_points(images, out):
            out[crop.image_index] = merge_hand(out[crop.image_index], crop.hand, points,
                                               self.min_score)
        return out

"""Hand crops for the second-stage hand model: two records per image, one crop per hand.

Every sample of the dataset gives two records (`HandSource`): its left hand, and its right hand
mirrored so that the hand model only ever sees left hands. A crop is cut from the
ORIGINAL-resolution image (not the body model's letterboxed input) around the labelled hand with
the rule the predictor uses at run time (`signlang_jax.crop.hand_region`, the visibility flags
standing in for the body model's scores), then, in training, jittered: shift, scale and
rotation (`config.hand_crop`), plus the photometric set of `config.augment`.

A hand record's batch entry (C = config.data.image_size):

    image:     uint8   (C, C, 3)  the crop
    keypoints: float32 (21, 3)    x, y in crop pixels, loss weight (visibility in validation)
    bbox:      float32 (4,)       the tight box of the visible hand points in crop pixels
    affine:    float32 (2, 3)     original image pixel -> crop pixel (mirror included)
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from signlang_jax.crop import (
    HANDS,
    MIRRORED_HAND,
    HandCropRule,
    Region,
    crop_matrix,
    hand_region,
    jitter_region,
    part_boxes,
)
from signlang_jax.data.augment import AugmentParams, photometric, warp_image
from signlang_jax.keypoints import GROUPS

NUM_HAND_KEYPOINTS = 21


@dataclasses.dataclass(frozen=True)
class HandJitter:
    """Random changes of a training crop's region (mirrors `config.hand_crop`)."""

    shift: float = 0.25  # centre moved up to +- this x side
    scale_min: float = 0.6
    scale_max: float = 1.3
    rotation_deg: float = 60.0


def hand_crop_rule(config: ml_collections.ConfigDict) -> HandCropRule:
    """The crop rule of `config.hand_crop`."""
    return HandCropRule(**{f: config.hand_crop[f] for f in HandCropRule.__dataclass_fields__})


def hand_jitter(config: ml_collections.ConfigDict) -> HandJitter:
    """The training jitter of `config.hand_crop`."""
    return HandJitter(**{f: config.hand_crop[f] for f in HandJitter.__dataclass_fields__})


class HandSource:
    """grain source of hand records: record 2i is sample i's left hand, 2i + 1 its right hand."""

    def __init__(self, samples: object) -> None:
        self._samples = samples

    @property
    def digest(self) -> str:
        """The digest of the underlying records, marked as hand records."""
        return f"{self._samples.digest}-hands"

    def __len__(self) -> int:
        """Two records per sample."""
        return 2 * len(self._samples)

    def __getitem__(self, index: int) -> dict:
        """The sample's record with `index` and the `hand` it stands for."""
        record = dict(self._samples[index // 2])
        record["index"] = index
        record["hand"] = HANDS[index % 2]
        return record

    def __repr__(self) -> str:
        # grain compares repr(source) on restore: make it depend on the content only.
        return f"HandSource({self._samples!r})"


def training_weights(keypoints: np.ndarray, width: int, height: int,
                     occluded_weight: float) -> np.ndarray:
    """(K,) loss weights: 1 for visible points, `occluded_weight` for hidden points inside.

    For data whose hidden points carry exact coordinates (the synthetic generator knows where a
    finger behind another finger is). Points on or past the image border are clamped labels,
    not positions: weight 0.
    """
    visible = keypoints[:, 2] > 0
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x > 0) & (y > 0) & (x < width - 1) & (y < height - 1)
    return np.where(visible, 1.0, np.where(inside, occluded_weight, 0.0)).astype(np.float32)


def crop_hand(image: np.ndarray, keypoints: np.ndarray, hand: str, size: int,
              rule: HandCropRule, rng: np.random.Generator | None = None,
              jitter: HandJitter | None = None, params: AugmentParams | None = None,
              occluded_weight: float = 0.0) -> dict[str, np.ndarray]:
    """Crop one hand of a labelled image; jittered and colour-augmented when `rng` is given.

    keypoints: (64, 3) labels in image pixels with visibility. Returns the batch entry described
    in the module docstring; the labels' hand points are mirrored with the crop for the right
    hand. A hand without a trusted point or wrist gets a whole-image crop with zero weights.
    """
    h, w = image.shape[:2]
    region = hand_region(keypoints, hand, rule)
    if region is None:
        region = Region((w - 1) / 2, (h - 1) / 2, float(max(w, h)))
    if rng is not None:
        jitter = jitter or HandJitter()
        region = jitter_region(region, rng, jitter.shift, jitter.scale_min, jitter.scale_max,
                               jitter.rotation_deg)
    matrix = crop_matrix(region, size, mirror=hand == MIRRORED_HAND)
    crop = warp_image(image, matrix, size)
    if rng is not None:
        crop = photometric(crop, rng, params or AugmentParams())
    points = keypoints[np.asarray(GROUPS[hand])]
    weights = (training_weights(points, w, h, occluded_weight) if rng is not None
               else (points[:, 2] > 0).astype(np.float32))
    xy = points[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    inside = np.all((xy >= -0.5) & (xy <= size - 0.5), axis=1)
    out_points = np.concatenate([xy, (weights * inside)[:, None]], axis=1).astype(np.float32)
    box_points = np.concatenate([xy, (points[:, 2:] > 0) & inside[:, None]], axis=1)
    return {
        "image": crop,
        "keypoints": out_points,
        "bbox": part_boxes(box_points[None], range(NUM_HAND_KEYPOINTS))[0].astype(np.float32),
        "affine": matrix.astype(np.float32),
    }

"""Other keypoint layouts -> our 64 points: the one home for every mapping table.

Each `KeypointMap` names the source layout's points in its own order and takes each of our 64
points from the source point of the SAME name (so a table cannot swap left and right without a
name saying so; `tests/test_keypoint_maps.py` checks every table). Layouts:

- `COCO_WHOLEBODY` (133): COCO-WholeBody v1.0 - 17 body, 6 feet, 68 face, left hand 21, right
  hand 21 (the annotation's `keypoints`, `foot_kpts`, `face_kpts`, `lefthand_kpts`,
  `righthand_kpts` concatenated in that order).
- `HALPE` (136): Halpe-FullBody - 17 COCO body, head, neck, hip, 6 feet, 68 face, left hand 21,
  right hand 21.
- `MEDIAPIPE_HOLISTIC` (75): MediaPipe Holistic's 33 pose landmarks, then the left and right
  hand's 21 (the subject's own left and right, as Holistic names them).

Hand point order is the same in all three and ours: wrist, then thumb, index, middle, ring,
little, each from the base to the tip. Our 5 face anchors are the body's nose, eyes and ears.
numpy only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from signlang_jax.keypoints import BODY_NAMES, FACE_NAMES, HAND_JOINTS, KEYPOINT_NAMES

_FEET = ("left_big_toe", "left_small_toe", "left_heel",
         "right_big_toe", "right_small_toe", "right_heel")  # COCO-WholeBody's foot order
_HALPE_FEET = ("left_big_toe", "right_big_toe", "left_small_toe", "right_small_toe",
               "left_heel", "right_heel")  # Halpe's foot order
_FACE_68 = tuple(f"face68_{i}" for i in range(68))  # dense face contours: not in our schema
_HANDS = (tuple(f"left_hand_{j}" for j in HAND_JOINTS)
          + tuple(f"right_hand_{j}" for j in HAND_JOINTS))
MEDIAPIPE_POSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
# Our face anchor -> the body point it repeats.
FACE_ANCHOR_SOURCES: dict[str, str] = {face: body for face, body in zip(
    FACE_NAMES, ("nose", "left_eye", "right_eye", "left_ear", "right_ear"), strict=True)}


@dataclasses.dataclass(frozen=True)
class KeypointMap:
    """A source layout (its point names in order) and, for each of our 64 points, its index."""

    name: str
    source_names: tuple[str, ...]

    @property
    def indices(self) -> np.ndarray:
        """(64,) int: the source index of each of our points (-1: the source has none)."""
        position = {n: i for i, n in enumerate(self.source_names)}
        return np.array([position.get(FACE_ANCHOR_SOURCES.get(n, n), -1)
                         for n in KEYPOINT_NAMES], np.int64)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., S, C) source points -> (..., 64, C) in our order; zeros where there is none."""
        points = np.asarray(points)
        if points.shape[-2] != len(self.source_names):
            raise ValueError(f"{self.name}: expected {len(self.source_names)} points, got "
                             f"{points.shape[-2]}")
        idx = self.indices
        out = np.take(points, np.maximum(idx, 0), axis=-2)
        out[..., idx < 0, :] = 0
        return out


COCO_WHOLEBODY = KeypointMap("COCO-WholeBody (133)",
                             BODY_NAMES + _FEET + _FACE_68 + _HANDS)
HALPE = KeypointMap("Halpe-FullBody (136)",
                    BODY_NAMES + ("head", "neck", "hip") + _HALPE_FEET + _FACE_68 + _HANDS)
MEDIAPIPE_HOLISTIC = KeypointMap("MediaPipe Holistic (33 pose + 2 x 21 hands)",
                                 MEDIAPIPE_POSE_NAMES + _HANDS)
MAPS: dict[str, KeypointMap] = {"coco-wholebody": COCO_WHOLEBODY, "halpe": HALPE,
                                "mediapipe-holistic": MEDIAPIPE_HOLISTIC}

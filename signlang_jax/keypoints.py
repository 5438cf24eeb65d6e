"""The 64-keypoint schema: the one home for names, groups, flip permutation, skeleton and sigmas.

Everything else in signlang-jax imports these facts from here. The order is the order of the
original project's JSON files and of the model's 64 output channels: 17 COCO body points, 21 left
hand points, 21 right hand points (wrist first, then thumb, index, middle, ring, little, each from
the palm outwards) and 5 face anchors.
"""

from __future__ import annotations

import numpy as np

BODY_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# Hand joints in the order of the JSON files (the OpenPose / COCO-WholeBody hand order).
HAND_JOINTS: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "little_mcp", "little_pip", "little_dip", "little_tip",
)  # fmt: skip

FACE_NAMES: tuple[str, ...] = (
    "face_nose", "face_left_eye", "face_right_eye", "face_left_ear", "face_right_ear",
)  # fmt: skip

KEYPOINT_NAMES: tuple[str, ...] = (
    BODY_NAMES
    + tuple(f"left_hand_{j}" for j in HAND_JOINTS)
    + tuple(f"right_hand_{j}" for j in HAND_JOINTS)
    + FACE_NAMES
)
NUM_KEYPOINTS: int = len(KEYPOINT_NAMES)
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Groups as half-open index ranges; the union covers 0..63 exactly once.
GROUPS: dict[str, range] = {
    "body": range(0, 17),
    "left_hand": range(17, 38),
    "right_hand": range(38, 59),
    "face": range(59, 64),
}


def group_of(index: int) -> str:
    """Name of the group that keypoint `index` belongs to."""
    for group, indices in GROUPS.items():
        if index in indices:
            return group
    raise IndexError(f"keypoint index {index} is outside 0..{NUM_KEYPOINTS - 1}")


def _mirror_name(name: str) -> str:
    """The name of the keypoint that `name` becomes in a horizontally mirrored image."""
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a):]
        if name.startswith("face_" + a):
            return "face_" + b + name[len("face_" + a):]
    return name  # nose, face_nose: on the mirror axis


# FLIP_PERMUTATION[i] is the channel that keypoint i comes from after a horizontal flip:
# flipped_keypoints = keypoints[FLIP_PERMUTATION] (after mirroring x). It is an involution.
FLIP_PERMUTATION: tuple[int, ...] = tuple(KEYPOINT_INDEX[_mirror_name(n)] for n in KEYPOINT_NAMES)


def _hand_edges(offset: int) -> list[tuple[int, int]]:
    """The 20 bones of one hand: wrist to each finger base, then along each finger."""
    edges = []
    for finger in range(5):
        base = 1 + 4 * finger
        edges.append((0, base))
        edges += [(base + j, base + j + 1) for j in range(3)]
    return [(offset + a, offset + b) for a, b in edges]


# The 20 bones of a hand in the hand model's own 21-point order (wrist = 0).
HAND_EDGES: tuple[tuple[int, int], ...] = tuple(_hand_edges(0))

_K = KEYPOINT_INDEX
# Skeleton edges for drawing, each tagged with the group whose colour it is drawn in.
SKELETON: tuple[tuple[int, int, str], ...] = tuple(
    [(_K[a], _K[b], "body") for a, b in (
        ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
        ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
        ("left_hip", "right_hip"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
        ("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"),
        ("right_shoulder", "right_elbow"), ("left_elbow", "left_wrist"),
        ("right_elbow", "right_wrist"), ("left_eye", "right_eye"), ("nose", "left_eye"),
        ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
    )]
    + [(a, b, "left_hand") for a, b in _hand_edges(GROUPS["left_hand"].start)]
    + [(a, b, "right_hand") for a, b in _hand_edges(GROUPS["right_hand"].start)]
    + [(_K[a], _K[b], "face") for a, b in (
        ("face_nose", "face_left_eye"), ("face_nose", "face_right_eye"),
        ("face_left_eye", "face_left_ear"), ("face_right_eye", "face_right_ear"),
    )]
)  # fmt: skip

# COCO-WholeBody OKS sigmas. Face anchors reuse the body's nose/eye/ear sigmas.
_BODY_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
_HAND_SIGMAS = (
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024,
    0.022, 0.026, 0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031,
)  # fmt: skip
OKS_SIGMAS: np.ndarray = np.array(
    _BODY_SIGMAS + _HAND_SIGMAS + _HAND_SIGMAS + _BODY_SIGMAS[:5], dtype=np.float64
)
OKS_SIGMAS.flags.writeable = False

# Colours (RGB) for drawing each group.
GROUP_COLORS: dict[str, tuple[int, int, int]] = {
    "body": (66, 135, 245),
    "left_hand": (46, 204, 64),
    "right_hand": (255, 65, 54),
    "face": (255, 220, 0),
}


def embed_hand(points: np.ndarray, hand: str = "left_hand") -> np.ndarray:
    """(..., 21, C) points of one hand placed in a (..., 64, C) whole-body array (zeros elsewhere).

    For drawing and scoring a hand model's output with the 64-point tools.
    """
    out = np.zeros((*points.shape[:-2], NUM_KEYPOINTS, points.shape[-1]), points.dtype)
    out[..., GROUPS[hand].start:GROUPS[hand].stop, :] = points
    return out

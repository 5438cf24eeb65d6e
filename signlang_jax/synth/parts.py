"""Body parts of the procedural signer and the owner-map rule that decides keypoint visibility.

Every drawing call also writes its part id into a uint8 owner map (which part drew each pixel
last). A keypoint is visible when it lies in the frame and the part on top at its pixel is one it
belongs to (`KEYPOINT_OWNERS`), so the labels match the pixels by construction.
"""

from __future__ import annotations

import numpy as np

from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, KEYPOINT_NAMES, group_of

_K = KEYPOINT_INDEX
# The person's left appears on the image right (+x) for a signer facing the camera.
SIDES: tuple[tuple[str, float], ...] = (("left", 1.0), ("right", -1.0))
HAND_GROUPS: tuple[str, ...] = tuple(g for g in GROUPS if g.endswith("_hand"))


# Ids written into the owner map: which part drew each pixel last. 0 is the background.
PART_IDS: dict[str, int] = {
    name: i
    for i, name in enumerate(
        ("background", "torso", "neck", "head")
        + tuple(f"{side}_{p}" for side, _ in SIDES for p in ("upper_arm", "forearm"))
        + tuple(f"{side}_{p}" for side, _ in SIDES for p in ("thigh", "shin"))
        + HAND_GROUPS
    )
}

# Face anchors are copies of body points: face_nose is nose, face_left_eye is left_eye, ...
FACE_TO_BODY: dict[int, int] = {
    i: _K[KEYPOINT_NAMES[i].removeprefix("face_")] for i in GROUPS["face"]
}
_HEAD_POINTS: frozenset[int] = frozenset(FACE_TO_BODY.values()) | frozenset(FACE_TO_BODY)

# Which parts a body joint belongs to (a joint is not occluded by its own limbs).
_JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "shoulder": ("torso", "neck", "{side}_upper_arm"),
    "elbow": ("{side}_upper_arm", "{side}_forearm"),
    "wrist": ("{side}_forearm", "{side}_hand"),
    "hip": ("torso", "{side}_thigh"),
    "knee": ("{side}_thigh", "{side}_shin"),
    "ankle": ("{side}_shin",),
}


def _owner_sets() -> tuple[frozenset[int], ...]:
    """For every keypoint, the part ids that may be drawn over it without hiding it."""
    owners = []
    for i, name in enumerate(KEYPOINT_NAMES):
        group = group_of(i)
        if i in _HEAD_POINTS:
            parts: tuple[str, ...] = ("head",)
        elif group in HAND_GROUPS:
            # A hand never occludes itself; its wrist also lies on the end of the forearm.
            side = group.removesuffix("_hand")
            parts = (group, f"{side}_forearm") if name.endswith("_wrist") else (group,)
        else:
            side, _, joint = name.partition("_")
            parts = tuple(p.format(side=side) for p in _JOINT_PARTS[joint])
        owners.append(frozenset(PART_IDS[p] for p in parts))
    return tuple(owners)


KEYPOINT_OWNERS: tuple[frozenset[int], ...] = _owner_sets()


def _owner_table() -> np.ndarray:
    """Bool (64, 256) lookup [keypoint, part id]: True where that part does not hide the point."""
    table = np.zeros((len(KEYPOINT_NAMES), 256), bool)
    table[:, PART_IDS["background"]] = True  # nothing drawn over it
    for i, own in enumerate(KEYPOINT_OWNERS):
        table[i, list(own)] = True
    return table


_OWNER_TABLE = _owner_table()


def keypoint_visibility(xy: np.ndarray, owner_map: np.ndarray) -> np.ndarray:
    """Bool (64,): keypoint inside the frame and the part drawn last at its pixel is its own."""
    height, width = owner_map.shape
    xy = np.asarray(xy, np.float64)
    finite = np.isfinite(xy).all(1)
    inside = finite & (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1)
    inside &= (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    cols = np.clip(np.rint(np.where(finite, xy[:, 0], 0)), 0, width - 1).astype(np.intp)
    rows = np.clip(np.rint(np.where(finite, xy[:, 1], 0)), 0, height - 1).astype(np.intp)
    owner = owner_map[rows, cols]
    return inside & _OWNER_TABLE[np.arange(len(xy)), owner]

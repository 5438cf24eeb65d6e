"""Tests for the keypoint mapping tables (signlang_jax/keypoint_maps.py)."""

from __future__ import annotations

import numpy as np
import pytest

from signlang_jax.keypoint_maps import COCO_WHOLEBODY, HALPE, MAPS, MEDIAPIPE_HOLISTIC
from signlang_jax.keypoints import KEYPOINT_INDEX, KEYPOINT_NAMES


def _side(name: str) -> str | None:
    for side in ("left", "right"):
        if name.startswith(side) or name.startswith(f"face_{side}"):
            return side
    return None


@pytest.mark.parametrize("table", list(MAPS.values()), ids=list(MAPS))
def test_every_point_maps_to_a_source_point_of_the_same_name_and_side(table):
    assert len(set(table.source_names)) == len(table.source_names)
    idx = table.indices
    assert idx.shape == (64,) and (idx >= 0).all() and (idx < len(table.source_names)).all()
    for ours, i in zip(KEYPOINT_NAMES, idx, strict=True):
        source = table.source_names[i]
        assert _side(source) == _side(ours), (ours, source)  # left stays left
        assert source == ours.removeprefix("face_"), (ours, source)


def test_indices_by_hand():
    k = KEYPOINT_INDEX
    wb, halpe, mp = COCO_WHOLEBODY.indices, HALPE.indices, MEDIAPIPE_HOLISTIC.indices
    assert len(COCO_WHOLEBODY.source_names) == 133 and len(HALPE.source_names) == 136
    assert len(MEDIAPIPE_HOLISTIC.source_names) == 75
    # COCO-WholeBody: body 0-16 as is, left hand 91-111, right hand 112-132.
    assert wb[:17].tolist() == list(range(17))
    assert wb[k["left_hand_wrist"]] == 91 and wb[k["right_hand_little_tip"]] == 132
    # Halpe: head/neck/hip and 6 feet and 68 face first, so hands start at 94 and 115.
    assert halpe[k["left_hand_wrist"]] == 94 and halpe[k["right_hand_wrist"]] == 115
    # MediaPipe pose 33: eyes 2 and 5, ears 7 and 8, shoulders 11-12, wrists 15-16, hips 23-24.
    assert mp[:17].tolist() == [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    assert mp[k["left_hand_wrist"]] == 33 and mp[k["right_hand_little_tip"]] == 74
    for table in (wb, halpe, mp):  # face anchors repeat the body's nose, eyes and ears
        assert table[59:64].tolist() == table[:5].tolist()


def test_apply_moves_points_and_refuses_a_wrong_count():
    source = np.arange(133 * 3, dtype=np.float32).reshape(133, 3)
    out = COCO_WHOLEBODY.apply(source[None])[0]
    np.testing.assert_array_equal(out, source[COCO_WHOLEBODY.indices])
    with pytest.raises(ValueError, match=r"Halpe-FullBody \(136\): expected 136 points, got 133"):
        HALPE.apply(source)


def test_points_a_layout_lacks_are_zero():
    from signlang_jax.keypoint_maps import MEDIAPIPE_POSE_NAMES, KeypointMap

    pose_only = KeypointMap("pose only", MEDIAPIPE_POSE_NAMES)
    out = pose_only.apply(np.ones((33, 3), np.float32))
    assert (out[17:59] == 0).all() and (out[:17] == 1).all() and (out[59:] == 1).all()

"""Tests for the hand stage: crop geometry, the crop rule, hand crops in the data pipeline, the
two-stage merge, the hand-task config checks, and a tiny hand model trained and evaluated end to
end beside the session's tiny body model.

Geometry is checked against hand-computed numbers (a body scale of 40 px from shoulders 40 px
apart makes every rule's side a round number); crops against bright dots drawn at the labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from signlang_jax.crop import (
    HandCropRule,
    Region,
    apply_affine,
    body_scale,
    crop_matrix,
    hand_crop_matrices,
    hand_region,
    invert_affine,
    square_around,
)
from signlang_jax.data.augment import AugmentParams, warp_image
from signlang_jax.data.hand_crops import (
    HandJitter,
    HandSource,
    crop_hand,
    hand_crop_rule,
    training_weights,
)
from signlang_jax.errors import ConfigError
from signlang_jax.inference.hand_stage import HandStage, merge_hand
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX
from signlang_jax.training.config_check import validate_config
from signlang_jax.training.validation import HAND_METRIC_NAMES, metric_names
from tests import tiny_hand_config

LEFT, RIGHT = np.asarray(GROUPS["left_hand"]), np.asarray(GROUPS["right_hand"])
I = KEYPOINT_INDEX  # noqa: E741 (reads like the index notation it stands for)
# Axis-aligned crops (align=False): hand-computed geometry; alignment has its own tests.
RULE = HandCropRule(align=False, min_side=0.45)  # margin 0.25, fallback 0.8, threshold 0.3, 3 pts


def body(scale: float = 40.0) -> np.ndarray:
    """(64, 3) points, nothing trusted but the two shoulders `scale` px apart (body scale)."""
    keypoints = np.zeros((64, 3), np.float32)
    keypoints[I["left_shoulder"]] = (70 + scale / 2, 30, 0.9)
    keypoints[I["right_shoulder"]] = (70 - scale / 2, 30, 0.9)
    return keypoints


def grid(x0: float, y0: float, step: float) -> np.ndarray:
    """21 (x, y) points: 3 rows of 7, `step` apart, from (x0, y0): extent 6 step x 2 step."""
    j = np.arange(21)
    return np.stack([x0 + step * (j % 7), y0 + step * (j // 7)], 1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# (1) Crop geometry.


def test_crop_matrix_exact_numbers():
    region = Region(10.0, 20.0, 8.0)
    m = crop_matrix(region, 32)  # scale 32 / 8 = 4, crop centre 15.5
    np.testing.assert_array_equal(m, [[4, 0, 15.5 - 40], [0, 4, 15.5 - 80]])
    points = [(10, 20), (12, 20), (6, 16), (14, 24)]
    # Centre -> crop centre; the region's edges -> the crop's pixel edges -0.5 and 31.5.
    np.testing.assert_array_equal(apply_affine(points, m),
                                  [(15.5, 15.5), (23.5, 15.5), (-0.5, -0.5), (31.5, 31.5)])

    # 90 degrees counter-clockwise (as shown on screen): right of the centre -> above it.
    rotated = crop_matrix(Region(10.0, 20.0, 8.0, 90.0), 32)
    np.testing.assert_allclose(apply_affine([(12, 20), (10, 22)], rotated),
                               [(15.5, 7.5), (23.5, 15.5)], atol=1e-12)
    # cv2's rotation about the centre, then the centre moved to the crop's centre.
    expected = cv2.getRotationMatrix2D((10.0, 20.0), 90.0, 4.0)
    expected[:, 2] += (15.5 - 10.0, 15.5 - 20.0)
    np.testing.assert_allclose(rotated, expected, atol=1e-12)

    mirrored = crop_matrix(region, 32, mirror=True)  # x -> 31 - x after the crop
    np.testing.assert_array_equal(apply_affine(points, mirrored),
                                  [(15.5, 15.5), (7.5, 15.5), (31.5, -0.5), (-0.5, 31.5)])


def test_invert_affine_round_trip():
    rng = np.random.default_rng(0)
    points = rng.uniform(-50, 150, (10, 2))
    for region, mirror in [(Region(33.3, 71.9, 17.2, 37.0), False),
                           (Region(-5.0, 12.0, 90.0, -150.0), True)]:
        m = crop_matrix(region, 24, mirror)
        back = apply_affine(apply_affine(points, m), invert_affine(m))
        np.testing.assert_allclose(back, points, atol=1e-10)
        np.testing.assert_allclose(apply_affine(apply_affine(points, invert_affine(m)), m),
                                   points, atol=1e-10)


def test_square_around_exact():
    # Box x 0..4, y 0..2: larger extent 4, side 4 x (1 + 2 x 0.25) = 6, centre (2, 1).
    assert square_around([(0, 0), (4, 2), (1, 1)], 0.25) == Region(2.0, 1.0, 6.0)
    assert square_around([(0, 0), (4, 2)], 0.25, min_side=10) == Region(2.0, 1.0, 10.0)
    assert square_around([(0, 0), (2, 8)], 0.0) == Region(1.0, 4.0, 8.0)
    assert square_around([(5, 7)], 0.5) == Region(5.0, 7.0, 1.0)  # at least 1 pixel
    with pytest.raises(ValueError, match="at least one point"):
        square_around(np.zeros((0, 2)), 0.25)


# ----------------------------------------------------------------------------------------------
# (2) The crop rule.


def test_body_scale_and_its_fallback():
    assert body_scale(body(40), 0.3) == 40.0
    keypoints = body(40)
    keypoints[I["right_shoulder"], 2] = 0.2  # untrusted: 0.35 x the box of trusted body points
    keypoints[I["nose"]] = (50, 20, 0.5)
    keypoints[I["left_hip"]] = (90, 140, 0.3)  # at the threshold: trusted
    keypoints[I["left_wrist"]] = (0, 0, 0.29)  # below it: ignored
    keypoints[LEFT[0]] = (0, 0, 1.0)  # hand points are not body points
    # Box x 50..90, y 20..140: 0.35 x 120 = 42.
    assert body_scale(keypoints, 0.3) == pytest.approx(42.0, abs=1e-12)
    coincident = body(40)
    coincident[I["right_shoulder"], :2] = coincident[I["left_shoulder"], :2] + (0.5, 0.5)
    coincident[I["nose"]] = (90, 30 + 100 / 0.35, 0.9)  # box 100/0.35 tall: scale 100
    assert body_scale(coincident, 0.3) == pytest.approx(100.0)
    lonely = np.zeros((64, 3), np.float32)
    lonely[I["nose"]] = (5, 5, 1.0)
    assert math.isnan(body_scale(lonely, 0.3))


def test_hand_region_rule_1_square_around_trusted_points_and_wrist():
    keypoints = body(40)
    keypoints[LEFT] = (500, 500, 0.1)  # untrusted points, far away: ignored
    keypoints[LEFT[1:4]] = [(20, 100, 0.9), (30, 100, 0.9), (24, 108, 0.3)]
    keypoints[I["left_wrist"]] = (25, 92, 0.5)
    # x 20..30, y 92..108: side 16 x 1.5 = 24 > 0.45 x 40 = 18, centre (25, 100).
    assert hand_region(keypoints, "left_hand", RULE) == Region(25.0, 100.0, 24.0)
    # A compact hand: extent 4 x 1.5 = 6, so the minimum side 18 wins.
    compact = body(40)
    compact[LEFT[:3]] = [(60, 60, 1), (64, 60, 1), (62, 63, 1)]
    assert hand_region(compact, "left_hand", RULE) == Region(62.0, 61.5, 18.0)
    # The right hand's own wrist point counts as a wrist too; the scale can be given.
    compact[RIGHT[:3]] = [(10, 10, 1), (12, 10, 1), (10, 12, 1)]
    compact[RIGHT[0]] = (10, 10, 1)
    assert hand_region(compact, "right_hand", RULE, scale=100.0) == Region(11.0, 11.0, 45.0)
    # No body to size from: the hand points' own extent is the scale (0.45 x 4 < 6).
    alone = compact.copy()
    alone[[I["left_shoulder"], I["right_shoulder"]], 2] = 0
    assert hand_region(alone, "left_hand", RULE) == Region(62.0, 61.5, 6.0)


def test_hand_region_rule_2_wrist_and_elbow():
    keypoints = body(40)
    keypoints[RIGHT[:2]] = [(80, 95, 0.9), (85, 95, 0.9)]  # 2 < min_points 3
    keypoints[I["right_wrist"]] = (80, 90, 0.8)
    keypoints[I["right_elbow"]] = (80, 60, 0.8)
    # Forearm (0, 30) -> unit (0, 1); centre = wrist + 0.2 x 40 = 8 px further; side 0.8 x 40.
    assert hand_region(keypoints, "right_hand", RULE) == Region(80.0, 98.0, 32.0)
    keypoints[I["right_elbow"]] = (92, 90, 0.8)  # forearm pointing left
    assert hand_region(keypoints, "right_hand", RULE) == Region(72.0, 90.0, 32.0)
    keypoints[I["right_elbow"], 2] = 0.1  # untrusted elbow: centred on the wrist
    assert hand_region(keypoints, "right_hand", RULE) == Region(80.0, 90.0, 32.0)
    keypoints[I["right_wrist"], 2] = 0.0  # the hand's own wrist point stands in
    keypoints[RIGHT[0]] = (81, 91, 0.5)
    assert hand_region(keypoints, "right_hand", RULE) == Region(81.0, 91.0, 32.0)
    rule = HandCropRule(fallback_side=1.0, reach=0.5, min_points=4, align=False)
    keypoints[RIGHT[1]] = (1, 1, 0.9)  # 3 trusted points but min_points 4
    keypoints[I["right_elbow"]] = (81, 131, 0.9)  # forearm (0, -40): centre 20 px up
    assert hand_region(keypoints, "right_hand", rule) == Region(81.0, 71.0, 40.0)


def test_hand_region_rule_3_no_crop():
    keypoints = body(40)
    keypoints[LEFT[1:3]] = [(20, 100, 0.9), (30, 100, 0.9)]  # not the hand's wrist LEFT[0]
    keypoints[I["left_elbow"]] = (30, 60, 0.9)  # an elbow alone places nothing
    assert hand_region(keypoints, "left_hand", RULE) is None
    # Wrist and elbow are the only trusted body points: the body scale falls back to 0.35 x
    # their box (32 px tall) = 11.2; side 0.8 x 11.2, centre 0.2 x 11.2 along the forearm.
    keypoints[[I["left_shoulder"], I["right_shoulder"]], 2] = 0
    keypoints[I["left_wrist"]] = (25, 92, 0.9)
    length = math.hypot(-5, 32)  # forearm (25, 92) - (30, 60)
    region = hand_region(keypoints, "left_hand", RULE)
    assert (region.cx, region.cy, region.side) == pytest.approx(
        (25 - 5 / length * 2.24, 92 + 32 / length * 2.24, 8.96), abs=1e-9)
    # No body scale at all (the elbow is the one trusted body point): the 2 hand points' extent
    # (the hand's own wrist (25, 92) and (20, 100): 8) is the scale.
    no_body = np.zeros((64, 3), np.float32)
    no_body[LEFT[:2]] = [(25, 92, 0.9), (20, 100, 0.9)]
    no_body[I["left_elbow"]] = (30, 60, 0.9)
    region = hand_region(no_body, "left_hand", RULE)
    assert (region.cx, region.cy, region.side) == pytest.approx(
        (25 - 5 / length * 1.6, 92 + 32 / length * 1.6, 6.4), abs=1e-9)
    single = np.zeros((64, 3), np.float32)
    single[I["left_wrist"]] = (25, 92, 0.9)
    single[LEFT[1]] = (20, 100, 0.9)  # one hand point: no extent, no scale -> no crop
    assert hand_region(single, "left_hand", RULE) is None


def test_hand_crop_matrices_mirror_the_right_hand():
    keypoints = body(40)
    keypoints[LEFT[:3]] = [(60, 60, 1), (64, 60, 1), (62, 63, 1)]
    keypoints[I["right_wrist"]] = (30, 60, 1)
    (left, ml), (right, mr) = hand_crop_matrices(keypoints, RULE, 16)
    assert (left, right) == ("left_hand", "right_hand")
    np.testing.assert_array_equal(ml, crop_matrix(Region(62.0, 61.5, 18.0), 16))
    np.testing.assert_array_equal(mr, crop_matrix(Region(30.0, 60.0, 32.0), 16, mirror=True))
    keypoints[I["right_wrist"], 2] = 0
    assert hand_crop_matrices(keypoints, RULE, 16)[1] == ("right_hand", None)


# ----------------------------------------------------------------------------------------------
# (3) Hand crops: pixels and labels agree; the right hand is mirrored.


def dotted_frame() -> tuple[np.ndarray, np.ndarray]:
    """A black 160 x 120 frame with a white dot at each hand point: (image, (64, 3) labels).

    Left hand: a 7 x 3 grid 6 px apart from (20, 60) -> square side 36 x 1.5 = 54 at (38, 66);
    right hand: the same from (100, 60) -> (118, 66).
    """
    keypoints = body(40)
    keypoints[LEFT] = np.concatenate([grid(20, 60, 6), np.ones((21, 1))], 1)
    keypoints[RIGHT] = np.concatenate([grid(100, 60, 6), np.ones((21, 1))], 1)
    image = np.zeros((120, 160, 3), np.uint8)
    for x, y in keypoints[np.concatenate([LEFT, RIGHT]), :2].astype(int):
        image[y, x] = 255
    return image, keypoints


def assert_dots_at(crop: np.ndarray, points: np.ndarray, radius: int = 2) -> None:
    """The brightest pixel within `radius` of each (x, y, weight > 0) point is within 1 px."""
    gray = crop.max(-1).astype(np.float32)
    size = gray.shape[0]
    checked = 0
    for x, y, weight in points:
        if weight <= 0:
            continue
        cx, cy = int(round(x)), int(round(y))
        x0, y0 = max(cx - radius, 0), max(cy - radius, 0)
        window = gray[y0:min(cy + radius + 1, size), x0:min(cx + radius + 1, size)]
        py, px = np.unravel_index(np.argmax(window), window.shape)
        assert window[py, px] > 60, (x, y)
        assert math.hypot(x0 + px - x, y0 + py - y) <= 1.0, (x, y, x0 + px, y0 + py)
        checked += 1
    assert checked >= 10


def test_crop_hand_pixels_and_labels_agree_left_and_mirrored_right():
    image, keypoints = dotted_frame()
    left = crop_hand(image, keypoints, "left_hand", 64, RULE)
    matrix = crop_matrix(Region(38.0, 66.0, 54.0), 64)
    expected = apply_affine(keypoints[LEFT, :2], matrix)
    assert left["image"].shape == (64, 64, 3) and left["image"].dtype == np.uint8
    assert left["keypoints"].dtype == np.float32 and left["keypoints"].shape == (21, 3)
    np.testing.assert_allclose(left["keypoints"][:, :2], expected, atol=1e-4)
    np.testing.assert_array_equal(left["keypoints"][:, 2], np.ones(21))
    np.testing.assert_array_equal(left["affine"], matrix.astype(np.float32))
    lo, hi = expected.min(0), expected.max(0)
    np.testing.assert_allclose(left["bbox"], [*lo, *(hi - lo)], atol=1e-4)
    assert_dots_at(left["image"], left["keypoints"])

    right = crop_hand(image, keypoints, "right_hand", 64, RULE)
    unmirrored = crop_matrix(Region(118.0, 66.0, 54.0), 64)
    plain = warp_image(image, unmirrored, 64)
    np.testing.assert_array_equal(right["image"], plain[:, ::-1])
    xy = apply_affine(keypoints[RIGHT, :2], unmirrored)
    np.testing.assert_allclose(right["keypoints"][:, 0], 63 - xy[:, 0], atol=1e-4)
    np.testing.assert_allclose(right["keypoints"][:, 1], xy[:, 1], atol=1e-4)
    np.testing.assert_array_equal(right["affine"],
                                  crop_matrix(Region(118.0, 66.0, 54.0), 64, True)
                                  .astype(np.float32))
    assert_dots_at(right["image"], right["keypoints"])
    # The right hand's thumb (point 1) lies left of its wrist in the frame, right of it mirrored.
    assert keypoints[RIGHT[1], 0] > keypoints[RIGHT[0], 0]
    assert right["keypoints"][1, 0] < right["keypoints"][0, 0]


def test_crop_hand_jittered_labels_follow_the_pixels():
    image, keypoints = dotted_frame()
    geometry_only = AugmentParams(color_prob=0.0, blur_prob=0.0)  # a blur would spread the dots
    for seed in range(3):
        for hand in ("left_hand", "right_hand"):
            out = crop_hand(image, keypoints, hand, 64, RULE, np.random.default_rng(seed),
                            params=geometry_only)
            assert out["keypoints"][:, 2].sum() >= 10  # most points stay inside
            assert_dots_at(out["image"], out["keypoints"])
            # The labels are the frame points through the returned affine.
            points = keypoints[GROUPS[hand], :2]
            np.testing.assert_allclose(out["keypoints"][:, :2],
                                       apply_affine(points, out["affine"].astype(np.float64)),
                                       atol=1e-3)


def test_crop_hand_zero_jitter_equals_plain_crop_with_training_weights():
    image, keypoints = dotted_frame()
    keypoints[LEFT[20], 2] = 0  # hidden, inside the frame and the crop: occluded_weight
    keypoints[LEFT[5], 2] = 0
    keypoints[LEFT[5], :2] = (0, 70)  # hidden on the frame's border: a clamped label, 0
    plain = crop_hand(image, keypoints, "left_hand", 64, RULE)
    still = HandJitter(shift=0.0, scale_min=1.0, scale_max=1.0, rotation_deg=0.0)
    no_colour = AugmentParams(color_prob=0.0, blur_prob=0.0)
    trained = crop_hand(image, keypoints, "left_hand", 64, RULE, np.random.default_rng(0),
                        still, no_colour, occluded_weight=0.5)
    np.testing.assert_array_equal(trained["image"], plain["image"])
    np.testing.assert_array_equal(trained["keypoints"][:, :2], plain["keypoints"][:, :2])
    expected = np.ones(21)
    expected[20], expected[5] = 0.5, 0.0
    np.testing.assert_array_equal(trained["keypoints"][:, 2], expected)
    assert plain["keypoints"][20, 2] == 0 and plain["keypoints"][5, 2] == 0  # validation: visible


def test_crop_hand_without_a_region_is_the_whole_frame_with_zero_weights():
    image, keypoints = dotted_frame()
    keypoints[RIGHT, 2] = 0
    out = crop_hand(image, keypoints, "right_hand", 32, RULE)
    np.testing.assert_array_equal(out["affine"], crop_matrix(Region(79.5, 59.5, 160.0), 32, True)
                                  .astype(np.float32))
    np.testing.assert_array_equal(out["keypoints"][:, 2], np.zeros(21))
    np.testing.assert_array_equal(out["bbox"], np.zeros(4))


# ----------------------------------------------------------------------------------------------
# (4) Training weights.


def test_training_weights_exact():
    w, h = 10, 8
    keypoints = np.array([
        [5, 5, 1],  # visible: 1
        [5, 5, 0],  # hidden inside: occluded_weight
        [0, 5, 0], [5, 0, 0], [9, 5, 0], [5, 7, 0],  # hidden on a border: 0
        [8.5, 6.5, 0],  # hidden just inside the last pixel centre
        [-3, 5, 1],  # visible outside: still 1 (the crop's own inside test zeroes it)
        [12, 20, 0],  # hidden outside: 0
    ], np.float32)
    weights = training_weights(keypoints, w, h, 0.5)
    assert weights.dtype == np.float32
    np.testing.assert_array_equal(weights, [1, 0.5, 0, 0, 0, 0, 0.5, 1, 0])
    np.testing.assert_array_equal(training_weights(keypoints, w, h, 0.0),
                                  [1, 0, 0, 0, 0, 0, 0, 1, 0])



def test_load_sample_occluded_weight_in_training_only(synth_root):
    from signlang_jax.data.pipeline import load_sample
    from signlang_jax.data.sources import load_records

    config = hand_config(synth_root)
    records = load_records(config.data, "train")
    record = next(r for r in (records[i] for i in range(len(records)))
                  if (r["keypoints"][:, 2] == 0).any())
    still = AugmentParams(flip_prob=0.0, scale_min=1.0, scale_max=1.0, rotation_prob=0.0,
                          shift_frac=0.0, color_prob=0.0, blur_prob=0.0)
    labels = record["keypoints"].copy()
    trained = load_sample(record, np.random.default_rng(0), 32, still, occluded_weight=0.5)
    val = load_sample(record, None, 32, still, occluded_weight=0.5)
    np.testing.assert_array_equal(trained["keypoints"][:, :2], val["keypoints"][:, :2])
    np.testing.assert_array_equal(trained["keypoints"][:, 2],
                                  training_weights(record["keypoints"], 64, 64, 0.5))
    np.testing.assert_array_equal(val["keypoints"][:, 2], record["keypoints"][:, 2])
    assert (trained["keypoints"][:, 2] == 0.5).any()
    np.testing.assert_array_equal(record["keypoints"], labels)  # the labels are not modified

# ----------------------------------------------------------------------------------------------
# (5) Hand records in the data pipeline.


class FakeSamples:
    def __init__(self, n: int) -> None:
        self.records = [{"index": i, "path": f"p{i}.jpg"} for i in range(n)]
        self.digest = "0123abcd"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.records[index]

    def __repr__(self) -> str:
        return "FakeSamples(3)"


def test_hand_source_indexing_length_and_digest():
    samples = FakeSamples(3)
    source = HandSource(samples)
    assert len(source) == 6
    assert source.digest == "0123abcd-hands"
    assert repr(source) == "HandSource(FakeSamples(3))"
    assert source[0] == {"index": 0, "path": "p0.jpg", "hand": "left_hand"}
    assert source[1] == {"index": 1, "path": "p0.jpg", "hand": "right_hand"}
    assert source[5] == {"index": 5, "path": "p2.jpg", "hand": "right_hand"}
    assert samples.records[2] == {"index": 2, "path": "p2.jpg"}  # not modified


def hand_config(synth_root: Path):
    config = tiny_hand_config.get_config()
    config.data.root = str(synth_root)
    return config


def first_batches(config, split: str, count: int, seed: int | None = None) -> list[dict]:
    from signlang_jax.data.pipeline import make_dataset

    dataset = make_dataset(config, split, seed=seed, shard_index=0, shard_count=1,
                           num_workers=0)
    batches = []
    for batch in dataset:
        batches.append(batch)
        if len(batches) == count:
            break
    return batches


def test_make_dataset_hand_batches_shapes_labels_and_determinism(synth_root):
    from signlang_jax.data.sources import load_records, record_image, records_for

    config = hand_config(synth_root)
    train = records_for(config, "train")
    samples = load_records(config.data, "train")
    assert isinstance(train, HandSource) and len(train) == 2 * len(samples) == 34  # 17 samples
    batches = first_batches(config, "train", 2)
    batch = batches[0]
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["keypoints"].shape == (4, 21, 3) and batch["keypoints"].dtype == np.float32
    assert batch["affine"].shape == (4, 2, 3) and batch["bbox"].shape == (4, 4)
    for b in batches:
        for i, index in enumerate(b["index"]):
            record = train[int(index)]
            assert record["hand"] == ("left_hand", "right_hand")[index % 2]
            points = record["keypoints"][GROUPS[record["hand"]], :2]
            xy = apply_affine(points, b["affine"][i].astype(np.float64))
            weight = b["keypoints"][i, :, 2] > 0
            np.testing.assert_allclose(b["keypoints"][i, weight, :2], xy[weight], atol=1e-3)
    again = first_batches(config, "train", 2)
    other = first_batches(config, "train", 2, seed=1)
    for a, b in zip(batches, again, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(batches[0]["image"], other[0]["image"])

    # Validation crops: no jitter, exactly `crop_hand` of the record with the config's rule.
    val = records_for(config, "val")
    (batch,) = first_batches(config, "val", 1)
    assert batch["mask"].all()
    for i, index in enumerate(batch["index"]):
        record = val[int(index)]
        expected = crop_hand(record_image(record), record["keypoints"], record["hand"], 32,
                             hand_crop_rule(config))
        np.testing.assert_array_equal(batch["image"][i], expected["image"])
        np.testing.assert_array_equal(batch["keypoints"][i], expected["keypoints"])


# ----------------------------------------------------------------------------------------------
# (6) Merging and the two-stage HandStage.


def test_merge_hand_exact():
    keypoints = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    points = np.zeros((21, 3), np.float32)
    points[:, 0], points[:, 1] = -np.arange(21), 1000 + np.arange(21)
    points[:, 2] = np.tile([0.1, 0.2, 0.5], 7)  # 0.2 = min_score: replaced (at or above)
    merged = merge_hand(keypoints, "right_hand", points, 0.2)
    expected = keypoints.copy()
    take = np.arange(21) % 3 != 0
    expected[RIGHT[take]] = points[take]
    np.testing.assert_array_equal(merged, expected)
    assert keypoints[RIGHT[1], 0] == RIGHT[1] * 3  # the input is not modified
    np.testing.assert_array_equal(merge_hand(keypoints, "left_hand", points, 0.0)[LEFT], points)
    np.testing.assert_array_equal(merge_hand(keypoints, "left_hand", points, 0.6), keypoints)


def test_hand_stage_refine_maps_fake_model_points_back_exactly():
    size, c = 16, 7.5
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (100, 120, 3), np.uint8) for _ in range(3)]
    keypoints = np.stack([body(40)] * 3)
    # Frame 0: left hand rule 1 (side 18 x 1.5 = 27 at (69, 73)); right hand wrist + elbow.
    keypoints[0, LEFT] = np.concatenate([grid(60, 70, 3), np.full((21, 1), 0.9)], 1)
    keypoints[0, I["right_wrist"]] = (30, 60, 0.8)
    keypoints[0, I["right_elbow"]] = (30, 45, 0.8)
    # Frame 1: no left hand; right wrist without elbow.
    keypoints[1, I["right_wrist"]] = (30, 60, 0.8)
    # Frame 2: left wrist + elbow pointing left; right rule 1 with the wrist.
    keypoints[2, I["left_wrist"]] = (70, 60, 0.8)
    keypoints[2, I["left_elbow"]] = (82, 60, 0.8)
    keypoints[2, RIGHT] = np.concatenate([grid(20, 70, 3), np.full((21, 1), 0.9)], 1)
    keypoints[2, I["right_wrist"]] = (29, 64, 0.8)
    regions = [(0, "left_hand", Region(69, 73, 27)), (0, "right_hand", Region(30, 68, 32)),
               (1, "right_hand", Region(30, 60, 32)), (2, "left_hand", Region(62, 60, 32)),
               (2, "right_hand", Region(29, 70, 27))]

    j = np.arange(21)
    crop_points = np.stack([1.0 + 3 * (j % 5), 2.0 + 3 * (j // 5),
                            np.where(j % 2 == 0, 0.9, 0.05)], 1).astype(np.float32)
    calls = []

    def fake_model(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.copy())
        return np.broadcast_to(crop_points, (len(batch), 21, 3))

    stage = HandStage(fake_model, size, RULE, min_score=0.2, batch_size=8)
    refined = stage.refine(images, keypoints)
    assert [call.shape for call in calls] == [(8, size, size, 3)]  # 5 crops, padded to 2 ** 3
    assert not calls[0][5:].any()  # the padding is zeros
    crops = np.concatenate(calls)[:5]
    expected = keypoints.copy()
    for k, (n, hand, region) in enumerate(regions):
        mirror = hand == "right_hand"
        np.testing.assert_array_equal(
            crops[k], warp_image(images[n], crop_matrix(region, size, mirror), size))
        s = size / region.side
        dx = (crop_points[:, 0] - c) / s
        frame = np.stack([region.cx - dx if mirror else region.cx + dx,
                          region.cy + (crop_points[:, 1] - c) / s], 1)
        take = j % 2 == 0
        expected[n, np.asarray(GROUPS[hand])[take], :2] = frame[take]
        expected[n, np.asarray(GROUPS[hand])[take], 2] = 0.9
    np.testing.assert_allclose(refined, expected, atol=1e-4)
    np.testing.assert_array_equal(refined[1, LEFT], keypoints[1, LEFT])  # no crop: untouched
    # One number by hand: frame 0's right hand (mirrored, scale 0.5), point 0 at crop (1, 2):
    # x = 30 - (1 - 7.5) / 0.5 = 43, y = 68 + (2 - 7.5) / 0.5 = 57.
    np.testing.assert_allclose(refined[0, RIGHT[0]], (43, 57, 0.9), atol=1e-5)

    pairs = stage.hand_points(images, keypoints)
    assert [(crop.image_index, crop.hand) for crop, _ in pairs] == [r[:2] for r in regions]
    assert len(calls) == 2
    stage.batch_size = 2  # at most 2 crops a call: 2 + 2 + 1, the last not padded
    stage.hand_points(images, keypoints)
    assert [call.shape[0] for call in calls[2:]] == [2, 2, 1]
    calls[:] = calls[:2]
    # No hand to crop: no call, the points unchanged.
    nothing = keypoints[1:2].copy()
    nothing[0, I["right_wrist"], 2] = 0.1
    np.testing.assert_array_equal(stage.refine(images[1:2], nothing), nothing)
    assert len(calls) == 2


# ----------------------------------------------------------------------------------------------
# (7) Config checks of the hand task.


def config_problems(config) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, 1, 1)
    return str(info.value)


def test_hand_config_checks():
    validate_config(tiny_hand_config.get_config(), 1, 1)
    from configs import demo_hand, hand

    validate_config(hand.get_config(), 1, 1)
    validate_config(demo_hand.get_config(), 1, 1)

    config = tiny_hand_config.get_config()
    config.model.num_keypoints = 64
    assert ("--config.model.num_keypoints=64: must be 21 for task='hand'"
            in config_problems(config))
    config = tiny_hand_config.get_config()
    config.task = "wholebody"
    assert ("--config.model.num_keypoints=21: must be 64 for task='wholebody'"
            in config_problems(config))
    config = tiny_hand_config.get_config()
    config.train.best_metric = "val/pck@0.1"
    message = config_problems(config)
    assert ("--config.train.best_metric='val/pck@0.1': must be one of val/loss, "
            "val/hand_pck@0.1, val/hand_pck@0.2 for task='hand'") in message
    config = tiny_hand_config.get_config()
    config.task = "hands"
    assert "--config.task='hands'" in config_problems(config)
    config = tiny_hand_config.get_config()
    config.hand_crop.scale_min, config.hand_crop.scale_max = 1.5, 1.2
    assert ("--config.hand_crop.scale_min=1.5: must be <= hand_crop.scale_max=1.2"
            in config_problems(config))
    assert metric_names("hand") == HAND_METRIC_NAMES


# ----------------------------------------------------------------------------------------------
# (8) End to end: a tiny hand model trained, then evaluated beside the tiny body model.

_HAND_RUNS: dict[str, Path] = {}


def train_hand_run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand workdir trained for 4 steps with tests/tiny_hand_config.py (validated at 4).

    Trained once per session (tests/test_hand_onnx.py exports the same run).
    """
    if str(synth_root) not in _HAND_RUNS:
        from signlang_jax.training.train import train_and_evaluate

        workdir = tmp_path_factory.mktemp("hand_run")
        train_and_evaluate(hand_config(synth_root), workdir)
        _HAND_RUNS[str(synth_root)] = workdir
    return _HAND_RUNS[str(synth_root)]


def randomised_copy(run: Path, config, destination: Path, seed: int) -> Path:
    """A copy of `run` with one more checkpoint (latest + 1) of random, well-conditioned weights.

    A few training steps leave the heatmaps near zero: every body score is below the crop
    rule's trust threshold (no hand crop at all) and argmax ties are everywhere. Random weights
    with calibrated BatchNorm (tests/test_interop.py's `randomise`) give O(1) heatmaps.
    """
    import shutil

    import orbax.checkpoint as ocp
    from flax import nnx

    from signlang_jax.training import checkpoints, train
    from tests.test_interop import randomise

    shutil.copytree(run, destination)
    graphdef, state, _ = train.create_state(config, 1)
    model, optimizer = nnx.merge(graphdef, state)
    size = config.data.image_size
    rng = np.random.default_rng(seed)
    randomise(model, rng.random((8, size, size, 3), dtype=np.float32), seed)
    manager = checkpoints.make_checkpoint_manager(destination / "checkpoints", config)
    try:
        manager.save(manager.latest_step() + 1, args=ocp.args.Composite(
            state=ocp.args.StandardSave(nnx.state((model, optimizer)))), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
    return destination


def random_body_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's `tiny_run` plus a random step 5 (`randomised_copy`), once per session."""
    key = f"body:{tiny_run}"
    if key not in _HAND_RUNS:
        from tests import tiny_config

        _HAND_RUNS[key] = randomised_copy(tiny_run, tiny_config.get_config(),
                                          tmp_path_factory.mktemp("random_body") / "run", 0)
    return _HAND_RUNS[key]


@pytest.fixture(scope="module")
def hand_run(synth_root, tmp_path_factory) -> Path:
    return train_hand_run(synth_root, tmp_path_factory)


def test_hand_run_validates_with_hand_metrics(hand_run):
    from signlang_jax.training import checkpoints

    manager = checkpoints.make_checkpoint_manager(hand_run / "checkpoints",
                                                  hand_config(Path(".")), read_only=True)
    try:
        assert manager.latest_step() == 4
        metrics = manager.metrics(4)
    finally:
        manager.close()
    assert set(metrics) == set(HAND_METRIC_NAMES), metrics
    assert all(np.isfinite(metrics[name]) for name in HAND_METRIC_NAMES)
    assert 0 <= metrics["val/hand_pck@0.1"] <= metrics["val/hand_pck@0.2"] <= 1


HAND_REPORT_KEYS = {"pck@0.05", "pck@0.1", "pck@0.2_own_box", "oks_ap_own_box", "epe_px"}


def test_evaluate_body_plus_hand_stage(tiny_run, hand_run, synth_root, tmp_path,
                                       tmp_path_factory, capsys):
    from signlang_jax import evaluate

    out = tmp_path / "report"
    body = random_body_run(tiny_run, tmp_path_factory)
    assert evaluate.main(["--checkpoint", f"{body}:latest", "--hand-checkpoint", str(hand_run),
                          "--hand-min-score", "0", "--data-root", str(synth_root),
                          "--out", str(out), "--worst", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    hands = metrics["hands"]
    assert hands["hand_checkpoint"] == str(hand_run) and hands["hand_min_score"] == 0.0
    # min score 0: every cropped hand's points are the hand model's, so the figures move.
    assert (hands["body_model"]["hands"]["epe_px"]
            != hands["body_plus_hand_stage"]["hands"]["epe_px"])
    for section in ("body_model", "body_plus_hand_stage"):
        assert set(hands[section]) == {"left_hand", "right_hand", "hands"}, section
        for part, row in hands[section].items():
            assert set(row) == HAND_REPORT_KEYS, (section, part)
            assert np.isfinite(row["epe_px"]), (section, part)
    assert metrics["num_images"] == 7
    capsys.readouterr()

    # A hand model as --checkpoint, a body model as --hand-checkpoint: refused, naming it.
    assert evaluate.main(["--checkpoint", str(hand_run), "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert f"--checkpoint {hand_run} is a hand model" in err
    assert evaluate.main(["--checkpoint", str(tiny_run), "--hand-checkpoint", str(tiny_run),
                          "--out", str(tmp_path / "y")]) == 1
    err = capsys.readouterr().err
    assert f"--hand-checkpoint {tiny_run}:" in err and "is a wholebody model" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# ----------------------------------------------------------------------------- upright crops


@pytest.mark.parametrize(("direction", "angle"), [((0, -1), 0.0), ((1, 0), 90.0),
                                                  ((0, 1), 180.0), ((-1, 0), 270.0),
                                                  ((1, 1), 135.0)])
def test_aligned_crop_turns_the_hand_upright(direction, angle):
    from signlang_jax.crop import hand_angle

    keypoints = np.zeros((64, 3))
    wrist, knuckle = LEFT[0], LEFT[9]
    keypoints[wrist] = (100, 100, 1)
    keypoints[knuckle] = (100 + 10 * direction[0], 100 + 10 * direction[1], 1)
    assert hand_angle(keypoints, "left_hand", keypoints[:, 2] > 0) == pytest.approx(angle)
    matrix = crop_matrix(Region(100, 100, 50, angle), 64)
    crop_wrist, crop_knuckle = apply_affine(keypoints[[wrist, knuckle], :2], matrix)
    np.testing.assert_allclose(crop_wrist, (31.5, 31.5), atol=1e-9)
    length = 10 * math.hypot(*direction) * 64 / 50
    np.testing.assert_allclose(crop_knuckle, (31.5, 31.5 - length), atol=1e-9)  # straight up


def test_hand_angle_falls_back_to_the_forearm_then_zero():
    from signlang_jax.crop import hand_angle

    keypoints = np.zeros((64, 3))
    keypoints[I["left_elbow"]] = (50, 50, 1)
    keypoints[I["left_wrist"]] = (80, 50, 1)  # forearm points right: turn by 90
    assert hand_angle(keypoints, "left_hand", keypoints[:, 2] > 0) == pytest.approx(90.0)
    keypoints[I["left_elbow"], 2] = 0
    assert hand_angle(keypoints, "left_hand", keypoints[:, 2] > 0) == 0.0


def test_square_around_measures_the_extent_along_the_rotated_axes():
    # A 20 x 4 bar along the diagonal: 45-degree axes see its true length, not the projection.
    t = np.linspace(-10, 10, 21)
    points = np.stack([100 + t / math.sqrt(2), 50 + t / math.sqrt(2)], 1)
    aligned = square_around(points, margin=0.0, angle=45.0)
    assert (aligned.cx, aligned.cy) == pytest.approx((100, 50))
    assert aligned.side == pytest.approx(20.0) and aligned.angle == 45.0
    axis = square_around(points, margin=0.0)
    assert axis.side == pytest.approx(20 / math.sqrt(2))


def test_aligned_hand_region_and_crop_put_the_knuckles_above_the_wrist():
    keypoints = body(40)
    hand = np.array([(100, 100), (110, 95), (118, 92), (124, 90), (130, 88), (120, 104),
                     (130, 106), (137, 107), (143, 108), (121, 110), (132, 112), (139, 113),
                     (146, 114), (119, 116), (129, 119), (136, 120), (142, 121), (116, 121),
                     (124, 125), (130, 127), (135, 129)], float)  # pointing right and down
    keypoints[LEFT, :2], keypoints[LEFT, 2] = hand, 1
    region = hand_region(keypoints, "left_hand", HandCropRule(align=True))
    matrix = crop_matrix(region, 32)
    crop_points = apply_affine(hand, matrix)
    assert crop_points[9, 1] < crop_points[0, 1] - 5  # middle knuckle above the wrist
    assert abs(crop_points[9, 0] - crop_points[0, 0]) < 1e-6  # straight above
    assert np.all((crop_points > -0.5) & (crop_points < 31.5))  # the whole hand inside


def test_hand_run_resumes_bitwise(synth_root, tmp_path):
    # The hand records (HandSource) resume like the body's: 2 steps + 2 resumed == 4 straight
    # (constant lr, no warmup: the schedule would otherwise depend on num_steps).
    from signlang_jax.training.train import train_and_evaluate
    from tests.conftest import checkpoint_arrays

    config = hand_config(synth_root)
    config.optim.schedule, config.optim.warmup_steps = "constant", 0
    config.train.num_steps = 2
    train_and_evaluate(config, tmp_path / "resumed")
    config.train.num_steps = 4
    train_and_evaluate(config, tmp_path / "resumed")
    train_and_evaluate(config, tmp_path / "straight")
    a = checkpoint_arrays(tmp_path / "resumed", config, 4)
    b = checkpoint_arrays(tmp_path / "straight", config, 4)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_image_and_video_commands_refuse_a_hand_model_as_the_body_model(hand_run, synth_root,
                                                                          tmp_path, capsys):
    from signlang_jax import infer_image
    from signlang_jax.inference.region import load_jax

    image = next((synth_root / "images").iterdir())
    assert infer_image.main(["--checkpoint", str(hand_run), "--image", str(image),
                             "--out", str(tmp_path / "overlay.jpg")]) == 1
    err = capsys.readouterr().err
    assert f"--checkpoint {hand_run} is a hand model" in err and "Traceback" not in err
    assert not (tmp_path / "overlay.jpg").exists()
    with pytest.raises(ValueError, match=f"--checkpoint {hand_run} is a hand model"):
        load_jax(str(hand_run), None, "float32", None, 0.0, 1)

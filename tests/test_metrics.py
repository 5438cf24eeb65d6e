"""PCK counts: zero-size boxes left out, a part's own box, and the hand PCK summary."""

from __future__ import annotations

import math

import numpy as np

from signlang_jax.evaluation.metrics import hand_pck, part_pck_counts, pck_counts


def _points(xy: list[tuple[float, float]], visible: list[int]) -> np.ndarray:
    """(K, 3) ground truth from K (x, y) and K visibility flags."""
    return np.array([[x, y, v] for (x, y), v in zip(xy, visible, strict=True)], np.float64)


def test_pck_counts_leaves_out_samples_whose_box_has_no_extent():
    gt = np.stack([_points([(10, 10), (50, 20)], [1, 1])] * 3)
    pred = gt[..., :2].copy()
    bbox = np.array([[0, 0, 100, 50],   # scale 100
                     [0, 0, 0, 0],      # no extent: cannot normalise, even a perfect prediction
                     [5, 5, 0, 40]],    # a line: max(w, h) = 40 still normalises
                    np.float64)
    pred[0] += [[4, 0], [6, 0]]   # 0.04 and 0.06 of 100
    pred[2] += [[0, 1], [0, 3]]   # 0.025 and 0.075 of 40
    correct, total = pck_counts(pred, gt, bbox, 0.05)
    np.testing.assert_array_equal(correct, [2, 0])
    np.testing.assert_array_equal(total, [2, 2])
    assert correct.dtype == total.dtype == np.int64
    # The padding mask and the box rule combine: only sample 0 is left.
    correct, total = pck_counts(pred, gt, bbox, 0.05, mask=np.array([True, True, False]))
    np.testing.assert_array_equal(correct, [1, 0])
    np.testing.assert_array_equal(total, [1, 1])


def test_part_pck_counts_uses_the_parts_own_tight_box():
    indices = (1, 2, 3)  # the "hand"; point 0 is outside the part and never scored
    gt = np.stack([
        # hand box x 10..30, y 10..20: w 20, h 10, threshold 0.2 * 20 = 4 px
        _points([(0, 0), (10, 10), (30, 10), (10, 20)], [1, 1, 1, 1]),
        # one visible hand point: no box, left out however good the prediction
        _points([(0, 0), (10, 10), (30, 10), (10, 20)], [1, 1, 0, 0]),
        # hand box x 0..0, y 0..30: max(w, h) 30, threshold 6 px; point 3 hidden
        _points([(0, 0), (0, 0), (0, 30), (5, 5)], [1, 1, 1, 0]),
    ])
    pred = gt[..., :2].copy()
    pred[:, 0] += 500  # the non-part point: would fail any threshold if it were scored
    pred[0, 1] += [3.9, 0]   # 3.9 / 20 = 0.195: correct
    pred[0, 2] += [0, 4.1]   # 4.1 / 20 = 0.205: wrong
    pred[2, 1] += [5.9, 0]   # 5.9 / 30 < 0.2: correct
    pred[2, 2] += [0, 6.1]   # 6.1 / 30 > 0.2: wrong
    correct, total = part_pck_counts(pred, gt, indices, 0.2)
    np.testing.assert_array_equal(correct, [2, 0, 1])
    np.testing.assert_array_equal(total, [2, 2, 1])
    correct, total = part_pck_counts(pred, gt, indices, 0.2, mask=np.array([False, True, True]))
    np.testing.assert_array_equal(correct, [1, 0, 0])
    np.testing.assert_array_equal(total, [1, 1, 0])


def test_hand_pck_averages_per_keypoint_accuracies():
    left = (np.array([2, 0, 1]), np.array([2, 0, 4]))   # per point 1, (no sample), 0.25
    right = (np.array([1, 1]), np.array([2, 1]))        # per point 0.5, 1
    assert hand_pck({"left_hand": left, "right_hand": right}) == {
        "val/hand_pck@0.2/left_hand": 0.625,
        "val/hand_pck@0.2/right_hand": 0.75,
        "val/hand_pck@0.2": 0.6875,  # mean of the 4 points with samples, not of the 2 hands
    }
    never = (np.zeros(2, np.int64), np.zeros(2, np.int64))
    one = hand_pck({"left_hand": left, "right_hand": never})
    assert one["val/hand_pck@0.2"] == one["val/hand_pck@0.2/left_hand"] == 0.625
    assert math.isnan(one["val/hand_pck@0.2/right_hand"])
    none = hand_pck({"left_hand": never, "right_hand": never})
    assert all(math.isnan(v) for v in none.values()) and len(none) == 3


def test_acceleration_sums_by_hand():
    from signlang_jax.evaluation.metrics import acceleration_sums

    # Point 0: x = 0, 1, 4, 9 (t^2): acceleration 2 at both inner frames; point 1: a straight
    # line (0) with frame 3 invalid, so only the first triple counts.
    xy = np.zeros((4, 2, 2))
    xy[:, 0, 0] = [0, 1, 4, 9]
    xy[:, 1, 1] = [0, 3, 6, 100]
    valid = np.ones((4, 2), bool)
    valid[3, 1] = False
    sums, counts = acceleration_sums(xy, valid)
    assert sums.tolist() == [4.0, 0.0] and counts.tolist() == [2, 1]
    sums, counts = acceleration_sums(xy[:2], valid[:2])
    assert sums.tolist() == [0.0, 0.0] and counts.tolist() == [0, 0]

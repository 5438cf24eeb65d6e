"""Heatmap codec and PCK: exact values against hand computations."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from signlang_jax.codec import decode_heatmaps, heatmap_loss, per_keypoint_mse, render_heatmaps
from signlang_jax.evaluation.metrics import pck_counts, pck_summary


def test_render_exact_values():
    kps = np.zeros((1, 2, 3), np.float32)
    kps[0, 0] = [10.0, 20.0, 1]  # image 64 -> heatmap 16: centre (2.5, 5.0)
    kps[0, 1] = [30.0, 30.0, 0]  # weight 0: empty target
    hm = np.asarray(render_heatmaps(jnp.asarray(kps), 64, 16, sigma=2.0))
    assert hm.shape == (1, 16, 16, 2) and hm.dtype == np.float32
    # value at column u, row v: exp(-((u - 2.5)^2 + (v - 5)^2) / 8)
    assert math.isclose(hm[0, 5, 2, 0], math.exp(-0.25 / 8), rel_tol=1e-6)
    assert math.isclose(hm[0, 7, 6, 0], math.exp(-(3.5**2 + 4) / 8), rel_tol=1e-6)
    assert hm[..., 1].max() == 0
    kps[0, 0] = [12.0, 20.0, 1]  # on a pixel centre: peak exactly 1
    hm = np.asarray(render_heatmaps(jnp.asarray(kps), 64, 16, sigma=2.0))
    assert hm[0, 5, 3, 0] == 1.0 and np.unravel_index(hm[0, ..., 0].argmax(), (16, 16)) == (5, 3)


def test_loss_is_weighted_mean():
    pred = np.zeros((2, 3, 3, 2), np.float32)
    target = np.zeros_like(pred)
    pred[0, 1, 1, 0] = 2.0  # contributes 4 * w
    pred[1, 0, 0, 1] = 3.0  # weight 0: ignored
    weights = np.array([[0.5, 1.0], [1.0, 0.0]], np.float32)
    loss = float(heatmap_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(weights)))
    assert math.isclose(loss, 0.5 * 4 / (2 * 3 * 3 * 2), rel_tol=1e-6)
    mse = np.asarray(per_keypoint_mse(jnp.asarray(pred), jnp.asarray(target)))
    np.testing.assert_allclose(mse, [[4 / 9, 0], [0, 1.0]], rtol=1e-6)


def test_decode_round_trip_and_quarter_shift():
    kps = np.array([[[12.0, 20.0, 1], [9.2, 41.0, 1], [63.0, 0.0, 1]]], np.float32)
    hm = render_heatmaps(jnp.asarray(kps), 64, 16, sigma=2.0)
    out = np.asarray(decode_heatmaps(hm, 64))
    np.testing.assert_allclose(out[0, 0], [12.0, 20.0, 1.0], atol=1e-6)  # exact pixel: no shift
    # 9.2 -> 2.3 heatmap px: argmax 2, right neighbour larger -> 2.25 -> 9.0 image px;
    # 41 -> 10.25: argmax 10, lower neighbour larger -> 10.25 -> 41.0.
    np.testing.assert_allclose(out[0, 1, :2], [9.0, 41.0], atol=1e-6)
    # Border pixels (x = 15.75 -> argmax 15, y = 0) are not shifted.
    np.testing.assert_allclose(out[0, 2, :2], [60.0, 0.0], atol=1e-6)
    assert abs(out[0, 2, 2] - math.exp(-(0.75**2) / 8)) < 1e-6


def test_pck_hand_computed():
    gt = np.zeros((2, 3, 3), np.float32)
    gt[..., 2] = 1
    gt[1, 2, 2] = 0  # invisible: not counted
    bbox = np.array([[0, 0, 100, 50], [0, 0, 20, 200]], np.float32)  # scales 100 and 200
    pred = np.zeros((2, 3, 2), np.float32)
    pred[0, 0] = [4.9, 0]  # 0.049 < 0.05
    pred[0, 1] = [5.0, 0]  # 0.05: not < 0.05 (strict), < 0.1
    pred[0, 2] = [0, 30.0]  # 0.3
    pred[1, 0] = [0, 19.0]  # 0.095
    pred[1, 1] = [0, 20.0]  # 0.1: not < 0.1
    pred[1, 2] = [0, 0]  # invisible
    correct, total = pck_counts(pred, gt, bbox, 0.05)
    np.testing.assert_array_equal(correct, [1, 0, 0])
    np.testing.assert_array_equal(total, [2, 2, 1])
    correct, total = pck_counts(pred, gt, bbox, 0.1)
    np.testing.assert_array_equal(correct, [2, 1, 0])
    masked = pck_counts(pred, gt, bbox, 0.1, mask=np.array([True, False]))
    np.testing.assert_array_equal(masked[1], [1, 1, 1])


def test_pck_summary_groups_and_perfect_prediction():
    gt = np.random.default_rng(0).uniform(0, 50, (4, 64, 3)).astype(np.float32)
    gt[..., 2] = 1
    gt[:, 60, 2] = 0  # a keypoint never visible: excluded from the means
    bbox = np.tile([[0, 0, 50, 50]], (4, 1)).astype(np.float32)
    summary = pck_summary(*pck_counts(gt[..., :2], gt, bbox, 0.05))
    assert summary["all"] == 1.0 and summary["face"] == 1.0 and summary["left_hand"] == 1.0
    assert math.isnan(summary["face_left_eye"])
    wrong = gt[..., :2].copy()
    wrong[:, 17:38] += 10  # left hand off by 0.2 * 50 at every sample
    summary = pck_summary(*pck_counts(wrong, gt, bbox, 0.1))
    assert summary["left_hand"] == 0.0 and summary["right_hand"] == 1.0
    assert math.isclose(summary["all"], (63 - 21) / 63)


def _targets(xy_hm: np.ndarray, heatmap: int = 64, image: int = 256, sigma: float = 2.0):
    """Targets for keypoints given in heatmap pixels; returns (heatmaps, keypoints in image px)."""
    kps = np.zeros((1, 64, 3), np.float32)
    kps[0, :, :2] = 30.0
    kps[0, :, 2] = 1
    kps[0, : len(xy_hm), :2] = xy_hm * (image / heatmap)
    return render_heatmaps(jnp.asarray(kps), image, heatmap, sigma), kps


def test_decoders_recover_subpixel_locations():
    from signlang_jax.codec import dark_refine

    rng = np.random.default_rng(0)
    xy = rng.uniform(5, 58, (40, 2)).astype(np.float32)  # heatmap pixels, away from the border
    heatmaps, kps = _targets(xy)
    plain = np.asarray(decode_heatmaps(heatmaps, 256))
    dark = np.asarray(dark_refine(heatmaps, jnp.asarray(plain), 256, 2.0))
    err_plain = np.abs(plain[0, :40, :2] / 4 - xy).max()
    err_dark = np.abs(dark[0, :40, :2] / 4 - xy).max()
    assert err_plain <= 0.25 + 1e-5, err_plain
    assert err_dark <= 0.05, err_dark
    np.testing.assert_array_equal(dark[..., 2], plain[..., 2])  # scores unchanged


def test_flip_back_aligns_mirrored_predictions():
    from signlang_jax.codec import flip_back
    from signlang_jax.keypoints import FLIP_PERMUTATION

    rng = np.random.default_rng(1)
    kps = np.zeros((1, 64, 3), np.float32)
    kps[0, :, :2] = rng.uniform(20, 230, (64, 2))
    kps[0, :, 2] = 1
    flipped = kps.copy()
    flipped[..., 0] = 255 - kps[..., 0]  # x' = S - 1 - x
    flipped = flipped[:, list(FLIP_PERMUTATION)]
    # What a perfect model predicts on the flipped image, mapped back:
    back = flip_back(render_heatmaps(jnp.asarray(flipped), 256, 64, 2.0), 256)
    decoded = np.asarray(decode_heatmaps(back, 256))
    direct = np.asarray(decode_heatmaps(render_heatmaps(jnp.asarray(kps), 256, 64, 2.0), 256))
    # Same argmax pixel and quarter shift as decoding the unflipped targets.
    assert np.abs(decoded[0, :, :2] - direct[0, :, :2]).max() <= 1.0 + 1e-4
    from signlang_jax.codec import dark_refine

    dark = np.asarray(dark_refine(back, jnp.asarray(decoded), 256, 2.0))
    assert np.abs(dark[0, :, :2] - kps[0, :, :2]).max() < 0.35  # input px (~0.09 heatmap px)


def test_oks_hand_computed_and_coco_ap():
    from signlang_jax.crop import part_boxes
    from signlang_jax.evaluation.metrics import coco_keypoint_ap, oks
    from signlang_jax.keypoints import OKS_SIGMAS

    rng = np.random.default_rng(0)
    gt = np.zeros((6, 64, 3))
    gt[..., :2] = rng.uniform(10, 200, (6, 64, 2))
    gt[..., 2] = 1
    gt[0, 5:, 2] = 0  # instance 0: only the first 5 points visible
    boxes = np.tile([[0.0, 0.0, 100.0, 200.0]], (6, 1))
    area = boxes[:, 2] * boxes[:, 3]
    np.testing.assert_allclose(oks(gt[..., :2], gt, area), 1.0)
    shifted = gt[..., :2] + [3.0, 4.0]  # every point 5 px away
    expected0 = np.mean(np.exp(-25 / (2 * 20000 * (2 * OKS_SIGMAS[:5]) ** 2)))
    assert math.isclose(oks(shifted, gt, area)[0], expected0, rel_tol=1e-12)
    perfect = np.concatenate([gt[..., :2], np.ones((6, 64, 1))], -1)
    assert coco_keypoint_ap(perfect, gt, boxes)["AP"] == 1.0
    hand = range(17, 38)
    assert coco_keypoint_ap(perfect, gt, part_boxes(gt, hand), hand)["AP"] == 1.0
    # Far-off predictions: OKS ~ 0, AP 0.
    far = perfect.copy()
    far[..., :2] += 500
    assert coco_keypoint_ap(far, gt, boxes)["AP"] == 0.0
    box = part_boxes(gt, hand)[1]
    pts = gt[1, 17:38, :2]
    np.testing.assert_allclose(box, [*pts.min(0), *(pts.max(0) - pts.min(0))])
    assert (part_boxes(gt, hand)[0] == 0).all()  # instance 0 has no visible hand point

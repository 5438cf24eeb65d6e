"""Input pipeline: augmentation geometry, determinism, padding, sharding, resumable state."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from signlang_jax.data.augment import AugmentParams, augment_sample, color_matrix
from signlang_jax.data.hand_crops import HandSource
from signlang_jax.data.iterator import make_iterator
from signlang_jax.data.pipeline import make_dataset, pad_batch
from signlang_jax.data.sources import SampleSource, load_split, records_for
from signlang_jax.keypoints import KEYPOINT_INDEX, KEYPOINT_NAMES
from tests.conftest import write_dataset

GEOMETRY_ONLY = AugmentParams(flip_prob=0.0, rotation_prob=1.0, rotation_deg=45.0,
                              scale_min=0.8, scale_max=1.2, shift_frac=0.1, color_prob=0.0,
                              blur_prob=0.0)
LEFT, RIGHT = KEYPOINT_INDEX["left_hand_wrist"], KEYPOINT_INDEX["right_hand_wrist"]


def _marker_image(width: int, height: int, points: dict[int, tuple[float, float]],
                  keypoints: np.ndarray) -> np.ndarray:
    """Black image with a disc of a distinct colour channel at each marked keypoint."""
    image = np.zeros((height, width, 3), np.uint8)
    for channel, (index, (x, y)) in enumerate(points.items()):
        keypoints[index, :2] = (x, y)
        colour = [0, 0, 0]
        colour[channel] = 255
        # Sub-pixel centre via the shift argument (4 fractional bits).
        cv2.circle(image, (round(x * 16), round(y * 16)), 3 * 16, colour, -1, cv2.LINE_AA, 4)
    return image


def _centroid(image: np.ndarray, channel: int) -> np.ndarray:
    weight = image[..., channel].astype(np.float64)
    weight[weight < 40] = 0
    ys, xs = np.indices(weight.shape)
    return np.array([(weight * xs).sum(), (weight * ys).sum()]) / weight.sum()


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("source_size", [(160, 120), (64, 96)])
def test_markers_follow_their_keypoints(flip, source_size):
    width, height = source_size
    params = AugmentParams(**{**GEOMETRY_ONLY.__dict__, "flip_prob": float(flip)})
    for trial in range(6):
        rng = np.random.default_rng(trial)
        keypoints = np.zeros((64, 3), np.float32)
        keypoints[:, :2] = (width / 2, height / 2)
        keypoints[:, 2] = 1
        # Person facing the camera: their left hand is on the image right.
        points = {LEFT: (0.7 * width + 0.3, 0.45 * height),
                  RIGHT: (0.3 * width, 0.55 * height - 0.4), 0: (0.5 * width + 0.25, 0.3 * height)}
        image = _marker_image(width, height, points, keypoints)
        out = augment_sample(image, keypoints, np.array([0, 0, width, height], np.float32), 96,
                             rng, params)
        found = {index: _centroid(out["image"], channel)
                 for channel, index in enumerate(points)}
        out_kps = out["keypoints"]
        if flip:
            # The image is mirrored, so the left-hand channel now sits on the marker that was
            # drawn at the original right hand; like any person facing the camera, the mirrored
            # signer still has the left hand on the image right.
            np.testing.assert_allclose(out_kps[LEFT, :2], found[RIGHT], atol=1.5)
            np.testing.assert_allclose(out_kps[RIGHT, :2], found[LEFT], atol=1.5)
            assert out_kps[LEFT, 0] > out_kps[RIGHT, 0]
        else:
            np.testing.assert_allclose(out_kps[LEFT, :2], found[LEFT], atol=1.5)
            np.testing.assert_allclose(out_kps[RIGHT, :2], found[RIGHT], atol=1.5)
        np.testing.assert_allclose(out_kps[0, :2], found[0], atol=1.5)  # nose maps to itself
        # The returned affine maps original -> output exactly.
        a = out["affine"]
        x, y = points[0]
        np.testing.assert_allclose(a[:, :2] @ [x, y] + a[:, 2], out_kps[0, :2], atol=1e-3)


def test_large_downscale_keeps_markers_aligned():
    # 1000x700 -> 64: the area pre-resize path must keep the exact mapping.
    keypoints = np.zeros((64, 3), np.float32)
    keypoints[:, 2] = 1
    image = _marker_image(1000, 700, {0: (700.0, 200.0)}, keypoints)
    image = cv2.dilate(image, np.ones((25, 25), np.uint8))  # big enough to survive the shrink
    out = augment_sample(image, keypoints, np.array([0, 0, 1000, 700], np.float32), 64, None,
                         AugmentParams())
    np.testing.assert_allclose(out["keypoints"][0, :2], _centroid(out["image"], 0), atol=1.0)


def test_letterbox_exact_values():
    keypoints = np.zeros((64, 3), np.float32)
    keypoints[0] = [0, 0, 1]  # first pixel centre
    keypoints[1] = [199, 99, 1]  # last pixel centre
    out = augment_sample(np.zeros((100, 200, 3), np.uint8), keypoints,
                         np.array([0, 0, 200, 100], np.float32), 50, None, AugmentParams())
    # scale 50/200 = 0.25 about the centres (99.5, 49.5) -> (24.5, 24.5)
    np.testing.assert_allclose(out["keypoints"][0], [24.5 - 0.25 * 99.5, 24.5 - 0.25 * 49.5, 1])
    np.testing.assert_allclose(out["keypoints"][1], [24.5 + 0.25 * 99.5, 24.5 + 0.25 * 49.5, 1])
    np.testing.assert_allclose(out["bbox"], [-0.375, 12.125, 50, 25])


def test_off_frame_points_get_weight_zero():
    keypoints = np.zeros((64, 3), np.float32)
    keypoints[:, :2] = 50
    keypoints[:, 2] = 1
    # Zoom x2 about the centre 49.5: x' = 2 x - 49.5; the frame ends at 99.5.
    keypoints[5] = [75.0, 50, 1]  # x' = 100.5: outside
    keypoints[7] = [74.6, 50, 1]  # x' = 99.7: outside
    keypoints[8] = [74.4, 50, 1]  # x' = 99.3: inside the last pixel
    keypoints[6] = [50, 50, 0]  # invisible stays 0
    params = AugmentParams(flip_prob=0, rotation_prob=0, scale_min=2.0, scale_max=2.0,
                           shift_frac=0.0, color_prob=0, blur_prob=0)
    out = augment_sample(np.zeros((100, 100, 3), np.uint8), keypoints,
                         np.array([0, 0, 100, 100], np.float32), 100, np.random.default_rng(0),
                         params)
    assert out["keypoints"][5, 2] == 0 and out["keypoints"][7, 2] == 0
    assert out["keypoints"][6, 2] == 0
    assert out["keypoints"][0, 2] == 1 and out["keypoints"][8, 2] == 1


def test_color_matrix_identity_at_zero_strength():
    params = AugmentParams(brightness=0, contrast=0, saturation=0, hue_deg=0)
    m = color_matrix(np.random.default_rng(0), params, 100.0)
    np.testing.assert_allclose(m, np.hstack([np.eye(3), np.zeros((3, 1))]), atol=1e-12)


def test_pad_batch():
    batch = {"image": np.ones((3, 2, 2, 3), np.uint8), "index": np.arange(3, dtype=np.int32),
             "mask": np.ones(3, bool)}
    padded = pad_batch(batch, 5)
    assert padded["image"].shape == (5, 2, 2, 3) and padded["image"][3:].sum() == 0
    np.testing.assert_array_equal(padded["index"], [0, 1, 2, -1, -1])
    np.testing.assert_array_equal(padded["mask"], [1, 1, 1, 0, 0])


# ----------------------------------------------------------------------------- grain pipeline


@pytest.fixture
def data_config(tiny_config):
    write_dataset(Path(tiny_config.data.root), 24, size=(40, 30))
    tiny_config.data.val_fraction = 0.25
    return tiny_config


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_train_batches_shapes_and_determinism(data_config):
    first = _take(iter(make_dataset(data_config, "train")), 10)  # > 2 epochs
    again = _take(iter(make_dataset(data_config, "train")), 10)
    _assert_same(first, again)
    batch = first[0]
    assert batch["image"].shape == (4, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["keypoints"].shape == (4, 64, 3) and batch["keypoints"].dtype == np.float32
    assert batch["bbox"].shape == (4, 4) and batch["affine"].shape == (4, 2, 3)
    assert batch["mask"].all()
    other_seed = _take(iter(make_dataset(data_config, "train", seed=1)), 1)
    assert not np.array_equal(other_seed[0]["image"], batch["image"])
    # Each epoch is a permutation of the split, reshuffled every epoch.
    n = len(load_split(data_config.data, "train"))
    indices = np.concatenate([b["index"] for b in first])
    assert 2 * n <= len(indices)
    epoch1, epoch2 = indices[:n], indices[n:2 * n]
    assert sorted(epoch1) == sorted(epoch2) == list(range(n))
    assert list(epoch1) != list(epoch2)


def test_val_is_unaugmented_fixed_order_and_padded(data_config):
    batches = list(make_dataset(data_config, "val"))
    again = list(make_dataset(data_config, "val"))
    _assert_same(batches, again)
    indices = np.concatenate([b["index"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    n = mask.sum()
    np.testing.assert_array_equal(indices[mask], np.arange(n))
    assert np.all(indices[~mask] == -1) and len(indices) % 4 == 0
    # No random augmentation: the plain letterbox 40x30 -> 32, centres (19.5, 14.5) -> 15.5.
    np.testing.assert_allclose(batches[0]["affine"][0], [[0.8, 0, -0.1], [0, 0.8, 3.9]], atol=1e-6)


def test_shards_are_disjoint_and_cover_the_split(data_config):
    seen = []
    for shard in range(2):
        ds = make_dataset(data_config, "val", shard_index=shard, shard_count=2)
        for batch in ds:
            assert batch["image"].shape[0] == 2  # global batch 4 over 2 processes
            seen += list(batch["affine"][batch["mask"]][:, 0, 2])  # any per-sample value
    val = make_dataset(data_config, "val")
    total = sum(int(b["mask"].sum()) for b in val)
    assert len(seen) == total


def test_iterator_state_round_trip_with_workers(data_config):
    data_config.data.num_workers = 2
    with make_iterator(data_config, "train") as it:
        _take(it, 3)
        state = it.get_state()
        expected = _take(it, 4)
    assert json.loads(state)["num_workers"] == 2
    with make_iterator(data_config, "train") as resumed:
        resumed.set_state(state)
        _assert_same(_take(resumed, 4), expected)
    with (make_iterator(data_config, "train", num_workers=0) as other,
          pytest.raises(ValueError, match="data.num_workers was 2, now 0 .*"
                        "--config.data.num_workers=2 restores it")):
        other.set_state(state)


def test_records_for_chooses_the_records_and_the_pipeline_reads_them(data_config):
    records = records_for(data_config, "train")
    assert isinstance(records, SampleSource) and len(records) == len(
        load_split(data_config.data, "train"))
    hand = data_config.copy_and_resolve_references()
    hand.task = "hand"
    assert isinstance(records_for(hand, "train"), HandSource)
    with pytest.raises(ValueError, match="config.task='hand' reads hand records"):
        make_dataset(hand, "train", source=records)
    # Without a source the iterator reads records_for's, and its state names their digest.
    with make_iterator(data_config, "train") as it:
        next(it)
        assert json.loads(it.get_state())["data_digest"] == records.digest

def test_invalid_dataset_refused_unless_skipping(data_config, capsys):
    root = Path(data_config.data.root)
    (root / "labels" / "000003.json").write_text("{}")
    with pytest.raises(Exception, match="labels/000003.json: width: missing"):
        make_dataset(data_config, "train")
    data_config.data.skip_invalid = True
    make_dataset(data_config, "train")
    assert "skipping 1 invalid files" in capsys.readouterr().err


def test_names_survive_the_flip_permutation():
    assert KEYPOINT_NAMES[LEFT] == "left_hand_wrist"

"""Tests for the procedural signer dataset generator (small images, a handful of samples)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from signlang_jax import synth
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON

SIZE = 64


def _keypoints(label: dict) -> np.ndarray:
    return np.array([[k["x"], k["y"], k["visible"]] for k in label["keypoints"]], np.float64)


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("index", range(4))
def test_schema(index):
    image, label = synth.render_sample(3, index, SIZE)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert label["image"] == f"{index:06d}.jpg"
    assert (label["width"], label["height"]) == (SIZE, SIZE)
    assert [k["name"] for k in label["keypoints"]] == list(KEYPOINT_NAMES)
    assert len(label["keypoints"]) == NUM_KEYPOINTS == 64
    for k in label["keypoints"]:
        assert type(k["visible"]) is int and k["visible"] in (0, 1)
        assert math.isfinite(k["x"]) and math.isfinite(k["y"])
        assert 0 <= k["x"] <= SIZE - 1 and 0 <= k["y"] <= SIZE - 1
        assert round(k["x"], 2) == k["x"] and round(k["y"], 2) == k["y"]
    x, y, w, h = label["bbox"]
    assert w > 0 and h > 0 and x >= 0 and y >= 0
    assert x + w <= SIZE - 1 + 1e-6 and y + h <= SIZE - 1 + 1e-6
    # Face anchors repeat the body's head points, coordinates and visibility alike.
    kp = _keypoints(label)
    for i in GROUPS["face"]:
        body = KEYPOINT_INDEX[KEYPOINT_NAMES[i].removeprefix("face_")]
        np.testing.assert_array_equal(kp[i], kp[body])
    # The body wrists sit on the hand wrists.
    for side in ("left", "right"):
        np.testing.assert_array_equal(kp[KEYPOINT_INDEX[f"{side}_wrist"], :2],
                                      kp[KEYPOINT_INDEX[f"{side}_hand_wrist"], :2])


def test_left_is_image_right_and_label_is_json_serialisable():
    for index in range(10):
        _, label = synth.render_sample(11, index, SIZE)
        kp = _keypoints(label)
        assert kp[KEYPOINT_INDEX["left_shoulder"], 0] > kp[KEYPOINT_INDEX["right_shoulder"], 0]
        assert json.loads(json.dumps(label)) == label


def test_same_seed_same_sample_different_seed_or_index_differs():
    image, label = synth.render_sample(5, 2, SIZE)
    image2, label2 = synth.render_sample(5, 2, SIZE)
    np.testing.assert_array_equal(image, image2)
    assert label == label2
    other, other_label = synth.render_sample(6, 2, SIZE)
    assert not np.array_equal(image, other) and label["keypoints"] != other_label["keypoints"]
    assert not np.array_equal(image, synth.render_sample(5, 3, SIZE)[0])


def test_dataset_identical_bytes_for_one_and_two_workers(tmp_path):
    synth.generate_dataset(tmp_path / "a", 6, seed=9, size=SIZE, workers=1)
    synth.generate_dataset(tmp_path / "b", 6, seed=9, size=SIZE, workers=2, start_index=0)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert sorted(a) == [f"images/{i:06d}.jpg" for i in range(6)] + [
        f"labels/{i:06d}.json" for i in range(6)
    ]
    assert a == b  # also: no temporary files left behind
    label = json.loads(a["labels/000004.json"])
    assert label == synth.render_sample(9, 4, SIZE)[1]
    image = cv2.imread(str(tmp_path / "a" / "images" / "000004.jpg"))
    assert image.shape == (SIZE, SIZE, 3)
    # The JPEG holds the rendered RGB image (converted to BGR for OpenCV), up to compression.
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float64)
    assert np.abs(rgb - synth.render_sample(9, 4, SIZE)[0]).mean() < 8


def test_start_index_names_and_content(tmp_path):
    synth.generate_dataset(tmp_path, 2, seed=9, size=SIZE, workers=1, start_index=4)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["000004.json",
                                                                        "000005.json"]
    label = json.loads((tmp_path / "labels" / "000004.json").read_text())
    assert label == synth.render_sample(9, 4, SIZE)[1]


def test_keypoint_visibility_owner_rules():
    owner = np.zeros((20, 20), np.uint8)
    xy = np.full((NUM_KEYPOINTS, 2), 5.0)
    left_tip = KEYPOINT_INDEX["left_hand_index_tip"]
    face_nose = KEYPOINT_INDEX["face_nose"]
    left_wrist = KEYPOINT_INDEX["left_hand_wrist"]
    xy[left_tip], xy[face_nose], xy[left_wrist] = (2.0, 2.0), (12.0, 12.0), (16.4, 3.4)
    xy[KEYPOINT_INDEX["nose"]] = (25.0, 5.0)  # outside the frame
    xy[KEYPOINT_INDEX["left_eye"]] = (np.nan, 5.0)
    owner[2, 2] = synth.PART_IDS["right_hand"]  # the other hand covers the index tip
    owner[12, 12] = synth.PART_IDS["left_hand"]  # a hand covers the face anchor
    owner[3, 16] = synth.PART_IDS["left_forearm"]  # own forearm: the wrist stays visible
    owner[5, 5] = synth.PART_IDS["left_hand"]
    visible = synth.keypoint_visibility(xy, owner)
    assert not visible[left_tip] and not visible[face_nose]
    assert visible[left_wrist]
    assert not visible[KEYPOINT_INDEX["nose"]] and not visible[KEYPOINT_INDEX["left_eye"]]
    # Everything at (5, 5) lies under the left hand: only its own points stay visible.
    at_5 = np.all(xy == 5.0, axis=1)
    in_left_hand = np.isin(np.arange(NUM_KEYPOINTS), list(GROUPS["left_hand"]))
    assert np.array_equal(visible[at_5], in_left_hand[at_5] | (
        np.arange(NUM_KEYPOINTS)[at_5] == KEYPOINT_INDEX["left_wrist"]))


def _owner_at(owner: np.ndarray, kp: np.ndarray) -> np.ndarray:
    return owner[np.rint(kp[:, 1]).astype(int), np.rint(kp[:, 0]).astype(int)]


def test_occluded_points_in_rendered_samples_are_hidden():
    """Search samples for a hand point under the other hand and a face anchor under a hand."""
    hand_ids = {synth.PART_IDS[g] for g in ("left_hand", "right_hand")}
    ears = {KEYPOINT_INDEX[n] for n in KEYPOINT_NAMES if n.endswith("_ear")}
    found_hand = found_face = False
    for index in range(300):
        _, label, owner = synth.render_sample_with_owners(7, index, 128)
        kp = _keypoints(label)
        own = _owner_at(owner, kp)
        # Points strictly inside the frame, away from the .5 rounding boundary of the 2-decimal
        # labels, so the label's pixel is the one the renderer looked at.
        frac = np.abs(np.modf(kp[:, :2])[0] - 0.5)
        inside = ((kp[:, :2] > 0) & (kp[:, :2] < 127)).all(1) & (frac > 0.01).all(1)
        for i in np.flatnonzero(inside):
            allowed = own[i] == 0 or own[i] in synth.KEYPOINT_OWNERS[i]
            if i not in ears:  # ears may also be hidden by the turn of the head
                assert kp[i, 2] == int(allowed), (index, KEYPOINT_NAMES[i], own[i])
            elif not allowed:
                assert kp[i, 2] == 0
        for group, other in (("left_hand", "right_hand"), ("right_hand", "left_hand")):
            under = [i for i in GROUPS[group]
                     if inside[i] and own[i] == synth.PART_IDS[other]]
            if under:
                assert all(kp[i, 2] == 0 for i in under)
                found_hand = True
        under = [i for i in GROUPS["face"] if inside[i] and own[i] in hand_ids]
        if under:
            assert all(kp[i, 2] == 0 for i in under)
            found_face = True
        if found_hand and found_face:
            break
    assert found_hand, "no sample with a hand point covered by the other hand"
    assert found_face, "no sample with a face anchor covered by a hand"


@pytest.mark.parametrize("seed", range(6))
def test_drawn_hand_covers_its_keypoints(seed):
    """On a plain background every hand keypoint and bone midpoint is skin-coloured-ish."""
    background, skin = np.array((40, 60, 200)), (205, 160, 125)
    image = np.empty((160, 160, 3), np.uint8)
    image[:] = background
    owner = np.zeros((160, 160), np.uint8)
    rng = np.random.default_rng(seed)
    group = ("left_hand", "right_hand")[seed % 2]
    xy = synth.draw_hand(rng, image, owner, group, np.array([80.0, 140.0]),
                         np.array([0.0, -1.0]), 100.0, skin)
    assert xy.shape == (21, 2)
    np.testing.assert_allclose(xy[0], (80.0, 140.0))
    start = GROUPS[group].start
    bones = [(a - start, b - start) for a, b, g in SKELETON if g == group]
    points = np.concatenate([xy, np.array([(xy[a] + xy[b]) / 2 for a, b in bones])])
    pix = image[np.rint(points[:, 1]).astype(int), np.rint(points[:, 0]).astype(int)].astype(float)
    to_skin = np.linalg.norm(pix - skin, axis=1)
    to_background = np.linalg.norm(pix - background, axis=1)
    assert (to_skin < to_background).all()
    assert (owner[np.rint(points[:, 1]).astype(int), np.rint(points[:, 0]).astype(int)]
            == synth.PART_IDS[group]).all()


def test_rendered_hands_stand_out_from_their_surroundings():
    """In full samples, the pixels of a visible hand differ from the background ring around it."""
    contrasts = []
    for index in range(6):
        image, label, owner = synth.render_sample_with_owners(21, index, 256)
        for group in ("left_hand", "right_hand"):
            mask = owner == synth.PART_IDS[group]
            if mask.sum() < 200:
                continue
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            ring &= owner == 0
            if ring.sum() < 50:
                continue
            hand = image[mask].astype(float).mean(0)
            around = image[ring].astype(float).mean(0)
            contrasts.append(np.abs(hand - around).sum())
    assert len(contrasts) >= 4
    assert np.median(contrasts) > 30


def test_size_scales_the_same_pose():
    small, large = synth.render_sample(1, 0, 64), synth.render_sample(1, 0, 128)
    assert small[0].shape == (64, 64, 3) and large[0].shape == (128, 128, 3)
    assert large[1]["width"] == large[1]["height"] == 128
    kp_small, kp_large = _keypoints(small[1]), _keypoints(large[1])
    inside = ((kp_large[:, :2] > 0) & (kp_large[:, :2] < 127)).all(1)
    inside &= ((kp_small[:, :2] > 0) & (kp_small[:, :2] < 63)).all(1)
    assert inside.sum() > 20
    np.testing.assert_allclose(kp_large[inside, :2], 2 * kp_small[inside, :2], atol=0.02)


def test_a_second_person_leaves_the_signer_and_labels_unchanged():
    # The second person has their own random stream and is drawn before the signer: the
    # signer's label (points, visibility, box) is the one-person sample's, the image is not.
    changed = 0
    for index in range(6):
        alone, label = synth.render_sample(3, index, SIZE)
        both, both_label = synth.render_sample(3, index, SIZE, others=1.0)
        assert both_label == label
        img, owner_label, owner = synth.render_sample_with_owners(3, index, SIZE, others=1.0)
        assert owner_label == label and np.array_equal(img, both)
        # Pixels the signer owns are the signer's in both images (the camera noise aside).
        signer = owner > 0
        assert np.abs(both[signer].astype(int) - alone[signer]).mean() < 1.0
        moved = np.abs(both.astype(int) - alone).max(-1)[~signer] > 40
        changed += int(moved.mean() > 0.01)
    assert changed >= 4  # most second people are in frame (5 of these 6)
    # others=0.5: each sample either is the one-person sample or the two-person one.
    halves = [np.array_equal(synth.render_sample(3, i, SIZE, others=0.5)[0],
                             synth.render_sample(3, i, SIZE)[0]) for i in range(12)]
    assert 0 < sum(halves) < 12


@pytest.mark.parametrize("others", [-0.1, 1.5])
def test_others_out_of_range_is_refused(others, tmp_path, capsys):
    with pytest.raises(ValueError, match="others="):
        synth.render_sample(0, 0, SIZE, others=others)
    with pytest.raises(ValueError, match="others="):
        synth.generate_dataset(tmp_path, 1, 0, size=SIZE, others=others)
    with pytest.raises(SystemExit):
        synth.main(["--out", str(tmp_path), "--num", "1", "--seed", "0", "--others",
                    str(others)])
    assert "--others" in capsys.readouterr().err
    assert not (tmp_path / "labels").exists()


def test_refuses_to_overwrite_without_flag(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--num", "1", "--seed", "0", "--size", str(SIZE),
            "--workers", "1"]
    assert synth.main(args) == 0
    assert synth.main(args) != 0
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(FileExistsError):
        synth.generate_dataset(tmp_path, 1, 0, size=SIZE, workers=1)
    assert synth.main([*args, "--overwrite"]) == 0


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        synth.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--num", "--seed", "--size", "--workers", "--start-index",
                 "--others", "--overwrite"):
        assert flag in out

"""Tests for the synthetic signing clips (tiny frames, a few frames per clip)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from signlang_jax.data import validate
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, NUM_KEYPOINTS
from signlang_jax.synth import KEYPOINT_OWNERS, PART_IDS, clips

W, H, T = 160, 90, 8
WRISTS = [KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]]


def _keypoints(label: dict) -> np.ndarray:
    return np.array([[k["x"], k["y"], k["visible"]] for k in label["keypoints"]], np.float64)


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """Two 120x90 clips of 6 frames written by generate_clips with two workers."""
    out = tmp_path_factory.mktemp("clips")
    assert clips.generate_clips(out, 2, seed=4, width=120, height=90, num_frames=6, fps=25.0,
                                workers=2) == 2
    return out


def test_deterministic_and_indices_differ():
    frames, labels, info = clips.render_clip(1, 0, W, H, T)
    again, labels_again, info_again = clips.render_clip(1, 0, W, H, T)
    assert frames.shape == (T, H, W, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames, again) and labels == labels_again and info == info_again
    other, other_labels, _ = clips.render_clip(1, 1, W, H, T)
    assert not np.array_equal(frames, other) and labels != other_labels
    assert [lab["image"] for lab in labels] == [f"{f:06d}.jpg" for f in range(T)]
    assert info["num_frames"] == T and info["width"] == W and info["height"] == H


@pytest.mark.parametrize("index", range(3))
def test_visible_points_lie_on_their_own_parts(index):
    """Visible keypoints sit on pixels drawn by a part they belong to (or the background)."""
    _, labels, _, owners = clips.render_clip_with_owners(7, index, 320, 180, 6)
    hand_ids = {PART_IDS[g] for g in ("left_hand", "right_hand")}
    on_hand = 0
    for label, owner in zip(labels, owners, strict=True):
        kp = _keypoints(label)
        cols = np.clip(np.rint(kp[:, 0]).astype(int), 0, 319)
        rows = np.clip(np.rint(kp[:, 1]).astype(int), 0, 179)
        own = owner[rows, cols]
        for i in np.flatnonzero(kp[:, 2] > 0):
            assert own[i] == 0 or own[i] in KEYPOINT_OWNERS[i], (label["image"], i)
        hand = [i for g in ("left_hand", "right_hand") for i in range(GROUPS[g].start,
                                                                       GROUPS[g].stop)]
        on_hand += sum(kp[i, 2] > 0 and own[i] in hand_ids for i in hand)
    assert on_hand > 6 * 10  # hands are drawn and mostly visible


@pytest.mark.parametrize("index", range(3))
def test_motion_is_smooth_and_appearance_fixed(index):
    frames, labels, info, owners = clips.render_clip_with_owners(2, index, 240, 180, 25)
    kp = np.stack([_keypoints(label) for label in labels])
    shoulder_width = info["shoulder_width_px"]
    step = np.linalg.norm(np.diff(kp[:, WRISTS, :2], axis=0), axis=2)
    assert step.max() < 0.4 * shoulder_width  # 25 fps: no teleporting wrists
    assert step.max() > 0.005 * shoulder_width  # but they do move over a second
    # Background far from the signer: only camera drift and sensor noise change it.
    free = (owners == 0).all(0)
    free = cv2.erode(free.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert free.sum() > 200
    means = frames[:, free].astype(np.float64).mean(1)
    assert np.abs(np.diff(means, axis=0)).max() < 1.5


def test_signer_height_within_the_requested_range():
    for index in range(4):
        _, labels, info = clips.render_clip(3, index, W, H, 1, signer_height=(0.4, 0.5))
        assert 0.4 <= info["signer_height"] <= 0.5
        kp = _keypoints(labels[0])
        hips = kp[[KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]], 1].mean()
        # nose to hips is about 0.85 of the head-top-to-hips height
        ratio = (hips - kp[KEYPOINT_INDEX["nose"], 1]) / (H * info["signer_height"])
        assert 0.65 < ratio < 1.0, ratio


def test_non_square_labels_clamp_into_the_frame():
    for index in range(3):
        _, labels, _ = clips.render_clip(5, index, 120, 90, 2, signer_height=(1.2, 1.4))
        for label in labels:
            kp = _keypoints(label)
            assert label["width"] == 120 and label["height"] == 90
            assert len(kp) == NUM_KEYPOINTS
            assert (kp[:, 0] >= 0).all() and (kp[:, 0] <= 119).all()
            assert (kp[:, 1] >= 0).all() and (kp[:, 1] <= 89).all()
            ankles = [KEYPOINT_INDEX["left_ankle"], KEYPOINT_INDEX["right_ankle"]]
            assert (kp[ankles, 1] == 89).all() and (kp[ankles, 2] == 0).all()
            x, y, w, h = label["bbox"]
            assert x >= 0 and y >= 0 and x + w <= 119 + 1e-6 and y + h <= 89 + 1e-6


def test_clip_folder_is_a_valid_dataset_with_a_video(clip_files, capsys):
    root = clip_files / "clip_0001"
    assert validate.main(["--data-root", str(root)]) == 0
    assert "OK" in capsys.readouterr().out
    info = json.loads((root / "clip.json").read_text())
    assert info["num_frames"] == 6 and info["fps"] == 25.0 and info["index"] == 1
    capture = cv2.VideoCapture(str(root / "video.mp4"))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    assert len(decoded) == 6 and decoded[0].shape == (90, 120, 3)
    frames, labels, _ = clips.render_clip(4, 1, 120, 90, 6)
    assert json.loads((root / "labels" / "000003.json").read_text()) == labels[3]
    jpeg = cv2.imread(str(root / "images" / "000003.jpg"))[..., ::-1]
    assert np.abs(jpeg.astype(float) - frames[3]).mean() < 8
    assert np.abs(decoded[3][..., ::-1].astype(float) - frames[3]).mean() < 12


def test_rerun_skips_complete_clips(clip_files):
    stamp = (clip_files / "clip_0000" / "clip.json").stat().st_mtime_ns
    assert clips.generate_clips(clip_files, 2, seed=4, width=120, height=90, num_frames=6,
                                workers=1) == 0
    assert (clip_files / "clip_0000" / "clip.json").stat().st_mtime_ns == stamp
    assert not list(clip_files.rglob("*.tmp*"))


def test_bad_arguments_are_refused_clearly(tmp_path, capsys):
    with pytest.raises(ValueError, match="width=20"):
        clips.render_clip(0, 0, width=20, height=90, num_frames=2)
    with pytest.raises(ValueError, match="signer_height"):
        clips.render_clip(0, 0, W, H, 2, signer_height=(0.9, 0.3))
    with pytest.raises(ValueError, match="num_frames=0"):
        clips.generate_clips(tmp_path, 1, 0, W, H, num_frames=0)
    assert clips.main(["--out", str(tmp_path), "--num", "1", "--seed", "0", "--width", "8"]) == 2
    assert "width=8" in capsys.readouterr().err
    assert clips.main(["--out", str(tmp_path), "--num", "1", "--seed", "0", "--fps", "0"]) == 2
    assert "fps=0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        clips.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--num", "--seed", "--width", "--height", "--frames", "--fps",
                 "--signer-height", "--workers", "--overwrite"):
        assert flag in out

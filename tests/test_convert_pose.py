"""Tests for `python -m signlang_jax.data.convert pose` (signlang_jax/data/convert_pose.py).

Fixtures: synthetic signers (`render_sample` tiles) pasted into the frames of a small mp4v video,
and .pose files written with pose-format from the same known points: a MediaPipe Holistic layout
(pose 33, face 468, hands 21, pose world 33) and our own (`write_pose`). The converter must cut
the known points back out of the right frames with the visibility the thresholds decide.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from signlang_jax.data import convert
from signlang_jax.data.augment import warp_image
from signlang_jax.data.dataset import is_val_stem, scan_dataset, split_samples
from signlang_jax.data.sequence_files import KeypointSequence, write_pose
from signlang_jax.keypoint_maps import MEDIAPIPE_POSE_NAMES
from signlang_jax.keypoints import BODY_NAMES, GROUPS, KEYPOINT_INDEX
from signlang_jax.synth import render_sample
from tests.conftest import interrupt_nth_encode

pose_format = pytest.importorskip("pose_format")
from pose_format.pose_header import (  # noqa: E402
    PoseHeader,
    PoseHeaderComponent,
    PoseHeaderDimensions,
)

ROOT = Path(__file__).resolve().parent.parent
W, H, TILE, SIZE = 160, 128, 64, 96
HANDS = ("left_hand", "right_hand")
_HAND_POINTS = ["WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP"] + [
    f"{finger}_{joint}" for finger in ("INDEX_FINGER", "MIDDLE_FINGER", "RING_FINGER", "PINKY")
    for joint in ("MCP", "PIP", "DIP", "TIP")]
# Video "rec1" (Holistic .pose): frame -> (tile, x offset, y offset). Frames 2 and 6 repeat the
# content (and points) of 0 and 4; frame 10's body is not confident; frame 4 lacks its left hand.
REC1 = [(0, 20, 20), (1, 60, 30), (0, 20, 20), (2, 40, 40), (1, 80, 40), (2, 10, 50),
        (1, 80, 40), (3, 70, 10), (3, 50, 50), (0, 90, 60), (2, 30, 30), (1, 0, 0)]
NO_LEFT_HAND, LOW_BODY = {4, 6}, {10}
# Video "rec2" (our .pose): frame 1 repeats 0, frame 4 repeats 3; frame 2 has a weak right hand.
REC2 = [(4, 30, 30), (4, 30, 30), (5, 60, 20), (0, 40, 50), (0, 40, 50), (2, 80, 10)]
WEAK_RIGHT_HAND = {2}


def _tile(index: int) -> tuple[np.ndarray, np.ndarray]:
    image, label = render_sample(11, index, TILE)
    return image, np.array([[k["x"], k["y"], k["visible"]] for k in label["keypoints"]])


def _canvas(tile: np.ndarray, ox: int, oy: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    canvas = np.stack([40 + x // 4, 60 + y // 4, 90 + (x + y) // 8], -1).astype(np.uint8)
    canvas[oy:oy + TILE, ox:ox + TILE] = tile
    return canvas


def _content(script: list) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB frames and (64, 3) known points (x, y, tile visibility) of a video script."""
    frames, points = [], []
    for index, ox, oy in script:
        image, kp = _tile(index)
        frames.append(_canvas(image, ox, oy))
        points.append(kp + (ox, oy, 0))
    return frames, points


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _body_confidence(kp: np.ndarray) -> np.ndarray:
    """(17,) per-point confidence: 0.9 visible, 0.2 hidden; knees exactly at / under 0.5."""
    conf = np.where(kp[:17, 2] > 0, 0.9, 0.2)
    conf[BODY_NAMES.index("left_knee")] = 0.5
    conf[BODY_NAMES.index("right_knee")] = 0.4999
    return conf


def holistic_arrays(points: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(T, 1, 576, 3) data and (T, 1, 576) confidence in Holistic's component order."""
    rng = np.random.default_rng(0)
    frames = len(points)
    data = np.zeros((frames, 1, 33 + 468 + 21 + 21 + 33, 3), np.float32)
    conf = np.ones((frames, 1, data.shape[2]), np.float32)
    data[:, 0, :, :2] = rng.uniform(0, W, (frames, data.shape[2], 2))
    for t, kp in enumerate(points):
        # Points we do not map (inner eyes, mouth, fingers of the pose model, feet) sit far away
        # and confident: they must not move the crop.
        data[t, 0, :33, :2] = (-500, 900)
        conf[t, 0, :33] = 0.95
        body_conf = _body_confidence(kp)
        for i, name in enumerate(BODY_NAMES):  # the inverse of MEDIAPIPE_HOLISTIC
            j = MEDIAPIPE_POSE_NAMES.index(name)
            data[t, 0, j, :2], conf[t, 0, j] = kp[i, :2], body_conf[i]
        data[t, 0, 501:522, :2] = kp[GROUPS["left_hand"].start:GROUPS["left_hand"].stop, :2]
        data[t, 0, 522:543, :2] = kp[GROUPS["right_hand"].start:GROUPS["right_hand"].stop, :2]
        if t in NO_LEFT_HAND:  # as Holistic writes a missing hand: zeros, confidence 0
            data[t, 0, 501:522], conf[t, 0, 501:522] = 0, 0
        if t in LOW_BODY:
            conf[t, 0, :33] = 0.1
    return data, conf


def holistic_components(skip: str = "", counts: dict | None = None) -> list:
    counts = counts or {}
    parts = [("POSE_LANDMARKS", [n.upper() for n in MEDIAPIPE_POSE_NAMES]),
             ("FACE_LANDMARKS", [str(i) for i in range(468)]),
             ("LEFT_HAND_LANDMARKS", _HAND_POINTS), ("RIGHT_HAND_LANDMARKS", _HAND_POINTS),
             ("POSE_WORLD_LANDMARKS", [n.upper() for n in MEDIAPIPE_POSE_NAMES])]
    return [PoseHeaderComponent(name, points[:counts.get(name, len(points))], [], [(255, 0, 0)],
                                "XYZC") for name, points in parts if name != skip]


def write_pose_file(path: Path, components: list, data: np.ndarray, conf: np.ndarray,
                    width: int = W, height: int = H) -> Path:
    header = PoseHeader(0.2, PoseHeaderDimensions(width, height, 0), components)
    body = pose_format.numpy.NumPyPoseBody(25.0, data, conf)
    with open(path, "wb") as f:
        pose_format.Pose(header, body).write(f)
    return path


def our_sequence(points: list[np.ndarray]) -> KeypointSequence:
    keypoints = np.zeros((len(points), 64, 3), np.float32)
    for t, kp in enumerate(points):
        keypoints[t, :, :2] = kp[:, :2]
        keypoints[t, 59:, :2] = kp[:5, :2]  # face anchors = nose, eyes, ears
        score = np.where(kp[:, 2] > 0, 0.8, 0.3)
        score[:17] = _body_confidence(kp)
        score[59:] = score[:5]
        score[GROUPS["right_hand"].start + 4] = 0.5  # thumb tip: exactly at the threshold
        if t in WEAK_RIGHT_HAND:
            score[GROUPS["right_hand"].start:GROUPS["right_hand"].stop] = 0.3
        keypoints[t, :, 2] = score
    frames = len(points)
    return KeypointSequence(keypoints, 25.0, W, H, np.zeros(frames, bool),
                            np.zeros((frames, 3), np.float32))


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> dict:
    """Folders poses/ and videos/ with rec1 (Holistic) and rec2 (ours), and what they hold."""
    root = tmp_path_factory.mktemp("rec")
    (root / "poses").mkdir()
    (root / "videos").mkdir()
    frames1, points1 = _content(REC1)
    frames2, points2 = _content(REC2)
    write_video(root / "videos" / "rec1.mp4", frames1)
    write_video(root / "videos" / "rec2.mp4", frames2)
    write_pose_file(root / "poses" / "rec1.pose", holistic_components(),
                    *holistic_arrays(points1))
    write_pose(root / "poses" / "rec2.pose", our_sequence(points2))
    return {"root": root, "frames": {"rec1": frames1, "rec2": frames2},
            "points": {"rec1": points1, "rec2": points2}}


def run(rec: dict, out: Path, *extra: str, pose: str = "poses/rec1.pose",
        video: str = "videos/rec1.mp4") -> int:
    root = rec["root"]
    return convert.main(["pose", "--pose", str(root / pose), "--video", str(root / video),
                         "--out", str(out), "--size", str(SIZE), *extra])


def _labels(out: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "labels").glob("*.json"))}


def expected_label(kp: np.ndarray, conf: np.ndarray, margin: float = 0.25
                   ) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """(64, 2) crop points, (64,) visible, hand_valid, 2x3 matrix from known points and scores."""
    threshold = np.full(64, 0.5)
    confident = (conf >= threshold) & (conf > 0)
    xy = kp[:, :2].astype(np.float64).copy()
    hand_valid = {}
    for hand in HANDS:
        part = slice(GROUPS[hand].start, GROUPS[hand].stop)
        hand_valid[hand] = bool(confident[part].any())
    pts = xy[confident]
    lo = np.clip(pts.min(0), -0.5, [W - 0.5, H - 0.5])
    hi = np.clip(pts.max(0), -0.5, [W - 0.5, H - 0.5])
    centre, side = (lo + hi) / 2, float(np.max(hi - lo)) * (1 + 2 * margin)
    scale = SIZE / side
    matrix = np.array([[scale, 0, (SIZE - 1) / 2 - scale * centre[0]],
                       [0, scale, (SIZE - 1) / 2 - scale * centre[1]]])
    crop = xy * scale + matrix[:, 2]
    inside = ((crop >= -0.5) & (crop <= SIZE - 0.5)).all(1)
    # Points without a confident label are written at (0, 0), where training never weights them.
    crop = np.where(confident[:, None], np.clip(crop, 0, SIZE - 1), 0.0)
    return crop, confident & inside, hand_valid, matrix


def holistic_confidence(kp: np.ndarray, t: int) -> np.ndarray:
    """Our 64 points' confidence as rec1's Holistic file has it."""
    conf = np.ones(64)
    conf[:17] = 0.1 if t in LOW_BODY else _body_confidence(kp)
    conf[59:] = conf[:5]
    if t in NO_LEFT_HAND:
        conf[GROUPS["left_hand"].start:GROUPS["left_hand"].stop] = 0
    return conf


def _check_sample(label: dict, crop_bgr: np.ndarray, frames: list, t: int, kp: np.ndarray,
                  conf: np.ndarray) -> None:
    want_xy, want_visible, want_valid, matrix = expected_label(kp, conf)
    got = np.array([[k["x"], k["y"], k["visible"]] for k in label["keypoints"]])
    np.testing.assert_allclose(got[:, :2], want_xy, atol=0.5)
    assert (got[:, 2] == want_visible).all(), np.nonzero(got[:, 2] != want_visible)
    assert label["hand_valid"] == want_valid
    # The crop shows frame t (mp4v + JPEG noise only), not any other frame.
    crop = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB).astype(int)
    errors = [np.abs(warp_image(f, matrix, SIZE).astype(int) - crop).mean() for f in frames]
    assert errors[t] < 6 and errors[t] == min(errors), (t, errors)


def test_holistic_pose_every_k_duplicates_visibility_and_crops(rec, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(rec, out, "--every", "2") == 0
    printed = capsys.readouterr().out
    assert "kept 3 frames of 1 videos" in printed, printed
    assert "dropped 2: near-duplicate (change under 1)" in printed
    assert "dropped 1: under 5 confident body points" in printed
    assert "note: no video of these is in val" in printed
    labels = _labels(out)
    assert sorted(labels) == ["rec1_f000000", "rec1_f000004", "rec1_f000008"]
    for name, label in labels.items():
        t = int(name[-6:])
        kp = rec["points"]["rec1"][t]
        crop = cv2.imread(str(out / "images" / label["image"]))
        _check_sample(label, crop, rec["frames"]["rec1"], t, kp, holistic_confidence(kp, t))
        assert label["source"] == {"format": "pose", "layout": "mediapipe-holistic",
                                   "pose": "rec1.pose", "video": "rec1.mp4", "frame": t,
                                   "person": 0}
    assert labels["rec1_f000004"]["hand_valid"] == {"left_hand": False, "right_hand": True}
    left = labels["rec1_f000004"]["keypoints"][GROUPS["left_hand"].start:
                                               GROUPS["left_hand"].stop]
    assert all(k["visible"] == 0 and 0 <= k["x"] <= SIZE - 1 for k in left)
    knees = [labels["rec1_f000000"]["keypoints"][KEYPOINT_INDEX[n]]["visible"]
             for n in ("left_knee", "right_knee")]
    assert knees == [1, 0]  # confidence 0.5 is visible, 0.4999 is not
    scan = scan_dataset(out)
    assert len(scan.samples) == 3 and not scan.problems and not scan.warnings
    # rec1 is a train video: splits/val.txt exists and lists nothing
    assert not is_val_stem("rec1") and split_samples(scan, "val") == []


def test_our_pose_every_frame_and_min_change(rec, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(rec, out, "--every", "1", pose="poses/rec2.pose", video="videos/rec2.mp4") == 0
    labels = _labels(out)
    assert sorted(int(n[-6:]) for n in labels) == [0, 2, 3, 5]  # 1 and 4 repeat 0 and 3
    assert "dropped 2: near-duplicate" in capsys.readouterr().out
    seq = our_sequence(rec["points"]["rec2"])
    for name, label in labels.items():
        t = int(name[-6:])
        crop = cv2.imread(str(out / "images" / label["image"]))
        _check_sample(label, crop, rec["frames"]["rec2"], t, seq.keypoints[t, :, :2],
                      seq.keypoints[t, :, 2])
        assert label["source"]["layout"] == "signlang-jax"
    assert labels["rec2_f000002"]["hand_valid"] == {"left_hand": True, "right_hand": False}
    thumb_tip = KEYPOINT_INDEX["right_hand_thumb_tip"]
    assert labels["rec2_f000000"]["keypoints"][thumb_tip]["visible"] == 1  # score 0.5
    # --min-change 0 keeps every frame; a higher hand threshold hides the 0.5 thumb tip
    out2 = tmp_path / "out2"
    assert run(rec, out2, "--every", "1", "--min-change", "0", "--min-hand-confidence", "0.6",
               pose="poses/rec2.pose", video="videos/rec2.mp4") == 0
    labels = _labels(out2)
    assert len(labels) == 6
    out3 = tmp_path / "out3"  # nothing changes by 255 levels: only the first frame stays
    assert run(rec, out3, "--every", "1", "--min-change", "255", pose="poses/rec2.pose",
               video="videos/rec2.mp4") == 0
    assert list(_labels(out3)) == ["rec2_f000000"]
    assert labels["rec2_f000000"]["keypoints"][thumb_tip]["visible"] == 0
    assert not scan_dataset(out2).problems


def test_reduced_holistic_takes_the_pose_points_by_name(rec, tmp_path):
    from pose_format.utils.generic import reduce_holistic

    # pose-format's reduce_holistic keeps 8 pose points (shoulders, elbows, wrists, hips).
    pose = pose_format.Pose.read((rec["root"] / "poses" / "rec1.pose").read_bytes())
    reduced = reduce_holistic(pose)
    assert len(reduced.header.components[0].points) == 8
    (tmp_path / "in").mkdir()
    with open(tmp_path / "in" / "rec1.pose", "wb") as f:
        reduced.write(f)
    out = tmp_path / "out"
    assert run(rec, out, "--every", "4", pose=str(tmp_path / "in" / "rec1.pose")) == 0
    labels = _labels(out)
    assert sorted(labels) == ["rec1_f000000", "rec1_f000004", "rec1_f000008"]
    kept = [BODY_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_elbow",
                                          "right_elbow", "left_wrist", "right_wrist",
                                          "left_hip", "right_hip")]
    for name, label in labels.items():
        t = int(name[-6:])
        kp = rec["points"]["rec1"][t].copy()
        conf = holistic_confidence(kp, t)
        missing = [i for i in range(17) if i not in kept] + list(range(59, 64))
        conf[missing], kp[missing, :2] = 0, 0  # not in the file: missing, at (0, 0)
        crop = cv2.imread(str(out / "images" / label["image"]))
        _check_sample(label, crop, rec["frames"]["rec1"], t, kp, conf)
    assert not scan_dataset(out).problems


def test_splits_keep_each_video_in_one_split(rec, tmp_path, capsys):
    assert not is_val_stem("rec1") and is_val_stem("rec2")  # at the default val fraction 0.1
    out = tmp_path / "out"
    root = rec["root"]
    assert convert.main(["pose", "--pose", str(root / "poses"), "--video", str(root / "videos"),
                         "--out", str(out), "--size", str(SIZE), "--every", "2"]) == 0
    assert "kept 6 frames of 2 videos" in capsys.readouterr().out
    scan = scan_dataset(out)
    assert not scan.problems
    val = {s.stem for s in split_samples(scan, "val")}
    train = {s.stem for s in split_samples(scan, "train")}
    assert val == {s.stem for s in scan.samples if s.stem.startswith("rec2_")} != set()
    assert train == {s.stem for s in scan.samples if s.stem.startswith("rec1_")} != set()


def test_add_keeps_existing_samples_in_their_split(rec, tmp_path):
    from tests.conftest import write_dataset
    from tests.test_convert import write_fixture

    out = write_dataset(tmp_path / "out", 40)  # hash split, no split files
    before = {s: {x.stem for x in split_samples(scan_dataset(out), s)} for s in ("train", "val")}
    assert before["val"]  # some existing samples are hash-val
    assert run(rec, out, "--every", "4") == 1  # not empty: --add needed
    assert run(rec, out, "--every", "4", "--add", pose="poses", video="videos") == 0
    scan = scan_dataset(out)
    after = {s: {x.stem for x in split_samples(scan, s)} for s in ("train", "val")}
    assert before["val"] <= after["val"] and before["train"] <= after["train"]
    assert {s for s in after["val"] if s.startswith("rec")} == {
        s.stem for s in scan.samples if s.stem.startswith("rec2_")}
    # Another converter adding to the folder appends its hash-val samples to splits/val.txt.
    write_fixture(tmp_path, "coco-wholebody")
    assert convert.main(["coco-wholebody", "--ann", str(tmp_path / "ann.json"), "--images",
                         str(tmp_path), "--out", str(out), "--add", "--val-fraction", "0.5",
                         "--min-box", "16"]) == 0
    scan = scan_dataset(out)
    val = {x.stem for x in split_samples(scan, "val")}
    coco = [f"scene_{n}" for n in (100, 101, 102)]
    assert {s for s in coco if s in val} == {s for s in coco if is_val_stem(s, 0.5)}
    assert after["val"] <= val


def _pairs(rec, tmp_path, name: str, data=None, conf=None, components=None, width=W,
           frames=None) -> tuple[Path, Path]:
    """A .pose and a video named `name` in their own folder (Holistic rec1 unless changed)."""
    folder = tmp_path / name
    folder.mkdir()
    d, c = holistic_arrays(rec["points"]["rec1"])
    pose = write_pose_file(folder / f"{name}.pose", components or holistic_components(),
                           d if data is None else data, c if conf is None else conf, width)
    video = write_video(folder / f"{name}.mp4", frames or rec["frames"]["rec1"])
    return pose, video


def _refused(pose: Path, video: Path, tmp_path, capsys, *message: str, extra=()) -> None:
    out = tmp_path / "refused"
    assert convert.main(["pose", "--pose", str(pose), "--video", str(video), "--out", str(out),
                         *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR ") and all(m in err for m in message), err
    assert not out.exists()  # every check before the first write


def test_bad_inputs_name_the_file_and_field_and_write_nothing(rec, tmp_path, capsys):
    d, c = holistic_arrays(rec["points"]["rec1"])
    keep = [i for i in range(d.shape[2]) if not 522 <= i < 543]
    pose, video = _pairs(rec, tmp_path, "no_right", d[:, :, keep], c[:, :, keep],
                         holistic_components(skip="RIGHT_HAND_LANDMARKS"))
    _refused(pose, video, tmp_path, capsys, "no_right.pose",
             "component 'RIGHT_HAND_LANDMARKS' is missing")
    bad_names = holistic_components()
    bad_names[0].points = ["LEFT_HAND", *bad_names[0].points[1:]]
    pose, video = _pairs(rec, tmp_path, "names", components=bad_names)
    _refused(pose, video, tmp_path, capsys, "names.pose",
             "component 'POSE_LANDMARKS' point 0 'LEFT_HAND' is not one of MediaPipe's 33")
    keep = [i for i in range(d.shape[2]) if i != 520]
    pose, video = _pairs(rec, tmp_path, "count", d[:, :, keep], c[:, :, keep],
                         holistic_components(counts={"LEFT_HAND_LANDMARKS": 20}))
    _refused(pose, video, tmp_path, capsys, "count.pose",
             "component 'LEFT_HAND_LANDMARKS' has 20 points", "has 21")
    pose, video = _pairs(rec, tmp_path, "frames", d[:-1], c[:-1])
    _refused(pose, video, tmp_path, capsys, "frames.mp4", "12 frames decoded", "frames.pose",
             "has 11 (field 'frames')")
    pose, video = _pairs(rec, tmp_path, "size", width=W + 40)
    _refused(pose, video, tmp_path, capsys, "size.mp4", "frame size 160x128", "200x128",
             "size.pose", "'dimensions'")
    unknown = [PoseHeaderComponent("BODY_135", [str(i) for i in range(d.shape[2])], [],
                                   [(0, 0, 0)], "XYZC")]
    pose, video = _pairs(rec, tmp_path, "unknown", components=unknown)
    _refused(pose, video, tmp_path, capsys, "unknown.pose", "unknown .pose layout",
             "BODY_135 (576 points)")
    _refused(pose.parent / "rec1.pose", video, tmp_path, capsys, "rec1.pose",
             "no such file or folder")
    _refused(rec["root"] / "poses" / "rec1.pose", rec["root"] / "videos" / "rec1.mp4", tmp_path,
             capsys, "rec1.pose", "field 'person': --person 1", "holds 1 person",
             extra=["--person", "1"])
    (tmp_path / "garbage.pose").write_bytes(b"\x00" * 10)
    _refused(tmp_path / "garbage.pose", video, tmp_path, capsys, "garbage.pose",
             "not a readable .pose file")


def test_a_rotated_phone_video_pairs_with_its_upright_pose(rec, tmp_path):
    """A video stored sideways with a 90-degree display rotation (as phones record upright) is
    decoded upright, so it pairs with the .pose made on its upright frames: the same labels as
    the upright video, not a size mismatch."""
    from tests.video_helpers import rotate_mp4

    folder = tmp_path / "phone"
    folder.mkdir()
    stored = folder / "rec2.mp4"
    writer = cv2.VideoWriter(str(stored), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (H, W))
    for frame in rec["frames"]["rec2"]:  # turned counter-clockwise; decoding turns it back
        writer.write(cv2.cvtColor(np.ascontiguousarray(np.rot90(frame)), cv2.COLOR_RGB2BGR))
    writer.release()
    rotate_mp4(stored)
    upright, phone = tmp_path / "upright", tmp_path / "rotated"
    assert run(rec, upright, pose="poses/rec2.pose", video="videos/rec2.mp4") == 0
    root = rec["root"]
    assert convert.main(["pose", "--pose", str(root / "poses/rec2.pose"), "--video", str(stored),
                         "--out", str(phone), "--size", str(SIZE)]) == 0
    assert _labels(phone) == _labels(upright) and _labels(phone)


def test_bad_videos_and_pairing(rec, tmp_path, capsys):
    pose, video = _pairs(rec, tmp_path, "broken")
    data = video.read_bytes()
    video.write_bytes(b"not a video at all" * 100)
    _refused(pose, video, tmp_path, capsys, "broken.mp4")
    video.write_bytes(data[:len(data) // 2])  # truncated mp4: its index is at the end
    _refused(pose, video, tmp_path, capsys, "broken.mp4")
    # A truncated AVI opens and decodes its first half.
    avi = tmp_path / "broken" / "broken.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (W, H))
    for frame in rec["frames"]["rec1"]:
        writer.write(frame)
    writer.release()
    avi.write_bytes(avi.read_bytes()[:avi.stat().st_size // 2])
    _refused(pose, avi, tmp_path, capsys, "broken.avi", "frames decoded, ending at",
             "of the 0.48 s the file states (truncated or corrupt), but",
             "broken.pose has 12 (field 'frames')")
    # folders: a .pose without its video, a video without its .pose
    (tmp_path / "p").mkdir()
    (tmp_path / "v").mkdir()
    for name in ("a", "b"):
        (tmp_path / "p" / f"{name}.pose").write_bytes((rec["root"] / "poses/rec1.pose")
                                                      .read_bytes())
    (tmp_path / "v" / "a.mp4").write_bytes((rec["root"] / "videos/rec1.mp4").read_bytes())
    _refused(tmp_path / "p", tmp_path / "v", tmp_path, capsys, "b.pose", "no b.* among --video")
    (tmp_path / "v" / "b.mp4").write_bytes(b"")
    (tmp_path / "v" / "c.mp4").write_bytes(b"")
    _refused(tmp_path / "p", tmp_path / "v", tmp_path, capsys, "c.mp4", "no c.* among --pose")


def test_cli_exit_code_and_message(rec, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "signlang_jax.data.convert", "pose", "--pose",
               str(rec["root"] / "poses" / "rec2.pose"), "--video",
               str(rec["root"] / "videos" / "rec1.mp4"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("ERROR ") and "Traceback" not in done.stderr
    assert "rec1.mp4: 12 frames decoded" in done.stderr and "has 6 (field 'frames')" in (
        done.stderr)
    assert not out.exists()


def test_without_pose_format(rec, tmp_path, monkeypatch, capsys):
    from tests.test_convert import write_fixture

    # None in sys.modules makes `import` raise ImportError, as when it is not installed.
    for name in ["pose_format", *[m for m in sys.modules if m.startswith("pose_format.")]]:
        monkeypatch.setitem(sys.modules, name, None)
    assert run(rec, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "pose-format" in err and 'pip install ".[pose]"' in err
    assert not (tmp_path / "out").exists()
    write_fixture(tmp_path, "coco-wholebody")  # the other converters do not need it
    assert convert.main(["coco-wholebody", "--ann", str(tmp_path / "ann.json"), "--images",
                         str(tmp_path), "--out", str(tmp_path / "coco"), "--min-box", "16"]) == 0


def test_a_failure_while_writing_leaves_whole_samples_only(rec, tmp_path, monkeypatch, capsys):
    from signlang_jax.data import convert_pose
    from signlang_jax.data.videos import VideoReadError

    calls = []
    real = convert_pose.decode_video

    def failing(path, wanted):  # the second pass (writing) breaks after frame 2
        calls.append(path)
        for f, frame, seconds in real(path, wanted):
            if len(calls) == 2 and f > 2:
                raise VideoReadError(f"{path}: frame {f} cannot be decoded")
            yield f, frame, seconds

    monkeypatch.setattr(convert_pose, "decode_video", failing)
    out = tmp_path / "out"
    assert run(rec, out, "--every", "2", pose="poses/rec2.pose", video="videos/rec2.mp4") == 1
    printed = capsys.readouterr()
    assert "rec2.mp4: frame 3 cannot be decoded (skipped)" in printed.err
    assert "kept 2 frames of 1 videos" in printed.out  # what is there
    scan = scan_dataset(out)
    assert [s.stem for s in scan.samples] == ["rec2_f000000", "rec2_f000002"]  # of 0, 2, 4
    assert not scan.problems and not scan.warnings
    assert sorted(p.name for p in out.rglob("*") if p.is_file() and "tmp" in p.name) == []
    # what was written joined its video's split (rec2 is a val video)
    assert [s.stem for s in split_samples(scan, "val")] == [s.stem for s in scan.samples]
    monkeypatch.undo()  # the video reads again: a re-run with --add writes the rest
    assert run(rec, out, "--every", "2", "--add", pose="poses/rec2.pose",
               video="videos/rec2.mp4") == 0
    scan = scan_dataset(out)
    assert [s.stem for s in split_samples(scan, "val")] == [
        "rec2_f000000", "rec2_f000002", "rec2_f000004"] == [s.stem for s in scan.samples]


def test_add_refuses_a_video_whose_frames_are_already_there(rec, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(rec, out, "--every", "2") == 0
    before = {p.name: p.read_bytes() for p in (out / "labels").iterdir()}
    assert run(rec, out, "--every", "1", "--add") == 1  # other frames of the same rec1
    assert "already has frames of a video named 'rec1'" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "labels").iterdir()} == before
    assert run(rec, out, "--every", "1", "--add", pose="poses/rec2.pose",
               video="videos/rec2.mp4") == 0  # another video is welcome


# ----------------------------------------------------------------- defects, each with its test


def _three_pairs(rec, tmp_path) -> tuple[Path, Path]:
    """Folders p/ and v/: rec1, rec2 and rec3 (a copy of rec2 under another name)."""
    poses, videos = tmp_path / "p", tmp_path / "v"
    poses.mkdir()
    videos.mkdir()
    for name, source in (("rec1", "rec1"), ("rec2", "rec2"), ("rec3", "rec2")):
        for folder, kind in ((poses, "poses/{}.pose"), (videos, "videos/{}.mp4")):
            target = folder / Path(kind.format(name)).name
            target.write_bytes((rec["root"] / kind.format(source)).read_bytes())
    return poses, videos


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_bad_video_is_skipped_and_the_others_converted(rec, tmp_path, capsys):
    poses, videos = _three_pairs(rec, tmp_path)
    (videos / "rec3.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    assert convert.main(["pose", "--pose", str(poses), "--video", str(videos), "--out", str(out),
                         "--size", str(SIZE), "--every", "2"]) == 1  # 1: something was skipped
    printed = capsys.readouterr()
    assert "rec3.mp4: cannot decode this video" in printed.err and "skipped" in printed.err
    assert "kept 6 frames of 2 videos" in printed.out
    scan = scan_dataset(out)
    assert {s.stem[:4] for s in scan.samples} == {"rec1", "rec2"} and not scan.problems


def test_an_interrupted_pose_conversion_resumes_with_add(rec, tmp_path, monkeypatch, capsys):
    interrupt_nth_encode(monkeypatch, 2)  # Ctrl-C while writing the second frame
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(rec, out, "--every", "2", pose="poses", video="videos")
    monkeypatch.undo()
    assert len(_labels(out)) == 1 and not scan_dataset(out).problems
    assert not [p for p in out.rglob("*") if "tmp" in p.name]
    assert run(rec, out, "--every", "2", "--add", pose="poses", video="videos") == 0
    assert "kept 6 frames of 2 videos" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert run(rec, fresh, "--every", "2", pose="poses", video="videos") == 0
    assert _files(out) == _files(fresh)
    # Once more changes nothing; other frames of a video already there are still refused.
    assert run(rec, out, "--every", "2", "--add", pose="poses", video="videos") == 0
    assert _files(out) == _files(fresh)
    assert run(rec, out, "--every", "1", "--add") == 1
    assert "already has frames of a video named 'rec1'" in capsys.readouterr().err


def test_converting_n_videos_lists_the_folder_once_and_writes_splits_once(
        rec, tmp_path, monkeypatch, capsys):
    import builtins
    import io
    import os

    from tests.conftest import write_dataset

    out = write_dataset(tmp_path / "out", 20)
    (out / "splits").mkdir()
    (out / "splits" / "val.txt").write_text("000003\n")
    poses, videos = _three_pairs(rec, tmp_path)
    labels, val = (out / "labels").resolve(), (out / "splits" / "val.txt").resolve()
    counts = {"list labels": 0, "read val.txt": 0, "replace val.txt": 0}

    def counting(real, key, target, path_arg=0):
        def wrapper(*args, **kwargs):
            if len(args) > path_arg and isinstance(args[path_arg], (str, os.PathLike)) and (
                    Path(args[path_arg]).resolve() == target):
                counts[key] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(os, "scandir", counting(os.scandir, "list labels", labels))
    monkeypatch.setattr(os, "listdir", counting(os.listdir, "list labels", labels))
    monkeypatch.setattr(io, "open", counting(io.open, "read val.txt", val))
    monkeypatch.setattr(builtins, "open", counting(builtins.open, "read val.txt", val))
    monkeypatch.setattr(os, "replace", counting(os.replace, "replace val.txt", val, 1))
    assert convert.main(["pose", "--pose", str(poses), "--video", str(videos), "--out", str(out),
                         "--size", str(SIZE), "--every", "2", "--add"]) == 0
    monkeypatch.undo()
    assert "kept 9 frames of 3 videos" in capsys.readouterr().out
    # Once per run, whatever the number of videos (the split file: parsed, then appended to).
    assert counts == {"list labels": 1, "read val.txt": 2, "replace val.txt": 1}
    listed = [s for s in (out / "splits" / "val.txt").read_text().split() if s]
    assert listed == ["000003"] + [s for s in sorted(_labels(out))
                                   if s.startswith("rec") and is_val_stem(s.split("_f")[0])]


def test_a_run_whose_every_video_fails_leaves_no_folder_behind(rec, tmp_path, monkeypatch,
                                                                 capsys):
    from signlang_jax.data import convert_pose

    def unreadable(plan, *args, **kwargs):
        raise convert_pose.ConvertError(f"{plan.video}: frame 2 cannot be decoded")

    monkeypatch.setattr(convert_pose, "write_video", unreadable)
    out = tmp_path / "out"
    assert run(rec, out, "--every", "2", pose="poses", video="videos") == 1
    assert "cannot be decoded" in capsys.readouterr().err
    assert not out.exists()  # no empty images/, labels/ or splits/val.txt to refuse next time
    monkeypatch.undo()
    assert run(rec, out, "--every", "2", pose="poses", video="videos") == 0
    assert "kept 6 frames of 2 videos" in capsys.readouterr().out

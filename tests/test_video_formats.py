"""Video job output files: .npz and .pose round trips, pose-format's view of ours, bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from signlang_jax.data import sequence_files as formats
from signlang_jax.data.sequence_files import (
    KeypointFileError,
    KeypointSequence,
    PoseFormatMissingError,
    read_npz,
    read_pose,
    write_npz,
    write_pose,
)
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS

ROOT = Path(__file__).resolve().parent.parent


def make_sequence(frames: int = 6, fps: float = 25.0, seed: int = 0) -> KeypointSequence:
    """A random sequence in a 640x480 frame with a few scores at and around 0."""
    rng = np.random.default_rng(seed)
    keypoints = np.empty((frames, NUM_KEYPOINTS, 3), np.float32)
    keypoints[..., 0] = rng.uniform(0, 640, (frames, NUM_KEYPOINTS))
    keypoints[..., 1] = rng.uniform(0, 480, (frames, NUM_KEYPOINTS))
    keypoints[..., 2] = rng.uniform(0, 1, (frames, NUM_KEYPOINTS))
    region = rng.uniform(50, 400, (frames, 3)).astype(np.float32)
    tracked = rng.random(frames) < 0.7
    metadata = {"model": "demo.onnx", "smoothing": '{"min_cutoff": 0.05, "beta": 80}'}
    return KeypointSequence(keypoints, fps, 640, 480, tracked, region, metadata)


# ------------------------------------------------------------------------- KeypointSequence


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(keypoints=np.zeros((6, 64, 3))), "keypoints must have dtype float32"),
        (dict(keypoints=np.zeros((6, 63, 3), np.float32)), r"must have shape \(T, 64, 3\)"),
        (dict(keypoints=[[0.0]]), "keypoints must be a numpy array"),
        (dict(tracked=np.zeros(5, bool)), r"tracked must have shape \(6,\)"),
        (dict(tracked=np.zeros(6, np.int8)), "tracked must have dtype bool"),
        (dict(region=np.zeros((6, 4), np.float32)), r"region must have shape \(6, 3\)"),
        (dict(fps=0.0), "fps must be a positive number"),
        (dict(width=640.0), "width must be a positive integer"),
        (dict(height=-1), "height must be a positive integer"),
        (dict(metadata={"a": 1}), "metadata must be a dict of str to str"),
    ],
)
def test_sequence_validation(change, message):
    seq = make_sequence()
    fields = dict(keypoints=seq.keypoints, fps=seq.fps, width=seq.width, height=seq.height,
                  tracked=seq.tracked, region=seq.region, metadata=seq.metadata)
    with pytest.raises(ValueError, match=message):
        KeypointSequence(**{**fields, **change})


def test_module_imports_without_jax_or_pose_format():
    code = ("import sys, signlang_jax.data.sequence_files; "
            "print(sorted(m for m in ('jax', 'torch', 'pose_format') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------- .npz


def test_npz_round_trip_exact(tmp_path):
    seq = make_sequence(fps=30000 / 1001)
    write_npz(tmp_path / "a.npz", seq)
    back = read_npz(tmp_path / "a.npz")
    for name in ("keypoints", "tracked", "region"):
        got, want = getattr(back, name), getattr(seq, name)
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert (back.fps, back.width, back.height) == (30000 / 1001, 640, 480)
    assert back.metadata == seq.metadata
    with np.load(tmp_path / "a.npz") as z:
        assert sorted(z.files) == sorted(formats.NPZ_FIELDS)
        assert z["keypoint_names"].tolist() == list(KEYPOINT_NAMES)
        assert z["frame_size"].tolist() == [640, 480] and int(z["format_version"]) == 1


def test_npz_empty_sequence(tmp_path):
    seq = KeypointSequence(np.zeros((0, 64, 3), np.float32), 25, 64, 48, np.zeros(0, bool),
                           np.zeros((0, 3), np.float32))
    write_npz(tmp_path / "e.npz", seq)
    assert read_npz(tmp_path / "e.npz").num_frames == 0


def _rewrite(path: Path, **changes) -> None:
    """Rewrite the .npz at `path` with fields replaced (None removes one)."""
    with np.load(path) as z:
        fields = {k: z[k] for k in z.files}
    fields.update(changes)
    np.savez(path, **{k: v for k, v in fields.items() if v is not None})


def test_npz_without_timestamps_reads_as_a_constant_rate(tmp_path):
    """Files from before the field: frame n at n / fps."""
    path = tmp_path / "old.npz"
    write_npz(path, make_sequence())
    _rewrite(path, timestamps=None)
    seq = read_npz(path)
    np.testing.assert_allclose(seq.timestamps, np.arange(seq.num_frames) / seq.fps)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        *[(name, None, "is missing") for name in formats.NPZ_FIELDS
          if name not in formats.NPZ_OPTIONAL],
        ("timestamps", np.zeros(5), r"shape \(5,\)"),
        ("timestamps", np.array([0.0, 0.1, 0.1, 0.2, 0.3, 0.4]), "strictly increasing"),
        ("keypoints", np.zeros((6, 63, 3), np.float32), r"shape \(6, 63, 3\)"),
        ("keypoints", np.zeros((6, 64, 3), np.float64), "dtype float32"),
        ("keypoints", np.zeros((6, 64, 3), np.int32), "dtype int32"),
        ("tracked", np.zeros(7, bool), r"shape \(7,\)"),
        ("tracked", np.zeros(6, np.uint8), "dtype uint8"),
        ("region", np.zeros((6, 2), np.float32), r"shape \(6, 2\)"),
        ("region", np.zeros((6, 3), np.float64), "dtype float32"),
        ("frame_size", np.array([640, 480, 3]), r"shape \(3,\)"),
        ("frame_size", np.array([0, 480]), r"\(width, height\) is 0x480"),
        ("fps", np.array([25.0, 30.0]), r"shape \(2,\)"),
        ("fps", np.float64(-1), "fps must be a positive number"),
        ("metadata", np.array("{not json"), "not valid JSON"),
        ("metadata", np.array('{"a": 1}'), "JSON object of strings"),
        ("metadata", np.array([1, 2]), "dtype int"),
        ("keypoint_names", np.array(KEYPOINT_NAMES[:63]), r"shape \(63,\)"),
        ("keypoint_names", np.array(KEYPOINT_NAMES[1:2] + KEYPOINT_NAMES[:1] + KEYPOINT_NAMES[2:]),
         "differs from the 64-point schema at index 0"),
        ("format_version", np.int64(2), "format_version 1 only"),
        ("format_version", np.array("1"), "dtype <U1"),
    ],
)
def test_read_npz_bad_field_names_file_and_field(tmp_path, field, value, message):
    path = tmp_path / "bad.npz"
    write_npz(path, make_sequence())
    _rewrite(path, **{field: value})
    with pytest.raises(KeypointFileError, match=message) as info:
        read_npz(path)
    assert str(path) in str(info.value) and field in str(info.value)


def test_read_npz_not_an_npz(tmp_path):
    good = tmp_path / "good.npz"
    write_npz(good, make_sequence())
    cases = {
        "text.npz": b"hello, not numpy",
        "empty.npz": b"",
        "truncated.npz": good.read_bytes()[: good.stat().st_size // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "single.npy", np.zeros(3))
    for name in [*cases, "single.npy", "absent.npz"]:
        with pytest.raises(KeypointFileError, match="npz|cannot read") as info:
            read_npz(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_read_npz_object_array_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    write_npz(path, make_sequence())
    _rewrite(path, metadata=np.array([{"a": "b"}], dtype=object))
    with pytest.raises(KeypointFileError, match="field 'metadata' is unreadable") as info:
        read_npz(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------- atomic writes


def _only_file_is(folder: Path, name: str) -> bool:
    return [p.name for p in folder.iterdir()] == [name]


def test_failed_npz_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "out.npz"
    write_npz(path, make_sequence(seed=1))
    before = path.read_bytes()

    def savez_then_crash(file, **fields):
        file.write(b"PK half an archive")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_crash)
    with pytest.raises(RuntimeError, match="disk full"):
        write_npz(path, make_sequence(seed=2))
    assert path.read_bytes() == before and _only_file_is(tmp_path, "out.npz")
    monkeypatch.undo()
    assert np.array_equal(read_npz(path).keypoints, make_sequence(seed=1).keypoints)


def test_failed_pose_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    import pose_format

    path = tmp_path / "out.pose"
    write_pose(path, make_sequence(seed=1))
    before = path.read_bytes()

    def write_then_crash(self, buffer):
        buffer.write(before[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(pose_format.Pose, "write", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        write_pose(path, make_sequence(seed=2))
    assert path.read_bytes() == before and _only_file_is(tmp_path, "out.pose")


def test_write_into_missing_folder_names_the_file(tmp_path):
    path = tmp_path / "no" / "such" / "out.npz"
    with pytest.raises(KeypointFileError, match="cannot write") as info:
        write_npz(path, make_sequence())
    assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------ .pose


def test_pose_round_trip(tmp_path):
    seq = make_sequence(fps=29.97)
    seq.keypoints[0, :4, 2] = [0.0, 0.29, 0.3, 1.0]  # missing, below, at, above min_score
    seq.keypoints[1, 5, 0] = np.nan  # a non-finite point is missing too
    path = tmp_path / "a.pose"
    write_pose(path, seq, min_score=0.3)
    back = read_pose(path)

    score = seq.keypoints[..., 2]
    kept = (score >= 0.3) & np.isfinite(seq.keypoints[..., :2]).all(-1)
    assert kept[0, :4].tolist() == [False, False, True, True] and not kept[1, 5]
    assert back.keypoints.dtype == np.float32 and back.keypoints.shape == seq.keypoints.shape
    assert np.array_equal(back.keypoints[kept], seq.keypoints[kept])
    assert not back.keypoints[~kept].any()
    assert back.fps == np.float32(29.97)  # .pose stores fps as float32
    assert (back.width, back.height) == (640, 480)
    assert not back.tracked.any() and np.isnan(back.region).all()  # .pose holds neither


def test_pose_file_as_pose_format_reads_it(tmp_path):
    from pose_format import Pose

    seq = make_sequence(fps=25.0)
    write_pose(tmp_path / "a.pose", seq, min_score=0.5)
    pose = Pose.read((tmp_path / "a.pose").read_bytes())
    assert pose.body.fps == 25.0 and pose.body.data.shape == (6, 1, 64, 2)
    dims = pose.header.dimensions
    assert (dims.width, dims.height, dims.depth) == (640, 480, 0)
    kept = seq.keypoints[..., 2] >= 0.5
    want_confidence = np.where(kept, seq.keypoints[..., 2], 0)
    np.testing.assert_array_equal(pose.body.confidence[:, 0], want_confidence)
    np.testing.assert_array_equal(pose.body.data.mask[:, 0, :, 0], ~kept)
    names = [(c.name, len(c.points), len(c.limbs)) for c in pose.header.components]
    assert names == [
        ("BODY", 17, 19), ("LEFT_HAND", 21, 20), ("RIGHT_HAND", 21, 20), ("FACE", 5, 4)]


def test_pose_format_utilities_recognise_our_layout(tmp_path):
    from pose_format import Pose
    from pose_format.utils import generic

    write_pose(tmp_path / "a.pose", make_sequence())
    read = lambda: Pose.read((tmp_path / "a.pose").read_bytes())
    pose = read()
    assert generic.detect_known_pose_format(pose) == "coco_wholebody_133"
    assert generic.pose_shoulders(pose.header) == (
        ("BODY", "right_shoulder"), ("BODY", "left_shoulder"))
    info = generic.pose_normalization_info(pose.header)
    assert (info.p1, info.p2) == (KEYPOINT_INDEX["right_shoulder"], KEYPOINT_INDEX["left_shoulder"])
    pose.normalize(info)  # the mean shoulder width becomes 1
    shoulders = pose.body.data[:, 0, [info.p1, info.p2]]
    widths = np.linalg.norm(shoulders[:, 0] - shoulders[:, 1], axis=-1)
    assert widths.mean() == pytest.approx(1, rel=1e-5)
    assert generic.hands_components(pose.header)[0] == ("LEFT_HAND", "RIGHT_HAND")
    left, right = GROUPS["left_hand"].start, GROUPS["right_hand"].start
    assert generic.hands_indexes(pose.header) == [left + 9, right + 9]
    assert generic.get_hand_wrist_index(pose, "LEFT") == left
    assert generic.get_body_hand_wrist_index(pose, "RIGHT") == KEYPOINT_INDEX["right_wrist"]
    generic.correct_wrists(pose)
    legs = [KEYPOINT_INDEX[f"{s}_{p}"] for s in ("left", "right") for p in ("hip", "knee", "ankle")]
    hidden = generic.pose_hide_legs(read())
    assert not hidden.body.confidence[:, :, legs].any()
    assert generic.pose_hide_legs(read(), remove=True).body.data.shape == (6, 1, 58, 2)
    generic.normalize_pose_size(read())


def test_read_pose_refuses_other_layouts_and_bad_bytes(tmp_path):
    from pose_format.utils import generic

    other = tmp_path / "openpose.pose"
    with other.open("wb") as f:
        generic.fake_openpose_pose(num_frames=2).write(f)
    with pytest.raises(KeypointFileError, match="not a signlang-jax .pose file") as info:
        read_pose(other)
    assert str(other) in str(info.value) and "pose_keypoints_2d" in str(info.value)
    junk = tmp_path / "junk.pose"
    junk.write_bytes(b"\x00\x01 not a pose")
    with pytest.raises(KeypointFileError, match="not a readable .pose") as info:
        read_pose(junk)
    assert str(junk) in str(info.value)


def test_write_pose_refuses_frames_too_large_for_the_header(tmp_path):
    seq = make_sequence()
    seq.width = 70000
    with pytest.raises(KeypointFileError, match="65535"):
        write_pose(tmp_path / "big.pose", seq)
    assert not list(tmp_path.iterdir())


def test_pose_functions_without_pose_format_say_how_to_install(tmp_path, monkeypatch):
    # None in sys.modules makes `import` raise ImportError, as when the package is not installed.
    for name in ["pose_format", *[m for m in sys.modules if m.startswith("pose_format.")]]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(PoseFormatMissingError, match="pip install pose-format"):
        write_pose(tmp_path / "a.pose", make_sequence())
    with pytest.raises(PoseFormatMissingError, match=r"signlang-jax\[pose\]"):
        read_pose(tmp_path / "a.pose")
    assert not list(tmp_path.iterdir())

"""Dataset validation: malformed labels and images give errors naming file and field."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signlang_jax.data.dataset import (
    DatasetError,
    bbox_from_keypoints,
    is_val_stem,
    read_label,
    scan_dataset,
    split_samples,
)
from signlang_jax.data.validate import main as validate_main
from tests.conftest import write_dataset, write_sample


@pytest.fixture
def valid(tmp_path: Path) -> tuple[Path, dict]:
    """A dataset root with one valid 64x48 sample '000001'."""
    label = write_sample(tmp_path, "000001", np.random.default_rng(0))
    return tmp_path, label


def _rewrite(root: Path, label: object) -> Path:
    path = root / "labels" / "000001.json"
    path.write_text(json.dumps(label))
    return path


def _errors(root: Path, path: Path | None = None) -> str:
    path = path or root / "labels" / "000001.json"
    with pytest.raises(DatasetError) as info:
        read_label(path, root)
    return str(info.value)


def test_valid_sample_loads_exact_values(valid):
    root, label = valid
    sample = read_label(root / "labels" / "000001.json", root)
    assert sample.width == 64 and sample.height == 48
    assert sample.keypoints.shape == (64, 3) and sample.keypoints.dtype == np.float32
    assert sample.keypoints[21, 0] == np.float32(label["keypoints"][21]["x"])
    assert sample.keypoints[21, 2] == label["keypoints"][21]["visible"]
    np.testing.assert_array_equal(sample.bbox, [1, 2, 61, 44])


def _set_kp(field, value):
    def mutate(label):
        label["keypoints"][21][field] = value
    return mutate


def _del_kp(field):
    def mutate(label):
        del label["keypoints"][21][field]
    return mutate


def _set(field, value):
    def mutate(label):
        label[field] = value
    return mutate


def _del(field):
    def mutate(label):
        del label[field]
    return mutate


def _swap_names(label):
    kps = label["keypoints"]
    kps[17], kps[38] = kps[38], kps[17]


KP21 = "labels/000001.json: keypoints[21] 'left_hand_thumb_tip'"
MALFORMED = {
    "x beyond width": (_set_kp("x", 530.2), f"{KP21}: x=530.2 is outside the image width 64"),
    "negative y": (_set_kp("y", -1.5), f"{KP21}: y=-1.5 is outside the image height 48"),
    "x is a string": (_set_kp("x", "12"), f"{KP21}: x='12' is not a number"),
    "x is null": (_set_kp("x", None), f"{KP21}: x=None is not a number"),
    "x missing": (_del_kp("x"), f"{KP21}: x is missing"),
    "y is NaN": (_set_kp("y", math.nan), f"{KP21}: y=nan is not finite"),
    "x is infinite": (_set_kp("x", math.inf), f"{KP21}: x=inf is not finite"),
    "visible is 2": (_set_kp("visible", 2), f"{KP21}: visible=2; expected 0 or 1"),
    "visible is bool": (_set_kp("visible", True), f"{KP21}: visible=True; expected 0 or 1"),
    "wrong name": (_set_kp("name", "left_thumb"), "labels/000001.json: keypoints[21]: name is "
                   "'left_thumb'; expected 'left_hand_thumb_tip'"),
    "hands swapped": (_swap_names, "labels/000001.json: keypoints[17]: name is "
                      "'right_hand_wrist'; expected 'left_hand_wrist'"),
    "63 keypoints": (lambda lab: lab["keypoints"].pop(),
                     "labels/000001.json: keypoints: has 63 entries; expected 64"),
    "keypoints not a list": (_set("keypoints", {"nose": 1}),
                             "labels/000001.json: keypoints: expected a list of 64 objects, "
                             "got dict"),
    "keypoints missing": (_del("keypoints"), "labels/000001.json: keypoints: expected a list"),
    "keypoint not an object": (lambda lab: lab["keypoints"].__setitem__(3, [1, 2]),
                               "labels/000001.json: keypoints[3]: expected an object"),
    "width missing": (_del("width"), "labels/000001.json: width: missing"),
    "height zero": (_set("height", 0), "labels/000001.json: height: 0 is not a positive integer"),
    "width fractional": (_set("width", 64.5),
                         "labels/000001.json: width: 64.5 is not a positive integer"),
    "width mismatch": (_set("width", 640), "labels/000001.json: width: 640 does not match the "
                       "image images/000001.png (64x48)"),
    "image missing field": (_del("image"), "labels/000001.json: image: missing"),
    "image absolute": (_set("image", "/etc/passwd.png"),
                       "labels/000001.json: image: '/etc/passwd.png' must be a file name inside "
                       "images/"),
    "image traversal": (_set("image", "../labels/000001.png"),
                        "labels/000001.json: image: '../labels/000001.png' must be a file name"),
    "image other stem": (_set("image", "000002.png"),
                         "labels/000001.json: image: '000002.png' does not have the label's stem"),
    "image not found": (_set("image", "000001.jpg"), "labels/000001.json: image: '000001.jpg' "
                        "not found: images/000001.jpg does not exist"),
    "image bad extension": (_set("image", "000001.gif"),
                            "labels/000001.json: image: '000001.gif' has extension '.gif'"),
    "bbox 3 numbers": (_set("bbox", [1, 2, 3]), "labels/000001.json: bbox: [1, 2, 3]; expected "
                       "[x_min, y_min, width, height]"),
    "bbox zero width": (_set("bbox", [1, 2, 0, 3]), "labels/000001.json: bbox: [1, 2, 0, 3]; "
                        "expected finite numbers with positive width and height"),
    "bbox string": (_set("bbox", "1,2,3,4"), "labels/000001.json: bbox: '1,2,3,4'"),
    "top level list": (lambda lab: None, None),  # handled in its own test below
}


@pytest.mark.parametrize("case", [c for c in MALFORMED if c != "top level list"])
def test_malformed_label_names_file_and_field(valid, case):
    root, label = valid
    mutate, expected = MALFORMED[case]
    bad = copy.deepcopy(label)
    mutate(bad)
    _rewrite(root, bad)
    assert expected in _errors(root)


def test_every_problem_in_a_file_is_listed(valid):
    root, label = valid
    label["keypoints"][0]["x"] = 99.0
    label["keypoints"][63]["visible"] = 5
    label["bbox"] = [0, 0, -1, 1]
    _rewrite(root, label)
    message = _errors(root)
    assert "keypoints[0] 'nose': x=99.0 is outside the image width 64" in message
    assert "keypoints[63] 'face_right_ear': visible=5" in message
    assert "bbox:" in message
    assert len(message.splitlines()) == 3


@pytest.mark.parametrize("text, expected", [
    ("[1, 2]", "labels/000001.json: top level is a list; expected a JSON object"),
    ("{\"image\": ", "labels/000001.json: not readable JSON: Expecting value"),
    ("", "labels/000001.json: not readable JSON"),
    ("\xff\xfe", "labels/000001.json: not readable JSON"),
])
def test_unreadable_json(valid, text, expected):
    root, _ = valid
    (root / "labels" / "000001.json").write_bytes(text.encode("latin-1"))
    assert expected in _errors(root)


def test_truncated_jpeg_rejected(tmp_path):
    label = write_sample(tmp_path, "000001", np.random.default_rng(0), ext=".jpg")
    path = tmp_path / "images" / "000001.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "images/000001.jpg: truncated JPEG" in _errors(tmp_path)
    assert label["image"] == "000001.jpg"


def test_corrupt_png_rejected(valid):
    root, _ = valid
    path = root / "images" / "000001.png"
    data = bytearray(path.read_bytes())
    data[40:200] = b"\x00" * 160  # destroy the compressed data but keep the IEND trailer
    path.write_bytes(bytes(data))
    assert "images/000001.png: image could not be decoded" in _errors(root)


def test_not_an_image_rejected(valid):
    root, _ = valid
    (root / "images" / "000001.png").write_text("hello")
    assert "images/000001.png: not a JPEG or PNG file" in _errors(root)


def test_transparent_rgba_rejected_opaque_accepted(valid):
    root, _ = valid
    path = root / "images" / "000001.png"
    rgba = np.full((48, 64, 4), 200, np.uint8)
    cv2.imwrite(str(path), rgba)  # alpha 200 everywhere: transparent
    assert "images/000001.png: RGBA image with transparent pixels" in _errors(root)
    rgba[..., 3] = 255
    cv2.imwrite(str(path), rgba)
    read_label(root / "labels" / "000001.json", root)


def test_grayscale_and_16bit_converted(valid):
    from signlang_jax.data.images import read_image

    root, _ = valid
    path = root / "images" / "000001.png"
    gray16 = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20)
    cv2.imwrite(str(path), gray16)
    read_label(root / "labels" / "000001.json", root)
    image = read_image(path)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], (gray16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_visible_defaults_to_one_and_bbox_is_derived(valid):
    root, label = valid
    for kp in label["keypoints"]:
        del kp["visible"]
    del label["bbox"]
    _rewrite(root, label)
    sample = read_label(root / "labels" / "000001.json", root)
    assert np.all(sample.keypoints[:, 2] == 1)
    xs = [kp["x"] for kp in label["keypoints"]]
    ys = [kp["y"] for kp in label["keypoints"]]
    np.testing.assert_allclose(sample.bbox, [min(xs), min(ys), max(xs) - min(xs),
                                             max(ys) - min(ys)], rtol=1e-6)


def test_bbox_from_keypoints_uses_visible_points_only():
    kps = np.zeros((64, 3), np.float32)
    kps[:, :2] = 30.0
    kps[0] = [10, 20, 1]
    kps[1] = [40, 25, 1]
    np.testing.assert_array_equal(bbox_from_keypoints(kps, 64, 48), [10, 20, 30, 5])
    kps[:, 2] = 0  # nothing visible: the box of all points
    np.testing.assert_array_equal(bbox_from_keypoints(kps, 64, 48), [10, 20, 30, 10])
    kps[:2] = [30, 30, 0]  # all points equal: the whole image
    np.testing.assert_array_equal(bbox_from_keypoints(kps, 64, 48), [0, 0, 64, 48])


def test_scan_lists_every_bad_file_and_keeps_good_ones(tmp_path):
    write_dataset(tmp_path, 6)
    (tmp_path / "labels" / "000002.json").write_text("{}")
    (tmp_path / "images" / "000004.png").unlink()
    cv2.imwrite(str(tmp_path / "images" / "extra.png"), np.zeros((4, 4, 3), np.uint8))
    scan = scan_dataset(tmp_path)
    assert [s.stem for s in scan.samples] == ["000000", "000001", "000003", "000005"]
    files = sorted({p.file for p in scan.problems})
    assert files == ["labels/000002.json", "labels/000004.json"]
    assert any("images/000004.png does not exist" in str(p) for p in scan.problems)
    assert [w.file for w in scan.warnings] == ["images/extra.png"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="labels.*is not a directory.*--labels-dir"):
        (tmp_path / "images").mkdir()
        scan_dataset(tmp_path)


def test_hash_split_is_stable_when_files_are_added(tmp_path):
    write_dataset(tmp_path, 40)
    before = {s.stem for s in split_samples(scan_dataset(tmp_path), "val", 0.25)}
    write_dataset(tmp_path / "more", 0)
    rng = np.random.default_rng(1)
    for i in range(40, 80):
        write_sample(tmp_path, f"{i:06d}", rng)
    scan = scan_dataset(tmp_path)
    after_val = {s.stem for s in split_samples(scan, "val", 0.25)}
    after_train = {s.stem for s in split_samples(scan, "train", 0.25)}
    assert before == {s for s in after_val if int(s) < 40}
    assert after_val.isdisjoint(after_train) and len(after_val | after_train) == 80
    assert 8 <= len(after_val) <= 32  # about a quarter
    assert is_val_stem("000000", 1.0) and not is_val_stem("000000", 0.0)


def test_split_files(tmp_path):
    write_dataset(tmp_path, 5)
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("000003.jpg\n# comment\n\n000001\n")
    scan = scan_dataset(tmp_path)
    assert [s.stem for s in split_samples(scan, "val")] == ["000003", "000001"]
    assert [s.stem for s in split_samples(scan, "train")] == ["000000", "000002", "000004"]
    (tmp_path / "splits" / "train.txt").write_text("000000\n000001\n000009\n")
    with pytest.raises(DatasetError) as info:
        split_samples(scan, "train")
    message = str(info.value)
    assert "splits/val.txt: '000001' is also in splits/train.txt" in message
    assert "splits/train.txt: '000009' has no valid sample" in message


def test_validate_cli_reports_and_exits_nonzero(tmp_path, capsys):
    write_dataset(tmp_path, 4)
    assert validate_main(["--data-root", str(tmp_path)]) == 0
    assert "OK" in capsys.readouterr().out
    label = json.loads((tmp_path / "labels" / "000001.json").read_text())
    label["keypoints"][40]["x"] = 1e9
    (tmp_path / "labels" / "000001.json").write_text(json.dumps(label))
    (tmp_path / "labels" / "000002.json").write_text("nope")
    assert validate_main(["--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert ("ERROR labels/000001.json: keypoints[40] 'right_hand_thumb_mcp': x=1000000000.0 is "
            "outside the image width 64") in out
    assert "ERROR labels/000002.json: not readable JSON" in out
    assert "out_of_bounds      1" in out and "unreadable_json    1" in out
    assert "4 labels, 2 valid, 2 files with problems" in out
    assert "left_hand" in out and "%" in out


# ----------------------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_only_dataset_errors(valid, data):
    root, label = valid
    choice = data.draw(st.integers(0, 3))
    if choice == 0:
        bad = data.draw(json_values)
    else:
        bad = copy.deepcopy(label)
        if choice == 1:
            key = data.draw(st.sampled_from(["image", "width", "height", "keypoints", "bbox"]))
            bad[key] = data.draw(json_values)
        else:
            i = data.draw(st.integers(0, 63))
            key = data.draw(st.sampled_from(["name", "x", "y", "visible"]))
            if choice == 2:
                bad["keypoints"][i][key] = data.draw(json_values)
            else:
                bad["keypoints"][i] = data.draw(json_values)
    _rewrite(root, bad)
    try:
        sample = read_label(root / "labels" / "000001.json", root)
    except DatasetError as e:
        assert str(e).startswith(("labels/000001.json", "images/000001.png"))
    else:
        assert np.isfinite(sample.keypoints).all()

"""Tests for the COCO-WholeBody and Halpe converters (signlang_jax/data/convert.py).

Fixtures are synthetic signers pasted into a larger canvas, annotated in each format: the
converter must cut each person back out and reproduce its known labels.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from signlang_jax.data import convert
from signlang_jax.data.dataset import scan_dataset
from signlang_jax.keypoints import GROUPS
from signlang_jax.synth import render_sample
from tests.conftest import interrupt_nth_encode

TILE = 64
OFFSETS = ((10, 10), (120, 10), (60, 100))


def _tiles() -> list[tuple[np.ndarray, np.ndarray]]:
    """(RGB image, (64, 3) x, y, visible) of three synthetic signers."""
    out = []
    for i in range(len(OFFSETS)):
        image, label = render_sample(5, i, TILE)
        out.append((image, np.array([[k["x"], k["y"], k["visible"]] for k in label["keypoints"]])))
    return out


def _coco_points(kp: np.ndarray, ox: int, oy: int) -> np.ndarray:
    """Our (64, 3) label as COCO (x, y, v): v = 2 visible, 1 labelled but hidden."""
    pts = kp.copy()
    pts[:, :2] += (ox, oy)
    pts[:, 2] = np.where(kp[:, 2] > 0, 2, 1)
    return pts


def _flat(a: np.ndarray) -> list[float]:
    return [float(v) for v in a.ravel()]


def write_fixture(root, fmt: str) -> tuple:
    """A 220x180 canvas with three pasted signers and its annotation file."""
    canvas = np.full((180, 220, 3), 40, np.uint8)
    tiles = _tiles()
    anns = []
    for n, ((image, kp), (ox, oy)) in enumerate(zip(tiles, OFFSETS, strict=True)):
        canvas[oy:oy + TILE, ox:ox + TILE] = image
        pts = _coco_points(kp, ox, oy)
        zeros = lambda k: np.zeros((k, 3))
        ann = {"id": 100 + n, "image_id": 7, "iscrowd": 0,
               "bbox": [ox - 0.5, oy - 0.5, TILE, TILE]}  # the tile's pixel edges
        if fmt == "coco-wholebody":
            ann.update(keypoints=_flat(pts[:17]), foot_kpts=_flat(zeros(6)),
                       face_kpts=_flat(zeros(68)), lefthand_kpts=_flat(pts[17:38]),
                       righthand_kpts=_flat(pts[38:59]), lefthand_valid=True,
                       righthand_valid=True)
        else:
            ann["keypoints"] = _flat(np.concatenate([pts[:17], zeros(3 + 6 + 68), pts[17:59]]))
        anns.append(ann)
    cv2.imwrite(str(root / "scene.png"), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    data = {"images": [{"id": 7, "file_name": "scene.png", "width": 220, "height": 180}],
            "annotations": anns}
    (root / "ann.json").write_text(json.dumps(data))
    return tiles, data


def _shifted_error(crop: np.ndarray, image: np.ndarray, dx: int, dy: int) -> float:
    shifted = np.roll(crop, (dy, dx), (0, 1))
    return float(np.abs(shifted[2:-2, 2:-2].astype(int) - image[2:-2, 2:-2].astype(int)).mean())


def _labels(out) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / "labels").glob("*.json"))}


@pytest.mark.parametrize("fmt", ["coco-wholebody", "halpe"])
def test_converter_cuts_each_person_back_out_with_its_labels(tmp_path, fmt, capsys):
    tiles, _ = write_fixture(tmp_path, fmt)
    out = tmp_path / "out"
    assert convert.main([fmt, "--ann", str(tmp_path / "ann.json"), "--images", str(tmp_path),
                         "--out", str(out), "--size", str(TILE), "--margin", "0",
                         "--min-box", "16"]) == 0
    assert "kept 3 persons" in capsys.readouterr().out
    labels = _labels(out)
    assert sorted(labels) == ["scene_100", "scene_101", "scene_102"]
    for (image, kp), name in zip(tiles, sorted(labels), strict=True):
        label = labels[name]
        got = np.array([[k["x"], k["y"], k["visible"]] for k in label["keypoints"]])
        np.testing.assert_allclose(got[:59, :2], kp[:59, :2], atol=0.5)  # body and hands
        np.testing.assert_allclose(got[59:, :2], kp[:5, :2], atol=0.5)  # anchors = nose..ears
        # visible where it was visible (and inside the tile)
        assert (got[:59, 2] == kp[:59, 2]).all()
        crop = cv2.cvtColor(cv2.imread(str(out / "images" / label["image"])), cv2.COLOR_BGR2RGB)
        # The pixels line up: JPEG noise only, and any 1-pixel shift matches worse.
        errors = {shift: _shifted_error(crop, image, *shift)
                  for shift in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))}
        assert errors[(0, 0)] < 6 and errors[(0, 0)] == min(errors.values())
        assert label["hand_valid"] == {"left_hand": True, "right_hand": True}
        np.testing.assert_allclose(label["bbox"], [0, 0, TILE - 1, TILE - 1], atol=0.51)
    scan = scan_dataset(out)
    assert len(scan.samples) == 3 and not scan.problems


def test_filters_visibility_and_invalid_hands(tmp_path, capsys):
    tiles, data = write_fixture(tmp_path, "coco-wholebody")
    anns = data["annotations"]
    anns[0]["iscrowd"] = 1
    anns[1]["bbox"] = [anns[1]["bbox"][0], anns[1]["bbox"][1], 20, 20]  # small box
    anns[2]["lefthand_valid"] = False
    body = anns[2]["keypoints"]
    body[0:3] = [0, 0, 0]  # nose not labelled: hidden, clamped into the crop
    (tmp_path / "ann.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    assert convert.main(["coco-wholebody", "--ann", str(tmp_path / "ann.json"), "--images",
                         str(tmp_path), "--out", str(out), "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "kept 1 persons" in printed
    assert "dropped 1: crowd" in printed and "dropped 1: box under 32 px" in printed
    label = _labels(out)["scene_102"]
    vis = np.array([k["visible"] for k in label["keypoints"]])
    assert not vis[GROUPS["left_hand"].start:GROUPS["left_hand"].stop].any()
    xy = np.array([[k["x"], k["y"]] for k in label["keypoints"]])
    # Unlabelled (the nose, the invalid left hand): at (0, 0), where training never weights.
    assert vis[0] == 0 and (xy[0] == 0).all()
    assert (xy[GROUPS["left_hand"].start:GROUPS["left_hand"].stop] == 0).all()
    from signlang_jax.data.hand_crops import training_weights

    assert training_weights(np.c_[xy, vis], 32, 32, 0.5)[[0, 17]].tolist() == [0.0, 0.0]
    # Labelled but hidden (v=1) keeps its place (inside the crop, not at the corner).
    left = range(GROUPS["left_hand"].start, GROUPS["left_hand"].stop)
    hidden = [i for i in range(1, 59) if tiles[2][1][i, 2] == 0 and i not in left]
    assert hidden and (xy[hidden] > 0).any(1).all() and not vis[hidden].any()
    # --min-hand-points: this person has 21 labelled right-hand points (left hand invalid)
    assert convert.main(["coco-wholebody", "--ann", str(tmp_path / "ann.json"), "--images",
                         str(tmp_path), "--out", str(tmp_path / "o2"), "--min-hand-points",
                         "22"]) == 0
    assert "dropped 1: under 22 labelled hand points" in capsys.readouterr().out


def _refused(tmp_path, data: dict, message: str, capsys, fmt: str = "coco-wholebody") -> None:
    (tmp_path / "bad.json").write_text(json.dumps(data))
    out = tmp_path / "bad_out"
    assert convert.main([fmt, "--ann", str(tmp_path / "bad.json"), "--images", str(tmp_path),
                         "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and message in err, err
    assert not out.exists()  # every check runs before anything is written


def test_bad_input_names_the_file_and_field(tmp_path, capsys):
    _, data = write_fixture(tmp_path, "coco-wholebody")
    broken = json.loads(json.dumps(data))
    del broken["annotations"][1]["lefthand_kpts"]
    _refused(tmp_path, broken, "annotations[1]: field 'lefthand_kpts' must be 21 x 3", capsys)
    broken = json.loads(json.dumps(data))
    broken["annotations"][0]["keypoints"] = broken["annotations"][0]["keypoints"][:48]
    _refused(tmp_path, broken, "field 'keypoints' must be 17 x 3 = 51 numbers (x, y, v); got 48",
             capsys)
    broken = json.loads(json.dumps(data))
    broken["annotations"][0]["image_id"] = 99
    _refused(tmp_path, broken, "annotations[0]: field 'image_id' 99 names no entry", capsys)
    _refused(tmp_path, {"images": []}, "field 'annotations' must be a list", capsys)
    _refused(tmp_path, data, "field 'keypoints' must be 136 x 3", capsys, fmt="halpe")
    (tmp_path / "bad.json").write_text("{not json")
    assert convert.main(["halpe", "--ann", str(tmp_path / "bad.json"), "--images",
                         str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "bad.json: not a readable JSON file" in capsys.readouterr().err


def test_unreadable_image_and_non_empty_out(tmp_path, capsys):
    write_fixture(tmp_path, "coco-wholebody")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    args = ["coco-wholebody", "--ann", str(tmp_path / "ann.json"), "--images", str(tmp_path),
            "--out", str(out)]
    assert convert.main(args) == 1
    assert "is not empty; pass --add" in capsys.readouterr().err
    (tmp_path / "scene.png").write_bytes(b"not an image")
    assert convert.main([*args, "--add"]) == 1
    assert "scene.png: cannot read this image" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep"


def _listed(path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_existing_split_files_get_the_new_samples(tmp_path, capsys):
    _, data = write_fixture(tmp_path, "coco-wholebody")
    out = tmp_path / "out"
    args = ["coco-wholebody", "--ann", str(tmp_path / "ann.json"), "--images", str(tmp_path),
            "--out", str(out), "--min-box", "16", "--add"]

    def with_ids(first: int) -> None:  # the same persons under new annotation ids
        for n, ann in enumerate(data["annotations"]):
            ann["id"] = first + n
        (tmp_path / "ann.json").write_text(json.dumps(data))

    assert convert.main(args) == 0
    assert not (out / "splits").exists()  # no split files: the hash split stays in charge
    # --add never overwrites: the same persons again are there already, nothing changes
    labels = sorted(p.read_bytes() for p in (out / "labels").iterdir())
    assert convert.main(args) == 0
    assert "kept 3 persons" in capsys.readouterr().out
    assert sorted(p.read_bytes() for p in (out / "labels").iterdir()) == labels
    (out / "splits").mkdir()
    (out / "splits" / "val.txt").write_text("# from another converter\nother_1")
    with_ids(240)
    assert convert.main(args) == 0
    # scene_240 is hash-val at 0.1 (241, 242 are not); existing stems never move
    assert _listed(out / "splits" / "val.txt") == ["other_1", "scene_240"]
    (out / "splits" / "val.txt").unlink()
    (out / "splits" / "train.txt").write_text("other_2\nscene_100\n")
    with_ids(300)
    assert convert.main([*args, "--val-fraction", "0.7"]) == 0
    # at 0.7 scene_300 and scene_302 are val: only scene_301 joins train.txt
    assert _listed(out / "splits" / "train.txt") == ["other_2", "scene_100", "scene_301"]
    assert not (out / "splits" / "val.txt").exists()  # val is everything else


def test_workers_write_the_same_files(tmp_path):
    import shutil

    _, data = write_fixture(tmp_path, "halpe")
    for n, name in ((8, "scene_b.png"), (9, "scene_c.png")):  # three images, three persons each
        shutil.copy(tmp_path / "scene.png", tmp_path / name)
        data["images"].append({**data["images"][0], "id": n, "file_name": name})
        data["annotations"] += [{**a, "id": 10 * n + k, "image_id": n}
                                for k, a in enumerate(data["annotations"][:3])]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    outputs = []
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        assert convert.main(["halpe", "--ann", str(tmp_path / "ann.json"), "--images",
                             str(tmp_path), "--out", str(out), "--min-box", "16", "--workers",
                             workers]) == 0
        outputs.append({p.relative_to(out).as_posix(): p.read_bytes()
                        for p in sorted(out.rglob("*")) if p.is_file()})
    assert len(outputs[0]) == 18 and outputs[0] == outputs[1]


# ----------------------------------------------------------------- defects, each with its test


def _run(tmp_path, out, *extra: str, fmt: str = "coco-wholebody") -> int:
    return convert.main([fmt, "--ann", str(tmp_path / "ann.json"), "--images", str(tmp_path),
                         "--out", str(out), "--size", "32", "--min-box", "16", *extra])


def _files(out) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*")) if p.is_file()}


def test_repeated_annotation_ids_get_distinct_names(tmp_path, capsys):
    _, data = write_fixture(tmp_path, "coco-wholebody")
    data["annotations"][1]["id"] = 100  # the same id as annotations[0]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    assert _run(tmp_path, out) == 0
    assert "kept 3 persons" in capsys.readouterr().out
    # The first keeps its name; a repeat gets its annotation index.
    assert sorted(_labels(out)) == ["scene_100", "scene_100_a1", "scene_102"]
    assert len(scan_dataset(out).samples) == 3


def _two_images(tmp_path) -> dict:
    """The fixture plus scene_b.png: the same canvas and persons under new ids."""
    import shutil

    _, data = write_fixture(tmp_path, "coco-wholebody")
    shutil.copy(tmp_path / "scene.png", tmp_path / "scene_b.png")
    data["images"].append({**data["images"][0], "id": 8, "file_name": "scene_b.png"})
    data["annotations"] += [{**a, "id": 200 + k, "image_id": 8}
                            for k, a in enumerate(data["annotations"][:3])]
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return data


def test_a_corrupt_image_is_skipped_and_a_rerun_completes(tmp_path, capsys):
    _two_images(tmp_path)
    good = (tmp_path / "scene_b.png").read_bytes()
    (tmp_path / "scene_b.png").write_bytes(good[:40])  # a truncated PNG
    out = tmp_path / "out"
    assert _run(tmp_path, out) == 1  # 1: something was skipped
    printed = capsys.readouterr()
    assert "scene_b.png: cannot read this image" in printed.err and "skipped" in printed.err
    assert "kept 3 persons" in printed.out
    assert "dropped 3: image missing, unreadable or not the size its entry says" in printed.out
    scan = scan_dataset(out)  # a complete, valid folder of what could be read
    assert sorted(s.stem for s in scan.samples) == ["scene_100", "scene_101", "scene_102"]
    assert not scan.problems
    (tmp_path / "scene_b.png").write_bytes(good)  # fixed: the re-run adds what was missing
    assert _run(tmp_path, out, "--add") == 0
    assert "kept 6 persons" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert _run(tmp_path, fresh) == 0
    assert _files(out) == _files(fresh)


def test_an_interrupted_conversion_resumes_with_add(tmp_path, monkeypatch, capsys):
    _two_images(tmp_path)
    interrupt_nth_encode(monkeypatch, 4)  # Ctrl-C while cutting the fourth person
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, out)
    monkeypatch.undo()
    assert len(_labels(out)) == 3 and not scan_dataset(out).problems
    assert not [p for p in out.rglob("*") if "tmp" in p.name]
    assert _run(tmp_path, out) == 1  # not empty: --add finishes it
    assert "--add" in capsys.readouterr().err
    assert _run(tmp_path, out, "--add") == 0
    assert "kept 6 persons" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    assert _run(tmp_path, fresh) == 0
    assert _files(out) == _files(fresh)
    # The same conversion again changes nothing; a different sample under a taken name is refused.
    assert _run(tmp_path, out, "--add") == 0 and _files(out) == _files(fresh)
    data = json.loads((tmp_path / "ann.json").read_text())
    data["annotations"][0]["bbox"][2] -= 4
    (tmp_path / "ann.json").write_text(json.dumps(data))
    assert _run(tmp_path, out, "--add") == 1
    assert "1 of the 6 persons" in capsys.readouterr().err and _files(out) == _files(fresh)


def test_a_string_boolean_is_a_named_error(tmp_path, capsys):
    _, data = write_fixture(tmp_path, "coco-wholebody")
    data["annotations"][2]["lefthand_valid"] = "false"
    _refused(tmp_path, data, "annotations[2]: field 'lefthand_valid' must be true or "
             "false; got 'false'", capsys)


@pytest.mark.parametrize(("fmt", "change", "message"), [
    ("coco-wholebody", lambda d: d["images"][0].update(width="220"),
     "images[0]: field 'width' must be a positive number; got '220'"),
    ("coco-wholebody", lambda d: d["images"][0].update(file_name=5),
     "images[0]: field 'file_name' must be a file name; got 5"),
    ("coco-wholebody", lambda d: d["images"][0].update(id=[7]),
     "images[0]: field 'id' must be an integer or a string; got [7]"),
    ("coco-wholebody", lambda d: d["images"].append(dict(d["images"][0])),
     "images[1]: field 'id' 7 repeats images[0]"),
    ("coco-wholebody", lambda d: d["annotations"][1]["keypoints"].__setitem__(5, None),
     "annotations[1]: field 'keypoints'[5] is null; expected a number"),
    ("halpe", lambda d: d["annotations"][0]["keypoints"].__setitem__(7, "3"),
     "annotations[0]: field 'keypoints'[7] is '3'; expected a number"),
    ("coco-wholebody", lambda d: d["annotations"][0]["bbox"].__setitem__(1, "10"),
     "annotations[0]: field 'bbox' must be [x, y, w, h] numbers; got [9.5, '10'"),
    ("coco-wholebody", lambda d: d["annotations"][0].update(iscrowd="0"),
     "annotations[0]: field 'iscrowd' must be 0 or 1; got '0'"),
    ("coco-wholebody", lambda d: d["annotations"][0].update(id="../../x"),
     "annotations[0]: field 'id' must be an integer or a string of letters"),
    ("coco-wholebody", lambda d: d["annotations"][0].update(image_id=None),
     "annotations[0]: field 'image_id' None names no entry of 'images'"),
])
def test_wrong_types_are_named_errors(tmp_path, capsys, fmt, change, message):
    _, data = write_fixture(tmp_path, fmt)
    change(data)
    _refused(tmp_path, data, message, capsys, fmt=fmt)


def test_degenerate_boxes_are_dropped_and_counted(tmp_path, capsys):
    _, data = write_fixture(tmp_path, "coco-wholebody")
    data["annotations"][0]["bbox"][2] = 0
    data["annotations"][1]["bbox"][3] = float("nan")  # json writes NaN, and Python reads it
    (tmp_path / "ann.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    assert _run(tmp_path, out) == 0
    printed = capsys.readouterr().out
    assert "kept 1 persons" in printed
    assert "dropped 2: degenerate box (width or height not a positive number)" in printed
    assert sorted(_labels(out)) == ["scene_102"]


def test_a_box_outside_its_image_is_dropped_and_counted(tmp_path, capsys):
    _, data = write_fixture(tmp_path, "coco-wholebody")
    width = data["images"][0]["width"]
    image_of = {ann["id"]: ann["image_id"] for ann in data["annotations"]}
    first = data["annotations"][0]
    assert image_of[first["id"]] == data["images"][0]["id"]
    first["bbox"][0] = width + 5.0  # right of the image
    (tmp_path / "ann.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    assert _run(tmp_path, out) == 0
    printed = capsys.readouterr().out
    assert "kept 2 persons" in printed and "dropped 1: box outside its image" in printed

"""Reading and validating a dataset in the original project's layout.

A dataset is a folder with `images/` and `labels/` (names configurable) holding files with the same
stem: `images/000123.jpg` and `labels/000123.json`. Every label is checked against the schema in
`signlang_jax.keypoints` before anything trains on it, and every problem is reported as a `Problem`
naming the file, the field and what was expected, e.g.
`labels/000123.json: keypoints[21] 'left_hand_thumb_tip': x=530.2 is outside the image width 512`
(`Problem` and `DatasetError` live in `problems`, image decoding in `images`).

Coordinates are in pixels with OpenCV's pixel-centre convention (x=0 is the centre of the first
column); the seed's rule 0 <= x <= width is kept as the validity range.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from signlang_jax.data.images import IMAGE_EXTENSIONS, read_image
from signlang_jax.data.problems import DatasetError, Problem
from signlang_jax.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS

SPLITS: tuple[str, ...] = ("train", "val")
# Not a split of the folder but all of it (e.g. a separate held-out set); packs have no such split.
ALL_SPLIT = "all"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One validated (image, label) pair.

    keypoints: float32 (64, 3) = x, y in image pixels and visible (0 or 1).
    bbox: float32 (4,) = x_min, y_min, width, height of the person.
    """

    stem: str
    image_path: str
    width: int
    height: int
    keypoints: np.ndarray
    bbox: np.ndarray


# ----------------------------------------------------------------------------- labels


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _size_field(label: dict, name: str, file: str, problems: list[Problem]) -> int | None:
    value = label.get(name)
    if name not in label:
        problems.append(Problem(file, name, "missing (expected the image size in pixels)",
                                "missing_field"))
    elif not _is_number(value) or not math.isfinite(value) or value != int(value) or value <= 0:
        problems.append(Problem(file, name, f"{value!r} is not a positive integer", "bad_value"))
    else:
        return int(value)
    return None


def _parse_keypoints(raw: object, width: int | None, height: int | None, file: str,
                     problems: list[Problem]) -> np.ndarray | None:
    if not isinstance(raw, list):
        kind = "missing_field" if raw is None else "bad_type"
        problems.append(Problem(file, "keypoints", f"expected a list of {NUM_KEYPOINTS} objects, "
                                f"got {type(raw).__name__}", kind))
        return None
    if len(raw) != NUM_KEYPOINTS:
        problems.append(Problem(file, "keypoints", f"has {len(raw)} entries; expected "
                                f"{NUM_KEYPOINTS} in the schema order", "keypoint_count"))
        return None
    keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    ok = True
    for i, (entry, name) in enumerate(zip(raw, KEYPOINT_NAMES, strict=True)):
        where = f"keypoints[{i}]"
        if not isinstance(entry, dict):
            problems.append(Problem(file, where, f"expected an object with name/x/y/visible, got "
                                    f"{type(entry).__name__}", "bad_type"))
            ok = False
            continue
        if entry.get("name") != name:
            problems.append(Problem(file, where, f"name is {entry.get('name')!r}; expected "
                                    f"{name!r} (keypoints must follow the schema order)",
                                    "keypoint_name"))
            ok = False
            continue
        where = f"keypoints[{i}] {name!r}"
        for axis, limit, limit_name in (("x", width, "width"), ("y", height, "height")):
            value = entry.get(axis)
            if axis not in entry:
                problems.append(Problem(file, where, f"{axis} is missing", "missing_field"))
            elif not _is_number(value):
                problems.append(Problem(file, where, f"{axis}={value!r} is not a number",
                                        "bad_type"))
            elif not math.isfinite(value):
                problems.append(Problem(file, where, f"{axis}={value} is not finite",
                                        "non_finite"))
            elif limit is not None and not 0 <= value <= limit:
                problems.append(Problem(file, where, f"{axis}={value} is outside the image "
                                        f"{limit_name} {limit}", "out_of_bounds"))
            else:
                keypoints[i, 0 if axis == "x" else 1] = value
                continue
            ok = False
        visible = entry.get("visible", 1)
        if not _is_number(visible) or visible not in (0, 1):
            problems.append(Problem(file, where, f"visible={visible!r}; expected 0 or 1",
                                    "bad_visible"))
            ok = False
        else:
            keypoints[i, 2] = visible
    return keypoints if ok else None


def _parse_bbox(label: dict, keypoints: np.ndarray | None, width: int | None, height: int | None,
                file: str, problems: list[Problem]) -> np.ndarray | None:
    if "bbox" not in label:
        if keypoints is None or width is None or height is None:
            return None
        return bbox_from_keypoints(keypoints, width, height)
    raw = label["bbox"]
    if (not isinstance(raw, list) or len(raw) != 4 or not all(_is_number(v) for v in raw)):
        problems.append(Problem(file, "bbox", f"{raw!r}; expected [x_min, y_min, width, height] "
                                "(4 numbers)", "bad_bbox"))
        return None
    if not all(math.isfinite(v) for v in raw) or raw[2] <= 0 or raw[3] <= 0:
        problems.append(Problem(file, "bbox", f"{raw!r}; expected finite numbers with positive "
                                "width and height", "bad_bbox"))
        return None
    return np.asarray(raw, np.float32)


def bbox_from_keypoints(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """Tight [x, y, w, h] box of the visible keypoints (all if none visible), at least 1x1 px.

    keypoints: (64, 3). A degenerate box falls back to the whole image.
    """
    points = keypoints[keypoints[:, 2] > 0, :2]
    if len(points) == 0:
        points = keypoints[:, :2]
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    if x1 - x0 < 1 and y1 - y0 < 1:
        return np.array([0, 0, width, height], np.float32)
    return np.array([x0, y0, max(x1 - x0, 1.0), max(y1 - y0, 1.0)], np.float32)


def _image_field(label: dict, stem: str, images_dir: Path, root: Path, file: str,
                 problems: list[Problem]) -> Path | None:
    name = label.get("image")
    if "image" not in label:
        problems.append(Problem(file, "image", "missing (expected the image file name, e.g. "
                                f"'{stem}.jpg')", "missing_field"))
        return None
    if not isinstance(name, str) or not name:
        problems.append(Problem(file, "image", f"{name!r} is not a file name", "bad_type"))
        return None
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts or "\\" in name:
        problems.append(Problem(file, "image", f"{name!r} must be a file name inside "
                                f"{images_dir.name}/ (no absolute path, no '..')",
                                "bad_image_path"))
        return None
    if relative.suffix.lower() not in IMAGE_EXTENSIONS:
        problems.append(Problem(file, "image", f"{name!r} has extension {relative.suffix!r}; "
                                f"expected one of {', '.join(IMAGE_EXTENSIONS)}",
                                "bad_image_path"))
        return None
    if relative.stem != stem:
        problems.append(Problem(file, "image", f"{name!r} does not have the label's stem "
                                f"{stem!r}", "bad_image_path"))
        return None
    path = images_dir / relative
    if not path.is_file():
        problems.append(Problem(file, "image", f"{name!r} not found: "
                                f"{path.relative_to(root)} does not exist", "missing_image"))
        return None
    return path


def load_label(label_path: Path, root: Path, images_dir: Path,
               decode: bool = True) -> tuple[Sample | None, list[Problem]]:
    """Validate one label file (and its image); returns the sample or the problems found.

    With `decode` the image is fully decoded (catches corrupt files) and its size compared with
    the label; without, only its existence is checked.
    """
    file = label_path.relative_to(root).as_posix()
    stem = label_path.stem
    problems: list[Problem] = []
    try:
        label = json.loads(label_path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0][:200]
        return None, [Problem(file, "", f"not readable JSON: {reason}", "unreadable_json")]
    if not isinstance(label, dict):
        return None, [Problem(file, "", f"top level is a {type(label).__name__}; expected a JSON "
                              "object with image/width/height/keypoints", "not_object")]
    width = _size_field(label, "width", file, problems)
    height = _size_field(label, "height", file, problems)
    keypoints = _parse_keypoints(label.get("keypoints"), width, height, file, problems)
    bbox = _parse_bbox(label, keypoints, width, height, file, problems)
    image_path = _image_field(label, stem, images_dir, root, file, problems)
    if image_path is not None and decode:
        image_file = image_path.relative_to(root).as_posix()
        try:
            image = read_image(image_path, image_file)
        except DatasetError as e:
            problems.extend(e.problems)
        else:
            actual_h, actual_w = image.shape[:2]
            for name, stated, actual in (("width", width, actual_w), ("height", height, actual_h)):
                if stated is not None and stated != actual:
                    problems.append(Problem(file, name, f"{stated} does not match the image "
                                            f"{image_file} ({actual_w}x{actual_h})",
                                            "size_mismatch"))
    if problems:
        return None, problems
    assert keypoints is not None and bbox is not None and width and height and image_path
    return Sample(stem, str(image_path), width, height, keypoints, bbox), []


# ----------------------------------------------------------------------------- dataset


@dataclasses.dataclass
class ScanResult:
    """Everything `scan_dataset` found: valid samples (sorted by stem), errors and warnings."""

    root: Path
    samples: list[Sample]
    problems: list[Problem]
    warnings: list[Problem]
    num_labels: int
    labels_dir: str = "labels"


def scan_dataset(root: str | os.PathLike, images_dir: str = "images", labels_dir: str = "labels",
                 decode: bool = True, workers: int = 4) -> ScanResult:
    """Validate every label under `root/labels_dir` and its image; never raises for bad files.

    Images without a label are reported as warnings (they are not used).
    """
    root = Path(root)
    image_root, label_root = root / images_dir, root / labels_dir
    for folder, flag in ((root, "--data-root"), (image_root, "--images-dir"),
                         (label_root, "--labels-dir")):
        if not folder.is_dir():
            raise DatasetError([Problem(str(folder), "", f"is not a directory (check {flag})",
                                        "missing_dir")])
    label_paths = sorted(p for p in label_root.iterdir() if p.suffix.lower() == ".json")
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda p: load_label(p, root, image_root, decode), label_paths))
    samples = [s for s, _ in results if s is not None]
    problems = [p for _, ps in results for p in ps]
    labelled = {p.stem for p in label_paths}
    warnings = [
        Problem(p.relative_to(root).as_posix(), "", f"has no label {labels_dir}/{p.stem}.json; "
                "ignored", "unlabelled_image")
        for p in sorted(image_root.iterdir())
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem not in labelled
    ]
    return ScanResult(root, samples, problems, warnings, len(label_paths), labels_dir)


def is_val_stem(stem: str, val_fraction: float = 0.1) -> bool:
    """Hash split: whether `stem` belongs to the validation split.

    A pure function of the stem, so adding files never moves existing samples between splits.
    """
    bucket = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:8], "big") / 2.0**64
    return bucket < val_fraction


def read_split_file(path: Path, root: Path) -> tuple[list[str], list[Problem]]:
    """The stems a split file lists (in order) and its problems (stems listed twice)."""
    file = path.relative_to(root).as_posix()
    stems, problems, seen = [], [], set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        stem = Path(entry).stem if Path(entry).suffix.lower() in (*IMAGE_EXTENSIONS, ".json") \
            else entry
        if stem in seen:
            problems.append(Problem(file, f"line {number}", f"{entry!r} is listed twice",
                                    "split_file"))
        seen.add(stem)
        stems.append(stem)
    return stems, problems


def split_samples(scan: ScanResult, split: str, val_fraction: float = 0.1,
                  strict: bool = True) -> list[Sample]:
    """The samples of `split` ('train' or 'val'), from `splits/<split>.txt` or the hash split.

    If only one split file exists the other split is everything else. Stems in a split file
    that have no valid sample are errors when `strict`, else they are dropped. `ALL_SPLIT`
    ('all') is every valid sample, whatever the split files and the hash say.
    """
    if split == ALL_SPLIT:
        return list(scan.samples)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {(*SPLITS, ALL_SPLIT)}, got {split!r}")
    files = {s: scan.root / "splits" / f"{s}.txt" for s in SPLITS}
    by_stem = {s.stem: s for s in scan.samples}
    listed: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for name, path in files.items():
        if path.is_file():
            listed[name], found = read_split_file(path, scan.root)
            problems += found
    if not listed:
        return [s for s in scan.samples if is_val_stem(s.stem, val_fraction) == (split == "val")]
    if len(listed) == 2:
        both = set(listed["train"]) & set(listed["val"])
        problems += [Problem("splits/val.txt", "", f"{stem!r} is also in splits/train.txt",
                             "split_file") for stem in sorted(both)]
    for name, stems in listed.items():
        for stem in stems:
            if stem not in by_stem and strict:
                problems.append(Problem(f"splits/{name}.txt", "", f"{stem!r} has no valid sample "
                                        f"(no valid {scan.labels_dir}/{stem}.json)", "split_file"))
    if problems:
        raise DatasetError(problems)
    if split in listed:
        return [by_stem[s] for s in listed[split] if s in by_stem]
    other = set(listed["val" if split == "train" else "train"])
    return [s for s in scan.samples if s.stem not in other]


def read_label(label_path: str | os.PathLike, root: str | os.PathLike,
               images_dir: str = "images", decode: bool = True) -> Sample:
    """Validate one label file and its image; raise `DatasetError` listing every problem."""
    root = Path(root)
    sample, problems = load_label(Path(label_path), root, root / images_dir, decode)
    if problems:
        raise DatasetError(problems)
    assert sample is not None
    return sample

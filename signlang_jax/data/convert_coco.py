"""COCO-WholeBody and Halpe annotation files into samples: read, type-check, filter, cut, write.

Usage and the sample conventions are in `signlang_jax.data.convert` (the command). Every field
is checked before anything is written, and a malformed one is a ConvertError naming the file,
the entry (images[n], annotations[n]) and the field. A person whose box is degenerate (a width
or height that is not a positive number) or lies outside its image is dropped and counted like
the other filters. Images
are decoded once, while writing: a missing or undecodable image (or one whose size is not its
entry's) is reported and its persons are dropped and counted, the others are still written.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.data.convert_output import (
    DEFAULT_MARGIN,
    DEFAULT_SIZE,
    ConvertError,
    check_out,
    compare_sample,
    extend_splits,
    hash_splits,
    label_stems,
    label_text,
    output_folders,
    print_skipped,
    write_crop,
)
from signlang_jax.keypoint_maps import COCO_WHOLEBODY, KeypointMap
from signlang_jax.keypoints import GROUPS
from signlang_jax.parallel import run_jobs

# COCO-WholeBody's per-part arrays, in the order of `keypoint_maps.COCO_WHOLEBODY`.
_WHOLEBODY_PARTS = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68),
                    ("lefthand_kpts", 21), ("righthand_kpts", 21))
_HAND_VALID = {"left_hand": "lefthand_valid", "right_hand": "righthand_valid"}
# An annotation id becomes part of a file name: no path separators, no surprises.
_NAME_ID = re.compile(r"[A-Za-z0-9._-]+")
UNREADABLE = "image missing, unreadable or not the size its entry says"
DEGENERATE = "degenerate box (width or height not a positive number)"
OUTSIDE = "box outside its image"


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Filters and crop geometry of a conversion."""

    size: int = DEFAULT_SIZE
    margin: float = DEFAULT_MARGIN  # on each side, x the larger side of the person box
    min_box: float = 32.0  # smaller person boxes (larger side, pixels) are dropped
    min_hand_points: int = 0  # fewer labelled hand points (both hands) are dropped


@dataclasses.dataclass(frozen=True)
class PersonJob:
    """One person to cut out: where it comes from and its points."""

    name: str
    image_path: Path
    image_size: tuple[int, int]  # width, height, as the annotation file's images entry says
    box: np.ndarray
    points: np.ndarray  # (64, 3) x, y, COCO v, our order
    hand_valid: dict[str, bool]
    source: dict


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _field(entry: dict, field: str, where: str, ok: Callable[[object], bool], expected: str,
           default: object = ...) -> object:
    """entry[field], checked by `ok`; ConvertError naming `where` and the field otherwise."""
    if field not in entry and default is ...:
        raise ConvertError(f"{where}: field {field!r} is missing; expected {expected}")
    value = entry.get(field, default)
    if not ok(value):
        raise ConvertError(f"{where}: field {field!r} must be {expected}; got {_show(value)}")
    return value


def _array(ann: dict, field: str, count: int, where: str) -> np.ndarray:
    """(count, 3) x, y, v of a flat keypoint list; every value a finite number."""
    value = ann.get(field)
    if not isinstance(value, list) or len(value) != 3 * count:
        got = f"{len(value)} values" if isinstance(value, list) else _show(value)
        raise ConvertError(f"{where}: field {field!r} must be {count} x 3 = {3 * count} numbers "
                           f"(x, y, v); got {got}")
    # The fast path is one C-level pass; the loop below only runs to name a bad value.
    if not set(map(type, value)) <= {int, float} or not np.isfinite(value).all():
        for i, v in enumerate(value):
            if not _is_number(v) or not math.isfinite(v):
                shown = "null" if v is None else _show(v)
                expected = "a finite number" if _is_number(v) else "a number"
                raise ConvertError(f"{where}: field {field!r}[{i}] is {shown}; expected {expected}")
    return np.asarray(value, np.float64).reshape(count, 3)


def _points(ann: dict, layout: KeypointMap, where: str) -> np.ndarray:
    """(S, 3) source points (x, y, v) of one annotation, checked."""
    if layout is COCO_WHOLEBODY:
        return np.concatenate([_array(ann, f, n, where) for f, n in _WHOLEBODY_PARTS])
    return _array(ann, "keypoints", len(layout.source_names), where)


def _box(ann: dict, image: dict, where: str) -> np.ndarray | str:
    """The [x, y, w, h] person box, or the reason to drop it; ConvertError if malformed."""
    box = _field(ann, "bbox", where, lambda b: isinstance(b, list) and len(b) == 4 and all(
        map(_is_number, b)), "[x, y, w, h] numbers")
    x, y, w, h = (float(v) for v in box)
    if not (math.isfinite(x + y + w + h) and w > 0 and h > 0):
        return DEGENERATE
    if x + w <= 0 or y + h <= 0 or x >= image["width"] or y >= image["height"]:
        return OUTSIDE
    return np.array([x, y, w, h])


def _read_images(data: dict, ann_path: Path) -> dict[object, dict]:
    """The `images` entries by id, every field checked."""
    images, first = {}, {}
    for n, image in enumerate(data["images"]):
        where = f"{ann_path}: images[{n}]"
        if not isinstance(image, dict):
            raise ConvertError(f"{where} must be an object; got {_show(image)}")
        image_id = _field(image, "id", where, _is_id, "an integer or a string")
        if image_id in first:
            raise ConvertError(f"{where}: field 'id' {image_id!r} repeats "
                               f"images[{first[image_id]}]")
        _field(image, "file_name", where, lambda v: isinstance(v, str) and v.strip() != "",
               "a file name")
        for field in ("width", "height"):
            _field(image, field, where, lambda v: _is_number(v) and 0 < v < math.inf,
                   "a positive number")
        images[image_id], first[image_id] = image, n
    return images


def _read_annotations(ann_path: Path) -> tuple[dict, dict]:
    """The parsed file and its images by id; ConvertError unless it is a JSON object of lists."""
    try:
        data = json.loads(ann_path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConvertError(f"{ann_path}: not a readable JSON file ({e})") from None
    for field in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(field), list):
            raise ConvertError(f"{ann_path}: field {field!r} must be a list")
    return data, _read_images(data, ann_path)


def _flag(ann: dict, field: str, where: str, expected: str, default: bool) -> bool:
    """A true/false field: JSON true/false or 0/1 (a string such as "false" is an error)."""
    return bool(_field(ann, field, where, lambda v: isinstance(v, int) and v in (0, 1), expected,
                       default=default))


def _unique_name(base: str, n: int, used: set[str]) -> str:
    """`base`, or for a repeat (two annotations with one id) `base`_aN, N the annotation index."""
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_a{n}" if k == 1 else f"{base}_a{n}_{k}"
    used.add(name)
    return name


def plan(ann_path: Path, images_dir: Path, layout: KeypointMap, options: ConvertOptions
         ) -> tuple[list[PersonJob], collections.Counter]:
    """Every person that passes the filters, and the count dropped per reason; checks it all."""
    data, images = _read_annotations(ann_path)
    jobs, dropped, used = [], collections.Counter(), set()
    for n, ann in enumerate(data["annotations"]):
        where = f"{ann_path}: annotations[{n}]"
        if not isinstance(ann, dict):
            raise ConvertError(f"{where} must be an object; got {_show(ann)}")
        ann_id = _field(ann, "id", where, lambda v: (isinstance(v, int) and not isinstance(
            v, bool)) or (isinstance(v, str) and _NAME_ID.fullmatch(v) is not None),
            "an integer or a string of letters, digits, '.', '_' or '-'", default=n)
        image_id = ann.get("image_id")
        if not _is_id(image_id) or image_id not in images:
            raise ConvertError(f"{where}: field 'image_id' {_show(image_id)} names no entry of "
                               "'images'")
        image = images[image_id]
        box = _box(ann, image, where)
        points = layout.apply(_points(ann, layout, where))
        hand_valid = {h: _flag(ann, f, where, "true or false", True)
                      for h, f in _HAND_VALID.items()}
        crowd = _flag(ann, "iscrowd", where, "0 or 1", False)
        hand_points = sum(int((points[GROUPS[h].start:GROUPS[h].stop, 2] > 0).sum())
                          for h in _HAND_VALID if hand_valid[h])
        if isinstance(box, str):
            dropped[box] += 1
        elif crowd:
            dropped["crowd"] += 1
        elif max(box[2], box[3]) < options.min_box:
            dropped[f"box under {options.min_box:g} px"] += 1
        elif hand_points < options.min_hand_points:
            dropped[f"under {options.min_hand_points} labelled hand points"] += 1
        else:
            name = _unique_name(f"{Path(image['file_name']).stem}_{ann_id}", n, used)
            jobs.append(PersonJob(name, images_dir / image["file_name"],
                                  (image["width"], image["height"]), box, points, hand_valid,
                                  {"format": layout.name, "annotations": ann_path.name,
                                   "image_id": image_id, "annotation": ann_id}))
    return jobs, dropped


def write_people(jobs: list[PersonJob], out: Path, options: ConvertOptions
                 ) -> tuple[Path, str | None]:
    """Cut and write the persons of one image (decoded once): (the image, why none were)."""
    first = jobs[0]
    # Annotations refer to the stored pixels (COCO's tools do not apply EXIF orientation).
    image = cv2.imread(str(first.image_path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    about = (f"annotation {first.source['annotation']} of {first.source['annotations']}, "
             f"{len(jobs)} person(s)")
    if image is None:
        return first.image_path, f"{first.image_path}: cannot read this image ({about})"
    if (image.shape[1], image.shape[0]) != first.image_size:
        width, height = first.image_size
        return first.image_path, (
            f"{first.image_path}: the image is {image.shape[1]}x{image.shape[0]}, its entry "
            f"says {width}x{height} (fields 'width', 'height'; {about})")
    for job in jobs:
        write_crop(out, job.name, image, job.box, job.points, job.hand_valid, job.source,
                   options.size, options.margin, str(job.image_path))
    return first.image_path, None


def _todo(jobs: list[PersonJob], out: Path, options: ConvertOptions, what: str
          ) -> list[PersonJob]:
    """The jobs not yet written; ConvertError if one would overwrite a different sample."""
    there, todo, clashes = label_stems(out), [], []
    for job in jobs:
        state = "new"
        if job.name in there:
            state = compare_sample(out, job.name, label_text(
                job.name, job.points, job.hand_valid, job.box, job.source, options.size,
                options.margin))
        if state == "other":
            clashes.append(job.name)
        elif state == "new":
            todo.append(job)
    if clashes:
        raise ConvertError(f"--out {out}: {len(clashes)} of the {what} would overwrite "
                           f"different samples already there (labels/{clashes[0]}.json ...); "
                           "convert into another --out, or remove those samples first")
    return todo


def convert(layout: KeypointMap, ann: Path, images: Path, out: Path, options: ConvertOptions,
            add: bool = False, val_fraction: float = 0.1, workers: int = 1,
            report: Callable[[str], None] = print_skipped) -> tuple[int, collections.Counter]:
    """Convert every person of `ann` with `workers` processes; (in `out`, dropped per reason).

    A bad image is passed to `report` and its persons counted in `UNREADABLE`. Persons already
    written identically (an interrupted run) are skipped and counted as in `out`.
    """
    check_out(out, add)
    jobs, dropped = plan(ann, images, layout, options)  # every check before any write
    todo = _todo(jobs, out, options, f"{len(jobs)} persons of {ann}")
    by_image: dict[Path, list[PersonJob]] = {}
    for job in todo:  # each image is decoded once, however many persons it holds
        by_image.setdefault(job.image_path, []).append(job)
    missing = [path for path in by_image if not path.is_file()]
    if by_image and len(missing) == len(by_image):
        raise ConvertError(f"--images {images}: none of the {len(by_image)} images to convert "
                           f"is there (e.g. {missing[0]})")
    for path in missing:
        report(f"{path}: no such image ({len(by_image[path])} person(s) of {ann})")
        dropped[UNREADABLE] += len(by_image.pop(path))
    write = functools.partial(write_people, out=out, options=options)
    with output_folders(out):
        try:
            for path, problem in run_jobs(write, list(by_image.values()),
                                          max(1, min(workers, len(by_image)))):
                if problem:
                    report(problem)
                    dropped[UNREADABLE] += len(by_image[path])
        finally:  # also after a failure: what is there joins its split (none existed before)
            there = [j.name for j in jobs if (out / "labels" / f"{j.name}.json").exists()]
            extend_splits(out, hash_splits(there, val_fraction))
    return len(there), dropped

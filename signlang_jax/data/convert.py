"""`python -m signlang_jax.data.convert FORMAT ...`: other datasets into our dataset layout.

    python -m signlang_jax.data.convert coco-wholebody --ann person_keypoints_wholebody.json \
        --images train2017/ --out coco_wb [--size 256] [--margin 0.25] [--min-box 32] \
        [--min-hand-points 0] [--workers 1] [--add]
    python -m signlang_jax.data.convert halpe --ann halpe_train.json --images hico/ --out halpe
    python -m signlang_jax.data.convert pose --pose poses/ --video videos/ --out my_signers

One sample per annotated person that passes the filters (not crowd, a box of at least
`--min-box` pixels, at least `--min-hand-points` labelled hand points), cut as a square around
the person box with `--margin` on each side and resized to `--size`, written as images/NAME.jpg
and labels/NAME.json (the standard layout the validator accepts). Points map to our 64 by name
(`signlang_jax.keypoint_maps`). Visibility: COCO v = 2 -> visible 1; v = 1 (labelled, occluded)
-> visible 0 at its true place, clamped into the crop (as are points outside it); v = 0 (not
labelled) and the points of a hand the annotation marks invalid -> visible 0 at (0, 0), where
training never weights them, whatever data.occluded_weight says. Each label keeps
the person box (in crop pixels), the hand validity flags and where the sample came from.
Prints what it kept and, per reason, what it dropped. Writes nothing outside --out and refuses a
non-empty --out unless --add. When --out has split files (splits/val.txt, splits/train.txt, e.g.
from the `pose` converter), each new sample is appended to the one the hash rule
(`is_val_stem`, --val-fraction) picks, so samples of different converters share one folder.

    python -m signlang_jax.data.convert pose --pose POSES/ --video VIDEOS/ --out signers

labels video frames from .pose files (MediaPipe Holistic or ours): see `convert_pose`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.crop import Region, apply_affine, crop_matrix
from signlang_jax.data.augment import warp_image
from signlang_jax.data.dataset import SPLITS, is_val_stem, read_split_file
from signlang_jax.keypoint_maps import COCO_WHOLEBODY, HALPE, KeypointMap
from signlang_jax.keypoints import GROUPS, KEYPOINT_NAMES
from signlang_jax.synth.stills import run_jobs, write_atomic

JPEG_QUALITY = 95
# COCO-WholeBody's per-part arrays, in the order of `keypoint_maps.COCO_WHOLEBODY`.
_WHOLEBODY_PARTS = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68),
                    ("lefthand_kpts", 21), ("righthand_kpts", 21))
_HAND_VALID = {"left_hand": "lefthand_valid", "right_hand": "righthand_valid"}


class ConvertError(ValueError):
    """Malformed input: the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Filters and crop geometry of a conversion."""

    size: int = 256
    margin: float = 0.25  # on each side, x the larger side of the person box
    min_box: float = 32.0  # smaller person boxes (larger side, pixels) are dropped
    min_hand_points: int = 0  # fewer labelled hand points (both hands) are dropped


def _points(ann: dict, layout: KeypointMap, where: str) -> np.ndarray:
    """(S, 3) source points (x, y, v) of one annotation, checked."""
    if layout is COCO_WHOLEBODY:
        parts = []
        for field, count in _WHOLEBODY_PARTS:
            parts.append(_array(ann, field, count, where))
        return np.concatenate(parts)
    return _array(ann, "keypoints", len(layout.source_names), where)


def _array(ann: dict, field: str, count: int, where: str) -> np.ndarray:
    value = ann.get(field)
    if not isinstance(value, list) or len(value) != 3 * count or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        got = f"{len(value)} numbers" if isinstance(value, list) else type(value).__name__
        raise ConvertError(f"{where}: field {field!r} must be {count} x 3 = {3 * count} numbers "
                           f"(x, y, v); got {got}")
    return np.asarray(value, np.float64).reshape(count, 3)


def _box(ann: dict, image: dict, where: str) -> np.ndarray:
    box = ann.get("bbox")
    if not (isinstance(box, list) and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)):
        raise ConvertError(f"{where}: field 'bbox' must be [x, y, w, h]; got {box!r}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0 or x + w <= 0 or y + h <= 0 or x >= image["width"] or (
            y >= image["height"]):
        raise ConvertError(f"{where}: field 'bbox' {box} is empty or outside the "
                           f"{image['width']}x{image['height']} image")
    return np.array([x, y, w, h])


def person_region(box: np.ndarray, margin: float) -> Region:
    """The square crop around a person box [x, y, w, h]: centred, (1 + 2 margin) x its side."""
    x, y, w, h = box
    return Region(x + w / 2, y + h / 2, max(w, h) * (1 + 2 * margin))


def sample_label(name: str, points: np.ndarray, hand_valid: dict[str, bool], box: np.ndarray,
                 matrix: np.ndarray, size: int, source: dict) -> dict:
    """Our label for (64, 3) source-order-mapped points (x, y, COCO v) in crop `matrix`.

    Points the source did not label (v = 0, or in a hand marked invalid) have no position: they
    are written at (0, 0). Training never weights a point on the image border, so they stay
    out of the loss even with `data.occluded_weight > 0` (which would otherwise pull a hand's
    points to wherever a guess put them).
    """
    xy = apply_affine(points[:, :2], matrix)
    inside = ((xy >= -0.5) & (xy <= size - 0.5)).all(1)
    visible = (points[:, 2] >= 2) & inside
    unlabelled = points[:, 2] <= 0
    for hand, valid in hand_valid.items():
        if not valid:
            visible[GROUPS[hand].start:GROUPS[hand].stop] = False
            unlabelled[GROUPS[hand].start:GROUPS[hand].stop] = True
    clamped = np.where(unlabelled[:, None], 0.0, np.clip(xy, 0.0, size - 1.0))
    corners = apply_affine(np.array([box[:2], box[:2] + box[2:]]), matrix)
    lo, hi = np.clip(corners.min(0), 0, size - 1), np.clip(corners.max(0), 0, size - 1)
    return {
        "image": f"{name}.jpg", "width": size, "height": size,
        "keypoints": [{"name": n, "x": round(float(px), 2), "y": round(float(py), 2),
                       "visible": int(v)}
                      for n, (px, py), v in zip(KEYPOINT_NAMES, clamped, visible, strict=True)],
        "bbox": [round(float(lo[0]), 2), round(float(lo[1]), 2),
                 round(float(max(hi[0] - lo[0], 1.0)), 2),
                 round(float(max(hi[1] - lo[1], 1.0)), 2)],
        "hand_valid": hand_valid, "source": source,
    }


@dataclasses.dataclass(frozen=True)
class PersonJob:
    """One person to cut out: where it comes from and its points."""

    name: str
    image_path: Path
    box: np.ndarray
    points: np.ndarray  # (64, 3) x, y, COCO v, our order
    hand_valid: dict[str, bool]
    source: dict


def plan(ann_path: Path, images_dir: Path, layout: KeypointMap, options: ConvertOptions
         ) -> tuple[list[PersonJob], collections.Counter]:
    """Every person that passes the filters, and the count dropped per reason; checks it all."""
    try:
        data = json.loads(ann_path.read_bytes())
    except (OSError, ValueError) as e:
        raise ConvertError(f"{ann_path}: not a readable JSON file ({e})") from None
    for field in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(field), list):
            raise ConvertError(f"{ann_path}: field {field!r} must be a list")
    images = {}
    for n, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and {"id", "file_name", "width", "height"} <= image.keys()):
            raise ConvertError(f"{ann_path}: images[{n}] needs id, file_name, width, height")
        images[image["id"]] = image
    jobs, dropped = [], collections.Counter()
    for n, ann in enumerate(data["annotations"]):
        where = f"{ann_path}: annotations[{n}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            raise ConvertError(f"{where}: field 'image_id' "
                               f"{ann.get('image_id') if isinstance(ann, dict) else ann!r} "
                               "names no entry of 'images'")
        image = images[ann["image_id"]]
        box = _box(ann, image, where)
        points = layout.apply(_points(ann, layout, where))
        hand_valid = {hand: bool(ann.get(field, True)) for hand, field in _HAND_VALID.items()}
        hand_points = sum(int((points[GROUPS[h].start:GROUPS[h].stop, 2] > 0).sum())
                          for h in _HAND_VALID if hand_valid[h])
        if ann.get("iscrowd", 0):
            dropped["crowd"] += 1
        elif max(box[2], box[3]) < options.min_box:
            dropped[f"box under {options.min_box:g} px"] += 1
        elif hand_points < options.min_hand_points:
            dropped[f"under {options.min_hand_points} labelled hand points"] += 1
        else:
            stem = Path(image["file_name"]).stem
            jobs.append(PersonJob(f"{stem}_{ann.get('id', n)}", images_dir / image["file_name"],
                                  box, points, hand_valid,
                                  {"format": layout.name, "annotations": ann_path.name,
                                   "image_id": ann["image_id"], "annotation": ann.get("id", n)}))
    return jobs, dropped


def write_crop(out: Path, name: str, image: np.ndarray, box: np.ndarray, points: np.ndarray,
               hand_valid: dict[str, bool], source: dict, size: int, margin: float,
               where: str) -> None:
    """Cut the person around `box` out of a BGR image; write images/NAME.jpg, then its label."""
    matrix = crop_matrix(person_region(box, margin), size)
    crop = warp_image(image, matrix, size)
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ConvertError(f"{where}: JPEG encoding failed")
    label = sample_label(name, points, hand_valid, box, matrix, size, source)
    # Image first, label last, each atomically: a label always means a whole image.
    write_atomic(out / "images" / f"{name}.jpg", jpeg.tobytes())
    write_atomic(out / "labels" / f"{name}.json", json.dumps(label).encode())


def write_people(jobs: list[PersonJob], out: Path, options: ConvertOptions) -> int:
    """Cut, resize and write the persons of one image (decoded once); how many were written."""
    image = cv2.imread(str(jobs[0].image_path), cv2.IMREAD_COLOR)
    if image is None:
        source = jobs[0].source
        raise ConvertError(f"{jobs[0].image_path}: cannot read this image (annotation "
                           f"{source['annotation']} of {source['annotations']})")
    for job in jobs:
        write_crop(out, job.name, image, job.box, job.points, job.hand_valid, job.source,
                   options.size, options.margin, str(job.image_path))
    return len(jobs)


def split_files(out: Path) -> dict[str, Path]:
    """The split files that exist in dataset folder `out`, by split name."""
    return {s: out / "splits" / f"{s}.txt" for s in SPLITS
            if (out / "splits" / f"{s}.txt").is_file()}


def extend_splits(out: Path, new: dict[str, list[str]]) -> None:
    """Append new stems to the split files that exist; stems listed anywhere already stay put.

    A split without a file is "everything else", so a stem bound for it needs no line.
    """
    files = split_files(out)
    listed = {s for p in files.values() for s in read_split_file(p, out)[0]}
    for split, path in files.items():
        stems = [s for s in dict.fromkeys(new.get(split, ())) if s not in listed]
        if stems:
            text = path.read_text()
            text += ("" if not text or text.endswith("\n") else "\n") + "\n".join(stems) + "\n"
            write_atomic(path, text.encode())


def start_val_split(out: Path, val_fraction: float, header: str) -> None:
    """Without split files, write splits/val.txt: the existing hash-val samples keep their split."""
    if split_files(out):
        return
    existing = sorted(p.stem for p in (out / "labels").glob("*.json"))
    text = header + "".join(f"{s}\n" for s in existing if is_val_stem(s, val_fraction))
    (out / "splits").mkdir(parents=True, exist_ok=True)
    write_atomic(out / "splits" / "val.txt", text.encode())


def hash_splits(stems: list[str], val_fraction: float) -> dict[str, list[str]]:
    """{'train': [...], 'val': [...]} of `stems` by the hash rule (`is_val_stem`)."""
    val = [s for s in stems if is_val_stem(s, val_fraction)]
    return {"val": val, "train": [s for s in stems if not is_val_stem(s, val_fraction)]}


def check_out(out: Path, add: bool) -> None:
    """ConvertError unless `out` is new, empty, or `add` allows adding to it."""
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not add:
        raise ConvertError(f"--out {out} is not empty; pass --add to add to it")


def check_new_names(out: Path, names: list[str], what: str) -> None:
    """ConvertError if a sample of `names` is already in `out` (--add must not overwrite)."""
    taken = [n for n in names if (out / "labels" / f"{n}.json").exists()]
    if taken:
        raise ConvertError(f"--out {out}: {len(taken)} of the {what} would overwrite samples "
                           f"already there (labels/{taken[0]}.json ...); convert into another "
                           "--out, or remove those samples first")


def convert(layout: KeypointMap, ann: Path, images: Path, out: Path, options: ConvertOptions,
            add: bool = False, val_fraction: float = 0.1, workers: int = 1
            ) -> tuple[int, collections.Counter]:
    """Convert every person of `ann` with `workers` processes; (written, dropped per reason)."""
    check_out(out, add)
    jobs, dropped = plan(ann, images, layout, options)  # every check before any write
    check_new_names(out, [job.name for job in jobs], f"{len(jobs)} persons of {ann}")
    for sub in ("images", "labels"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    by_image: dict[Path, list[PersonJob]] = {}
    for job in jobs:  # each image is decoded once, however many persons it holds
        by_image.setdefault(job.image_path, []).append(job)
    write = functools.partial(write_people, out=out, options=options)
    try:
        for _ in run_jobs(write, list(by_image.values()), max(1, min(workers, len(by_image)))):
            pass
    finally:  # also after a failure: what was written joins its split (none existed before)
        written = [j.name for j in jobs if (out / "labels" / f"{j.name}.json").exists()]
        extend_splits(out, hash_splits(written, val_fraction))
    return len(jobs), dropped


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--out, crop geometry, --add and --val-fraction: the same for every format."""
    parser.add_argument("--out", required=True, help="dataset folder to write")
    d = ConvertOptions()
    parser.add_argument("--size", type=int, default=d.size, help="crop side in pixels "
                        "(default %(default)s)")
    parser.add_argument("--margin", type=float, default=d.margin,
                        help="margin on each side, x the person box's larger side "
                        "(default %(default)s)")
    parser.add_argument("--add", action="store_true", help="add to a non-empty --out")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="hash split share of val, as training's data.val_fraction; used "
                        "where split files are written (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface: one sub-command per format."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.data.convert",
                                     description=__doc__.split("\n\n")[0])
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, what in (("coco-wholebody", "COCO-WholeBody v1.0"), ("halpe", "Halpe-FullBody")):
        sub = formats.add_parser(name, help=f"{what} annotation JSON and its images",
                                 description=f"{what} annotation JSON -> our dataset layout")
        sub.add_argument("--ann", required=True, help="the annotation JSON file")
        sub.add_argument("--images", required=True, help="folder of the images it names")
        add_common_arguments(sub)
        d = ConvertOptions()
        sub.add_argument("--min-box", type=float, default=d.min_box,
                         help="drop persons whose box is smaller (pixels, default %(default)s)")
        sub.add_argument("--min-hand-points", type=int, default=d.min_hand_points,
                         help="drop persons with fewer labelled hand points (default "
                         "%(default)s)")
        sub.add_argument("--workers", type=int, default=1,
                         help="processes cutting images, each image decoded once (default "
                         "%(default)s)")
    # Imported here: convert_pose imports this module (and pose-format only when it runs).
    from signlang_jax.data import convert_pose

    convert_pose.add_arguments(formats.add_parser(
        "pose", help="video frames labelled from .pose files (MediaPipe Holistic or ours)",
        description=convert_pose.__doc__.split("\n\n")[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one conversion; 0 on success, 1 on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.size < 16 or args.margin < 0 or not 0 <= args.val_fraction < 1:
        parser.error("--size must be >= 16, --margin >= 0 and --val-fraction in [0, 1)")
    if args.format == "pose":
        from signlang_jax.data import convert_pose

        return convert_pose.run(args, parser)
    if args.min_box < 0 or args.min_hand_points < 0 or args.workers < 1:
        parser.error("--min-box and --min-hand-points must be >= 0, --workers >= 1")
    layout = COCO_WHOLEBODY if args.format == "coco-wholebody" else HALPE
    options = ConvertOptions(args.size, args.margin, args.min_box, args.min_hand_points)
    try:
        kept, dropped = convert(layout, Path(args.ann), Path(args.images), Path(args.out),
                                options, args.add, args.val_fraction, args.workers)
    except ConvertError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    print(f"kept {kept} persons -> {args.out}")
    for reason, count in sorted(dropped.items()):
        print(f"dropped {count}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

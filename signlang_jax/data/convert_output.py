"""What every converter (`python -m signlang_jax.data.convert FORMAT`) writes, and how.

A sample is a square crop around a person, images/NAME.jpg, and its label, labels/NAME.json,
written image first, label last, each atomically (`signlang_jax.files.write_atomic`): a label
always means a whole image. Converters list the output folder once (`label_stems`) and write the
split files once, at the end of a run (`extend_splits`), so converting N inputs into a folder of M
samples costs O(N + M) whatever the order.

An interrupted or partly failed run never leaves a folder that no command can finish: a re-run
with --add skips the samples it finds already written identically (`compare_sample`) and
refuses only a sample that would overwrite a different one.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.crop import Region, apply_affine, crop_matrix
from signlang_jax.data.augment import warp_image
from signlang_jax.data.dataset import SPLITS, is_val_stem, read_split_file
from signlang_jax.files import write_atomic
from signlang_jax.keypoints import GROUPS, KEYPOINT_NAMES

JPEG_QUALITY = 95
DEFAULT_SIZE = 256
DEFAULT_MARGIN = 0.25  # on each side, x the larger side of the person box


class ConvertError(ValueError):
    """Malformed input, or an output folder that cannot take it: the message names the file."""


def print_skipped(message: str) -> None:
    """Report an input that was skipped (a bad image or video): an ERROR line on stderr."""
    print(f"ERROR {message} (skipped)", file=sys.stderr)


def print_dropped(dropped: collections.Counter) -> None:
    """Print one line per drop reason, sorted by reason."""
    for reason, count in sorted(dropped.items()):
        print(f"dropped {count}: {reason}")


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


def label_text(name: str, points: np.ndarray, hand_valid: dict[str, bool], box: np.ndarray,
               source: dict, size: int, margin: float) -> bytes:
    """The bytes of labels/NAME.json for a person `box` cut with `margin` to `size` pixels."""
    matrix = crop_matrix(person_region(box, margin), size)
    return json.dumps(sample_label(name, points, hand_valid, box, matrix, size, source)).encode()


def write_crop(out: Path, name: str, image: np.ndarray, box: np.ndarray, points: np.ndarray,
               hand_valid: dict[str, bool], source: dict, size: int, margin: float,
               where: str) -> None:
    """Cut the person around `box` out of a BGR image; write images/NAME.jpg, then its label."""
    crop = warp_image(image, crop_matrix(person_region(box, margin), size), size)
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ConvertError(f"{where}: JPEG encoding failed")
    label = label_text(name, points, hand_valid, box, source, size, margin)
    write_atomic(out / "images" / f"{name}.jpg", jpeg.tobytes())
    write_atomic(out / "labels" / f"{name}.json", label)


def label_stems(out: Path) -> set[str]:
    """The stems of labels/*.json in dataset folder `out`: one listing of the folder."""
    try:
        with os.scandir(out / "labels") as entries:
            return {e.name[:-5] for e in entries if e.name.endswith(".json") and e.is_file()}
    except FileNotFoundError:
        return set()


def compare_sample(out: Path, name: str, label: bytes) -> str:
    """Sample NAME in `out` against the `label` a run would write: 'new' (no labels/NAME.json),
    'done' (this very label, and its image) or 'other' (another label: do not overwrite it)."""
    try:
        there = (out / "labels" / f"{name}.json").read_bytes()
    except FileNotFoundError:
        return "new"
    if there != label:
        return "other"
    # An image without its label is a write that was cut short: written again.
    return "done" if (out / "images" / f"{name}.jpg").is_file() else "new"


def check_out(out: Path, add: bool) -> None:
    """ConvertError unless `out` is new, empty, or `add` allows adding to it."""
    if out.exists() and not out.is_dir():
        raise ConvertError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not add:
        raise ConvertError(f"--out {out} is not empty; pass --add to add to it (or to finish "
                           "an interrupted conversion)")


@contextlib.contextmanager
def output_folders(out: Path) -> Iterator[None]:
    """Create `out`/images and labels; a run that wrote no sample removes what it created.

    Every input skipped (all images unreadable, every video bad) must leave `--out` as it was:
    a folder holding only empty folders and a split file would make the plain re-run refuse it
    as "not empty".
    """
    created = [d for d in (out, out / "images", out / "labels", out / "splits") if not d.exists()]
    splits_before = set(split_files(out).values())
    for d in created[:-1] if created and created[-1].name == "splits" else created:
        d.mkdir(parents=True, exist_ok=True)
    try:
        yield
    finally:
        labels = out / "labels"
        if labels in created and labels.is_dir() and not any(labels.iterdir()):
            for path in set(split_files(out).values()) - splits_before:
                path.unlink(missing_ok=True)
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()


def split_files(out: Path) -> dict[str, Path]:
    """The split files that exist in dataset folder `out`, by split name."""
    return {s: out / "splits" / f"{s}.txt" for s in SPLITS
            if (out / "splits" / f"{s}.txt").is_file()}


def extend_splits(out: Path, new: dict[str, list[str]]) -> None:
    """Append new stems to the split files that exist; stems listed anywhere already stay put.

    A split without a file is "everything else", so a stem bound for it needs no line. It reads
    every split file and rewrites those that gain stems: call it once per run, not per input.
    """
    files = split_files(out)
    listed = {s for path in files.values() for s in read_split_file(path, out)[0]}
    for split, path in files.items():
        stems = [s for s in dict.fromkeys(new.get(split, ())) if s not in listed]
        if stems:
            text = path.read_text()
            text += ("" if not text or text.endswith("\n") else "\n") + "\n".join(stems) + "\n"
            write_atomic(path, text.encode())


def start_val_split(out: Path, val_fraction: float, header: str, stems: set[str]) -> None:
    """Without split files, write splits/val.txt: the existing hash-val samples (`stems`, the
    folder's labels) keep their split."""
    if split_files(out):
        return
    text = header + "".join(f"{s}\n" for s in sorted(stems) if is_val_stem(s, val_fraction))
    (out / "splits").mkdir(parents=True, exist_ok=True)
    write_atomic(out / "splits" / "val.txt", text.encode())


def hash_splits(stems: list[str], val_fraction: float) -> dict[str, list[str]]:
    """{'train': [...], 'val': [...]} of `stems` by the hash rule (`is_val_stem`)."""
    val = [s for s in stems if is_val_stem(s, val_fraction)]
    return {"val": val, "train": [s for s in stems if not is_val_stem(s, val_fraction)]}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--out, crop geometry, --add and --val-fraction: the same for every format."""
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="crop side in pixels "
                        "(default %(default)s)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                        help="margin on each side, x the person box's larger side "
                        "(default %(default)s)")
    parser.add_argument("--add", action="store_true",
                        help="add to a non-empty --out; samples already there identically (an "
                        "interrupted run's) are skipped")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="hash split share of val, as training's data.val_fraction; used "
                        "where split files are written (default %(default)s)")

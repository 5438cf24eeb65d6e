"""`python -m signlang_jax.data.convert pose`: video frames labelled from .pose files.

    python -m signlang_jax.data.convert pose --pose POSES/ --video VIDEOS/ --out signers \
        [--every 5] [--min-change 1.0] [--min-confidence 0.5] [--min-hand-confidence 0.5] ...

Pseudo-labels recordings with an existing tracker: each .pose file (MediaPipe Holistic as
pose-format writes it, or our video job's) goes with the video of the same stem. Every k-th frame
is a candidate, dropped if the person has under --min-body-points confident body points or a box
under --min-box pixels, or if its crop barely changed since the video's last kept frame (mean
absolute difference of 32x32 grayscale crops, 0-255, under --min-change). A point is visible at
or above its threshold (body, face: Holistic's pose visibility or our score; hands: the hand
confidence, 1 for a hand Holistic found) and inside the crop; the others are visible 0 at
(0, 0), a position training never weights (the tracker's guess is not a label). A hand without
one confident point is missing: hand_valid false. Crops are squares around
the confident points (`person_region`); samples are named VIDEO_f000123. A video's frames are
near-duplicates, so splits/val.txt puts whole videos in val (`is_val_stem(video stem)`).

Every pair is read and checked (layouts, point counts, pairing, frame counts and sizes, every
frame decodable, `signlang_jax.data.videos`' truncation rule) before the first write. A pair that
fails is reported and skipped, the others are converted, and the exit status is 1. A video's
frames are written in order, so one cut short (Ctrl-C, a video that changed meanwhile) left its
first frames: a re-run with --add writes the rest; other frames of a video already in --out are
refused (two conversions of one video must not mix). Needs pose-format: `pip install ".[pose]"`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.crop import HANDS
from signlang_jax.data.convert_output import (
    DEFAULT_MARGIN,
    DEFAULT_SIZE,
    ConvertError,
    add_common_arguments,
    check_out,
    compare_sample,
    extend_splits,
    label_stems,
    label_text,
    output_folders,
    person_region,
    print_dropped,
    print_skipped,
    start_val_split,
    write_crop,
)
from signlang_jax.data.convert_pose_input import PoseTrack, pair_files, read_track
from signlang_jax.data.dataset import is_val_stem
from signlang_jax.data.sequence_files import PoseFormatMissingError, import_pose_format
from signlang_jax.data.videos import TruncatedVideoError, VideoReadError, decode_video
from signlang_jax.keypoints import GROUPS, NUM_KEYPOINTS

THUMB = 32  # side of the grayscale crop thumbnails that near-duplicate frames are judged on
_VAL_HEADER = "# val: every frame of a video is in one split (signlang_jax.data.convert pose)\n"
_FRAME_STEM = re.compile(r"(.+)_f(\d{6,})")  # VIDEO_f000123; greedy: VIDEO may hold "_f"


@dataclasses.dataclass(frozen=True)
class PoseOptions:
    """Frame selection, visibility thresholds and crop geometry of a pose conversion."""

    size: int = DEFAULT_SIZE
    margin: float = DEFAULT_MARGIN
    every: int = 5  # candidate frames: 0, every, 2 every, ...
    # Thumbnail mean absolute difference (0-255) to the last kept frame. Re-encoded identical
    # frames measure 0-0.5; a synthetic signer 5 frames (0.2 s) apart a median 1.0, with hands
    # 7 px apart in a 190 px box. A handshape barely shows at 32 px: err towards keeping.
    min_change: float = 1.0
    min_confidence: float = 0.5  # body and face points
    min_hand_confidence: float = 0.5
    min_body_points: int = 5  # of our 17 body points, confident
    min_box: float = 32.0  # larger side of the confident points' box, pixels
    person: int = 0
    val_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class VideoPlan:
    """The frames of one video to write: index -> (x, y, v) points, person box, hand flags."""

    pose: Path
    video: Path
    layout: str
    val: bool
    frames: dict[int, tuple[np.ndarray, np.ndarray, dict[str, bool]]]

    def name(self, frame: int) -> str:
        """The sample name of a frame: VIDEO_f000123."""
        return f"{self.video.stem}_f{frame:06d}"

    def source(self, frame: int, person: int) -> dict:
        """Where a frame's sample comes from, as its label's "source" says."""
        return {"format": "pose", "layout": self.layout, "pose": self.pose.name,
                "video": self.video.name, "frame": frame, "person": person}

    def label(self, frame: int, options: PoseOptions) -> bytes:
        """The label a frame's sample gets (the bytes of labels/NAME.json)."""
        points, box, hand_valid = self.frames[frame]
        return label_text(self.name(frame), points, hand_valid, box,
                          self.source(frame, options.person), options.size, options.margin)


def frame_labels(track: PoseTrack, options: PoseOptions
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """Per frame: (x, y, v) points (v 2 visible, 0 not), person box, hand flags, drop reason."""
    xy, conf = track.xy.copy(), track.confidence
    finite = np.isfinite(xy).all(-1) & np.isfinite(conf)
    threshold = np.full(NUM_KEYPOINTS, options.min_confidence)
    for hand in HANDS:
        threshold[GROUPS[hand].start:GROUPS[hand].stop] = options.min_hand_confidence
    # Confidence 0 is pose-format's "missing", whatever the thresholds say.
    confident = finite & (np.where(finite, conf, 0) > 0) & (conf >= threshold)
    xy[~finite] = 0.0
    hand_valid = np.zeros((len(xy), len(HANDS)), bool)
    for i, hand in enumerate(HANDS):
        part = slice(GROUPS[hand].start, GROUPS[hand].stop)
        hand_valid[:, i] = confident[:, part].any(1)  # else missing: written at (0, 0)
    # The box of the confident points, within the frame (a point beyond the edge adds nothing).
    edge = np.array([track.width - 0.5, track.height - 0.5])
    lo = np.clip(np.where(confident[..., None], xy, np.inf).min(1), -0.5, edge)
    hi = np.clip(np.where(confident[..., None], xy, -np.inf).max(1), -0.5, edge)
    boxes = np.concatenate([lo, hi - lo], -1)
    body = confident[:, GROUPS["body"].start:GROUPS["body"].stop].sum(1)
    reasons: list[str | None] = []
    for n, box in zip(body, boxes, strict=True):
        if n < options.min_body_points:
            reasons.append(f"under {options.min_body_points} confident body points")
        elif max(box[2], box[3]) < max(options.min_box, 1.0):
            reasons.append(f"person box under {options.min_box:g} px")
        else:
            reasons.append(None)
    points = np.concatenate([xy, np.where(confident, 2.0, 0.0)[..., None]], -1)
    return points, boxes, hand_valid, reasons


def _thumbnail(frame: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """THUMB x THUMB grayscale float32 view of the person's crop (within the frame)."""
    region = person_region(box, margin)
    h, w = frame.shape[:2]
    x0, y0 = (max(0, min(int(c - region.side / 2), n - 1)) for c, n in
              ((region.cx, w), (region.cy, h)))
    x1, y1 = (max(a + 1, min(int(c + region.side / 2) + 1, n)) for a, c, n in
              ((x0, region.cx, w), (y0, region.cy, h)))
    # Area-averaging only the person's pixels: cheaper than warping the whole frame down.
    small = cv2.resize(frame[y0:y1, x0:x1], (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _checked_frames(video: Path, pose: Path, total: int, wanted: Callable[[int], bool]
                    ) -> Iterator[tuple[int, np.ndarray | None]]:
    """`decode_video`, with its errors as ConvertErrors and its length checked against the
    `total` frames of the .pose file."""
    decoded = 0
    try:
        for f, frame, _ in decode_video(video, wanted):
            decoded = f + 1
            yield f, frame
    except TruncatedVideoError as e:
        if e.decoded == total:
            raise ConvertError(str(e)) from None
        raise ConvertError(f"{video}: {e.decoded} frames decoded, ending at {e.end:.2f} s of "
                           f"the {e.duration:.2f} s the file states (truncated or corrupt), but "
                           f"{pose} has {total} (field 'frames')") from None
    except VideoReadError as e:
        raise ConvertError(str(e)) from None
    if decoded != total:
        raise ConvertError(f"{video}: {decoded} frames decoded, but {pose} has {total} (field "
                           "'frames'): not the video this .pose was made from")


def plan_video(pose: Path, video: Path, options: PoseOptions, dropped: collections.Counter
               ) -> VideoPlan:
    """Read and check one (.pose, video) pair; pick its frames (decodes the whole video).

    `dropped` gains this video's dropped frames only if the whole pair checks out.
    """
    track: PoseTrack = read_track(pose, options.person)
    points, boxes, hand_valid, reasons = frame_labels(track, options)
    total = len(points)
    candidate = lambda f: f < total and f % options.every == 0 and reasons[f] is None
    # Frame 0 always (its size is checked); the others only to compare them.
    wanted = lambda f: f == 0 or (options.min_change > 0 and candidate(f))
    frames, last, mine = {}, None, collections.Counter()
    for f, frame in _checked_frames(video, pose, total, wanted):
        if frame is not None and frame.shape[:2] != (track.height, track.width):
            raise ConvertError(f"{video}: frame size {frame.shape[1]}x{frame.shape[0]} differs "
                               f"from the {track.width}x{track.height} of {pose} (field "
                               "'dimensions')")
        if not candidate(f):
            continue
        if options.min_change > 0:
            thumb = _thumbnail(frame, boxes[f], options.margin)
            if last is not None and np.abs(thumb - last).mean() < options.min_change:
                mine[f"near-duplicate (change under {options.min_change:g})"] += 1
                continue
            last = thumb
        frames[f] = (points[f], boxes[f], dict(zip(HANDS, map(bool, hand_valid[f]), strict=True)))
    mine.update(reasons[f] for f in range(0, total, options.every) if reasons[f] is not None)
    dropped.update(mine)
    return VideoPlan(pose, video, track.layout, is_val_stem(video.stem, options.val_fraction),
                     frames)


def frames_there(stems: set[str], videos: set[str]) -> dict[str, list[int]]:
    """Sorted frame indices of the samples VIDEO_fNNNNNN among `stems`, for these videos."""
    found: dict[str, list[int]] = {}
    for stem in stems:
        match = _FRAME_STEM.fullmatch(stem)
        if match and match[1] in videos:
            found.setdefault(match[1], []).append(int(match[2]))
    return {video: sorted(frames) for video, frames in found.items()}


def frames_to_write(plan: VideoPlan, there: list[int], out: Path, options: PoseOptions
                    ) -> list[int]:
    """The planned frames not yet in `out`, in order.

    Frames of this video already there are fine only as the plan's first ones, written
    identically (what an interrupted run leaves); anything else would mix two conversions.
    """
    planned = sorted(plan.frames)
    if there != planned[:len(there)] or any(
            compare_sample(out, plan.name(f), plan.label(f, options)) != "done" for f in there):
        raise ConvertError(f"--out {out} already has frames of a video named "
                           f"{plan.video.stem!r} (labels/{plan.video.stem}_f*.json); adding "
                           f"{plan.video} would mix two videos under one name: use another "
                           "--out or rename the video")
    return planned[len(there):]


def write_video(plan: VideoPlan, todo: list[int], out: Path, options: PoseOptions,
                written: list[str]) -> None:
    """Write frames `todo` (in order) of one video; each name joins `written` once written."""
    if not todo:
        return
    for f, frame, _ in decode_video(plan.video, set(todo).__contains__):
        if frame is not None:
            points, box, hand_valid = plan.frames[f]
            write_crop(out, plan.name(f), frame, box, points, hand_valid,
                       plan.source(f, options.person), options.size, options.margin,
                       f"{plan.video} frame {f}")
            written.append(plan.name(f))
            if f == todo[-1]:
                return  # the rest of the video is not needed
    raise ConvertError(f"{plan.video}: decoding stopped before frame {todo[-1]} on the second "
                       "pass (the file changed?)")


def convert_pose(pairs: list[tuple[Path, Path]], out: Path, options: PoseOptions,
                 add: bool = False, report: Callable[[str], None] = print_skipped
                 ) -> tuple[list[VideoPlan], collections.Counter]:
    """Convert every pair into `out`; (the plans, as far as written, dropped frames per reason).

    A pair that cannot be converted goes to `report` and is skipped; the others are written.
    """
    check_out(out, add)
    import_pose_format()  # a missing pose-format is not a bad pair: PoseFormatMissingError
    stems = collections.Counter(v.stem for _, v in pairs)
    for video in (v for _, v in pairs if stems[v.stem] > 1):  # their samples would collide
        raise ConvertError(f"{video}: two videos named {video.stem!r}; use separate --out")
    dropped: collections.Counter = collections.Counter()
    plans = []
    for pose, video in pairs:
        try:
            plans.append(plan_video(pose, video, options, dropped))
        except ConvertError as e:
            report(str(e))
    there = label_stems(out)  # the one listing of the folder
    found = frames_there(there, set(stems))
    todo = [frames_to_write(p, found.get(p.video.stem, []), out, options) for p in plans]
    new: dict[str, list[str]] = {"train": [], "val": []}
    # Every check above, the first write below. With nothing new to write, the frames already
    # there still join their video's split (a killed run may not have listed them).
    with output_folders(out) if any(todo) else contextlib.nullcontext():
        if any(todo):
            start_val_split(out, options.val_fraction, _VAL_HEADER, there)
        _write_all(plans, todo, out, options, new, report)
    return plans, dropped


def _write_all(plans: list[VideoPlan], todo: list, out: Path, options: PoseOptions,
               new: dict[str, list[str]], report: Callable[[str], None]) -> None:
    """Write every video's frames; a bad video is reported and its plan cut to what was written."""
    try:
        for n, (plan, frames) in enumerate(zip(plans, todo, strict=True)):
            names, fresh = new["val" if plan.val else "train"], set(frames)
            names += [plan.name(f) for f in sorted(plan.frames) if f not in fresh]  # there
            try:
                write_video(plan, frames, out, options, names)
            except (ConvertError, VideoReadError) as e:
                report(str(e))
                done = set(names)
                plans[n] = dataclasses.replace(plan, frames={
                    f: v for f, v in plan.frames.items() if plan.name(f) in done})
    finally:  # also after a failure: what was written joins its video's split
        extend_splits(out, new)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `pose` sub-command's arguments."""
    d = PoseOptions()
    parser.add_argument("--pose", nargs="+", required=True,
                        help=".pose files or folders of them (MediaPipe Holistic or ours)")
    parser.add_argument("--video", nargs="+", required=True,
                        help="their videos, or folders of them, matched by file stem")
    add_common_arguments(parser)
    for flag, kind, value, text in (
        ("--every", int, d.every, "candidate frames: every k-th, from frame 0"),
        ("--min-change", float, d.min_change, "skip a frame whose 32x32 grayscale crop differs "
         "from the last kept one by less (mean absolute difference, 0-255; 0 keeps all)"),
        ("--min-confidence", float, d.min_confidence, "body and face points at or above it "
         "are visible (Holistic's pose visibility, our score)"),
        ("--min-hand-confidence", float, d.min_hand_confidence, "hand points at or above it "
         "are visible; a hand with none is missing (hand_valid false)"),
        ("--min-body-points", int, d.min_body_points, "drop frames with fewer confident "
         "body points (of 17)"),
        ("--min-box", float, d.min_box, "drop frames whose person box is smaller (pixels)"),
        ("--person", int, d.person, "which person of the .pose file"),
    ):
        parser.add_argument(flag, type=kind, default=value, help=f"{text} (default %(default)s)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run `convert pose` from parsed arguments; 0 on success, 1 on bad input or a skipped pair."""
    if (args.every < 1 or args.min_change < 0 or args.min_body_points < 1 or args.min_box < 0
            or args.person < 0 or not (0 <= args.min_confidence <= 1)
            or not (0 <= args.min_hand_confidence <= 1)):
        parser.error("--every and --min-body-points must be >= 1, --min-change, --min-box, "
                     "--person >= 0 and the confidences in [0, 1]")
    options = PoseOptions(args.size, args.margin, args.every, args.min_change,
                          args.min_confidence, args.min_hand_confidence, args.min_body_points,
                          args.min_box, args.person, args.val_fraction)
    skipped: list[str] = []
    try:
        pairs = pair_files(args.pose, args.video)
        plans, dropped = convert_pose(pairs, Path(args.out), options, args.add,
                                      lambda message: (print_skipped(message),
                                                       skipped.append(message)))
    except PoseFormatMissingError as e:
        print(f'ERROR {e}; from a checkout: pip install ".[pose]"', file=sys.stderr)
        return 1
    except (ConvertError, OSError) as e:  # OSError: --out cannot be written
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    val = [p for p in plans if p.val]
    print(f"kept {sum(len(p.frames) for p in plans)} frames of {len(plans)} videos -> "
          f"{args.out} (val: {sum(len(p.frames) for p in val)} frames of {len(val)} videos)")
    print_dropped(dropped)
    if skipped:
        print(f"skipped {len(skipped)} of {len(pairs)} videos: see the ERROR lines")
    if plans and not val:  # few videos: the hash rule may well pick none
        print(f"note: no video of these is in val (hash rule, --val-fraction "
              f"{options.val_fraction:g}); list one's frames in splits/val.txt to validate on it")
    return 1 if skipped else 0

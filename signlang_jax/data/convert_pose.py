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
Everything is checked (layouts, point counts, pairing, frame counts and sizes, every frame
decodable) before the first write. Needs pose-format: `pip install ".[pose]"`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.crop import HANDS
from signlang_jax.data.convert import (
    ConvertError,
    add_common_arguments,
    check_out,
    extend_splits,
    person_region,
    start_val_split,
    write_crop,
)
from signlang_jax.data.dataset import is_val_stem
from signlang_jax.data.sequence_files import (
    POSE_COMPONENT_NAMES,
    KeypointFileError,
    PoseFormatMissingError,
    import_pose_format,
    read_pose,
)
from signlang_jax.data.videos import VIDEO_EXTENSIONS
from signlang_jax.keypoint_maps import MEDIAPIPE_HOLISTIC, MEDIAPIPE_POSE_NAMES
from signlang_jax.keypoints import GROUPS, NUM_KEYPOINTS

THUMB = 32  # side of the grayscale crop thumbnails that near-duplicate frames are judged on
# The Holistic components we read (the hands are the subject's own left and right), with their
# point counts (the pose's by name: reduced files hold fewer); FACE_LANDMARKS (468, 478 refined,
# fewer reduced) and POSE_WORLD_LANDMARKS are not needed: our face anchors are the pose's nose,
# eyes and ears.
HOLISTIC_PARTS = (("POSE_LANDMARKS", 33), ("LEFT_HAND_LANDMARKS", 21),
                  ("RIGHT_HAND_LANDMARKS", 21))
_HOLISTIC_NAMES = frozenset({"POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS",
                             "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"})
_OUR_NAMES = list(POSE_COMPONENT_NAMES.values())
_VAL_HEADER = "# val: every frame of a video is in one split (signlang_jax.data.convert pose)\n"


@dataclasses.dataclass(frozen=True)
class PoseOptions:
    """Frame selection, visibility thresholds and crop geometry of a pose conversion."""

    size: int = 256
    margin: float = 0.25
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
class PoseTrack:
    """One person's 64 points over the frames of a .pose file, in video pixels."""

    layout: str
    xy: np.ndarray  # (T, 64, 2) float64
    confidence: np.ndarray  # (T, 64) float64, 0 = missing
    width: int
    height: int


@dataclasses.dataclass(frozen=True)
class VideoPlan:
    """The frames of one video to write: index -> (x, y, v) points, person box, hand flags."""

    pose: Path
    video: Path
    layout: str
    val: bool
    frames: dict[int, tuple[np.ndarray, np.ndarray, dict[str, bool]]]


def _describe(components: list) -> str:
    return ", ".join(f"{c.name} ({len(c.points)} points)" for c in components) or "none"


def read_track(path: Path, person: int = 0) -> PoseTrack:
    """The person's points in a .pose file, MediaPipe Holistic or ours; ConvertError if bad."""
    pose_format = import_pose_format()
    try:
        pose = pose_format.Pose.read(path.read_bytes())
    except Exception as e:  # OSError, or pose-format's struct / unicode / value errors
        raise ConvertError(f"{path}: not a readable .pose file ({e!r})") from None
    components = pose.header.components
    names = [c.name for c in components]
    if _HOLISTIC_NAMES & set(names):
        track = _holistic_track(path, pose, person)
    elif names == _OUR_NAMES:
        if person != 0:
            raise ConvertError(f"{path}: field 'person': --person {person}, but a signlang-jax "
                               ".pose file holds 1 person")
        try:
            seq = read_pose(path)
        except KeypointFileError as e:
            raise ConvertError(str(e)) from None
        track = PoseTrack("signlang-jax", seq.keypoints[..., :2].astype(np.float64),
                          seq.keypoints[..., 2].astype(np.float64), seq.width, seq.height)
    else:
        raise ConvertError(
            f"{path}: unknown .pose layout: components {_describe(components)}; expected "
            "MediaPipe Holistic (" + ", ".join(f"{n} ({c} points)" for n, c in HOLISTIC_PARTS)
            + ") or signlang-jax's (" + ", ".join(_OUR_NAMES) + ")")
    if len(track.xy) == 0:
        raise ConvertError(f"{path}: field 'frames': the file holds no frames")
    return track


def _holistic_track(path: Path, pose: object, person: int) -> PoseTrack:
    """The Holistic pose and hand points of `person`, checked, in our 64."""
    components = pose.header.components
    by_name, starts, start = {}, {}, 0
    for c in components:
        by_name[c.name], starts[c.name] = c, start
        start += len(c.points)
    for name, count in HOLISTIC_PARTS:
        c = by_name.get(name)
        if c is None:
            raise ConvertError(f"{path}: MediaPipe Holistic component {name!r} is missing "
                               f"(components: {_describe(components)})")
        if not c.format.upper().startswith("XY") or (
                name != "POSE_LANDMARKS" and len(c.points) != count):
            raise ConvertError(f"{path}: component {name!r} has {len(c.points)} points of format "
                               f"{c.format!r}; MediaPipe Holistic's has {count} (format XY...)")
    # Pose points by name: pose-format's reduce_holistic keeps 8 of the 33 (no face, no legs).
    pose_names = [str(p).lower() for p in by_name["POSE_LANDMARKS"].points]
    for i, n in enumerate(pose_names):
        if n not in MEDIAPIPE_POSE_NAMES or n in pose_names[:i]:
            raise ConvertError(f"{path}: component 'POSE_LANDMARKS' point {i} {n.upper()!r} is "
                               "not one of MediaPipe's 33 pose landmarks, or repeated")
    data, confidence = pose.body.data, pose.body.confidence
    if person >= data.shape[1]:
        raise ConvertError(f"{path}: field 'person': --person {person}, but the file holds "
                           f"{data.shape[1]} person(s) per frame")
    source = [MEDIAPIPE_POSE_NAMES.index(n) for n in pose_names] + list(range(33, 75))
    index = [starts["POSE_LANDMARKS"] + i for i in range(len(pose_names))] + [
        starts[n] + i for n, _ in HOLISTIC_PARTS[1:] for i in range(21)]
    points = np.zeros((len(data), 75, 3))  # absent pose points: confidence 0, missing
    points[:, source, :2] = np.ma.getdata(data)[:, person][:, index, :2]
    points[:, source, 2] = np.ma.getdata(confidence)[:, person][:, index]
    ours = MEDIAPIPE_HOLISTIC.apply(points)
    dims = pose.header.dimensions
    return PoseTrack("mediapipe-holistic", ours[..., :2], ours[..., 2], int(dims.width),
                     int(dims.height))


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


def read_video(path: Path, wanted: Callable[[int], bool]
               ) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, BGR frame if wanted(index) else None) for every frame of the video, in order."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ConvertError(f"{path}: cannot open this video (not a video, or a codec this "
                               "OpenCV build lacks)")
        index = 0
        while capture.grab():  # grab decodes; retrieve (colour conversion, copy) only if wanted
            frame = None
            if wanted(index):
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise ConvertError(f"{path}: frame {index} cannot be decoded")
            yield index, frame
            index += 1
    finally:
        capture.release()


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


def plan_video(pose: Path, video: Path, options: PoseOptions, dropped: collections.Counter
               ) -> VideoPlan:
    """Read and check one (.pose, video) pair; pick its frames (decodes the whole video)."""
    track = read_track(pose, options.person)
    points, boxes, hand_valid, reasons = frame_labels(track, options)
    total = len(points)
    candidate = lambda f: f < total and f % options.every == 0 and reasons[f] is None
    # Frame 0 always (its size is checked); the others only to compare them.
    wanted = lambda f: f == 0 or (options.min_change > 0 and candidate(f))
    frames, last, decoded = {}, None, 0
    for f, frame in read_video(video, wanted):
        decoded = f + 1
        if frame is not None and frame.shape[:2] != (track.height, track.width):
            raise ConvertError(f"{video}: frame size {frame.shape[1]}x{frame.shape[0]} differs "
                               f"from the {track.width}x{track.height} of {pose} (field "
                               "'dimensions')")
        if not candidate(f):
            continue
        if options.min_change > 0:
            thumb = _thumbnail(frame, boxes[f], options.margin)
            if last is not None and np.abs(thumb - last).mean() < options.min_change:
                dropped[f"near-duplicate (change under {options.min_change:g})"] += 1
                continue
            last = thumb
        frames[f] = (points[f], boxes[f], dict(zip(HANDS, map(bool, hand_valid[f]), strict=True)))
    if decoded != total:
        announced = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        note = f" (the file announces {announced}: truncated or corrupt)" * (announced > decoded)
        raise ConvertError(f"{video}: {decoded} frames decoded{note}, but {pose} has {total} "
                           "(field 'frames'): not the video this .pose was made from")
    for f in range(0, total, options.every):
        if reasons[f] is not None:
            dropped[reasons[f]] += 1
    return VideoPlan(pose, video, track.layout, is_val_stem(video.stem, options.val_fraction),
                     frames)


def _files(specs: list[str], suffixes: frozenset[str], flag: str) -> list[Path]:
    """The files named by `specs`; a folder gives its files with these suffixes."""
    found = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            found.append(path)
        else:
            raise ConvertError(f"{flag} {spec}: no such file or folder")
    return found


def pair_files(poses: list[str], videos: list[str]) -> list[tuple[Path, Path]]:
    """(.pose, video) pairs by file stem; one file named for each pairs whatever the stems."""
    pose_files = _files(poses, frozenset({".pose"}), "--pose")
    video_files = _files(videos, VIDEO_EXTENSIONS, "--video")
    if not pose_files:
        raise ConvertError(f"--pose {' '.join(poses)}: no .pose files")
    if len(poses) == len(videos) == 1 and Path(poses[0]).is_file() and Path(videos[0]).is_file():
        return [(pose_files[0], video_files[0])]
    for files, flag, others, other_flag in ((pose_files, "--pose", video_files, "--video"),
                                            (video_files, "--video", pose_files, "--pose")):
        stems, other_stems = collections.Counter(p.stem for p in files), {p.stem for p in others}
        for path in files:
            if stems[path.stem] > 1:
                raise ConvertError(f"{path}: {flag} names two files with stem {path.stem!r}")
            if path.stem not in other_stems:
                raise ConvertError(f"{path}: no {path.stem}.* among {other_flag} "
                                   f"({len(others)} files)")
    by_stem = {v.stem: v for v in video_files}
    return [(p, by_stem[p.stem]) for p in pose_files]


def write_video(plan: VideoPlan, out: Path, options: PoseOptions) -> int:
    """Write the planned frames of one video; its samples join its split even after a failure."""
    written = []
    try:
        for f, frame in read_video(plan.video, plan.frames.__contains__) if plan.frames else ():
            if frame is not None:
                points, box, hand_valid = plan.frames[f]
                name = f"{plan.video.stem}_f{f:06d}"
                source = {"format": "pose", "layout": plan.layout, "pose": plan.pose.name,
                          "video": plan.video.name, "frame": f, "person": options.person}
                write_crop(out, name, frame, box, points, hand_valid, source,
                           options.size, options.margin, f"{plan.video} frame {f}")
                written.append(name)
                if len(written) == len(plan.frames):
                    break  # the rest of the video is not needed
        if len(written) != len(plan.frames):
            raise ConvertError(f"{plan.video}: decoding stopped before frame "
                               f"{max(plan.frames)} on the second pass (the file changed?)")
    finally:
        extend_splits(out, {"val" if plan.val else "train": written})
    return len(written)


def convert_pose(pairs: list[tuple[Path, Path]], out: Path, options: PoseOptions,
                 add: bool = False) -> tuple[list[VideoPlan], collections.Counter]:
    """Convert every pair into `out`; (the plans written, dropped frames per reason)."""
    check_out(out, add)
    dropped: collections.Counter = collections.Counter()
    stems = collections.Counter(v.stem for _, v in pairs)
    for video in (v for _, v in pairs if stems[v.stem] > 1):  # their samples would collide
        raise ConvertError(f"{video}: two videos named {video.stem!r}; use separate --out")
    for _, video in pairs:  # a video's frames belong together: none may be there already
        pattern = f"{glob.escape(video.stem)}_f*.json"
        if (out / "labels").is_dir() and any((out / "labels").glob(pattern)):
            raise ConvertError(f"--out {out} already has frames of a video named "
                               f"{video.stem!r} (labels/{video.stem}_f*.json); adding {video} "
                               "would mix two videos under one name: use another --out or "
                               "rename the video")
    plans = [plan_video(pose, video, options, dropped) for pose, video in pairs]
    for sub in ("images", "labels"):  # every check above, the first write below
        (out / sub).mkdir(parents=True, exist_ok=True)
    start_val_split(out, options.val_fraction, _VAL_HEADER)
    for plan in plans:
        write_video(plan, out, options)
    return plans, dropped


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
    """Run `convert pose` from parsed arguments; 0 on success, 1 on bad input."""
    if (args.every < 1 or args.min_change < 0 or args.min_body_points < 1 or args.min_box < 0
            or args.person < 0 or not (0 <= args.min_confidence <= 1)
            or not (0 <= args.min_hand_confidence <= 1)):
        parser.error("--every and --min-body-points must be >= 1, --min-change, --min-box, "
                     "--person >= 0 and the confidences in [0, 1]")
    options = PoseOptions(args.size, args.margin, args.every, args.min_change,
                          args.min_confidence, args.min_hand_confidence, args.min_body_points,
                          args.min_box, args.person, args.val_fraction)
    try:
        plans, dropped = convert_pose(pair_files(args.pose, args.video), Path(args.out),
                                      options, args.add)
    except PoseFormatMissingError as e:
        print(f'ERROR {e}; from a checkout: pip install ".[pose]"', file=sys.stderr)
        return 1
    except ConvertError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    kept = sum(len(p.frames) for p in plans)
    val = [p for p in plans if p.val]
    print(f"kept {kept} frames of {len(plans)} videos -> {args.out} (val: "
          f"{sum(len(p.frames) for p in val)} frames of {len(val)} videos)")
    for reason, count in sorted(dropped.items()):
        print(f"dropped {count}: {reason}")
    if plans and not val:  # few videos: the hash rule may well pick none
        print(f"note: no video of these is in val (hash rule, --val-fraction "
              f"{options.val_fraction:g}); list one's frames in splits/val.txt to validate on it")
    return 0

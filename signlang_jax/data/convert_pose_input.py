"""The `.pose` converter's inputs: (.pose, video) pairs, and one person's track in a .pose file.

A .pose file is MediaPipe Holistic's layout as pose-format writes it (full, or reduced by
`reduce_holistic`) or our video job's (`sequence_files.write_pose`); `read_track` maps either to
our 64 points in video pixels and checks what the converter relies on (layout, point counts and
names, persons, frames, frame size), naming the file and the field of anything malformed.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np

from signlang_jax.data.convert_output import ConvertError
from signlang_jax.data.sequence_files import (
    POSE_COMPONENT_NAMES,
    KeypointFileError,
    import_pose_format,
    read_pose,
)
from signlang_jax.data.videos import VIDEO_EXTENSIONS
from signlang_jax.keypoint_maps import MEDIAPIPE_HOLISTIC, MEDIAPIPE_POSE_NAMES

# The Holistic components we read (the hands are the subject's own left and right), with their
# point counts (the pose's by name: reduced files hold fewer); FACE_LANDMARKS (468, 478 refined,
# fewer reduced) and POSE_WORLD_LANDMARKS are not needed: our face anchors are the pose's nose,
# eyes and ears.
HOLISTIC_PARTS = (("POSE_LANDMARKS", 33), ("LEFT_HAND_LANDMARKS", 21),
                  ("RIGHT_HAND_LANDMARKS", 21))
_HOLISTIC_NAMES = frozenset({"POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS",
                             "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"})
_OUR_NAMES = list(POSE_COMPONENT_NAMES.values())


@dataclasses.dataclass(frozen=True)
class PoseTrack:
    """One person's 64 points over the frames of a .pose file, in video pixels."""

    layout: str
    xy: np.ndarray  # (T, 64, 2) float64
    confidence: np.ndarray  # (T, 64) float64, 0 = missing
    width: int
    height: int


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
    if not (track.width >= 1 and track.height >= 1):
        raise ConvertError(f"{path}: field 'dimensions' is {track.width}x{track.height}; "
                           "expected the video's frame size")
    return track


def _holistic_track(path: Path, pose: object, person: int) -> PoseTrack:
    """The Holistic pose and hand points of `person`, checked, in our 64."""
    components = pose.header.components
    by_name, starts, start = {}, {}, 0
    for c in components:
        if c.name in by_name:
            raise ConvertError(f"{path}: component {c.name!r} appears twice (components: "
                               f"{_describe(components)})")
        by_name[c.name], starts[c.name] = c, start
        start += len(c.points)
    data, confidence = pose.body.data, pose.body.confidence
    if data.ndim != 4 or data.shape[2] != start or data.shape[3] < 2 or (
            confidence.shape != data.shape[:3]):
        raise ConvertError(f"{path}: field 'body' holds data {data.shape} and confidence "
                           f"{confidence.shape}; the header's components have {start} points "
                           "(expected frames x persons x points x XY..)")
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

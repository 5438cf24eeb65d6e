"""Output files of the video job: a keypoint sequence as our own .npz or as a pose-format .pose.

`KeypointSequence` is what the video job produces: per frame the 64 keypoints (x, y in pixels of
the original frame, score), whether the frame ran on the tracked region or on a full-frame
(re-)detection, and the square region the model saw. `.npz` keeps all of it losslessly; `.pose`
keeps what pose-format can hold (x, y, confidence, fps, frame size) so that the
sign-language-processing tools read our output. Both writers are atomic: the file at `path` is
either the old one or the complete new one, never half of either.

Importing this module needs numpy only; pose-format is imported inside the .pose functions.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from signlang_jax.files import write_atomic
from signlang_jax.keypoints import (
    BODY_NAMES,
    FACE_NAMES,
    GROUP_COLORS,
    GROUPS,
    HAND_JOINTS,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    SKELETON,
)

NPZ_FORMAT_VERSION = 1
NPZ_FIELDS = (
    "keypoints", "fps", "frame_size", "keypoint_names", "tracked", "region", "metadata",
    "format_version", "timestamps",
)  # fmt: skip
NPZ_OPTIONAL = ("timestamps",)  # files written before it existed read as frame n at n / fps

# .pose components, in our keypoint order so that the file's point index is our keypoint index.
# The names follow pose-format's COCO-WholeBody layout ("BODY", "LEFT_HAND", "RIGHT_HAND" with
# points "hand_0".."hand_20", COCO body point names) so that its utilities accept our files.
# Checked against pose-format 0.15.0, pose_format/utils/generic.py: detect_known_pose_format
# -> "coco_wholebody_133" (needs components "BODY" and "LEFT_HAND"); pose_shoulders and
# pose_normalization_info (BODY right_shoulder / left_shoulder); hands_components (hand_0,
# hand_5, hand_9, hand_17); hands_indexes (hand_9); get_hand_wrist_index (hand_0);
# get_body_hand_wrist_index and correct_wrists (BODY left_wrist / right_wrist); pose_hide_legs
# (BODY hips, knees, ankles; it skips the toe and heel points we lack); normalize_pose_size.
# normalize_hands_3d needs x, y, z points and so does not apply to our 2-D files. Our FACE holds
# 5 anchors, not COCO-WholeBody's 68 "face-N" points: no pose-format utility looks FACE points up.
POSE_COMPONENT_NAMES: dict[str, str] = {
    "body": "BODY",
    "left_hand": "LEFT_HAND",
    "right_hand": "RIGHT_HAND",
    "face": "FACE",
}
POSE_POINT_NAMES: dict[str, tuple[str, ...]] = {
    "body": BODY_NAMES,
    "left_hand": tuple(f"hand_{i}" for i in range(len(HAND_JOINTS))),
    "right_hand": tuple(f"hand_{i}" for i in range(len(HAND_JOINTS))),
    "face": FACE_NAMES,
}
_POSE_MAX_SIZE = 65535  # pose-format stores width and height as unsigned 16-bit integers

_INSTALL_HINT = "pip install pose-format (or pip install 'signlang-jax[pose]')"


class KeypointFileError(ValueError):
    """A keypoint sequence file cannot be read or written; the message names the file and why."""


class PoseFormatMissingError(ImportError):
    """.pose files need the optional pose-format package, which is not installed."""


@dataclass(eq=False)
class KeypointSequence:
    """Keypoints of one person over the frames of a video, with how each frame was found.

    keypoints: float32 (T, 64, 3) x, y in original-frame pixels, score.
    tracked: bool (T,) True where the frame ran on the tracked region, False where the person was
        detected (or re-detected) on the full frame.
    region: float32 (T, 3) cx, cy, side of the square the model saw, in frame pixels.
    metadata: str -> str (model, smoothing parameters as JSON, tool version...).
    timestamps: float64 (T,) seconds of each frame from the first (0), strictly increasing: the
        video's own time stamps, uneven for a variable frame rate. None = frame n at n / fps.
    fps: the frame rate; for a variable rate, the average, (T - 1) / the last time stamp.
    """

    keypoints: np.ndarray
    fps: float
    width: int
    height: int
    tracked: np.ndarray
    region: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        _check_array("keypoints", self.keypoints, np.float32, (None, NUM_KEYPOINTS, 3))
        frames = self.keypoints.shape[0]
        _check_array("tracked", self.tracked, np.bool_, (frames,))
        _check_array("region", self.region, np.float32, (frames, 3))
        self.fps = float(self.fps)
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be a positive number, got {self.fps}")
        if self.timestamps is None:
            self.timestamps = np.arange(frames, dtype=np.float64) / self.fps
        _check_array("timestamps", self.timestamps, np.float64, (frames,))
        steps = np.diff(self.timestamps)
        if not (np.all(np.isfinite(self.timestamps)) and np.all(steps > 0)
                and (frames == 0 or self.timestamps[0] >= 0)):
            raise ValueError("timestamps must be finite seconds >= 0, strictly increasing")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
        ):
            raise ValueError(f"metadata must be a dict of str to str, got {self.metadata!r}")

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return self.keypoints.shape[0]


def _check_array(name: str, value: Any, dtype: type, shape: tuple[int | None, ...]) -> None:
    """Raise ValueError unless `value` is an ndarray of `dtype` and `shape` (None: any length)."""
    if not isinstance(value, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(value).__name__}")
    if value.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {value.dtype}")
    if len(value.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape, strict=True)
    ):
        parts = ["T" if s is None else str(s) for s in shape]
        want_text = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {want_text}, got {value.shape}")


def _write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """`files.write_atomic`; a file that cannot be written is a KeypointFileError naming it."""
    try:
        write_atomic(path, write)
    except OSError as e:
        raise KeypointFileError(f"{path}: cannot write: {e}") from e


# ---------------------------------------------------------------------------------------- .npz


def write_npz(path: str | os.PathLike, seq: KeypointSequence) -> None:
    """Write `seq` to `path` as our lossless .npz (atomically)."""
    fields = {
        "keypoints": seq.keypoints,
        "fps": np.float64(seq.fps),
        "frame_size": np.array([seq.width, seq.height], np.int64),
        "keypoint_names": np.array(KEYPOINT_NAMES),
        "tracked": seq.tracked,
        "region": seq.region,
        "metadata": np.array(json.dumps(seq.metadata, sort_keys=True)),
        "format_version": np.int64(NPZ_FORMAT_VERSION),
        "timestamps": seq.timestamps,
    }
    _write_atomically(Path(path), lambda f: np.savez(f, **fields))


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the .npz at `path`; KeypointFileError if it is not a readable .npz."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise KeypointFileError(f"{path}: not a readable .npz file ({e})") from e
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise KeypointFileError(f"{path}: not an .npz file (it holds a single .npy array)")
    with loaded:
        fields = {}
        for name in loaded.files:
            try:
                fields[name] = loaded[name]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                raise KeypointFileError(f"{path}: field '{name}' is unreadable ({e})") from e
    return fields


def _npz_field(
    path: Path, fields: dict[str, np.ndarray], name: str, kinds: str, shape: tuple[int, ...]
) -> np.ndarray:
    """Field `name`, checked for presence, dtype kind (numpy kind letters) and shape."""
    if name not in fields:
        raise KeypointFileError(f"{path}: field '{name}' is missing (fields: {sorted(fields)})")
    value = fields[name]
    if value.dtype.kind not in kinds or value.shape != shape:
        raise KeypointFileError(
            f"{path}: field '{name}' has dtype {value.dtype} and shape {value.shape}; "
            f"expected shape {shape} (dtype kind {' or '.join(kinds)})"
        )
    return value


def read_npz(path: str | os.PathLike) -> KeypointSequence:
    """Read a .npz written by `write_npz`; KeypointFileError naming the file and field if bad."""
    path = Path(path)
    fields = _load_npz(path)
    version = int(_npz_field(path, fields, "format_version", "iu", ()))
    if version != NPZ_FORMAT_VERSION:
        raise KeypointFileError(
            f"{path}: field 'format_version' is {version}; this version of signlang-jax reads "
            f"format_version {NPZ_FORMAT_VERSION} only"
        )
    names = _npz_field(path, fields, "keypoint_names", "U", (NUM_KEYPOINTS,))
    if tuple(names.tolist()) != KEYPOINT_NAMES:
        bad = next(i for i, name in enumerate(names.tolist()) if name != KEYPOINT_NAMES[i])
        raise KeypointFileError(
            f"{path}: field 'keypoint_names' differs from the 64-point schema at index {bad}: "
            f"{names[bad]!r} instead of {KEYPOINT_NAMES[bad]!r}"
        )
    keypoints = fields.get("keypoints")
    frames = keypoints.shape[0] if isinstance(keypoints, np.ndarray) and keypoints.ndim else 0
    keypoints = _npz_field(path, fields, "keypoints", "f", (frames, NUM_KEYPOINTS, 3))
    tracked = _npz_field(path, fields, "tracked", "b", (frames,))
    region = _npz_field(path, fields, "region", "f", (frames, 3))
    width, height = _npz_field(path, fields, "frame_size", "iu", (2,)).tolist()
    if width <= 0 or height <= 0:
        raise KeypointFileError(f"{path}: field 'frame_size' (width, height) is {width}x{height}")
    fps = float(_npz_field(path, fields, "fps", "fiu", ()))
    metadata = _npz_metadata(path, _npz_field(path, fields, "metadata", "U", ()))
    # Files written before time stamps were stored lack them: frame n at n / fps.
    timestamps = (np.asarray(_npz_field(path, fields, "timestamps", "f", (frames,)), np.float64)
                  if "timestamps" in fields else None)
    try:
        return KeypointSequence(keypoints, fps, width, height, tracked, region, metadata,
                                timestamps)
    except ValueError as e:  # float64 keypoints, fps 0...: the message names the field
        raise KeypointFileError(f"{path}: {e}") from e


def _npz_metadata(path: Path, value: np.ndarray) -> dict[str, str]:
    """The metadata dict from its JSON string, checked to map str to str."""
    try:
        metadata = json.loads(str(value))
    except json.JSONDecodeError as e:
        raise KeypointFileError(f"{path}: field 'metadata' is not valid JSON ({e})") from e
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise KeypointFileError(f"{path}: field 'metadata' must be a JSON object of strings")
    return metadata


# --------------------------------------------------------------------------------------- .pose


def import_pose_format() -> Any:
    """The pose_format package, or PoseFormatMissingError telling the user how to install it."""
    try:
        # An optional dependency: imported here so that the module needs numpy only.
        import pose_format
        import pose_format.numpy
    except ImportError as e:
        raise PoseFormatMissingError(
            f".pose files need the pose-format package, which is not installed: {_INSTALL_HINT}"
        ) from e
    return pose_format


def _pose_components(pose_format: Any) -> list[Any]:
    """Our four PoseHeaderComponents: body, left hand, right hand, face, with limbs and colours."""
    components = []
    for group, indices in GROUPS.items():
        limbs = [(a - indices.start, b - indices.start) for a, b, g in SKELETON if g == group]
        components.append(
            pose_format.pose_header.PoseHeaderComponent(
                name=POSE_COMPONENT_NAMES[group],
                points=list(POSE_POINT_NAMES[group]),
                limbs=limbs,
                colors=[GROUP_COLORS[group]],  # pose-format cycles one colour over all points
                point_format="XYC",
            )
        )
    return components


def write_pose(path: str | os.PathLike, seq: KeypointSequence, min_score: float = 0.0) -> None:
    """Write `seq` as a pose-format .pose file (atomically); score < min_score becomes missing."""
    path = Path(path)
    pose_format = import_pose_format()
    if not (np.isfinite(min_score) and min_score >= 0):
        raise ValueError(f"min_score must be a number >= 0, got {min_score}")
    if seq.width > _POSE_MAX_SIZE or seq.height > _POSE_MAX_SIZE:
        raise KeypointFileError(
            f"{path}: a .pose header holds frame sizes up to {_POSE_MAX_SIZE}, "
            f"got {seq.width}x{seq.height}"
        )
    xy, score = seq.keypoints[..., :2], seq.keypoints[..., 2]
    # pose-format has no mask in the file: confidence 0 is its only "missing" mark, so a kept point
    # needs a positive score, and missing points get x, y 0 like COCO-WholeBody's unlabelled ones.
    missing = ~(score >= min_score) | ~(score > 0) | ~np.isfinite(xy).all(axis=-1)
    data = np.where(missing[..., None], 0.0, xy).astype(np.float32)[:, None]
    confidence = np.where(missing, 0.0, score).astype(np.float32)[:, None]
    header = pose_format.pose_header.PoseHeader(
        version=pose_format.pose_header.VERSION,
        dimensions=pose_format.pose_header.PoseHeaderDimensions(seq.width, seq.height, depth=0),
        components=_pose_components(pose_format),
    )
    body = pose_format.numpy.NumPyPoseBody(fps=seq.fps, data=data, confidence=confidence)
    _write_atomically(path, pose_format.Pose(header, body).write)


def read_pose(path: str | os.PathLike) -> KeypointSequence:
    """Read a .pose file written by `write_pose` (tracked False, region NaN: .pose has neither)."""
    path = Path(path)
    pose_format = import_pose_format()
    try:
        buffer = path.read_bytes()
    except OSError as e:
        raise KeypointFileError(f"{path}: cannot read: {e}") from e
    try:
        pose = pose_format.Pose.read(buffer)
    except Exception as e:  # pose-format raises struct, unicode and value errors on bad bytes
        raise KeypointFileError(f"{path}: not a readable .pose file ({e!r})") from e
    _check_our_pose_layout(path, pose)
    frames = pose.body.data.shape[0]
    xy = np.asarray(pose.body.data.data, np.float32)[:, 0]
    confidence = np.asarray(pose.body.confidence, np.float32)[:, 0]
    xy[confidence == 0] = 0.0
    keypoints = np.concatenate([xy, confidence[..., None]], axis=-1)
    dims = pose.header.dimensions
    metadata = {"source_format": "pose", "pose_header_version": str(pose.header.version)}
    try:
        return KeypointSequence(
            keypoints, float(pose.body.fps), dims.width, dims.height,
            tracked=np.zeros(frames, bool), region=np.full((frames, 3), np.nan, np.float32),
            metadata=metadata,
        )  # fmt: skip
    except ValueError as e:
        raise KeypointFileError(f"{path}: {e}") from e


def _check_our_pose_layout(path: Path, pose: Any) -> None:
    """KeypointFileError unless `pose` has our four components and exactly one person."""
    found = [(c.name, tuple(c.points), c.format) for c in pose.header.components]
    want = [(POSE_COMPONENT_NAMES[g], POSE_POINT_NAMES[g], "XYC") for g in GROUPS]
    if found != want:
        summary = ", ".join(f"{name} ({len(points)} {fmt})" for name, points, fmt in found)
        ours = ", ".join(f"{name} ({len(points)} {fmt})" for name, points, fmt in want)
        raise KeypointFileError(
            f"{path}: not a signlang-jax .pose file: its components are {summary}, ours are "
            f"{ours} (reading other layouts, e.g. MediaPipe Holistic or OpenPose, is not "
            "supported here)"
        )
    people = pose.body.data.shape[1]
    if people != 1:
        raise KeypointFileError(f"{path}: holds {people} people per frame, ours hold exactly 1")

"""Video inputs: finding them (files, folders, globs, folders of frames) and decoding them, in a
background thread for the video job (so decoding overlaps inference) or in order with only the
wanted frames copied out (`decode_video`, for the `.pose` converter).

Every video is read by `decode_video`, so one truncation rule holds for all: a container's frame
count can be off by a frame or two, so a video that decodes fewer than 98% of the frames it
announces, minus 2, broke off (truncated or corrupt) and is an error, never a short sequence
(`is_truncated`). A video that announces no count is taken as it decodes.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_FRAME_FOLDER_NAMES = frozenset({"images", "frames"})  # named after their parent instead


class VideoReadError(RuntimeError):
    """A video or frame that cannot be decoded; the message names the file."""


class TruncatedVideoError(VideoReadError):
    """A video that decoded fewer frames than it announces, by the truncation rule."""

    def __init__(self, path: Path, decoded: int, announced: int) -> None:
        super().__init__(f"{path}: decoding stopped after {decoded} of the {announced} frames "
                         "the file announces (truncated or corrupt)")
        self.decoded, self.announced = decoded, announced


def is_truncated(decoded: int, announced: int) -> bool:
    """The truncation rule: under 98% of the announced frames, minus 2, were decoded."""
    return announced > 0 and decoded < 0.98 * announced - 2


@dataclasses.dataclass(frozen=True)
class VideoInput:
    """One sequence to process: a video file, or a folder of frames sorted by name."""

    name: str  # output file stem
    path: Path
    frames: tuple[Path, ...] = ()  # empty for a video file

    @property
    def is_video(self) -> bool:
        """Whether this is a video file (else a folder of frames)."""
        return not self.frames


def _frames_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS))


def _from_folder(folder: Path) -> list[VideoInput]:
    """The videos directly inside `folder`, or else `folder` itself as a folder of frames."""
    videos = sorted(p for p in folder.iterdir()
                    if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
    if videos:
        return [VideoInput(p.stem, p) for p in videos]
    frames = _frames_in(folder)
    if not frames:
        raise FileNotFoundError(f"{folder}: no video files ({', '.join(sorted(VIDEO_EXTENSIONS))})"
                                " and no image frames in this folder")
    folder = folder.resolve()  # "." has no name of its own
    name = folder.parent.name if folder.name in _FRAME_FOLDER_NAMES else folder.name
    return [VideoInput(name, folder, frames)]


def find_inputs(specs: list[str]) -> tuple[list[VideoInput], list[str]]:
    """(inputs, problems): every video and frame folder named by paths or globs, in order.

    A problem (nothing matches, an unknown file type, two inputs that would write the same
    output name) is reported and that spec skipped; the others are still returned.
    """
    inputs: list[VideoInput] = []
    problems: list[str] = []
    for spec in specs:
        paths = [Path(p) for p in sorted(glob.glob(spec))] if glob.has_magic(spec) else [
            Path(spec)]
        if not paths or not all(p.exists() for p in paths):
            problems.append(f"{spec}: no such file or folder")
            continue
        found = len(inputs)
        for path in paths:
            if path.is_dir():
                try:
                    inputs.extend(_from_folder(path))
                except FileNotFoundError as e:
                    problems.append(str(e))
            elif path.suffix.lower() in VIDEO_EXTENSIONS:
                inputs.append(VideoInput(path.stem, path))
            elif not glob.has_magic(spec):
                problems.append(f"{path}: not a video file ({', '.join(sorted(VIDEO_EXTENSIONS))})"
                                " or a folder of frames")
        if glob.has_magic(spec) and len(inputs) == found:
            problems.append(f"{spec}: matches no video file or folder of frames")
    unique: dict[str, VideoInput] = {}
    for item in inputs:
        if item.name in unique and unique[item.name].path.resolve() != item.path.resolve():
            problems.append(f"{item.path}: its output name {item.name!r} is already taken by "
                            f"{unique[item.name].path}; process them in separate --out folders")
        else:
            unique.setdefault(item.name, item)
    return list(unique.values()), problems


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What is known before decoding: frame size, rate and (estimated) length."""

    width: int
    height: int
    fps: float
    num_frames: int  # from the container for videos: an estimate, 0 if unknown


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VideoReadError(f"{path}: cannot decode this frame (not an image, or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def probe(item: VideoInput, default_fps: float) -> VideoInfo:
    """Open `item` and read its size and rate; raises VideoReadError if it cannot be decoded."""
    if not item.is_video:
        first = _read_image(item.frames[0])
        return VideoInfo(first.shape[1], first.shape[0], default_fps, len(item.frames))
    capture = cv2.VideoCapture(str(item.path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise VideoReadError(f"{item.path}: cannot decode this video (not a video, empty, "
                                 "or a codec this OpenCV build lacks)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    fps = fps if math.isfinite(fps) and 1.0 <= fps <= 1000.0 else default_fps
    return VideoInfo(frame.shape[1], frame.shape[0], float(fps), max(count, 0))


def decode_video(path: Path, wanted: Callable[[int], bool] | None = None
                 ) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, BGR uint8 frame, or None where not `wanted(index)`) for every frame, in order.

    Every frame is decoded (the count is checked at the end, `is_truncated`), but only wanted
    ones are converted and copied out. VideoReadError naming the file if it cannot be opened, a
    wanted frame cannot be decoded, or it broke off.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(f"{path}: cannot decode this video (not a video, empty, or a "
                                 "codec this OpenCV build lacks)")
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        announced = int(count) if math.isfinite(count) and count > 0 else 0
        index = 0
        while capture.grab():  # grab decodes; retrieve (colour conversion, copy) only if wanted
            frame = None
            if wanted is None or wanted(index):
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise VideoReadError(f"{path}: frame {index} cannot be decoded")
            yield index, frame
            index += 1
        if is_truncated(index, announced):
            raise TruncatedVideoError(path, index, announced)
    finally:
        capture.release()


def _decode(item: VideoInput, info: VideoInfo) -> Iterator[np.ndarray]:
    """RGB frames of `item`, each checked against the first frame's size."""
    if item.is_video:
        for _, frame in decode_video(item.path):
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return
    for path in item.frames:
        image = _read_image(path)
        if image.shape[:2] != (info.height, info.width):
            raise VideoReadError(f"{path}: frame size {image.shape[1]}x{image.shape[0]} differs "
                                 f"from the sequence's {info.width}x{info.height}")
        yield image


_END = object()


def read_frames(item: VideoInput, info: VideoInfo, prefetch: int = 16) -> Iterator[np.ndarray]:
    """Decode `item` in a background thread; yields RGB uint8 frames, re-raises its errors."""
    frames: queue.Queue = queue.Queue(maxsize=max(prefetch, 1))
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():  # the consumer may stop early: never block forever
            try:
                frames.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for frame in _decode(item, info):
                if not put(frame):
                    return
            put(_END)
        except Exception as e:  # handed to the consumer, which reports it with the file name
            put(e)

    thread = threading.Thread(target=work, name=f"decode-{item.name}", daemon=True)
    thread.start()
    try:
        while True:
            got = frames.get()
            if got is _END:
                return
            if isinstance(got, Exception):
                if isinstance(got, VideoReadError):
                    raise got
                raise VideoReadError(f"{item.path}: decoding failed: {got}") from got
            yield got
    finally:
        stop.set()
        thread.join(timeout=5)

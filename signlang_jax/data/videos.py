"""Video inputs: finding them (files, folders searched recursively, globs, folders of frames) and
decoding them, in a background thread for the video job (so decoding overlaps inference) or in
order with only the wanted frames copied out (`decode_video`, for the `.pose` converter).

Every video is read by `decode_video`, which gives each frame its time stamp (the container's,
in seconds from the start; OpenCV's position after each decoded frame), so variable frame rates
keep their real timing. One truncation rule holds for all: a container's frame count is a hint
(OpenCV derives it from the duration and the stated rate, which is wrong for variable rates), so
a video is complete when it decodes to its end; it broke off (truncated or corrupt, an error,
never a short sequence) when its decoded frames stop short of the duration it states by more
than two frame steps and 2% (`is_truncated`). A video that states no duration is taken as it
decodes.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
FRAME_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
_FRAME_FOLDER_NAMES = frozenset({"images", "frames"})  # named after their parent instead


class VideoReadError(RuntimeError):
    """A video or frame that cannot be decoded; the message names the file."""


class TruncatedVideoError(VideoReadError):
    """A video whose frames stop short of the duration it states, by the truncation rule."""

    def __init__(self, path: Path, decoded: int, end: float, duration: float,
                 announced: int) -> None:
        super().__init__(f"{path}: decoding stopped at {end:.2f} s after {decoded} frames, short "
                         f"of the {duration:.2f} s the file states (truncated or corrupt)")
        self.decoded, self.end, self.duration, self.announced = decoded, end, duration, announced


def decoded_end(times: Sequence[float], fps: float) -> tuple[float, float]:
    """(end, step) of decoded frames at `times`: the last frame's time plus its duration (the
    last step), and the frame step the rule allows for (the larger of the median and last)."""
    if len(times) < 2:
        return (times[-1] if times else 0.0) + 1 / fps, 1 / fps
    steps = np.diff(np.asarray(times, np.float64))
    return float(times[-1] + steps[-1]), float(max(np.median(steps), steps[-1]))


def is_truncated(times: Sequence[float], duration: float, fps: float) -> bool:
    """The truncation rule: the decoded frames end more than two frame steps, and 2%, before
    the `duration` the container states (0: none stated, never truncated)."""
    if duration <= 0:
        return False
    end, step = decoded_end(times, fps)
    return duration - end > max(2 * step, 0.02 * duration)


def clean_times(times: Sequence[float], fps: float) -> np.ndarray:
    """(T,) float64 seconds from the start: the decoded time stamps when they increase strictly
    (a backend without them repeats 0), else frame n at n / fps."""
    stamps = np.asarray(times, np.float64) - (times[0] if len(times) else 0.0)
    if len(stamps) > 1 and np.all(np.diff(stamps) > 0):
        return stamps
    return np.arange(len(stamps), dtype=np.float64) / fps


@dataclasses.dataclass(frozen=True)
class VideoInput:
    """One sequence to process: a video file, or a folder of frames sorted by name."""

    name: str  # output stem below --out, "/"-separated: "clip", or "a/1" for corpus/a/1/
    path: Path
    frames: tuple[Path, ...] = ()  # empty for a video file

    @property
    def is_video(self) -> bool:
        """Whether this is a video file (else a folder of frames)."""
        return not self.frames


def _frames_in(folder: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS))


def _folders_below(top: Path) -> Iterator[Path]:
    """`top` and every folder below it, depth first in name order; hidden folders and folders
    already seen (through a link) left out."""
    seen: set[Path] = set()
    stack = [top]
    while stack:
        folder = stack.pop()
        if folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        yield folder
        subfolders = sorted(p for p in folder.iterdir()
                            if p.is_dir() and not p.name.startswith("."))
        stack.extend(reversed(subfolders))


def _output_name(path: Path, root: Path) -> str:
    """The output stem of `path` (a video without its suffix, or a frame folder): its path
    relative to `root` (the INPUT folder or glob root), "/"-separated, or its own name.

    Both as written, not resolved: a linked folder inside the INPUT folder keeps its place in
    the tree (its target may lie anywhere)."""
    relative = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    if relative == Path(".") or relative.parts[0] == "..":
        return Path(os.path.abspath(path)).name
    return relative.as_posix()


def _search(top: Path, root: Path) -> list[VideoInput]:
    """Every video and folder of frames at or below `top`, named relative to `root`.

    A folder holding videos gives those videos (image files beside them are not a clip); a folder
    holding only images is a clip of frames, named after its parent if it is called `images` or
    `frames`.
    """
    found = []
    for folder in _folders_below(top):
        videos = sorted(p for p in folder.iterdir()
                        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if videos:
            found += [VideoInput(_output_name(p.with_suffix(""), root), p) for p in videos]
        elif frames := _frames_in(folder):
            named = Path(os.path.abspath(folder))
            named = named.parent if named.name in _FRAME_FOLDER_NAMES else named
            found.append(VideoInput(_output_name(named, root), folder.resolve(), frames))
    if not found:
        raise FileNotFoundError(f"{top}: no video files ({', '.join(sorted(VIDEO_EXTENSIONS))}) "
                                "and no image frames in this folder or below it")
    return found


def _glob_root(spec: str) -> Path:
    """The folder a glob's matches are named relative to: its leading parts without magic."""
    parts = Path(spec).parts
    fixed = parts[:next(i for i, p in enumerate(parts) if glob.has_magic(p))]
    return Path(*fixed) if fixed else Path(".")


def find_inputs(specs: list[str]) -> tuple[list[VideoInput], list[str]]:
    """(inputs, problems): every video and frame folder named by paths or globs, in order.

    A folder is searched recursively; each input's output name mirrors its path relative to the
    folder (or glob root) it was found under, so `corpus/a/1/` and `corpus/b/1/` become `a/1`
    and `b/1`; a file named by itself keeps its stem. A problem (nothing matches, an unknown file
    type) is reported and that spec skipped; inputs that would still write the same output are
    all refused, each naming the other. The same file found twice is one input.
    """
    inputs: list[VideoInput] = []
    problems: list[str] = []
    for spec in specs:
        magic = glob.has_magic(spec)
        paths = [Path(p) for p in sorted(glob.glob(spec))] if magic else [Path(spec)]
        if not paths or not all(p.exists() for p in paths):
            problems.append(f"{spec}: no such file or folder")
            continue
        found = len(inputs)
        for path in paths:
            root = _glob_root(spec) if magic else path
            if path.is_dir():
                try:
                    inputs.extend(_search(path, root))
                except OSError as e:  # nothing found, or a folder that cannot be listed
                    problems.append(str(e))
            elif path.suffix.lower() in VIDEO_EXTENSIONS:
                name = _output_name(path.with_suffix(""), root) if magic else path.stem
                inputs.append(VideoInput(name, path))
            elif not magic:
                problems.append(f"{path}: not a video file ({', '.join(sorted(VIDEO_EXTENSIONS))})"
                                " or a folder of frames")
        if magic and len(inputs) == found:
            problems.append(f"{spec}: matches no video file or folder of frames")
    return _unique(inputs, problems)


def _unique(inputs: list[VideoInput], problems: list[str]
            ) -> tuple[list[VideoInput], list[str]]:
    """One input per file (the first name found), and none of those that share an output name."""
    by_path: dict[Path, VideoInput] = {}
    for item in inputs:
        by_path.setdefault(item.path.resolve(), item)
    by_name: dict[str, list[VideoInput]] = {}
    for item in by_path.values():
        by_name.setdefault(item.name, []).append(item)
    for name, items in by_name.items():
        if len(items) > 1:
            problems.append(f"{', '.join(str(i.path) for i in items)}: would all write the output "
                            f"{name!r}; give their common folder as INPUT (outputs then mirror "
                            "their paths) or process them in separate --out folders")
    return [i for i in by_path.values() if len(by_name[i.name]) == 1], problems


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


def frame_rate(times: np.ndarray, stated: float) -> float:
    """The rate to record for frames at `times`: the stated rate when every step matches it (to
    a millisecond, the resolution of most containers), else the average, (T - 1) / duration."""
    steps = np.diff(times)
    if len(steps) == 0 or np.all(np.abs(steps - 1.0 / stated) <= 1e-3):
        return float(stated)
    return float(len(steps) / (times[-1] - times[0]))


def decode_video(path: Path, wanted: Callable[[int], bool] | None = None
                 ) -> Iterator[tuple[int, np.ndarray | None, float]]:
    """(index, BGR uint8 frame or None where not `wanted(index)`, time in seconds) for every
    frame, in order.

    Every frame is decoded (the end is checked against the stated duration, `is_truncated`), but
    only wanted ones are converted and copied out. VideoReadError naming the file if it cannot
    be opened, a wanted frame cannot be decoded, or it broke off.
    """
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(f"{path}: cannot decode this video (not a video, empty, or a "
                                 "codec this OpenCV build lacks)")
        count, fps = capture.get(cv2.CAP_PROP_FRAME_COUNT), capture.get(cv2.CAP_PROP_FPS)
        announced = int(count) if math.isfinite(count) and count > 0 else 0
        fps = fps if math.isfinite(fps) and 1.0 <= fps <= 1000.0 else 0.0
        duration = announced / fps if fps else 0.0  # how OpenCV's count was made
        index, times = 0, []
        while capture.grab():  # grab decodes; retrieve (colour conversion, copy) only if wanted
            times.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            frame = None
            if wanted is None or wanted(index):
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    raise VideoReadError(f"{path}: frame {index} cannot be decoded")
            yield index, frame, times[-1]
            index += 1
        rate = fps or 25.0
        stamps = clean_times(times, rate)
        if is_truncated(stamps, duration, rate):
            raise TruncatedVideoError(path, index, decoded_end(stamps, rate)[0], duration,
                                      announced)
    finally:
        capture.release()


def _decode(item: VideoInput, info: VideoInfo) -> Iterator[tuple[np.ndarray, float]]:
    """(RGB frame, seconds) of `item`, each frame checked against the first frame's size."""
    if item.is_video:
        for index, frame, seconds in decode_video(item.path):
            if frame.shape[:2] != (info.height, info.width):  # a stream that changes size
                raise VideoReadError(f"{item.path}: frame {index} is {frame.shape[1]}x"
                                     f"{frame.shape[0]}, the video's first frame "
                                     f"{info.width}x{info.height}; a size change mid-video is "
                                     "not supported (split the video there)")
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), seconds
        return
    for n, path in enumerate(item.frames):
        image = _read_image(path)
        if image.shape[:2] != (info.height, info.width):
            raise VideoReadError(f"{path}: frame size {image.shape[1]}x{image.shape[0]} differs "
                                 f"from the sequence's {info.width}x{info.height}")
        yield image, n / info.fps


_END = object()


def read_frames(item: VideoInput, info: VideoInfo, prefetch: int = 16) -> Iterator[np.ndarray]:
    """Decode `item` in a background thread; yields RGB uint8 frames, re-raises its errors."""
    for frame, _ in read_timed_frames(item, info, prefetch):
        yield frame


def read_timed_frames(item: VideoInput, info: VideoInfo, prefetch: int = 16
                      ) -> Iterator[tuple[np.ndarray, float]]:
    """As `read_frames`, with each frame's time stamp in seconds (folders of frames: n / fps)."""
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
            for timed in _decode(item, info):
                if not put(timed):
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

"""MediaPipe Holistic as a benchmark peer: videos or frame folders -> our (T, 64, 3) keypoints.

Benchmark-only: MediaPipe is never a dependency of signlang-jax. It lives in its own virtual
environment outside the repository (the wheel bundles the models Holistic needs for
model_complexity 1, so it runs offline; complexity 0 and 2 download a pose model at start-up):

    python3 -m venv /work/mp_venv && /work/mp_venv/bin/pip install mediapipe==0.10.14
    /work/mp_venv/bin/python benchmarks/mediapipe_peer.py clip_0000/video.mp4 frames/ --out DIR

Each INPUT is a video file or a folder of frames (sorted by name; a folder without images that
has an `images/` subfolder, such as a synthetic `clip_0000/`, uses that). Writes DIR/<name>.npz
(<name> is clip_0000 for `clip_0000/video.mp4`, `clip_0000/images` and `clip_0000`) with
`keypoints` float32 (T, 64, 3) in our layout (`signlang_jax.keypoints`), original-frame
pixels (x, y, score); `fps` (the video's, else `clip.json`'s, else 0); `frame_size` (width,
height); `keypoint_names`. Scores: pose landmark visibility for body and face points, 1.0 for
the points of a found hand; points not found are x = y = score = 0. Prints frames/s per input
and overall, timed from decoding to the written file.

Left and right are the subject's own (our schema); MediaPipe Holistic uses the same convention
for `left_hand_landmarks` and the pose's left_* points (checked on 60 synthetic stills: swapping
the hands drops hand PCK@0.1 from 0.24/0.25 to 0.00/0.01, swapping all left/right drops body).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import mediapipe as mp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from signlang_jax.keypoint_maps import MEDIAPIPE_HOLISTIC  # noqa: E402
from signlang_jax.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS  # noqa: E402

# Holistic attribute of each hand (both name the subject's own hands); the point mapping is
# `signlang_jax.keypoint_maps.MEDIAPIPE_HOLISTIC` (33 pose landmarks, left hand, right hand).
HAND_ATTRIBUTES = ("left_hand_landmarks", "right_hand_landmarks")
GENERIC_NAMES = {"video", "images", "frames"}  # named after their folder instead
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def frame_source(path: Path) -> tuple[list[Path] | None, float]:
    """(sorted frame files or None for a video, fps or 0 when unknown) for one INPUT."""
    if path.is_file():
        cap = cv2.VideoCapture(str(path))
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        cap.release()
        return None, fps
    frames = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames and (path / "images").is_dir():
        return frame_source(path / "images")
    if not frames:
        raise SystemExit(f"{path}: no frames ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    for meta in (path / "clip.json", path.parent / "clip.json"):
        if meta.is_file():
            return frames, float(json.loads(meta.read_text()).get("fps", 0.0))
    return frames, 0.0


def read_frames(path: Path, frames: list[Path] | None) -> Iterator[np.ndarray]:
    """Yield BGR frames of a video file or a list of image files."""
    if frames is not None:
        for f in frames:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise SystemExit(f"{f}: cannot read image")
            yield img
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"{path}: cannot open video")
    while True:
        ok, img = cap.read()
        if not ok:
            break
        yield img
    cap.release()


def to_keypoints(result: Any, width: int, height: int) -> np.ndarray:
    """One Holistic result -> float32 (64, 3) pixels (x, y, score) in our layout."""
    holistic = np.zeros((len(MEDIAPIPE_HOLISTIC.source_names), 3), np.float32)
    if result.pose_landmarks is not None:
        holistic[:33] = [(p.x * width, p.y * height, p.visibility)
                         for p in result.pose_landmarks.landmark]
    for n, attr in enumerate(HAND_ATTRIBUTES):
        hand = getattr(result, attr)
        if hand is not None:
            holistic[33 + 21 * n:54 + 21 * n] = [(p.x * width, p.y * height, 1.0)
                                                 for p in hand.landmark]
    return MEDIAPIPE_HOLISTIC.apply(holistic)


def output_name(path: Path) -> str:
    """The .npz stem for an INPUT: its name, or its folder's for generic names (`video.mp4`)."""
    path = path.resolve()
    return path.parent.name if path.stem in GENERIC_NAMES else path.stem


def run_one(path: Path, out_dir: Path, complexity: int, static: bool) -> tuple[int, float, float]:
    """Process one INPUT and write its .npz; returns (frames, seconds, of which model set-up)."""
    start = time.perf_counter()
    frames, fps = frame_source(path)
    keypoints, size = [], (0, 0)
    with mp.solutions.holistic.Holistic(static_image_mode=static, model_complexity=complexity,
                                        smooth_landmarks=True) as holistic:
        setup = time.perf_counter() - start
        for bgr in read_frames(path, frames):
            height, width = bgr.shape[:2]
            size = (width, height)
            result = holistic.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            keypoints.append(to_keypoints(result, width, height))
    kp = np.stack(keypoints) if keypoints else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
    np.savez(out_dir / f"{output_name(path)}.npz", keypoints=kp, fps=np.float32(fps),
             frame_size=np.array(size, np.int32), keypoint_names=np.array(KEYPOINT_NAMES))
    return len(kp), time.perf_counter() - start, setup


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run MediaPipe Holistic on videos / frame folders; write our 64-point "
                    "keypoints (T, 64, 3) per input as DIR/<name>.npz and print frames/s.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="video file or folder of frames (sorted by name)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2),
                        help="pose model: 1 (default) is bundled; 0 and 2 are downloaded")
    parser.add_argument("--static", action="store_true",
                        help="static_image_mode: detect on every frame (for unrelated stills)")
    args = parser.parse_args(argv)
    names = [output_name(p) for p in args.inputs]
    if len(set(names)) < len(names):
        parser.error(f"inputs would overwrite each other's .npz: {names}")
    args.out.mkdir(parents=True, exist_ok=True)
    total_frames, total_s = 0, 0.0
    for path in args.inputs:
        n, seconds, setup = run_one(path, args.out, args.model_complexity, args.static)
        total_frames, total_s = total_frames + n, total_s + seconds
        print(f"{path}: {n} frames in {seconds:.2f} s = {n / max(seconds, 1e-9):.1f} frames/s "
              f"(model set-up {setup:.2f} s included)", flush=True)
    print(f"overall: {total_frames} frames in {total_s:.2f} s = "
          f"{total_frames / max(total_s, 1e-9):.1f} frames/s")


if __name__ == "__main__":
    main()

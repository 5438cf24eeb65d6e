"""Frames/s of the whole video job at 640x360, 1280x720, 1920x1080 and 3840x2160, vs MediaPipe.

    PYTHONPATH=. python benchmarks/video_sizes.py --body-onnx runs/demo/model.onnx \
        --hand-onnx runs/demo/hand.onnx [--int8-body B --int8-hand H] \
        [--mediapipe /work/mp_venv/bin/python] [--root runs/video_sizes] [--frames 60]

One clip of the renderer (seed 41, never tuned on) is rendered at each size with the same
content (`synth.clips.render_clip` at that size) and written as an .mp4; the job runs on it as
`python -m signlang_jax.video` does by default (body + hand stage through onnxruntime, hand
tracking, DARK, the offline smoother), timed from decoding to the written .npz, best of two
runs. MediaPipe Holistic 0.10.14 (its own venv) runs on the same files. Prints each size's
frames/s, its ratio to our 360p figure (decoding is the only cost that should grow with the
frame size) and our ratio to MediaPipe at that size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from signlang_jax.data.videos import find_inputs
from signlang_jax.inference.onnx_runtime import load_onnx
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.synth.clips import render_clip
from signlang_jax.video.hands import HandTrackingParams
from signlang_jax.video.job import JobSettings, process_video
from signlang_jax.video.offline import OfflineParams
from signlang_jax.video.tracking import TrackingParams

SIZES = ((640, 360), (1280, 720), (1920, 1080), (3840, 2160))
SEED, FPS = 41, 25.0


def clip_file(root: Path, width: int, height: int, frames: int) -> Path:
    """The clip at one size as an .mp4 (rendered once, then reused)."""
    path = root / f"clip_{width}x{height}.mp4"
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        images, _, _ = render_clip(SEED, 0, width, height, frames, FPS)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS,
                                 (width, height))
        for image in images:
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        writer.release()
    return path


def job_fps(path: Path, model: RegionPredictor, repeats: int = 2) -> float:
    """Best frames/s of the default job on one file."""
    item = find_inputs([str(path)])[0][0]
    best = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            job = JobSettings(Path(tmp), ("npz",), False, 0.1, 1, FPS, TrackingParams(),
                              OfflineParams(), HandTrackingParams())
            best = max(best, process_video(item, model, job)[1])
    return best


def mediapipe_fps(python: str, path: Path) -> float:
    """MediaPipe Holistic's frames/s on one file (benchmarks/mediapipe_peer.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([python, "benchmarks/mediapipe_peer.py", str(path), "--out",
                                 tmp], capture_output=True, text=True, check=True)
    overall = [ln for ln in result.stdout.splitlines() if ln.startswith("overall")][-1]
    return float(overall.split("=")[1].split()[0])


def main() -> int:
    """Render, run, print the table (and --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-onnx", required=True)
    parser.add_argument("--hand-onnx", required=True)
    parser.add_argument("--int8-body", default=None, help="int8 body model (to_onnx --int8)")
    parser.add_argument("--int8-hand", default=None, help="int8 hand model")
    parser.add_argument("--mediapipe", default=None, help="python of MediaPipe's own venv")
    parser.add_argument("--root", default="runs/video_sizes")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    models = {"float": load_onnx(args.body_onnx, args.hand_onnx, 0.0, 1, hand_decoder="dark")}
    if args.int8_body and args.int8_hand:
        models["int8"] = load_onnx(args.int8_body, args.int8_hand, 0.0, 1, hand_decoder="dark")
    rows = {}
    for width, height in SIZES:
        path = clip_file(Path(args.root), width, height, args.frames)
        row = {name: round(job_fps(path, model), 1) for name, model in models.items()}
        if args.mediapipe:
            row["mediapipe"] = round(mediapipe_fps(args.mediapipe, path), 1)
        rows[f"{width}x{height}"] = row
        print(json.dumps({f"{width}x{height}": row}), file=sys.stderr, flush=True)
    base = rows["640x360"]
    names = list(models) + (["mediapipe"] if args.mediapipe else [])
    print("| frame size | " + " | ".join(f"{n} frames/s" for n in names)
          + " | ours / ours at 360p | ours / MediaPipe |")
    print("|---" * (len(names) + 3) + "|")
    for size, row in rows.items():
        vs_mp = (f"{row['float'] / row['mediapipe']:.2f}x" if "mediapipe" in row else "")
        print(f"| {size} | " + " | ".join(str(row[n]) for n in names)
              + f" | {row['float'] / base['float']:.2f} | {vs_mp} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A clip of held-out still signers pasted into a 16:9 frame and moved across it.

    PYTHONPATH=. python benchmarks/pasted_clip.py --out runs/hands_video/pasted [--seed 31]

The renderer's clips (`signlang_jax.synth.clips`) move the arms with the renderer's own motion
model; this clip tests the video job on the stills the models were trained on, in a frame they
never saw: `stills` still images (`signlang_jax.synth.stills`, a seed never used for training
or tuning) of `height_fraction` of the frame height, each shown for `frames_each` frames while it
glides across part of a textured 1280 x 720 background on an eased path with a gentle bob
(sub-pixel motion: the truth moves smoothly within each still's stretch; `clip.json` lists the
frames where a new still begins, which jitter measures leave out). Written in the layout of a
synthetic clip (images/, labels/, video.mp4, clip.json), so every benchmark reader and
MediaPipe's peer script take it as one.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.files import write_atomic
from signlang_jax.synth.motion import min_jerk
from signlang_jax.synth.scene import background
from signlang_jax.synth.stills import render_sample


def paste_path(frame: int, frames_each: int, width: int, height: int, side: int,
               still: int) -> tuple[float, float]:
    """Top-left corner (x, y) of the pasted still on `frame` of its own stretch.

    Stills take turns at four places across the frame; each glides a sixth of the frame width
    (about 170 px/s at 25 fps) on an eased path and bobs by 2 % of the height, a camera's pan.
    """
    t = min_jerk(frame / max(frames_each - 1, 1))
    start = 0.04 * width + (still % 4) * (width - side - 0.25 * width) / 3
    x = start + width / 6 * (t if still % 2 == 0 else 1 - t)
    y = (height - side) / 2 + 0.02 * height * math.sin(2 * math.pi * frame / frames_each)
    return x, y


def write_pasted_clip(out: Path, seed: int, stills: int = 4, frames_each: int = 30,
                      width: int = 1280, height: int = 720, height_fraction: float = 0.5,
                      fps: float = 25.0) -> Path:
    """Render the clip into `out` (skipped when its clip.json exists); returns `out`."""
    if (out / "clip.json").is_file():
        return out
    side = round(height_fraction * height)
    scene = background(np.random.default_rng([seed, 999]), max(width, height))[:height, :width]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (width, height))
    frame_index = 0
    for still in range(stills):
        image, label = render_sample(seed, still, side)
        for frame in range(frames_each):
            x, y = paste_path(frame, frames_each, width, height, side, still)
            shift = np.array([[1.0, 0.0, x], [0.0, 1.0, y]])
            pasted = cv2.warpAffine(image, shift, (width, height), flags=cv2.INTER_LINEAR)
            mask = cv2.warpAffine(np.ones((side, side), np.float32), shift, (width, height),
                                  flags=cv2.INTER_LINEAR)[..., None]
            rgb = (mask * pasted + (1 - mask) * scene).round().astype(np.uint8)
            name = f"{frame_index:06d}"
            moved = {**label, "image": f"{name}.jpg", "width": width, "height": height,
                     "keypoints": [{**k, "x": k["x"] + x, "y": k["y"] + y}
                                   for k in label["keypoints"]],
                     "bbox": [label["bbox"][0] + x, label["bbox"][1] + y, *label["bbox"][2:]]}
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            cv2.imwrite(str(out / "images" / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_atomic(out / "labels" / f"{name}.json", json.dumps(moved).encode())
            writer.write(bgr)
            frame_index += 1
    writer.release()
    info = {"fps": fps, "width": width, "height": height, "seed": seed, "stills": stills,
            "frames_each": frames_each, "num_frames": frame_index,
            "signer_height": height_fraction, "kind": "pasted stills",
            "cuts": [n * frames_each for n in range(1, stills)]}
    write_atomic(out / "clip.json", json.dumps(info, indent=1).encode())
    return out


def main() -> int:
    """Write the clip."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--stills", type=int, default=4)
    parser.add_argument("--frames-each", type=int, default=30)
    args = parser.parse_args()
    write_pasted_clip(Path(args.out), args.seed, args.stills, args.frames_each)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

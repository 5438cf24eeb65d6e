"""A variable-frame-rate clip against the constant-rate clip of the same motion.

    PYTHONPATH=. python benchmarks/vfr.py --body-onnx runs/demo/model.onnx \
        --hand-onnx runs/demo/hand.onnx [--root runs/vfr]

One renderer clip (seed 43, 1280x720, 3 s at 30 fps) is written twice with PyAV as .mkv (H.264)
and .webm (VP9): every frame (constant rate), and a phone-like variable rate that keeps 1 s at
30 fps, then 1 s at 10 fps (every third frame), then 1 s at 30 fps, each frame with its exact
time stamp. The job runs on each at its defaults (demo pair, hand tracking, DARK, the offline
smoother). Prints, on the frames both versions hold: whether the time stamps equal the
container's, the mean distance between the two versions' keypoints (all points and hands), and
each version's PCK@0.1 and hand PCK@0.05 against the renderer's truth.
"""

from __future__ import annotations

import argparse
import fractions
import json
import tempfile
from pathlib import Path

import av
import numpy as np

from signlang_jax.data.sequence_files import read_npz
from signlang_jax.evaluation.metrics import pck_counts, pck_summary
from signlang_jax.keypoints import GROUPS
from signlang_jax.synth.clips import render_clip
from signlang_jax.video import cli

SEED, FPS, SECONDS = 43, 30, 3


def write(path: Path, frames: np.ndarray, keep: list[int], codec: str) -> list[float]:
    """Frames `keep` of the clip at their own times (n / FPS), millisecond time base."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=FPS)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    stream.time_base = fractions.Fraction(1, 1000)
    for n in keep:
        frame = av.VideoFrame.from_ndarray(frames[n], format="rgb24")
        frame.pts, frame.time_base = round(n * 1000 / FPS), fractions.Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return [round(n * 1000 / FPS) / 1000 for n in keep]


def scores(pred: np.ndarray, truth: np.ndarray, boxes: np.ndarray) -> dict[str, float]:
    """PCK@0.1 (all) and hand PCK@0.05 against the truth, person boxes as `evaluate`."""
    all_points = pck_summary(*pck_counts(pred[..., :2], truth, boxes, 0.1))["all"]
    hands = list(GROUPS["left_hand"]) + list(GROUPS["right_hand"])
    correct, total = pck_counts(pred[:, hands, :2], truth[:, hands], boxes, 0.05)
    return {"pck@0.1": round(all_points, 4), "hand_pck@0.05": round(correct.sum() / total.sum(), 4)}


def main() -> int:
    """Render, write, run, compare."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-onnx", required=True)
    parser.add_argument("--hand-onnx", required=True)
    parser.add_argument("--root", default="runs/vfr")
    args = parser.parse_args()
    frames, labels, _ = render_clip(SEED, 0, 1280, 720, FPS * SECONDS, float(FPS))
    truth = np.array([[[p["x"], p["y"], p["visible"]] for p in lab["keypoints"]]
                      for lab in labels], np.float32)
    boxes = np.array([lab["bbox"] for lab in labels], np.float32)
    every = list(range(len(frames)))
    variable = [n for n in every if n < FPS or n >= 2 * FPS or n % 3 == 0]
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    for codec, suffix in (("libx264", ".mkv"), ("libvpx-vp9", ".webm")):
        runs = {}
        for name, keep in (("constant", every), ("variable", variable)):
            video = root / f"{name}{suffix}"
            stamps = write(video, frames, keep, codec)
            with tempfile.TemporaryDirectory() as out:
                assert cli.main([str(video), "--out", out, "--onnx", args.body_onnx,
                                 "--hand-onnx", args.hand_onnx]) == 0
                seq = read_npz(Path(out) / f"{name}.npz")
            runs[name] = (seq, keep, float(np.abs(seq.timestamps - stamps).max()))
        (const, _, const_err), (var, keep, var_err) = runs["constant"], runs["variable"]
        common = const.keypoints[keep]
        shift = np.linalg.norm(common[..., :2] - var.keypoints[..., :2], axis=-1)
        hands = list(GROUPS["left_hand"]) + list(GROUPS["right_hand"])
        visible = truth[keep][..., 2] > 0
        results[suffix] = {
            "frames": {"constant": len(every), "variable": len(keep)},
            "max time stamp error s": {"constant": const_err, "variable": var_err},
            "mean keypoint distance px (all / hands)": [
                round(float(shift[visible].mean()), 2),
                round(float(shift[:, hands][visible[:, hands]].mean()), 2)],
            "constant (on the common frames)": scores(common, truth[keep], boxes[keep]),
            "variable": scores(var.keypoints, truth[keep], boxes[keep]),
        }
        print(json.dumps({suffix: results[suffix]}, indent=1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The video job measured on synthetic signing clips with per-frame ground truth.

    PYTHONPATH=. python benchmarks/video.py --body runs/demo --hand runs/demo_hand \
        --body-onnx runs/demo/model.onnx --hand-onnx runs/demo/hand.onnx \
        [--clips runs/video_bench/clips --num 20] [--mediapipe /work/mp_venv/bin/python] \
        [--sweep] [--strip docs/video_strip.jpg] [--json runs/video_bench/results.json]

Renders 640x360 (16:9) clips (`signlang_jax.synth.clips`, a seed never trained on), then runs
the body model (and the hand stage) on every clip: full-frame letterbox, tracking (the CLI's
default batch of 1, and batch 8), each with smoothing applied as the CLI does (the
One Euro filter is causal and sees the raw points, so it is applied to the same raw runs).
Prints, per keypoint group: PCK@0.05 and @0.1 against each frame's labels (normalised by the
person box, as `evaluate`), and jitter = mean |frame-to-frame acceleration| in px/frame^2 over
points visible in three consecutive frames, next to the ground truth's own (the floor). The
same model's PCK on still framings of the same signers (each frame cut to the square the tracker
would choose from the ground truth) is the reference the tracked clips are held to. Then the
frames/s of the whole job (decode to .npz) with JAX and onnxruntime at batch 1 and 8, and
MediaPipe Holistic on the same clips (its own venv: benchmarks/mediapipe_peer.py). `--sweep`
chooses the smoothing defaults on separate tuning clips (seed 12).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.data.videos import find_inputs
from signlang_jax.evaluation.metrics import acceleration_sums, pck_counts, pck_summary
from signlang_jax.inference.onnx_runtime import load_onnx
from signlang_jax.inference.region import RegionPredictor, load_jax
from signlang_jax.keypoints import GROUPS
from signlang_jax.synth.clips import clip_dir, generate_clips
from signlang_jax.video.job import JobSettings, process_video
from signlang_jax.video.sequence import SequenceProcessor
from signlang_jax.video.smoothing import OneEuroFilter, OneEuroParams
from signlang_jax.video.tracking import TrackingParams, signer_region

TEST_SEED, TUNE_SEED = 11, 12
GROUP_NAMES = tuple(GROUPS)


@dataclasses.dataclass
class Clip:
    """One rendered clip: frames, labels as arrays, its folder and clip.json."""

    folder: Path
    frames: list[np.ndarray]
    gt: np.ndarray  # (T, 64, 3) x, y, visible
    bbox: np.ndarray  # (T, 4)
    info: dict


def read_clip(folder: Path) -> Clip:
    """Frames and labels of one clip folder (`synth.clips` layout, or benchmarks/pasted_clip.py)."""
    labels = [json.loads(p.read_text()) for p in sorted((folder / "labels").glob("*.json"))]
    images = [cv2.cvtColor(cv2.imread(str(folder / "images" / lab["image"])), cv2.COLOR_BGR2RGB)
              for lab in labels]
    gt = np.array([[[k["x"], k["y"], k["visible"]] for k in lab["keypoints"]]
                   for lab in labels], np.float32)
    bbox = np.array([lab["bbox"] for lab in labels], np.float32)
    return Clip(folder, images, gt, bbox, json.loads((folder / "clip.json").read_text()))


def load_clips(root: Path, num: int, seed: int, width: int, height: int, frames: int
               ) -> list[Clip]:
    """Render (once) and read `num` clips."""
    generate_clips(root, num, seed, width, height, frames, 25.0)
    return [read_clip(clip_dir(root, index)) for index in range(num)]


def run(model: RegionPredictor, clip: Clip, tracking: TrackingParams | None,
        batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw keypoints (T, 64, 3), tracked (T,)) of one clip, batches of `batch` frames."""
    h, w = clip.frames[0].shape[:2]
    processor = SequenceProcessor(model, w, h, clip.info["fps"], tracking, None)
    out, tracked = [], []
    for start in range(0, len(clip.frames), batch):
        result = processor.process(clip.frames[start:start + batch])
        out.append(result.raw)
        tracked.append(result.tracked)
    return np.concatenate(out), np.concatenate(tracked)


def smooth(raw: np.ndarray, fps: float, params: OneEuroParams) -> np.ndarray:
    """The CLI's smoothing applied to one clip's raw keypoints."""
    f = OneEuroFilter(params, raw.shape[1])
    return np.stack([f(k, 1.0 / fps) for k in raw])


def score(preds: list[np.ndarray], clips: list[Clip]) -> dict:
    """PCK@0.05/0.1 and jitter per group over clips (pred list aligned with clips)."""
    out: dict = {}
    for thr in (0.05, 0.1):
        correct = total = 0
        for pred, clip in zip(preds, clips, strict=True):
            c, t = pck_counts(pred, clip.gt, clip.bbox, thr)
            correct, total = correct + c, total + t
        summary = pck_summary(correct, total)
        out[f"pck@{thr}"] = {g: summary[g] for g in ("all", *GROUP_NAMES)}
    out["jitter"] = jitter(preds, clips)
    return out


def jitter(seqs: list[np.ndarray], clips: list[Clip]) -> dict:
    """Mean |acceleration| (px/frame^2) per group, on points visible in three frames (and
    predicted there: MediaPipe gives no point, score 0, for a hand it did not find)."""
    sums = counts = 0
    for seq, clip in zip(seqs, clips, strict=True):
        s, c = acceleration_sums(seq[..., :2], (clip.gt[..., 2] > 0) & (seq[..., 2] > 0))
        sums, counts = sums + s, counts + c
    return {g: float(sums[list(idx)].sum() / max(counts[list(idx)].sum(), 1))
            for g, idx in GROUPS.items()}


def still_framing(model: RegionPredictor, clips: list[Clip], every: int = 5) -> dict:
    """PCK of every `every`-th frame cut to the tracker's square around its ground truth."""
    params = TrackingParams()
    preds, subset = [], []
    for clip in clips:
        idx = list(range(0, len(clip.frames), every))
        gt = clip.gt[idx].copy()
        gt[..., 2] = np.where(gt[..., 2] > 0, 1.0, 0.0)
        regions = [signer_region(g, dataclasses.replace(params, min_points=1)) for g in gt]
        preds.append(model.predict([clip.frames[i] for i in idx], regions))
        subset.append(Clip(clip.folder, [], clip.gt[idx], clip.bbox[idx], clip.info))
    result = score(preds, subset)
    result.pop("jitter")
    return result


def table(rows: dict[str, dict], key: str) -> str:
    """A markdown table of one measure (pck@0.1, jitter, ...) per group for each row."""
    lines = [f"| {key} | " + " | ".join(("all", *GROUP_NAMES) if key != "jitter"
                                         else GROUP_NAMES) + " |"]
    lines.append("|---" * (len(GROUP_NAMES) + (2 if key != "jitter" else 1)) + "|")
    for name, result in rows.items():
        if key not in result:
            continue
        values = result[key]
        cells = [values.get(g, float("nan")) for g in (("all", *GROUP_NAMES) if key != "jitter"
                                                       else GROUP_NAMES)]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines)


def sweep(models: dict[str, RegionPredictor], clips: list[Clip]) -> list[dict]:
    """Hand jitter and PCK@0.1 of tracked runs for a grid of One Euro settings, per model."""
    rows = []
    for name, model in models.items():
        raws = [run(model, clip, TrackingParams(), model.batch_size)[0] for clip in clips]
        base = score(raws, clips)
        for min_cutoff, beta, threshold, confidence, gate in itertools.product(
                (0.3, 1.0, 3.0), (0.0, 1.0, 4.0, 8.0), (0.0, 0.1, 0.3), (None, (0.2, 0.5)),
                (None, 7.5, 12.5)):  # signer sizes/s: 0.3 and 0.5 per frame at 25 fps
            params = OneEuroParams(min_cutoff, beta, 1.0, threshold, confidence, gate)
            result = score([smooth(r, c.info["fps"], params) for r, c in zip(raws, clips,
                                                                           strict=True)], clips)
            hands = ("left_hand", "right_hand")
            rows.append({"model": name, **dataclasses.asdict(params),
                         "hand_jitter_cut": float(np.mean(
                             [base["jitter"][g] / result["jitter"][g] for g in hands])),
                         "pck@0.1_change": result["pck@0.1"]["all"] - base["pck@0.1"]["all"],
                         "hand_pck@0.1_change": float(np.mean(
                             [result["pck@0.1"][g] - base["pck@0.1"][g] for g in hands]))})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def speed(models: dict[str, RegionPredictor], clips: list[Clip], repeats: int) -> dict:
    """Median frames/s of the whole job (decode -> track -> smooth -> .npz) per model/batch."""
    results: dict[str, list[float]] = {}
    inputs = [find_inputs([str(c.folder / "video.mp4")])[0][0] for c in clips]
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats + 1):  # the first round compiles / warms up, not counted
            for name, model in models.items():
                batch = model.batch_size
                job = JobSettings(Path(tmp), ("npz",), False, 0.1, batch, 25.0, TrackingParams(),
                                  OneEuroParams())
                frames, start = 0, time.perf_counter()
                for item in inputs:
                    seq, _ = process_video(item, model, job)
                    frames += len(seq.keypoints)
                if repeat:
                    results.setdefault(name, []).append(frames / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in results.items()}


def mediapipe(python: str, clips: list[Clip]) -> tuple[list[np.ndarray], float]:
    """MediaPipe Holistic's (T, 64, 3) per clip and its overall frames/s (its own venv)."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([python, "benchmarks/mediapipe_peer.py",
                                 *[str(c.folder / "video.mp4") for c in clips], "--out", tmp],
                                capture_output=True, text=True, check=True)
        overall = [ln for ln in result.stdout.splitlines() if ln.startswith("overall")][-1]
        fps = float(overall.split("=")[1].split()[0])
        preds = [np.load(Path(tmp) / f"{c.folder.name}.npz")["keypoints"] for c in clips]
    return preds, fps


def strip(model: RegionPredictor, clip: Clip, path: Path, frames: tuple[int, ...]) -> None:
    """Frames of one clip: full-frame letterbox (top) vs tracking + smoothing (bottom)."""
    from signlang_jax.draw import image_grid, write_rgb
    from signlang_jax.video.overlay import annotate

    rows = []
    for tracking, params in ((None, None), (TrackingParams(), OneEuroParams())):
        h, w = clip.frames[0].shape[:2]
        processor = SequenceProcessor(model, w, h, clip.info["fps"], tracking, params)
        results = [processor.process([f]) for f in clip.frames]
        rows += [annotate(clip.frames[i], results[i].keypoints[0], results[i].regions[0],
                          bool(results[i].tracked[0]), 0.3) for i in frames]
    grid = image_grid(rows, len(frames))
    write_rgb(str(path), cv2.resize(grid, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))


def accuracy(body: RegionPredictor, pair: RegionPredictor | None, clips: list[Clip]
             ) -> dict[str, dict]:
    """Every accuracy row: full frame, tracking (batch 8 and 1), +/- smoothing, +/- hands."""
    rows: dict[str, dict] = {}
    params = OneEuroParams()
    fps = [c.info["fps"] for c in clips]
    runs = {"full frame": (body, None, 1), "tracking": (body, TrackingParams(), 1),
            "tracking, batch 8": (body, TrackingParams(), 8)}
    if pair is not None:
        runs.update({"full frame + hand stage": (pair, None, 1),
                     "tracking + hand stage": (pair, TrackingParams(), 1)})
    for name, (model, tracking, batch) in runs.items():
        start = time.perf_counter()
        outs = [run(model, clip, tracking, batch) for clip in clips]
        raws = [o[0] for o in outs]
        rows[name] = score(raws, clips)
        rows[name]["tracked"] = float(np.mean(np.concatenate([o[1] for o in outs])))
        rows[f"{name} + smoothing"] = score([smooth(r, f, params) for r, f in zip(
            raws, fps, strict=True)], clips)
        plain = dataclasses.replace(params, jump_gate=None)
        rows[f"{name} + smoothing without the jump gate"] = score(
            [smooth(r, f, plain) for r, f in zip(raws, fps, strict=True)], clips)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    gt_rows = {"ground truth": {"jitter": jitter([c.gt for c in clips], clips)}}
    return {**rows, **gt_rows}


def main() -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body", required=True, help="whole-body run (JAX checkpoint)")
    parser.add_argument("--hand", default=None, help="hand-model run (JAX checkpoint)")
    parser.add_argument("--body-onnx", default=None, help="the body model exported")
    parser.add_argument("--hand-onnx", default=None, help="the hand model exported")
    parser.add_argument("--clips", default="runs/video_bench/clips")
    parser.add_argument("--num", type=int, default=20, help="test clips (seed 11)")
    parser.add_argument("--frames", type=int, default=50, help="frames per clip (25 fps)")
    parser.add_argument("--speed-clips", type=int, default=4)
    parser.add_argument("--mediapipe", default=None, help="python of MediaPipe's own venv")
    parser.add_argument("--sweep", action="store_true", help="smoothing grid on tuning clips")
    parser.add_argument("--strip", default=None, help="write a strip of frames here (.jpg)")
    parser.add_argument("--strip-clip", type=int, default=13, help="test clip of the strip")
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()

    body = load_jax(args.body, None, "float32", None, 0.0, 1)
    pair = None if args.hand is None else load_jax(args.body, None, "float32", args.hand, 0.0, 1)
    results: dict = {}
    if args.sweep:
        tune = load_clips(Path(args.clips).parent / "tune", 8, TUNE_SEED, 640, 360, args.frames)
        results["sweep"] = sweep({"body, batch 1": body, "body, batch 8": load_jax(
            args.body, None, "float32", None, 0.0, 8), **({} if pair is None else {
                "body + hand stage, batch 1": pair})}, tune)
    clips = load_clips(Path(args.clips), args.num, TEST_SEED, 640, 360, args.frames)
    heights = [c.info["signer_height"] for c in clips]
    print(f"{len(clips)} clips 640x360, {args.frames} frames at 25 fps; signer height "
          f"{min(heights):.2f}-{max(heights):.2f} of the frame (median "
          f"{statistics.median(heights):.2f})")
    rows = accuracy(body, pair, clips)
    rows["still framing of the same signers (reference)"] = still_framing(body, clips)
    half = [c for c in clips if 0.4 <= c.info["signer_height"] <= 0.6]
    if half:
        rows_half = accuracy(body, None, half)
        rows_half["still framing (reference)"] = still_framing(body, half)
        results["half_height"] = {"clips": len(half), "rows": rows_half}
    if args.mediapipe:
        preds, mp_fps = mediapipe(args.mediapipe, clips)
        rows["MediaPipe Holistic 0.10.14"] = score(preds, clips)
        found = [p[..., 2].max(-1) > 0 for p in preds]
        rows["MediaPipe Holistic 0.10.14"]["found"] = float(np.mean(np.concatenate(found)))
        found_clips = [Clip(c.folder, [], c.gt[f], c.bbox[f], c.info)
                       for c, f in zip(clips, found, strict=True) if f.any()]
        rows["MediaPipe, frames where it found the signer"] = score(
            [p[f] for p, f in zip(preds, found, strict=True) if f.any()], found_clips)
        rows["MediaPipe, frames where it found the signer"].pop("jitter")
        results["mediapipe_fps"] = mp_fps
    results["rows"] = rows
    for key in ("pck@0.05", "pck@0.1", "jitter"):
        print(f"\n{table(rows, key)}")
    if half:
        print(f"\nSigner about half the frame height ({len(half)} clips):")
        print(table(results["half_height"]["rows"], "pck@0.1"))
    print("\ntracked fraction:", {k: round(v["tracked"], 3) for k, v in rows.items()
                                  if "tracked" in v})
    if not args.skip_speed:
        models = {"jax batch 1": body,
                  "jax batch 8": load_jax(args.body, None, "float32", None, 0.0, 8)}
        if args.body_onnx:
            models.update({"onnxruntime batch 1": load_onnx(args.body_onnx, None, 0.0, 1),
                           "onnxruntime batch 8": load_onnx(args.body_onnx, None, 0.0, 8)})
        if args.hand and args.hand_onnx:
            models.update({
                "jax + hand batch 1": pair,
                "onnxruntime + hand batch 1": load_onnx(args.body_onnx, args.hand_onnx, 0.0, 1),
                "jax + hand batch 8": load_jax(args.body, None, "float32", args.hand, 0.0, 8),
                "onnxruntime + hand batch 8": load_onnx(args.body_onnx, args.hand_onnx, 0.0, 8)})
        results["fps"] = speed(models, clips[:args.speed_clips], repeats=2)
        if args.mediapipe:
            results["fps"]["MediaPipe Holistic (its own CPU threads)"] = results["mediapipe_fps"]
        print("\nframes/s, decode -> .npz:", json.dumps(
            {k: round(v, 1) for k, v in results["fps"].items()}, indent=1))
    if args.strip:
        strip(pair or body, clips[args.strip_clip], Path(args.strip), (0, 12, 24, 36))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Two people in frame: does the video job keep to the signer?

    PYTHONPATH=. python benchmarks/two_people.py --body-onnx runs/demo/model.onnx \
        --hand-onnx runs/demo/hand.onnx [--num 8] [--root runs/two_people] [--json FILE]

Renders `--num` clips of each kind at 640x360, 25 fps, 75 frames (3 s), seed 41, never trained
or tuned on: the signer alone, the same clip with a second, smaller signer beside them
(`--companion beside`), and the same clip with a smaller person walking across behind them
(`--companion behind`). The signer, background, camera and motion are identical in the three
versions (the companion has its own random stream), so the difference is the second person only.

Each clip goes through the video job's own code (`SequenceProcessor` with its default region
and hand tracking, then the default offline smoother), with person finding (`--person signer`,
the default) and without it (`--person any`, the job before). Reported per set: PCK@0.1 of the
signer (all points, body, hands; person box as `evaluate`), and whose points they are
(`signlang_jax.evaluation.identity`): frames in which any found point lies on the other
person, frames in which most do, and points on the other person. The chance floor scores the
one-person clips' predictions against the second person's truth of the two-person versions:
the signer's own errors that land on where the other person would be.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from hands_video import offline
from video import read_clip

from signlang_jax.evaluation.identity import mixing_summary, points_on_other
from signlang_jax.evaluation.metrics import pck_counts, pck_summary
from signlang_jax.inference.onnx_runtime import load_onnx
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.synth.clips import clip_dir, generate_clips
from signlang_jax.video.people import PersonParams
from signlang_jax.video.sequence import SequenceProcessor

SEED, WIDTH, HEIGHT, FRAMES, FPS = 41, 640, 360, 75, 25.0
SETS = {"signer alone": None, "second signer beside": "beside",
        "person walking behind": "behind"}


def others_of(folder: Path, frames: int) -> np.ndarray:
    """(T, 64, 3) the second person's points of a clip's labels (NaN when there is none)."""
    out = np.full((frames, 64, 3), np.nan, np.float32)
    for t, path in enumerate(sorted((folder / "labels").glob("*.json"))):
        others = json.loads(path.read_text()).get("others")
        if others:
            out[t] = np.asarray(others[0]["keypoints"], np.float32)
    return out


def run_job(model: RegionPredictor, frames: list[np.ndarray], people: PersonParams | None
            ) -> np.ndarray:
    """The job's smoothed keypoints (T, 64, 3) of one clip, one frame at a time."""
    h, w = frames[0].shape[:2]
    processor = SequenceProcessor(model, w, h, FPS, smoothing=None, people=people)
    raw = np.concatenate([processor.process([f]).raw for f in frames])
    return offline(raw)


def evaluate_set(predictions: list[np.ndarray], folders: list[Path],
                 others_from: list[Path]) -> dict:
    """PCK@0.1 per group and the mixing summary of predictions on one set of clips; the other
    person's truth is read from `others_from` (the same clips, or the two-person versions of
    one-person clips: the chance floor)."""
    correct = total = 0
    masks, found = [], []
    for pred, folder, other_folder in zip(predictions, folders, others_from, strict=True):
        clip = read_clip(folder)
        c, t = pck_counts(pred, clip.gt, clip.bbox, 0.1)
        correct, total = correct + c, total + t
        other = others_of(other_folder, len(clip.frames))
        masks.append(points_on_other(pred, clip.gt, other, clip.bbox))
        found.append(pred[..., 2] >= 0.3)
    summary = pck_summary(correct, total)
    return {"pck@0.1": {g: summary[g] for g in ("all", "body", "left_hand", "right_hand")},
            **mixing_summary(np.concatenate(masks), np.concatenate(found))}


def main() -> int:
    """Render the sets, run the job on each, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-onnx", required=True)
    parser.add_argument("--hand-onnx", required=True)
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--root", type=Path, default=Path("runs/two_people"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    model = load_onnx(args.body_onnx, args.hand_onnx, 0.3, 8)
    folders = {}
    for companion in SETS.values():
        root = args.root / (companion or "alone")
        generate_clips(root, args.num, SEED, WIDTH, HEIGHT, FRAMES, FPS, companion=companion)
        folders[companion] = [clip_dir(root, i) for i in range(args.num)]
    results = {}
    alone = None
    for name, companion in SETS.items():
        for person, people in (("signer (default)", PersonParams()), ("any (before)", None)):
            start = time.perf_counter()
            preds = [run_job(model, read_clip(f).frames, people) for f in folders[companion]]
            results[f"{name}, --person {person}"] = evaluate_set(
                preds, folders[companion], folders[companion])
            if companion is None and people is not None:
                alone = preds
            print(f"{name}, {person}: {time.perf_counter() - start:.0f} s", file=sys.stderr,
                  flush=True)
    for name, companion in SETS.items():
        if companion is not None:  # chance: one-person predictions vs the other's truth
            results[f"chance floor: signer alone scored against the {name.split()[-1]} "
                    "person's truth"] = evaluate_set(alone, folders[None], folders[companion])
    print(f"{args.num} clips per set, {WIDTH}x{HEIGHT}, {FRAMES} frames, seed {SEED}; "
          f"demo pair ({args.body_onnx} + {args.hand_onnx}), the job's other defaults\n")
    print("| set | PCK@0.1 all | body | left hand | right hand | frames mixing people | "
          "frames mostly the other | points on the other |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        p = r["pck@0.1"]
        print(f"| {name} | {p['all']:.3f} | {p['body']:.3f} | {p['left_hand']:.3f} | "
              f"{p['right_hand']:.3f} | {r['mixed_frames']} / {r['frames']} | "
              f"{r['swapped_frames']} | {r['points_on_other']} / {r['found_points']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

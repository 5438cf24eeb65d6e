"""Hands on video, side by side with MediaPipe Holistic, against exact per-frame truth.

    PYTHONPATH=. python benchmarks/hands_video.py --body-onnx runs/demo/model.onnx \
        --hand-onnx runs/demo/hand.onnx [--mediapipe /work/mp_venv/bin/python] \
        [--num 20] [--root runs/hands_video] [--json runs/hands_video/results.json] [--tune]

Two clip sets at 1280 x 720, 25 fps, never trained or tuned on: `--num` renderer clips
(`signlang_jax.synth.clips`, seed 21, 60 frames) and one clip of held-out still signers pasted
at half the frame height and moved across it (benchmarks/pasted_clip.py, seed 31, 120 frames).
Every row runs the exported models through the video job's own code (`SequenceProcessor`,
`smooth_offline`, the causal `OneEuroFilter`), at its defaults otherwise:

- body model alone (its own hand points), raw and with the offline smoother;
- the hand stage with crops placed from the body model's points every frame and argmax decoding
  (before issue 20), raw and with the causal filter (the job's old default);
- hand tracking (crops from the hand's own previous points) with argmax decoding, raw; with
  DARK decoding of the hand heatmaps (the job's default now), raw, with the offline smoother
  (the job's default now) and with the causal filter (`live_demo`, `--causal`);
- MediaPipe Holistic 0.10.14 (video mode, its own smoothing; its own venv, benchmarks/
  mediapipe_peer.py) on the same video files;
- the truth's own jitter.

Measures, pooled over each set's frames: PCK@0.1 (all points and per group) and hand PCK@0.05
with the person box as `evaluate` does; hand jitter = mean |frame-to-frame acceleration|
(px/frame^2) of hand points visible (and predicted) in three consecutive frames; frames/s of
the whole job (decode -> .npz, onnxruntime, batch 1) on the pasted clip, and MediaPipe's.
`--tune` instead sweeps the hand tracking and offline smoother settings on tuning clips
(seed 12 and a pasted clip of seed 32), which is how the defaults were chosen.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pasted_clip import write_pasted_clip
from video import Clip, mediapipe, read_clip

from signlang_jax.data.videos import find_inputs
from signlang_jax.evaluation.metrics import acceleration_sums, pck_counts, pck_summary
from signlang_jax.inference.onnx_runtime import load_onnx
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import GROUPS
from signlang_jax.synth.clips import clip_dir, generate_clips
from signlang_jax.video.hands import HandTrackingParams
from signlang_jax.video.job import JobSettings, process_video
from signlang_jax.video.offline import OfflineParams, frame_times, smooth_offline
from signlang_jax.video.sequence import SequenceProcessor
from signlang_jax.video.smoothing import OneEuroFilter, OneEuroParams
from signlang_jax.video.tracking import TrackingParams

TEST_SEED, TUNE_SEED, PASTED_SEED, PASTED_TUNE_SEED = 21, 12, 31, 32
HANDS = ("left_hand", "right_hand")
HAND_POINTS = [i for h in HANDS for i in range(GROUPS[h].start, GROUPS[h].stop)]
WIDTH, HEIGHT, FPS = 1280, 720, 25.0


def clip_folders(root: Path, num: int, seed: int, pasted_seed: int) -> dict[str, list[Path]]:
    """Render (once) both clip sets; {set name: clip folders}."""
    renderer = root / f"renderer_seed{seed}"
    generate_clips(renderer, num, seed, WIDTH, HEIGHT, 60, FPS)
    pasted = write_pasted_clip(root / f"pasted_seed{pasted_seed}", pasted_seed)
    return {"renderer clips": [clip_dir(renderer, i) for i in range(num)],
            "pasted clip": [pasted]}


def _folder_only(folder: Path) -> Clip:
    """A `Clip` naming only its folder (what the MediaPipe runner reads)."""
    return Clip(folder, [], np.zeros(0), np.zeros(0), {})


def run_raw(model: RegionPredictor, clip: Clip, hands: HandTrackingParams | None
            ) -> np.ndarray:
    """Raw (unsmoothed) keypoints (T, 64, 3) of one clip through the job's processor."""
    h, w = clip.frames[0].shape[:2]
    processor = SequenceProcessor(model, w, h, FPS, TrackingParams(), None, hands)
    return np.concatenate([processor.process([f]).raw for f in clip.frames])


def causal(raw: np.ndarray) -> np.ndarray:
    """The causal One Euro filter (live_demo's defaults) over a raw sequence."""
    f = OneEuroFilter(OneEuroParams(), raw.shape[1])
    return np.stack([f(k, 1.0 / FPS) for k in raw])


def offline(raw: np.ndarray, params: OfflineParams | None = None) -> np.ndarray:
    """The batch job's offline smoother (default settings unless given) over a raw sequence."""
    return smooth_offline(raw, frame_times(len(raw), FPS), params or OfflineParams())


@dataclasses.dataclass
class Tally:
    """Pooled PCK counts and acceleration sums of one row over one clip set."""

    correct: dict = dataclasses.field(default_factory=dict)
    total: dict = dataclasses.field(default_factory=dict)
    accel: float = 0.0
    triples: int = 0

    def add(self, pred: np.ndarray, clip: Clip) -> None:
        """Pool one clip's prediction."""
        for thr in (0.05, 0.1):
            c, t = pck_counts(pred, clip.gt, clip.bbox, thr)
            self.correct[thr] = self.correct.get(thr, 0) + c
            self.total[thr] = self.total.get(thr, 0) + t
        valid = (clip.gt[..., 2] > 0) & (pred[..., 2] > 0)
        for cut in clip.info.get("cuts", []):  # a new still: no motion across the cut
            valid[cut - 1] = False
        s, n = acceleration_sums(pred[..., :2], valid)
        self.accel += float(s[HAND_POINTS].sum())
        self.triples += int(n[HAND_POINTS].sum())

    def result(self) -> dict:
        """PCK@0.05/0.1 per group, hand PCK@0.05 and hand jitter."""
        out: dict = {}
        for thr in (0.05, 0.1):
            summary = pck_summary(self.correct[thr], self.total[thr])
            out[f"pck@{thr}"] = {g: summary[g] for g in ("all", *GROUPS)}
        out["hand_pck@0.05"] = float(np.mean([out["pck@0.05"][h] for h in HANDS]))
        out["hand_jitter"] = self.accel / max(self.triples, 1)
        return out


def evaluate_sets(sets: dict[str, list[Path]], body: RegionPredictor, pair: RegionPredictor,
                  pair_argmax: RegionPredictor, mediapipe_python: str | None
                  ) -> dict[str, dict[str, dict]]:
    """{set: {row: result}} for every row of the table."""
    out: dict[str, dict[str, dict]] = {}
    for set_name, folders in sets.items():
        tallies: dict[str, Tally] = {}

        def add(row: str, pred: np.ndarray, clip: Clip, tallies: dict = tallies) -> None:
            tallies.setdefault(row, Tally()).add(pred, clip)

        start = time.perf_counter()
        mp_preds = (mediapipe(mediapipe_python, [_folder_only(f) for f in folders])[0]
                    if mediapipe_python else None)
        for index, folder in enumerate(folders):
            clip = read_clip(folder)
            raw_body = run_raw(body, clip, None)
            add("body model alone", raw_body, clip)
            add("body model alone + offline smoother", offline(raw_body), clip)
            before = run_raw(pair_argmax, clip, None)
            add("hand stage, crops from the body model, argmax", before, clip)
            add("hand stage, crops from the body model, argmax + causal filter (old default)",
                causal(before), clip)
            add("hand tracking, argmax", run_raw(pair_argmax, clip, HandTrackingParams()), clip)
            tracked = run_raw(pair, clip, HandTrackingParams())
            add("hand tracking, DARK", tracked, clip)
            add("hand tracking, DARK + offline smoother (default)", offline(tracked), clip)
            add("hand tracking, DARK + causal filter (live_demo, --causal)", causal(tracked),
                clip)
            if mp_preds is not None:
                add("MediaPipe Holistic 0.10.14", mp_preds[index], clip)
            truth = clip.gt.copy()
            add("ground truth", truth, clip)
        out[set_name] = {row: t.result() for row, t in tallies.items()}
        print(f"{set_name}: {len(folders)} clips in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    return out


def job_speed(folder: Path, models: dict[str, RegionPredictor], repeats: int = 3
              ) -> dict[str, float]:
    """Best frames/s of the whole job (decode -> track -> hands -> smooth -> .npz) per model."""
    item = find_inputs([str(folder / "video.mp4")])[0][0]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for name, model in models.items():
                job = JobSettings(Path(tmp), ("npz",), False, 0.1, 1, FPS, TrackingParams(),
                                  OfflineParams(), HandTrackingParams())
                _, fps = process_video(item, model, job)
                best[name] = max(best.get(name, 0.0), fps)
    return best


def summary_table(results: dict[str, dict[str, dict]], speed: dict[str, float]) -> str:
    """The issue's table: PCK@0.1 / hand PCK@0.05 / hand jitter per set, frames/s."""
    sets = list(results)
    rows = list(dict.fromkeys(r for s in sets for r in results[s]))
    head = "| | " + " | ".join(f"{s}: PCK@0.1 / hand PCK@0.05 / hand jitter" for s in sets)
    lines = [head + " | frames/s (pasted clip) |", "|---" * (len(sets) + 2) + "|"]
    for row in rows:
        cells = []
        for s in sets:
            r = results[s].get(row)
            if r is None:
                cells.append("")
            elif row == "ground truth":
                cells.append(f"jitter {r['hand_jitter']:.1f}")
            else:
                cells.append(f"{r['pck@0.1']['all']:.3f} / {r['hand_pck@0.05']:.3f} / "
                             f"{r['hand_jitter']:.1f}")
        fps = "" if row not in speed else str(round(speed[row]))
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {fps} |")
    return "\n".join(lines)


def group_table(results: dict[str, dict], key: str) -> str:
    """One measure per keypoint group for every row of one clip set."""
    groups = ("all", *GROUPS)
    lines = [f"| {key} | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for row, r in results.items():
        if row != "ground truth":
            lines.append(f"| {row} | " + " | ".join(f"{r[key][g]:.3f}" for g in groups) + " |")
    return "\n".join(lines)


def tune(root: Path, num: int, pair: RegionPredictor) -> list[dict]:
    """Hand tracking and offline smoother settings on the tuning clips; one row each.

    Every hand-tracking variant raw, causal and with the default smoother; then, on the
    default variant's raw points, a grid of offline smoother settings.
    """
    sets = clip_folders(root, num, TUNE_SEED, PASTED_TUNE_SEED)
    clips = [read_clip(f) for folders in sets.values() for f in folders]
    variants = {"body rule (no hand tracking)": None, "default": HandTrackingParams(),
                "no crop smoothing": HandTrackingParams(hold=1.0, crop_cutoff=1e6,
                                                        angle_cutoff=1e6),
                "crop smoothing 2 Hz": HandTrackingParams(crop_cutoff=2.0, angle_cutoff=2.0),
                "no lead": HandTrackingParams(lead=False),
                "presence 0.3 / 0.15": HandTrackingParams(present_score=0.3,
                                                          absent_score=0.15),
                "presence 0.5 / 0.35": HandTrackingParams(present_score=0.5,
                                                          absent_score=0.35)}
    rows: list[dict] = []

    def measure(label: dict, preds: list[np.ndarray]) -> None:
        tally = Tally()
        for pred, clip in zip(preds, clips, strict=True):
            tally.add(pred, clip)
        r = tally.result()
        rows.append({**label, "pck@0.1": round(r["pck@0.1"]["all"], 4),
                     "hand_pck@0.05": round(r["hand_pck@0.05"], 4),
                     "hand_jitter": round(r["hand_jitter"], 2)})
        print(json.dumps(rows[-1]), flush=True)

    default_raws: list[np.ndarray] = []
    for name, params in variants.items():
        raws = [run_raw(pair, clip, params) for clip in clips]
        default_raws = raws if name == "default" else default_raws
        measure({"hand tracking": name, "smoothing": "none"}, raws)
        measure({"hand tracking": name, "smoothing": "causal"}, [causal(r) for r in raws])
        measure({"hand tracking": name, "smoothing": "offline (default)"},
                [offline(r) for r in raws])
    for window, degree, outlier, weighted, gain in itertools.product(
            (0.04, 0.08, 0.16, 0.25), (1, 2), (0.3, 0.5), (False, True), (0.0, 0.6, 2.0)):
        params = OfflineParams(window, degree, outlier, 2, 0.1, weighted, gain)
        measure({"hand tracking": "default", "smoothing": "offline",
                 **dataclasses.asdict(params)}, [offline(r, params) for r in default_raws])
    return rows


def main() -> int:
    """Run the benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-onnx", required=True, help="whole-body model (--with-keypoints)")
    parser.add_argument("--hand-onnx", required=True, help="hand model (--with-keypoints)")
    parser.add_argument("--mediapipe", default=None, help="python of MediaPipe's own venv")
    parser.add_argument("--num", type=int, default=20, help="renderer clips (seed 21)")
    parser.add_argument("--root", default="runs/hands_video", help="clips are rendered here")
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--tune", action="store_true", help="sweep settings on tuning clips")
    args = parser.parse_args()

    body = load_onnx(args.body_onnx, None, 0.0, 1)
    pair = load_onnx(args.body_onnx, args.hand_onnx, 0.0, 1, hand_decoder="dark")  # the job's
    pair_argmax = load_onnx(args.body_onnx, args.hand_onnx, 0.0, 1)
    root = Path(args.root)
    if args.tune:
        rows = tune(root / "tune", min(args.num, 8), pair)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return 0
    sets = clip_folders(root, args.num, TEST_SEED, PASTED_SEED)
    results = evaluate_sets(sets, body, pair, pair_argmax, args.mediapipe)
    pasted = sets["pasted clip"][0]
    speed = job_speed(pasted, {"body model alone": body,
                               "hand tracking, DARK + offline smoother (default)": pair})
    if args.mediapipe:
        speed["MediaPipe Holistic 0.10.14"] = mediapipe(args.mediapipe,
                                                        [_folder_only(pasted)])[1]
    print(summary_table(results, speed))
    for set_name, rows in results.items():
        print(f"\n{set_name}, PCK@0.1 per group:\n{group_table(rows, 'pck@0.1')}")
        print(f"\n{set_name}, PCK@0.05 per group:\n{group_table(rows, 'pck@0.05')}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"results": results, "fps": speed}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

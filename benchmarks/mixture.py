"""Real-data converters and mixture training, measured: conversion throughput, sampled fractions,
and a short training run on synthetic data alone vs a synthetic + converted mixture.

    PYTHONPATH=. python benchmarks/mixture.py --synth runs/demo/data --out runs/mixture_bench \
        [--persons 600] [--steps 400] [--skip-training]

1. Writes a COCO-WholeBody and a Halpe annotation file for multi-person scenes (synthetic
   signers rendered at 96-176 px, pasted into 640x360 textured canvases, 3 per scene), so the
   converters' input is what a real release looks like: several people per image, JSON boxes.
2. Converts both (`signlang_jax.data.convert`) and prints persons/s; converts a 300-frame
   640x360 synthetic clip with a .pose of its labels (`convert pose`) and prints frames/s.
3. Draws 10,000 training samples of the mixture `synth:0.5,coco:0.5` through the real pipeline
   (no workers) and prints each source's observed share.
4. Unless --skip-training: trains configs/demo.py for --steps steps twice, from scratch or on
   from a synthetic-only run (--from runs/demo), on the synthetic data alone and on the
   0.5/0.5 mixture, then evaluates both runs on both sources'
   val splits with `signlang_jax.evaluate` (same decoder for all four cells) and prints a table
   plus the mixture run's own per-source validation line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.data import convert
from signlang_jax.keypoint_maps import COCO_WHOLEBODY, HALPE
from signlang_jax.synth import render_sample
from signlang_jax.synth.scene import background

ROOT = Path(__file__).resolve().parent.parent
CANVAS = (640, 360)  # width, height (16:9, as a video frame)
PER_SCENE = 3


def _flat(a: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in a.ravel()]


def write_scenes(folder: Path, persons: int, seed: int = 21) -> tuple[dict, dict]:
    """Scenes of pasted signers and their (COCO-WholeBody, Halpe) annotation dicts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, wholebody, halpe = [], [], []
    width, height = CANVAS
    for scene in range((persons + PER_SCENE - 1) // PER_SCENE):
        canvas = background(rng, width)[:height].copy()
        images.append({"id": scene, "file_name": f"scene_{scene:05d}.jpg", "width": width,
                       "height": height})
        for slot in range(min(PER_SCENE, persons - scene * PER_SCENE)):
            side = int(rng.integers(96, 177))
            ox = int(slot * width / PER_SCENE + rng.integers(0, max(1, width // PER_SCENE
                                                                     - side)))
            oy = int(rng.integers(0, height - side))
            image, label = render_sample(seed, scene * PER_SCENE + slot, side)
            canvas[oy:oy + side, ox:ox + side] = image
            kp = np.array([[k["x"] + ox, k["y"] + oy, 2 if k["visible"] else 1]
                           for k in label["keypoints"]])
            zeros = np.zeros
            common = {"id": len(wholebody), "image_id": scene, "iscrowd": 0,
                      "bbox": [ox - 0.5, oy - 0.5, side, side]}
            wholebody.append({**common, "keypoints": _flat(kp[:17]),
                              "foot_kpts": _flat(zeros((6, 3))),
                              "face_kpts": _flat(zeros((68, 3))),
                              "lefthand_kpts": _flat(kp[17:38]),
                              "righthand_kpts": _flat(kp[38:59]),
                              "lefthand_valid": True, "righthand_valid": True})
            halpe.append({**common, "keypoints": _flat(np.concatenate(
                [kp[:17], zeros((3 + 6 + 68, 3)), kp[17:59]]))})
        cv2.imwrite(str(folder / images[-1]["file_name"]),
                    cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return ({"images": images, "annotations": wholebody},
            {"images": images, "annotations": halpe})


def time_conversions(out: Path, persons: int) -> Path:
    """Write the scenes, convert them in both formats, print persons/s; the COCO output."""
    scenes = out / "scenes"
    wholebody, halpe = write_scenes(scenes, persons)
    for name, layout, data, workers in (("coco", COCO_WHOLEBODY, wholebody, 1),
                                        ("coco", COCO_WHOLEBODY, wholebody, 2),
                                        ("halpe", HALPE, halpe, 1)):
        ann = out / f"{name}.json"
        ann.write_text(json.dumps(data))
        target = out / name
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        kept, dropped = convert.convert(layout, ann, scenes, target, convert.ConvertOptions(),
                                        workers=workers)
        seconds = time.perf_counter() - start
        print(f"convert {name}, {workers} worker(s): {kept} persons in {seconds:.2f} s = "
              f"{kept / seconds:.0f} persons/s (256 px crops from {CANVAS[0]}x{CANVAS[1]} "
              f"JPEG scenes of {PER_SCENE}; dropped {sum(dropped.values())})")
    return out / "coco"


def time_pose_conversion(out: Path, frames: int = 300) -> None:
    """A synthetic 640x360 clip + our .pose of its labels -> `convert pose`; frames/s."""
    from signlang_jax.data.convert_pose import PoseOptions, convert_pose
    from signlang_jax.data.sequence_files import KeypointSequence, write_pose
    from signlang_jax.synth.clips import render_clip

    folder = out / "pose_clip"
    folder.mkdir(parents=True, exist_ok=True)
    images, labels, info = render_clip(31, 0, 640, 360, frames)
    writer = cv2.VideoWriter(str(folder / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                             (640, 360))
    for image in images:
        writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    writer.release()
    points = np.array([[[k["x"], k["y"], 0.9 if k["visible"] else 0.3] for k in label[
        "keypoints"]] for label in labels], np.float32)
    write_pose(folder / "clip.pose", KeypointSequence(
        points, 25.0, 640, 360, np.ones(frames, bool),
        np.tile(np.float32([320, 180, 360]), (frames, 1))))
    pair = [(folder / "clip.pose", folder / "clip.mp4")]
    shutil.rmtree(out / "pose_warmup", ignore_errors=True)
    convert_pose(pair, out / "pose_warmup", PoseOptions(every=50))  # imports, page cache
    shutil.rmtree(out / "pose_warmup")
    for label, options in (("--every 1 --min-change 0", PoseOptions(every=1, min_change=0.0)),
                           ("defaults (--every 5 --min-change 1)", PoseOptions())):
        target = out / "pose_out"
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        plans, dropped = convert_pose(pair, target, options)
        seconds = time.perf_counter() - start
        kept = sum(len(p.frames) for p in plans)
        print(f"convert pose, {label}: {kept} of {frames} frames kept in {seconds:.2f} s = "
              f"{kept / seconds:.0f} frames written/s, {frames / seconds:.0f} video frames/s "
              f"(640x360 mp4v, 256 px crops; dropped {dict(dropped)})")


def sampled_shares(synth: Path, coco: Path, draws: int = 10_000) -> None:
    """Draw `draws` training samples of the 0.5/0.5 mixture; print each source's share."""
    from configs import demo
    from signlang_jax.data.pipeline import make_dataset
    from signlang_jax.data.sources import records_for

    config = demo.get_config()
    config.data.synthetic_num = 0
    config.data.sources = f"synth={synth}:0.5,coco={coco}:0.5"
    config.augment.color_prob = config.augment.blur_prob = 0.0
    records = records_for(config, "train")
    batches = iter(make_dataset(config, "train", source=records, num_workers=0, batch_size=100))
    start = time.perf_counter()
    ids = np.concatenate([records.source_ids(next(batches)["index"])
                          for _ in range(draws // 100)])
    seconds = time.perf_counter() - start
    shares = {n: float((ids == k).mean()) for k, n in enumerate(records.names)}
    print(f"sampled {len(ids)} training samples in {seconds:.0f} s: "
          + ", ".join(f"{n} {s:.4f}" for n, s in shares.items()) + " (weights 0.5 / 0.5); "
          f"train records: {records.lengths()}")


def latest_step(run: Path) -> int:
    """The newest checkpoint step of a training run."""
    return max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())


def train(workdir: Path, steps: int, base: Path | None, *flags: str) -> float:
    """Train configs/demo.py for `steps` steps, from scratch or on from run `base`; seconds."""
    shutil.rmtree(workdir, ignore_errors=True)
    total = steps + (latest_step(base) if base else 0)
    command = [sys.executable, "-m", "signlang_jax.main", "--config", "configs/demo.py",
               "--workdir", str(workdir), "--config.data.synthetic_num=0",
               f"--config.train.num_steps={total}", f"--config.train.eval_every_steps={total}",
               f"--config.train.checkpoint_every_steps={total}", *flags]
    if base:  # a mixture is other data than the base run's: start a new data order
        command += ["--resume", str(base), "--config.train.on_data_change=restart_epoch"]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def evaluate(workdir: Path, data: Path, out: Path) -> dict:
    """`signlang_jax.evaluate` of a run on a dataset's val split; its metrics.json."""
    subprocess.run([sys.executable, "-m", "signlang_jax.evaluate", "--checkpoint", str(workdir),
                    "--data-root", str(data), "--out", str(out), "--worst", "0"],
                   cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def compare_training(synth: Path, coco: Path, out: Path, steps: int,
                     base: Path | None = None, seed: int = 0) -> None:
    """Synthetic-only vs mixture, same steps; both evaluated on both val splits.

    With `base` (a synthetic-only run, e.g. runs/demo) both continue from its checkpoint, and
    `base` itself is evaluated too: the fine-tuning a user with real data would do.
    """
    runs = {"synthetic only": (out / "run_synth", (f"--config.data.root={synth}",)),
            "mixture 0.5/0.5": (out / "run_mix", (
                f"--config.data.sources=synth={synth}:0.5,coco={coco}:0.5",))}
    rows = []
    if base:
        for source, data in (("synth", synth), ("coco", coco)):
            m = evaluate(base, data, out / f"eval_base_{source}")
            rows.append((f"base (step {latest_step(base)})", source, m["num_images"],
                         m["pck@0.1"]["all"], m["pck@0.1"]["body"], m["pck@0.1"]["left_hand"],
                         m["pck@0.1"]["right_hand"], m["hand_pck@0.2"]["hands"], 0.0))
    for label, (workdir, flags) in runs.items():
        seconds = train(workdir, steps, base, f"--config.seed={seed}", *flags)
        for source, data in (("synth", synth), ("coco", coco)):
            m = evaluate(workdir, data, out / f"eval_{workdir.name}_{source}")
            rows.append((label, source, m["num_images"], m["pck@0.1"]["all"],
                         m["pck@0.1"]["body"], m["pck@0.1"]["left_hand"],
                         m["pck@0.1"]["right_hand"], m["hand_pck@0.2"]["hands"], seconds))
    start = f"from {base} " if base else "from scratch, "
    print(f"\n{steps} steps each, {start}(configs/demo.py), evaluate on each source's val split:")
    print(f"{'run':18} {'val of':6} {'n':>4} {'PCK@.1':>7} {'body':>6} {'L hand':>7} "
          f"{'R hand':>7} {'hand PCK@.2 own box':>20} {'train s':>8}")
    for row in rows:
        print(f"{row[0]:18} {row[1]:6} {row[2]:4d} {row[3]:7.3f} {row[4]:6.3f} {row[5]:7.3f} "
              f"{row[6]:7.3f} {row[7]:20.3f} {row[8]:8.0f}")
    lines = (out / "run_mix" / "metrics.jsonl").read_text().splitlines()
    val = [json.loads(line) for line in lines if '"val/loss"' in line][-1]
    print("mixture run's own validation: " + ", ".join(
        f"{k}={val[k]:.3f}" for k in ("val/pck@0.1", "val/synth/pck@0.1", "val/coco/pck@0.1",
                                      "val/synth/hand_pck@0.2", "val/coco/hand_pck@0.2")))


def main() -> None:
    """Run the measurements the module docstring lists."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", type=Path, default=Path("runs/demo/data"),
                        help="synthetic dataset (e.g. the demo run's data)")
    parser.add_argument("--out", type=Path, default=Path("runs/mixture_bench"))
    parser.add_argument("--persons", type=int, default=600)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="config.seed of both runs")
    parser.add_argument("--from", dest="base", type=Path, default=None,
                        help="continue both runs from this synthetic-only run (e.g. runs/demo) "
                        "instead of training from scratch")
    args = parser.parse_args()
    if not (args.synth / "labels").is_dir():
        parser.error(f"--synth {args.synth} has no labels/: run `make demo` or "
                     "python -m signlang_jax.synth --out DIR first")
    args.out.mkdir(parents=True, exist_ok=True)
    coco = time_conversions(args.out, args.persons)
    time_pose_conversion(args.out)
    sampled_shares(args.synth, coco)
    if not args.skip_training:
        compare_training(args.synth.resolve(), coco.resolve(), args.out.resolve(), args.steps,
                         args.base.resolve() if args.base else None, args.seed)


if __name__ == "__main__":
    main()

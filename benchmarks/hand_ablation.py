"""Hand-model ablations at equal training time, over seeds, scored as the second stage.

    PYTHONPATH=. python benchmarks/hand_ablation.py --body runs/demo --data runs/demo/data \
        [--seeds 0 1] [--variants baseline "occluded weight 0" ...] [--root runs/hand_ablation]

Every variant trains `configs/demo_hand.py` with its overrides. Equal time, not equal steps:
a short pilot run measures each variant's training images/s, and its step count is the
baseline's 1500 scaled by its speed relative to the baseline's (so a bigger crop trains fewer
steps). Variants whose step costs what another's does (SAME_COMPUTE) share its pilot: pilots of
equal work differ by the machine's noise alone (up to 15% on this shared 2-core one).
Each run is then scored as the second stage of the demo body model on the val split
(`python -m signlang_jax.evaluate --hand-checkpoint`, both hands): hand PCK@0.05 (whole-body
box), own-box PCK@0.2 and EPE, with argmax and with DARK decoding of the hand heatmaps. Prints
the mean over seeds and each seed's figure; runs already trained and scored are reused.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE_STEPS = 1500
# The ablations were run before UDP coordinates won: every row but "UDP heatmap coordinates"
# trains configs/demo_hand.py as it was then, plain coordinates.
PLAIN = "--config.model.udp=False"
BASELINE = "baseline (96 px crops, width 32, occluded weight 0.5)"
VARIANTS: dict[str, list[str]] = {
    BASELINE: [PLAIN],
    "occluded weight 0": [PLAIN, "--config.data.occluded_weight=0.0"],
    "occluded weight 1": [PLAIN, "--config.data.occluded_weight=1.0"],
    "128 px crops": [PLAIN, "--config.data.image_size=128", "--config.model.heatmap_size=32"],
    "80 px crops": [PLAIN, "--config.data.image_size=80", "--config.model.heatmap_size=20"],
    "width 48": [PLAIN, "--config.model.width=48"],
    "weight average (EMA 0.998)": [PLAIN, "--config.optim.ema=True"],
    "UDP heatmap coordinates": ["--config.model.udp=True"],  # configs/demo_hand.py now
    # 192 bins (half-pixel) per axis, label sigma 4 bins = 2 crop px (RTMPose-hand's 2.8 px at
    # 256 px crops, scaled to 96); the heatmaps' is 1.5 heatmap px = 6 crop px.
    "SimCC head (sigma 2 px)": [PLAIN, "--config.model.head=simcc",
                                "--config.model.heatmap_size=192", "--config.model.sigma=4.0"],
    "SimCC head, 1 deconv layer": [PLAIN, "--config.model.head=simcc",
                                   "--config.model.heatmap_size=192", "--config.model.sigma=4.0",
                                   "--config.model.deconv_layers=1"],
    # The heatmaps' label width (6 crop px = 12 bins).
    "SimCC head, 1 deconv layer, sigma 6 px": [
        PLAIN, "--config.model.head=simcc", "--config.model.heatmap_size=192",
        "--config.model.sigma=12.0", "--config.model.deconv_layers=1"],
}


# Variants whose step costs exactly what another's does (loss weights, target coordinates and
# label widths change no array shape) train that variant's steps: their own pilots would differ
# only by the machine's noise. (The occluded-weight rows in docs/HANDS.md predate this rule.)
SAME_COMPUTE = {
    "occluded weight 0": BASELINE, "occluded weight 1": BASELINE,
    "UDP heatmap coordinates": BASELINE,
    "SimCC head, 1 deconv layer, sigma 6 px": "SimCC head, 1 deconv layer",
}


def slug(name: str) -> str:
    """A folder name for a variant."""
    return "".join(c if c.isalnum() else "_" for c in name.split(" (")[0]).strip("_")


def train(workdir: Path, data: str, overrides: list[str], seed: int, steps: int) -> float:
    """Train one run (resumes or reports when done); wall seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "signlang_jax.main", "--config", "configs/demo_hand.py",
                    "--workdir", str(workdir), f"--config.data.root={data}",
                    f"--config.seed={seed}", f"--config.train.num_steps={steps}",
                    f"--config.train.eval_every_steps={steps}",
                    f"--config.train.checkpoint_every_steps={steps}", *overrides],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def images_per_second(workdir: Path) -> float:
    """Median training images/s logged by a run (its first logs, compilation, left out)."""
    rates = [json.loads(line)["train/images_per_sec"]
             for line in (workdir / "metrics.jsonl").read_text().splitlines()
             if "train/images_per_sec" in line]
    return statistics.median(rates[2:] or rates)


def score(body: str, hand: Path, decoder: str, out: Path) -> dict:
    """Both hands' second-stage figures on val (evaluate's metrics.json 'hands'); a run's
    earlier scoring is reused (delete its eval_* folders after retraining it)."""
    if not (out / "metrics.json").is_file():
            subprocess.run([sys.executable, "-m", "signlang_jax.evaluate", "--checkpoint", body,
                        "--hand-checkpoint", str(hand), "--decoder", decoder, "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hands = json.loads((out / "metrics.json").read_text())["hands"]["body_plus_hand_stage"]
    return hands["hands"]


def main() -> int:
    """Train, score and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body", required=True, help="the body model's run (second stage of)")
    parser.add_argument("--data", required=True, help="the dataset root (demo data)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--root", default="runs/hand_ablation")
    args = parser.parse_args()
    root = Path(args.root)
    speed: dict[str, float] = {}
    for name in dict.fromkeys(SAME_COMPUTE.get(n, n) for n in [BASELINE, *args.variants]):
        pilot = root / "pilot" / slug(name)  # pilot runs: each variant's training speed
        if not (pilot / "metrics.jsonl").is_file():
            train(pilot, args.data, VARIANTS[name] + ["--config.train.log_every_steps=10"],
                  0, 120)
        speed[name] = images_per_second(pilot)
    rows = {}
    for name in args.variants:
        pace = speed[SAME_COMPUTE.get(name, name)]
        steps = round(BASE_STEPS * pace / speed[BASELINE])
        rows[name] = {"steps": steps, "images_per_sec": round(pace, 1), "seeds": {}}
        for seed in args.seeds:
            run = root / f"{slug(name)}_seed{seed}"
            seconds = train(run, args.data, VARIANTS[name], seed, steps)
            figures = {decoder: score(args.body, run, decoder, run / f"eval_{decoder}")
                       for decoder in ("argmax", "dark")}
            rows[name]["seeds"][seed] = {"seconds": round(seconds), **figures}
            print(json.dumps({name: rows[name]["seeds"][seed]}), flush=True)
    print("\n| variant | steps | hand PCK@0.05 argmax / DARK | own-box PCK@0.2 argmax / DARK "
          "| EPE px |\n|---|---|---|---|---|")
    for name, row in rows.items():
        seeds = list(row["seeds"].values())

        def mean(decoder: str, key: str, seeds: list = seeds) -> str:
            values = [s[decoder][key] for s in seeds]
            return f"{statistics.mean(values):.3f} ({', '.join(f'{v:.3f}' for v in values)})"

        print(f"| {name} | {row['steps']} | {mean('argmax', 'pck@0.05')} / "
              f"{mean('dark', 'pck@0.05')} | {mean('argmax', 'pck@0.2_own_box')} / "
              f"{mean('dark', 'pck@0.2_own_box')} | {mean('argmax', 'epe_px')} |")
    (root / "results.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Float vs int8 ONNX of the body + hand pair: val accuracy and speed on this CPU, side by side.

    PYTHONPATH=. python benchmarks/int8.py --data runs/demo/data \
        --float runs/demo/model.onnx runs/demo/hand.onnx --int8 body_int8.onnx hand_int8.onnx

Both pairs run through `OnnxPredictor` (onnxruntime only, the hand stage with its crop rule) on
every image of the dataset's val split at its own size, argmax decoding as `evaluate` uses by
default. Prints PCK@0.1 over all points and per group, hand PCK@0.05 (whole-body box) and
own-box PCK@0.2 (`evaluation.metrics.hand_metrics`), and milliseconds per image (the pair, batch
1, the mean of the val split after one warm-up image), alternating the two pairs image by image
so both meet the same machine load. The int8 files come from `python -m interop.to_onnx
... --with-keypoints --int8`.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from configs import default
from signlang_jax.data.sources import load_split, read_image
from signlang_jax.evaluation.metrics import hand_metrics, pck_counts, pck_summary
from signlang_jax.inference.onnx_runtime import OnnxPredictor


def main() -> int:
    """Run both pairs on val and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset root (its val split is used)")
    parser.add_argument("--float", nargs=2, required=True, metavar=("BODY", "HAND"))
    parser.add_argument("--int8", nargs=2, required=True, metavar=("BODY", "HAND"))
    args = parser.parse_args()
    data = default.get_config().data
    data.root = args.data
    samples = load_split(data, "val")
    pairs = {"float32": OnnxPredictor(*args.float), "int8": OnnxPredictor(*args.int8)}
    preds = {name: [] for name in pairs}
    seconds = {name: [] for name in pairs}
    for n, sample in enumerate(samples):
        image = read_image(sample.image_path)
        for name, pair in pairs.items():
            start = time.perf_counter()
            preds[name].append(pair.predict_image(image))
            if n:  # the first image warms the sessions up
                seconds[name].append(time.perf_counter() - start)
    gt = np.stack([s.keypoints for s in samples])
    bbox = np.stack([s.bbox for s in samples])
    rows = {}
    for name in pairs:
        pred = np.stack(preds[name])
        pck = pck_summary(*pck_counts(pred[..., :2], gt, bbox, 0.1))
        hands = hand_metrics(pred, gt, bbox)["hands"]
        rows[name] = {"pck@0.1": pck["all"], "body": pck["body"],
                      "hand_pck@0.05": hands["pck@0.05"],
                      "hand_pck@0.2_own_box": hands["pck@0.2_own_box"],
                      "ms_per_image": 1000 * float(np.mean(seconds[name]))}
        print(json.dumps({name: rows[name]}), flush=True)
    print(f"\nval split of {args.data}: {len(samples)} images\n")
    print("| pair | PCK@0.1 all | body | hand PCK@0.05 | hand own-box PCK@0.2 | ms per image |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['pck@0.1']:.4f} | {r['body']:.4f} | {r['hand_pck@0.05']:.4f} | "
              f"{r['hand_pck@0.2_own_box']:.4f} | {r['ms_per_image']:.1f} |")
    speedup = rows["float32"]["ms_per_image"] / rows["int8"]["ms_per_image"]
    print(f"\nint8 is {speedup:.2f}x the float32 pair's speed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

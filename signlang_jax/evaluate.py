"""`python -m signlang_jax.evaluate`: score a checkpoint on a dataset in the seed layout.

Reports PCK@0.05/0.1 (overall, per group, per keypoint), end-point error in original-image
pixels, heatmap MSE per keypoint, mean OKS and COCO OKS AP/AR (pycocotools, our sigmas) for the
whole body, each part at whole-body scale, and each hand with its own box. Writes metrics.json,
a per-keypoint PCK bar chart and a grid of the worst predictions (ground truth white, prediction
coloured) to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from signlang_jax.codec import per_keypoint_mse, render_heatmaps
from signlang_jax.data.dataset import DatasetError
from signlang_jax.data.pipeline import (
    PackedSource,
    SampleSource,
    load_records,
    make_dataset,
    record_image,
)
from signlang_jax.draw import draw_points, draw_skeleton, image_grid, write_rgb
from signlang_jax.inference import (
    DECODERS,
    Predictor,
    add_checkpoint_arguments,
    load_model,
    to_original,
)
from signlang_jax.keypoints import GROUP_COLORS, GROUPS, KEYPOINT_NAMES, group_of
from signlang_jax.metrics import (
    coco_keypoint_ap,
    normalized_distances,
    oks,
    part_boxes,
    pck_counts,
    pck_summary,
)
from signlang_jax.train import TrainingError

GROUP_NAMES = ("all", *GROUPS)


def predict_split(predictor: Predictor, records: SampleSource | PackedSource, batch_size: int,
                  progress: bool = True) -> dict[str, np.ndarray]:
    """Predictions for every record of a split (`load_records`), in original-image pixels.

    Returns pred (M, K, 3), gt (M, K, 3), bbox (M, 4), mse (M, K) heatmap MSE.
    """
    config = predictor.config
    dataset = make_dataset(config, "val", source=records, batch_size=batch_size, shard_index=0,
                           shard_count=1)
    out = {"pred": [], "gt": [], "bbox": [], "mse": []}
    bar = tqdm(total=len(records), unit="img", disable=not progress, file=sys.stderr)
    for batch in dataset:
        keypoints, heatmaps = predictor.predict_batch(batch["image"])
        targets = render_heatmaps(jnp.asarray(batch["keypoints"]), config.data.image_size,
                                  heatmaps.shape[1], config.model.sigma)
        mse = np.asarray(per_keypoint_mse(jnp.asarray(heatmaps), targets))
        for i in np.flatnonzero(batch["mask"]):
            record = records[int(batch["index"][i])]
            out["pred"].append(to_original(keypoints[i], batch["affine"][i]))
            out["gt"].append(record["keypoints"])
            out["bbox"].append(record["bbox"])
            out["mse"].append(mse[i])
        bar.update(int(batch["mask"].sum()))
    bar.close()
    return {k: np.stack(v) for k, v in out.items()}


def compute_metrics(pred: np.ndarray, gt: np.ndarray, bbox: np.ndarray,
                    mse: np.ndarray) -> dict:
    """Every reported metric from predictions and ground truth in the same pixels."""
    metrics: dict = {"num_images": len(gt)}
    for t in (0.05, 0.1):
        summary = pck_summary(*pck_counts(pred, gt, bbox, t))
        metrics[f"pck@{t}"] = {g: summary[g] for g in GROUP_NAMES}
        metrics[f"pck@{t}_per_keypoint"] = {n: summary[n] for n in KEYPOINT_NAMES}
    visible = gt[..., 2] > 0
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    groups = {"all": range(gt.shape[1]), **GROUPS}
    metrics["epe_px"] = {g: float(dist[:, list(i)][visible[:, list(i)]].mean())
                         if visible[:, list(i)].any() else math.nan for g, i in groups.items()}
    metrics["heatmap_mse"] = float((mse * visible).sum() / max(visible.sum(), 1))
    metrics["heatmap_mse_per_keypoint"] = {
        n: float(mse[visible[:, k], k].mean()) if visible[:, k].any() else math.nan
        for k, n in enumerate(KEYPOINT_NAMES)}
    area = bbox[:, 2] * bbox[:, 3]
    metrics["oks_mean"] = float(np.nanmean(oks(pred, gt, area)))
    metrics["oks_ap"] = {"all": coco_keypoint_ap(pred, gt, bbox)}
    for group, indices in GROUPS.items():
        metrics["oks_ap"][group] = coco_keypoint_ap(pred, gt, bbox, indices)
    for hand in ("left_hand", "right_hand"):
        metrics["oks_ap"][f"{hand}_own_box"] = coco_keypoint_ap(
            pred, gt, part_boxes(gt, GROUPS[hand]), GROUPS[hand])
    return metrics


def format_table(metrics: dict) -> str:
    """The compact table the CLI prints."""
    ap = metrics["oks_ap"]
    lines = [f"{'':11} {'PCK@0.05':>8} {'PCK@0.1':>8} {'EPE px':>7} {'OKS AP':>7} "
             f"{'AP own box':>10}"]
    for g in GROUP_NAMES:
        own = ap.get(f"{g}_own_box", {}).get("AP", math.nan)
        lines.append(f"{g:11} {metrics['pck@0.05'][g]:8.4f} {metrics['pck@0.1'][g]:8.4f} "
                     f"{metrics['epe_px'][g]:7.2f} {ap[g]['AP']:7.4f} "
                     f"{'' if math.isnan(own) else f'{own:.4f}':>10}")
    lines.append(f"images {metrics['num_images']}, mean OKS {metrics['oks_mean']:.4f}, "
                 f"heatmap MSE {metrics['heatmap_mse']:.3e}")
    return "\n".join(lines)


def pck_bar_chart(per_keypoint: dict[str, float], title: str) -> np.ndarray:
    """An RGB bar chart of per-keypoint PCK, bars coloured by group, names rotated."""
    bar_w, plot_h, top, label_h, left = 14, 300, 40, 190, 50
    width = left + bar_w * len(per_keypoint) + 20
    chart = np.full((top + plot_h + label_h, width, 3), 255, np.uint8)
    cv2.putText(chart, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1,
                cv2.LINE_AA)
    for tick in (0.0, 0.5, 1.0):
        y = top + int(plot_h * (1 - tick))
        cv2.line(chart, (left, y), (width - 20, y), (200, 200, 200), 1)
        cv2.putText(chart, f"{tick:.1f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0))
    for k, (name, value) in enumerate(per_keypoint.items()):
        x = left + k * bar_w
        if not math.isnan(value):
            y = top + int(plot_h * (1 - value))
            cv2.rectangle(chart, (x + 1, y), (x + bar_w - 2, top + plot_h),
                          GROUP_COLORS[group_of(k)], -1)
        label = np.full((bar_w, label_h, 3), 255, np.uint8)
        cv2.putText(label, name, (2, bar_w - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1,
                    cv2.LINE_AA)
        chart[top + plot_h:, x:x + bar_w] = cv2.rotate(label, cv2.ROTATE_90_CLOCKWISE)
    return chart


def worst_grid(records: SampleSource | PackedSource, pred: np.ndarray, gt: np.ndarray,
               bbox: np.ndarray, count: int, tile: int = 256) -> np.ndarray:
    """Grid of the `count` images with the largest mean normalised error."""
    error = normalized_distances(pred, gt, bbox)
    error = np.where(gt[..., 2] > 0, error, np.nan)
    order = np.argsort(-np.nan_to_num(np.nanmean(error, axis=1), nan=-1.0))[:count]
    tiles = []
    for i in order:
        image = record_image(records[i])
        scale = tile / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        canvas = np.zeros((tile, tile, 3), np.uint8)
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        canvas[:size[1], :size[0]] = resized
        scaled_gt, scaled_pred = gt[i].copy(), pred[i].copy()
        scaled_gt[:, :2] = (gt[i, :, :2] + 0.5) * scale - 0.5
        scaled_pred[:, :2] = (pred[i, :, :2] + 0.5) * scale - 0.5
        canvas = draw_points(canvas, scaled_gt, (255, 255, 255))
        tiles.append(draw_skeleton(canvas, scaled_pred, threshold=0.0, draw_hidden=False))
    return image_grid(tiles, columns=4)


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.evaluate",
                                     description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    parser.add_argument("--config", default=None,
                        help="optional config file whose data/augment fields replace the "
                        "checkpoint's (the architecture always comes from the checkpoint)")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder (default: the one the model was trained on)")
    parser.add_argument("--images-dir", default=None, help="image folder under the root")
    parser.add_argument("--labels-dir", default=None, help="label folder under the root")
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--flip-test", action="store_true",
                        help="average with the prediction on the mirrored image")
    parser.add_argument("--decoder", choices=DECODERS, default="argmax",
                        help="argmax + quarter-pixel shift (default) or DARK refinement")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default=None, help="report folder (default: CHECKPOINT/eval)")
    parser.add_argument("--worst", type=int, default=8, help="images in the worst-cases grid")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Evaluate; print the table; write the report; return the exit code."""
    args = build_parser().parse_args(argv)
    try:
        model, config, step = load_model(args.checkpoint, args.step)
        if args.config:
            from ml_collections import config_flags

            override = config_flags.load_config_file(args.config)
            config.data.update(override.data)
            config.augment.update(override.augment)
        for field, value in (("root", args.data_root), ("images_dir", args.images_dir),
                             ("labels_dir", args.labels_dir)):
            if value is not None:
                config.data[field] = value
        config.data.synthetic_num = 0
        records = load_records(config.data, args.split)
        predictor = Predictor(model, config, args.decoder, args.flip_test)
        print(f"evaluating step {step} of {args.checkpoint} on {len(records)} {args.split} "
              f"images of {config.data.root} (decoder {args.decoder}, flip test "
              f"{'on' if args.flip_test else 'off'})", file=sys.stderr)
        result = predict_split(predictor, records, args.batch_size)
    except (DatasetError, TrainingError, ValueError, OSError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    metrics = compute_metrics(result["pred"], result["gt"], result["bbox"], result["mse"])
    metrics.update({"checkpoint": str(args.checkpoint), "step": step, "split": args.split,
                    "decoder": args.decoder, "flip_test": args.flip_test})
    print(format_table(metrics))
    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_rgb(str(out / "pck_per_keypoint.png"),
              pck_bar_chart(metrics["pck@0.1_per_keypoint"], f"PCK@0.1 per keypoint, step {step}"))
    if args.worst > 0:
        write_rgb(str(out / "worst.jpg"), worst_grid(records, result["pred"], result["gt"],
                                                     result["bbox"], args.worst))
    print(f"wrote {out}/metrics.json, pck_per_keypoint.png, worst.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

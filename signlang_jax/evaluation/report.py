"""The evaluation report: the printed tables, the per-keypoint chart, the worst-cases grid.

`signlang_jax.evaluation.scoring` computes the metrics; this module only presents them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.data.sources import PackedSource, SampleSource, record_image
from signlang_jax.draw import (
    GROUP_ENTRIES,
    draw_points,
    draw_skeleton,
    image_grid,
    with_legend,
    write_rgb,
)
from signlang_jax.evaluation.metrics import HAND_PCK_THRESHOLD, normalized_distances
from signlang_jax.files import write_atomic
from signlang_jax.keypoints import GROUP_COLORS, GROUPS, group_of

GROUP_NAMES = ("all", *GROUPS)
HAND_PCK_NAME = f"hand_pck@{HAND_PCK_THRESHOLD}"


def _cell(value: float, width: int) -> str:
    return f"{'' if math.isnan(value) else f'{value:.4f}':>{width}}"


def format_table(metrics: dict) -> str:
    """The compact table the CLI prints."""
    ap, hand = metrics["oks_ap"], metrics[HAND_PCK_NAME]
    own_pck = f"PCK@{HAND_PCK_THRESHOLD}"
    lines = [f"{'':11} {'PCK@0.05':>8} {'PCK@0.1':>8} {'EPE px':>7} {'OKS AP':>7} "
             f"{'own box: AP':>12} {own_pck:>8}"]
    for g in GROUP_NAMES:
        own = ap.get(f"{g}_own_box", {}).get("AP", math.nan)
        lines.append(f"{g:11} {metrics['pck@0.05'][g]:8.4f} {metrics['pck@0.1'][g]:8.4f} "
                     f"{metrics['epe_px'][g]:7.2f} {ap[g]['AP']:7.4f} {_cell(own, 12)} "
                     f"{_cell(hand.get(g, math.nan), 8)}".rstrip())
    lines.append(f"images {metrics['num_images']}, mean OKS {metrics['oks_mean']:.4f}, "
                 f"heatmap MSE {metrics['heatmap_mse']:.3e}, hands {own_pck} with their own "
                 f"box {hand['hands']:.4f}")
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


# The grid's marks: visible ground truth as white rings, the prediction as the skeleton.
WORST_LEGEND = (("truth (visible points)", (255, 255, 255), "ring"),
                *((f"predicted {label}", colour, mark) for label, colour, mark in GROUP_ENTRIES))


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
    return with_legend(image_grid(tiles, columns=4), WORST_LEGEND)


def write_report(out: Path, metrics: dict, records: SampleSource | PackedSource,
                 result: dict[str, np.ndarray], worst: int) -> None:
    """metrics.json, the per-keypoint PCK chart and (worst > 0) the worst-cases grid in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2).encode())
    write_rgb(str(out / "pck_per_keypoint.png"),
              pck_bar_chart(metrics["pck@0.1_per_keypoint"],
                            f"PCK@0.1 per keypoint, step {metrics['step']}"))
    if worst > 0:
        write_rgb(str(out / "worst.jpg"), worst_grid(records, result["pred"], result["gt"],
                                                     result["bbox"], worst))


HAND_COLUMNS = (("pck@0.05", "PCK@0.05"), ("pck@0.1", "PCK@0.1"),
                ("pck@0.2_own_box", "own PCK@0.2"), ("oks_ap_own_box", "own OKS AP"),
                ("epe_px", "EPE px"))


def format_hand_table(hands: dict) -> str:
    """Hand accuracy of the body model and (when run) body + hand stage, side by side."""
    runs = [(name, hands[name]) for name in ("body_model", "body_plus_hand_stage")
            if name in hands]
    lines = ["hands (PCK@0.05/0.1: whole-body box; own: each hand's own box)",
             f"{'':24} {'':11}" + "".join(f" {title:>11}" for _, title in HAND_COLUMNS)]
    for run, rows in runs:
        for part, row in rows.items():
            lines.append(f"{run:24} {part:11}"
                         + "".join(f" {_cell(row[key], 11)}" for key, _ in HAND_COLUMNS))
    return "\n".join(lines)

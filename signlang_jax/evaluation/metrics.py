"""Keypoint metrics on visible ground-truth points (MMPose and COCO conventions).

PCK@t: a visible point is correct if ||pred - gt|| / max(bbox_w, bbox_h) < t (strict), with the
ground-truth person box; accuracy is computed per keypoint, then averaged over the keypoints that
have at least one visible sample (overall and per group). Counts are accumulated batch by batch so
validation over a whole split never holds all predictions.

OKS: COCO's object keypoint similarity with the schema's COCO-WholeBody sigmas and area = person
box w x h; OKS AP/AR come from pycocotools' COCOeval itself (the community's reference). Parts
scored with the whole-body area under-rate hands badly (as in COCO-WholeBody), so hands are also
scored with their own box (the tight box of the visible ground-truth hand points).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence

import numpy as np

from signlang_jax.crop import part_boxes
from signlang_jax.keypoints import GROUPS, KEYPOINT_NAMES, OKS_SIGMAS

HAND_PCK_THRESHOLD = 0.2  # hand PCK with each hand's own box: the hand benchmarks' threshold


def normalized_distances(pred_xy: np.ndarray, gt: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """Distance / max(bbox w, h) for every point: (N, K) from (N, K, 2), (N, K, 3), (N, 4)."""
    scale = np.maximum(bbox[:, 2], bbox[:, 3])[:, None]
    return np.linalg.norm(pred_xy[..., :2] - gt[..., :2], axis=-1) / np.maximum(scale, 1e-6)


def pck_counts(pred_xy: np.ndarray, gt: np.ndarray, bbox: np.ndarray, threshold: float,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Correct and visible counts per keypoint, each (K,) int64, for one batch.

    pred_xy: (N, K, >=2) predictions; gt: (N, K, 3) with visibility in [..., 2]; bbox: (N, 4)
    x, y, w, h; mask: (N,) bool, False for padding samples.
    """
    visible = gt[..., 2] > 0
    if mask is not None:
        visible &= np.asarray(mask, bool)[:, None]
    # As MMPose: a sample whose box has no extent cannot normalise a distance; leave it out.
    visible &= (np.maximum(bbox[:, 2], bbox[:, 3]) > 0)[:, None]
    correct = (normalized_distances(pred_xy, gt, bbox) < threshold) & visible
    return correct.sum(0).astype(np.int64), visible.sum(0).astype(np.int64)


def part_pck_counts(pred_xy: np.ndarray, gt: np.ndarray, indices: Sequence[int],
                    threshold: float, mask: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """PCK counts (len(indices),) of one part normalised by the part's OWN box.

    The hand benchmarks' convention (PCK@0.2 of the hand box): the box is the tight box of the
    visible ground-truth points of the part (`part_boxes`); samples with fewer than two visible
    points of the part have no box and are left out.
    """
    idx = list(indices)
    return pck_counts(pred_xy[:, idx], gt[:, idx], part_boxes(gt, idx), threshold, mask)


def pck_summary(correct: np.ndarray, total: np.ndarray) -> dict[str, float]:
    """PCK overall, per group and per keypoint from accumulated (K,) counts.

    Keypoints without any visible sample are left out of the means (NaN in the per-keypoint
    entries); a group without any is NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        per_keypoint = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    valid = total > 0
    out = {"all": float(per_keypoint[valid].mean()) if valid.any() else float("nan")}
    for group, indices in GROUPS.items():
        idx = np.asarray(indices)
        out[group] = (float(per_keypoint[idx][valid[idx]].mean()) if valid[idx].any()
                      else float("nan"))
    out.update({name: float(v) for name, v in zip(KEYPOINT_NAMES, per_keypoint, strict=True)})
    return out


def oks(pred_xy: np.ndarray, gt: np.ndarray, area: np.ndarray,
        sigmas: np.ndarray | None = None) -> np.ndarray:
    """COCO object keypoint similarity per instance: (N,), NaN where no point is visible.

    e_i = d_i^2 / (2 * area * (2 sigma_i)^2); OKS = mean of exp(-e_i) over visible points.
    pred_xy (N, K, >=2), gt (N, K, 3), area (N,) = object area (bbox w x h), sigmas (K,).
    """
    sigmas = OKS_SIGMAS if sigmas is None else np.asarray(sigmas)
    d2 = np.sum((pred_xy[..., :2] - gt[..., :2]) ** 2, axis=-1)
    e = d2 / (2 * np.maximum(area, np.spacing(1))[:, None] * (2 * sigmas[None]) ** 2)
    visible = gt[..., 2] > 0
    with np.errstate(invalid="ignore"):
        return np.sum(np.exp(-e) * visible, axis=1) / np.sum(visible, axis=1)


def coco_keypoint_ap(pred: np.ndarray, gt: np.ndarray, boxes: np.ndarray,
                     indices: Sequence[int] | None = None) -> dict[str, float]:
    """COCO OKS AP/AR (.50:.05:.95) with pycocotools' COCOeval and our sigmas.

    pred (N, K, 3) = x, y, score; gt (N, K, 3); boxes (N, 4) give each instance's area (w x h)
    and box. `indices` restricts the evaluation to a part (scored with the boxes given).
    Instances whose part has no visible point are left out (with their predictions).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    idx = list(range(gt.shape[1])) if indices is None else list(indices)
    names = [KEYPOINT_NAMES[i] for i in idx]
    images, annotations, results = [], [], []
    for n in range(len(gt)):
        g = gt[n, idx]
        vis = (g[:, 2] > 0).astype(np.float64)
        if not vis.any():  # nothing to score: drop the instance and its prediction
            continue
        flat = np.stack([g[:, 0], g[:, 1], 2 * vis], axis=1).ravel()
        x, y, w, h = (float(v) for v in boxes[n])
        images.append({"id": n + 1})
        annotations.append({"id": n + 1, "image_id": n + 1, "category_id": 1, "iscrowd": 0,
                            "keypoints": flat.tolist(), "num_keypoints": int(vis.sum()),
                            "area": max(w * h, 1.0), "bbox": [x, y, w, h]})
        p = pred[n, idx]
        results.append({"image_id": n + 1, "category_id": 1,
                        "keypoints": p[:, :3].astype(np.float64).ravel().tolist(),
                        "score": float(np.clip(p[:, 2], 0, None).mean())})
    if not annotations:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan"),
                "AR": float("nan")}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "person", "keypoints": names}]}
        coco.createIndex()
        detections = coco.loadRes(results)
        evaluator = COCOeval(coco, detections, "keypoints")
        evaluator.params.kpt_oks_sigmas = OKS_SIGMAS[idx]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2]),
            "AR": float(stats[5])}


HAND_GROUPS = ("left_hand", "right_hand")


def hand_metrics(pred: np.ndarray, gt: np.ndarray, bbox: np.ndarray) -> dict[str, dict]:
    """Hand accuracy both ways, per hand and for both hands together ("hands").

    pck@0.05, pck@0.1: whole-body box; pck@0.2_own_box and oks_ap_own_box: each hand's own box
    (`part_boxes`, the hand benchmarks' convention); epe_px: mean end-point error in the
    pixels of `pred` and `gt`. PCK is averaged over keypoints as `pck_summary`.
    """
    parts = {**{h: list(GROUPS[h]) for h in HAND_GROUPS},
             "hands": list(GROUPS["left_hand"]) + list(GROUPS["right_hand"])}
    out: dict[str, dict] = {}
    visible = gt[..., 2] > 0
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    for name, idx in parts.items():
        row: dict[str, float] = {}
        for t in (0.05, 0.1):
            row[f"pck@{t}"] = mean_pck(*pck_counts(pred[:, idx], gt[:, idx], bbox, t))
        own = [part_pck_counts(pred, gt, GROUPS[h], 0.2) for h in HAND_GROUPS
               if name in (h, "hands")]
        row["pck@0.2_own_box"] = mean_pck(np.concatenate([c for c, _ in own]),
                                           np.concatenate([t for _, t in own]))
        aps = [coco_keypoint_ap(pred, gt, part_boxes(gt, GROUPS[h]), GROUPS[h])["AP"]
               for h in HAND_GROUPS if name in (h, "hands")]
        row["oks_ap_own_box"] = float(np.nanmean(aps)) if np.isfinite(aps).any() else float(
            "nan")
        sel = visible[:, idx]
        row["epe_px"] = float(dist[:, idx][sel].mean()) if sel.any() else float("nan")
        out[name] = row
    return out


def mean_pck(correct: np.ndarray, total: np.ndarray) -> float:
    """Mean over keypoints with a visible sample of correct / total; NaN if none."""
    valid = total > 0
    return float((correct[valid] / total[valid]).mean()) if valid.any() else float("nan")


def acceleration_sums(xy: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jitter of a keypoint sequence: per keypoint, the sum of |x[t+1] - 2 x[t] + x[t-1]| (the
    frame-to-frame acceleration, pixels / frame^2) over the triples of frames where `valid` holds
    in all three, and the number of such triples: (K,) float64 and (K,) int64 from (T, K, 2) and
    (T, K) bool. Sums and counts pool over clips; their ratio is the mean absolute acceleration.
    """
    xy = np.asarray(xy, np.float64)
    valid = np.asarray(valid, bool)
    if len(xy) < 3:
        return np.zeros(xy.shape[1]), np.zeros(xy.shape[1], np.int64)
    accel = np.linalg.norm(xy[2:] - 2 * xy[1:-1] + xy[:-2], axis=-1)
    both = valid[2:] & valid[1:-1] & valid[:-2]
    return np.where(both, accel, 0.0).sum(0), both.sum(0).astype(np.int64)


def hand_pck(hand_counts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """val/hand_pck@0.2 (mean over both hands' keypoints) and per hand, from per-point counts.

    As `pck_summary`: accuracy per keypoint, averaged over keypoints with a visible sample; NaN
    where a hand (or both) never had a box.
    """
    name = f"val/hand_pck@{HAND_PCK_THRESHOLD}"
    per_point = {}
    for hand, (correct, total) in hand_counts.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            per_point[hand] = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    out = {}
    for hand, values in per_point.items():
        out[f"{name}/{hand}"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    both = np.concatenate(list(per_point.values()))
    out[name] = float(np.nanmean(both)) if np.isfinite(both).any() else math.nan
    return out

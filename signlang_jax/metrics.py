"""Keypoint metrics on visible ground-truth points (MMPose conventions).

PCK@t: a visible point is correct if ||pred - gt|| / max(bbox_w, bbox_h) < t (strict), with the
ground-truth person box; accuracy is computed per keypoint, then averaged over the keypoints that
have at least one visible sample (overall and per group). Counts are accumulated batch by batch so
validation over a whole split never holds all predictions.
"""

from __future__ import annotations

import numpy as np

from signlang_jax.keypoints import GROUPS, KEYPOINT_NAMES


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
    correct = (normalized_distances(pred_xy, gt, bbox) < threshold) & visible
    return correct.sum(0).astype(np.int64), visible.sum(0).astype(np.int64)


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

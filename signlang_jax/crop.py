"""Square regions around keypoints and the crops they define: the one home for crop geometry.

A `Region` is a square in frame pixels (centre, side, in-plane angle). `crop_matrix` turns it
into the 2x3 affine that maps frame pixels to the pixels of a C x C crop (OpenCV's pixel-centre
convention, as `signlang_jax.data.augment`), optionally mirrored so that a right hand looks like
a left one. `hand_region` is the rule that places a hand crop, used in three places that must
agree exactly: training crops (from the labels, then jittered), the JAX two-stage predictor and
the onnxruntime runtime (from the body model's points). The video tracker's signer region uses
`square_around` too.

numpy only (no JAX, no torch): a deployment machine with onnxruntime crops identically.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import numpy as np

from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX

HANDS: tuple[str, ...] = ("left_hand", "right_hand")
# Which hand is mirrored into the other's shape: the hand model only ever sees left hands.
MIRRORED_HAND = "right_hand"


@dataclasses.dataclass(frozen=True)
class Region:
    """A square in frame pixels: centre (cx, cy), side length, rotation in degrees (CCW)."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0


@dataclasses.dataclass(frozen=True)
class HandCropRule:
    """Where a hand crop goes (mirrors `config.hand_crop`; docs/HANDS.md explains each value).

    Sizes are relative: `margin` to the extent of the hand points, the minimum and fallback
    sides to the body scale (shoulder width), so the rule does not depend on the image size.
    """

    margin: float = 0.25  # side = (1 + 2 margin) x the larger extent of the hand points
    min_side: float = 0.6  # smallest side, x body scale: a foreshortened hand keeps context
    fallback_side: float = 0.8  # side when the hand points are not trusted, x body scale
    score_threshold: float = 0.3  # a point is trusted at or above this score / visibility
    min_points: int = 3  # fewer trusted hand points: place the crop from wrist and elbow
    reach: float = 0.2  # wrist/elbow rule: centre = wrist + reach x body scale along the forearm
    align: bool = True  # rotate each crop so the hand points up (wrist -> middle knuckle)


def square_around(points: np.ndarray, margin: float, min_side: float = 0.0,
                  angle: float = 0.0) -> Region:
    """The square around `points` (N, 2), side (1 + 2 margin) x their larger extent.

    The extent is measured along the square's own axes, which are rotated by `angle` degrees
    (the region's angle, `crop_matrix`'s sense). The side is at least `min_side` and 1 pixel.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) == 0:
        raise ValueError("square_around needs at least one point")
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    rotated = points @ rotation.T
    lo, hi = rotated.min(0), rotated.max(0)
    side = max(float(np.max(hi - lo)) * (1 + 2 * margin), min_side, 1.0)
    centre = rotation.T @ ((lo + hi) / 2)
    return Region(float(centre[0]), float(centre[1]), side, angle)


def crop_matrix(region: Region, size: int, mirror: bool = False) -> np.ndarray:
    """2x3 float64 affine: frame pixel -> pixel of the size x size crop of `region`.

    The region's centre lands on the crop's centre (size - 1) / 2, its side on `size` pixels,
    its content rotated by `region.angle` degrees counter-clockwise (cv2.getRotationMatrix2D's
    sense); `mirror` then flips the crop horizontally, x -> size - 1 - x.
    """
    scale = size / region.side
    theta = math.radians(region.angle)
    a, b = scale * math.cos(theta), scale * math.sin(theta)
    c = (size - 1) / 2
    m = np.array([[a, b, c - a * region.cx - b * region.cy],
                  [-b, a, c + b * region.cx - a * region.cy]])
    if mirror:
        m = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([m, [0, 0, 1]])
    return m


def region_corners(region: Region) -> np.ndarray:
    """(4, 2) frame-pixel corners of a region's crop (its outline, rotation included)."""
    edge = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    return apply_affine(edge, invert_affine(crop_matrix(region, 1)))


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped through a 2x3 affine."""
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine, as a 2x3 affine."""
    return np.linalg.inv(np.vstack([np.asarray(matrix, np.float64), [0, 0, 1]]))[:2]


def body_scale(keypoints: np.ndarray, threshold: float) -> float:
    """Shoulder width in pixels from (64, 3) points with scores; NaN if nothing is trusted.

    Without both shoulders: 0.35 x the larger side of the box of the trusted body points
    (shoulder width is about that fraction of a sitting signer's visible body), else NaN.
    """
    trusted = keypoints[:, 2] >= threshold
    left, right = KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]
    if trusted[left] and trusted[right]:
        width = float(np.linalg.norm(keypoints[left, :2] - keypoints[right, :2]))
        if width > 1.0:
            return width
    body = np.asarray(GROUPS["body"])
    pts = keypoints[body][trusted[body], :2]
    if len(pts) >= 2:
        return 0.35 * float(np.max(pts.max(0) - pts.min(0)))
    return math.nan


def hand_region(keypoints: np.ndarray, hand: str, rule: HandCropRule,
                scale: float | None = None) -> Region | None:
    """The crop region of `hand` from (64, 3) points (x, y, score or visibility), or None.

    1. At least `rule.min_points` trusted hand points: the square around them and the trusted
       wrists, at least `rule.min_side` x body scale.
    2. Else a trusted wrist (the body's or the hand's): a square of `rule.fallback_side` x body
       scale, moved `rule.reach` x body scale along the elbow -> wrist direction when the elbow
       is trusted (where the hand is when its points are missed).
    3. Else None: no crop, the body model's points stay.
    `scale` is the body scale (default `body_scale(keypoints, rule.score_threshold)`).
    """
    side = hand.removesuffix("_hand")
    trusted = keypoints[:, 2] >= rule.score_threshold
    if scale is None:
        scale = body_scale(keypoints, rule.score_threshold)
    hand_idx = np.asarray(GROUPS[hand])
    wrists = [KEYPOINT_INDEX[f"{side}_wrist"], int(hand_idx[0])]
    wrists = [i for i in wrists if trusted[i]]
    points = keypoints[hand_idx][trusted[hand_idx], :2]
    if not math.isfinite(scale):  # no body to size from: the hand points alone
        scale = float(np.max(np.ptp(points, 0))) if len(points) >= 2 else math.nan
    angle = hand_angle(keypoints, hand, trusted) if rule.align else 0.0
    if len(points) >= rule.min_points:
        around = np.concatenate([points, keypoints[wrists, :2]])
        min_side = rule.min_side * scale if math.isfinite(scale) else 0.0
        return square_around(around, rule.margin, min_side, angle)
    if not wrists or not math.isfinite(scale):
        return None
    wrist = keypoints[wrists[0], :2].astype(np.float64)
    elbow = KEYPOINT_INDEX[f"{side}_elbow"]
    centre = wrist
    if trusted[elbow]:
        forearm = wrist - keypoints[elbow, :2]
        length = float(np.linalg.norm(forearm))
        if length > 1e-6:
            centre = wrist + forearm / length * rule.reach * scale
    return Region(float(centre[0]), float(centre[1]), rule.fallback_side * scale, angle)


def hand_angle(keypoints: np.ndarray, hand: str, trusted: np.ndarray) -> float:
    """Degrees (CCW, `crop_matrix`'s sense) that turn `hand` upright in its crop.

    Upright = the hand's wrist -> middle-finger knuckle pointing up, as MediaPipe aligns its
    hand crops; from the forearm (elbow -> wrist) when those two are not trusted; else 0.
    """
    side = hand.removesuffix("_hand")
    start = GROUPS[hand].start
    wrist, knuckle = start, start + 9  # hand joints 0 (wrist) and 9 (middle_mcp)
    body_wrist, elbow = KEYPOINT_INDEX[f"{side}_wrist"], KEYPOINT_INDEX[f"{side}_elbow"]
    if not trusted[wrist] and trusted[body_wrist]:
        wrist = body_wrist
    pairs = ((wrist, knuckle), (elbow, body_wrist))
    for a, b in pairs:
        if trusted[a] and trusted[b]:
            vx, vy = keypoints[b, :2] - keypoints[a, :2]
            if math.hypot(vx, vy) > 1e-6:
                # Direction angle with y up is atan2(-vy, vx); rotating by 90 - that points it up.
                return 90.0 - math.degrees(math.atan2(-vy, vx))
    return 0.0


def jitter_region(region: Region, rng: np.random.Generator, shift: float, scale_min: float,
                  scale_max: float, rotation_deg: float) -> Region:
    """A random variant of `region` for training: shift (x side), scale, rotation."""
    dx, dy = rng.uniform(-shift, shift, size=2) * region.side
    side = region.side * rng.uniform(scale_min, scale_max)
    angle = rng.uniform(-rotation_deg, rotation_deg)
    return Region(region.cx + dx, region.cy + dy, side, region.angle + angle)


def hand_regions(keypoints: np.ndarray, rule: HandCropRule) -> dict[str, Region | None]:
    """Both hands' crop regions (`hand_region`) from one frame's (64, 3) points."""
    scale = body_scale(keypoints, rule.score_threshold)
    return {hand: hand_region(keypoints, hand, rule, scale) for hand in HANDS}


def hand_crop_matrix(region: Region, hand: str, size: int) -> np.ndarray:
    """Frame -> crop 2x3 affine of one hand's region (right hands mirrored into left ones)."""
    return crop_matrix(region, size, mirror=hand == MIRRORED_HAND)


def hand_crop_matrices(keypoints: np.ndarray, rule: HandCropRule, size: int
                       ) -> list[tuple[str, np.ndarray | None]]:
    """[(hand, frame -> crop 2x3 matrix or None)] for both hands; right hands mirrored."""
    return [(hand, None if region is None else hand_crop_matrix(region, hand, size))
            for hand, region in hand_regions(keypoints, rule).items()]


def full_frame_region(width: int, height: int) -> Region:
    """The square that letterboxes a whole width x height frame (`letterbox_matrix`'s)."""
    return Region((width - 1) / 2, (height - 1) / 2, float(max(width, height)))


def part_boxes(gt: np.ndarray, indices: Sequence[int]) -> np.ndarray:
    """Tight boxes (N, 4) x, y, w, h of the visible ground-truth points of one part (0 if < 2)."""
    pts = gt[:, list(indices)]
    vis = pts[..., 2] > 0
    big = np.where(vis[..., None], pts[..., :2], np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(big, axis=1), np.nanmax(big, axis=1)
    boxes = np.concatenate([lo, hi - lo], axis=1)
    boxes[vis.sum(1) < 2] = 0
    return np.nan_to_num(boxes)


def to_original(keypoints: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(K, 3) keypoints in crop pixels mapped back through the (2, 3) original -> crop affine."""
    xy = apply_affine(keypoints[:, :2], invert_affine(affine))
    return np.concatenate([xy, keypoints[:, 2:]], axis=1).astype(np.float32)

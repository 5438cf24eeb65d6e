"""Drawing keypoints and skeletons over images (previews, evaluation grids, inference overlays).

Edges and points are coloured by group (body, left hand, right hand, face) with the colours of
`signlang_jax.keypoints.GROUP_COLORS`; hidden points (weight or score below a threshold) are drawn
as hollow grey circles so they stay visible for review without looking like confident ones.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from signlang_jax.files import write_atomic
from signlang_jax.keypoints import GROUP_COLORS, NUM_KEYPOINTS, SKELETON, group_of

_HIDDEN = (150, 150, 150)
_SUBPIXEL_BITS = 4  # cv2 drawing with 1/16 px precision


def _point(xy: np.ndarray) -> tuple[int, int]:
    return int(round(float(xy[0]) * 16)), int(round(float(xy[1]) * 16))


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, threshold: float = 0.5,
                  radius: float | None = None, draw_hidden: bool = True) -> np.ndarray:
    """Return a copy of RGB `image` with (64, 3) keypoints (x, y, weight or score) drawn.

    An edge is drawn when both ends are above `threshold`; points below it are drawn hollow and
    grey when `draw_hidden`, else skipped.
    """
    out = np.ascontiguousarray(image.copy())
    if keypoints.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints must have shape ({NUM_KEYPOINTS}, 3), got {keypoints.shape}")
    side = max(out.shape[:2])
    radius = radius if radius is not None else max(1.0, side / 200)
    thickness = max(1, round(side / 300))
    shown = keypoints[:, 2] >= threshold
    for a, b, group in SKELETON:
        if shown[a] and shown[b]:
            cv2.line(out, _point(keypoints[a]), _point(keypoints[b]), GROUP_COLORS[group],
                     thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    r = int(round(radius * 16))
    for i, (x, y, _) in enumerate(keypoints):
        if shown[i]:
            cv2.circle(out, _point((x, y)), r, GROUP_COLORS[group_of(i)], -1, cv2.LINE_AA,
                       _SUBPIXEL_BITS)
        elif draw_hidden:
            cv2.circle(out, _point((x, y)), r, _HIDDEN, 1, cv2.LINE_AA, _SUBPIXEL_BITS)
    return out


def image_grid(images: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) images into one image, row by row, with white padding."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h,
             pad + c * (w + pad): pad + c * (w + pad) + w] = image
    return grid


def write_rgb(path: str, image: np.ndarray) -> None:
    """Write an RGB uint8 image (format by extension) atomically; raise OSError on failure."""
    try:
        ok, encoded = cv2.imencode(Path(path).suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise OSError(f"could not encode {path} (check the extension: .jpg, .png...)")
    write_atomic(path, encoded.tobytes())


def draw_points(image: np.ndarray, keypoints: np.ndarray, color: tuple[int, int, int],
                radius: float | None = None) -> np.ndarray:
    """Return a copy of `image` with the visible (weight > 0) keypoints as hollow circles."""
    out = np.ascontiguousarray(image.copy())
    radius = radius if radius is not None else max(1.5, max(out.shape[:2]) / 150)
    r = int(round(radius * 16))
    for x, y, w in keypoints:
        if w > 0:
            cv2.circle(out, _point((x, y)), r, color, 1, cv2.LINE_AA, _SUBPIXEL_BITS)
    return out

"""Drawing keypoints and skeletons over images (previews, evaluation grids, inference overlays).

Edges and points are coloured by group (body, left hand, right hand, face) with the colours of
`signlang_jax.keypoints.GROUP_COLORS`; hidden points (weight or score below a threshold) are drawn
as hollow grey circles so they stay visible for review without looking like confident ones.
"""

from __future__ import annotations

from collections.abc import Sequence
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


LEGEND_BACKGROUND = (40, 40, 40)
GROUP_LABELS = {"body": "body", "left_hand": "left hand", "right_hand": "right hand",
                "face": "face"}
# (label, colour, mark): mark "dot" (a confident point), "ring" (a hollow circle), "box" (a
# square outline: a region the model ran on).
GROUP_ENTRIES: tuple[tuple[str, tuple[int, int, int], str], ...] = tuple(
    (GROUP_LABELS[g], colour, "dot") for g, colour in GROUP_COLORS.items())


def legend_strip(width: int, entries: Sequence[tuple[str, tuple[int, int, int], str]],
                 height: int | None = None) -> np.ndarray:
    """A dark (height, width, 3) strip naming each mark: a dot, ring or box in its colour and
    its label, left to right (text shrinks to fit the width)."""
    height = height or max(18, min(32, width // 30))
    strip = np.full((height, width, 3), LEGEND_BACKGROUND, np.uint8)
    scale = height / 40
    while True:  # shrink until everything fits on one line
        widths = [height + cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]
                  + height // 2 for label, _, _ in entries]
        if sum(widths) <= width - 4 or scale < 0.2:
            break
        scale *= 0.9
    x, mid, r = 4, height // 2, max(2, height // 5)
    for (label, colour, mark), step in zip(entries, widths, strict=True):
        centre = (x + r + 1, mid)
        if mark == "dot":
            cv2.circle(strip, centre, r, colour, -1, cv2.LINE_AA)
        elif mark == "ring":
            cv2.circle(strip, centre, r, colour, 1, cv2.LINE_8)  # exact colour: no blending
        else:
            cv2.rectangle(strip, (centre[0] - r, mid - r), (centre[0] + r, mid + r), colour, 1)
        cv2.putText(strip, label, (x + 2 * r + 6, mid + int(4 * scale * 2)),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1, cv2.LINE_AA)
        x += step
    return strip


def with_legend(image: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int], str]]
                ) -> np.ndarray:
    """`image` with a legend strip (`legend_strip`) added below it."""
    return np.concatenate([image, legend_strip(image.shape[1], entries)], axis=0)


def overlay_legend(image: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int], str]]
                   ) -> np.ndarray:
    """A copy of `image` with the legend strip drawn over its bottom rows (same size: video
    frames keep their size)."""
    out = np.ascontiguousarray(image.copy())
    strip = legend_strip(out.shape[1], entries)
    out[-strip.shape[0]:] = strip
    return out

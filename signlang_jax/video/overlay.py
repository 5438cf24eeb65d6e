"""The annotated video (`--overlay`): skeleton, the tracked region, and how each frame was found."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from signlang_jax.crop import Region, region_corners
from signlang_jax.draw import GROUP_ENTRIES, draw_skeleton, overlay_legend
from signlang_jax.files import commit, temporary_sibling

_TRACKED = (0, 200, 0)  # RGB: the frame ran on the tracked region
_DETECTED = (230, 60, 30)  # the frame ran on the whole frame (first frame or re-detection)
OVERLAY_LEGEND = (*GROUP_ENTRIES, ("region / hand crop followed", _TRACKED, "box"),
                  ("whole frame / crop from the body", _DETECTED, "box"))


def annotate(frame: np.ndarray, keypoints: np.ndarray, region: np.ndarray, tracked: bool,
             threshold: float, text: str = "", hand_regions: np.ndarray | None = None,
             hand_tracked: np.ndarray | None = None) -> np.ndarray:
    """RGB frame with the skeleton, the model's square region, the hand crops (green: followed
    from the hand's own points, red: placed by the body model) and an optional caption."""
    out = draw_skeleton(frame, keypoints, threshold, draw_hidden=False)
    cx, cy, side = (float(v) for v in region)
    colour = _TRACKED if tracked else _DETECTED
    half = side / 2
    thickness = max(1, round(max(frame.shape[:2]) / 400))
    cv2.rectangle(out, (round(cx - half), round(cy - half)), (round(cx + half), round(cy + half)),
                  colour, thickness, cv2.LINE_AA)
    for h, square in enumerate(() if hand_regions is None else hand_regions):
        if np.isfinite(square).all():
            followed = hand_tracked is not None and bool(hand_tracked[h])
            corners = region_corners(Region(*(float(v) for v in square)))
            cv2.polylines(out, [np.round(corners).astype(np.int32)], True,
                          _TRACKED if followed else _DETECTED, thickness, cv2.LINE_AA)
    caption = ("tracked" if tracked else "full frame") + (f"  {text}" if text else "")
    cv2.putText(out, caption, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
    return overlay_legend(out, OVERLAY_LEGEND)


class OverlayWriter:
    """Writes RGB frames to an .mp4 that appears at `path` only once `close(True)` runs."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self.path = path
        self._partial = temporary_sibling(path)  # ends in .mp4 too: OpenCV picks the container
        self._writer = cv2.VideoWriter(str(self._partial), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                       (width, height))
        if not self._writer.isOpened():
            raise OSError(f"{path}: OpenCV cannot write an mp4v video here")

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame."""
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self, keep: bool) -> None:
        """Finish the file and move it into place (keep=True) or delete it."""
        self._writer.release()
        if keep:
            commit(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)

"""Keeping the signer framed: a square region of interest that follows the signer's keypoints.

Letterboxing a 1280x720 frame into the model's square spends most pixels on background and
shrinks the hands. The tracker instead crops each frame around where the signer was: the first
frame (and any frame after tracking is lost) runs on the whole frame; after that, the region is
the square around the previous frames' confident keypoints (`signlang_jax.crop.square_around`,
the same geometry as the hand crops), with a margin, at least `min_body_scales` shoulder widths,
and smoothed by a slow One Euro filter so it does not shake with the signer's hands; it grows at
once when the signer's points reach past it, so a fast hand is not cut off.

Tracking is lost when a frame has fewer than `min_points` confident points, or the region
collapses below `min_region` of the frame's shorter side, or its centre leaves the frame; the
caller then re-detects that frame on the whole frame and the tracker restarts from it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from signlang_jax.crop import Region, body_scale, square_around
from signlang_jax.video.smoothing import smoothing_alpha


@dataclasses.dataclass(frozen=True)
class TrackingParams:
    """Region-of-interest tracking settings (docs/VIDEO.md explains each default)."""

    score_threshold: float = 0.3  # a point at or above this score is confident
    min_points: int = 8  # fewer confident points (of 64): tracking is lost
    margin: float = 0.25  # side = (1 + 2 margin) x the extent of the confident points
    min_body_scales: float = 3.0  # side >= this many shoulder widths (hands down, head only...)
    min_region: float = 0.15  # a side below this fraction of the frame's shorter side: lost
    region_cutoff: float = 0.5  # Hz, One Euro min cutoff of the region (centre and side)
    region_beta: float = 1.0  # its speed gain, per (region side / s)
    # Keep the region unchanged while the new target square lies inside it and is at least this
    # fraction of its side: a still input gives steadier keypoints (1 = always follow).
    hold: float = 0.8

    def __post_init__(self) -> None:
        if self.min_points < 1:
            raise ValueError(f"tracking min_points={self.min_points}; expected >= 1")
        if not 0 <= self.margin <= 2:
            raise ValueError(f"tracking margin={self.margin}; expected 0..2")
        if not 0 < self.min_region < 1:
            raise ValueError(f"tracking min_region={self.min_region}; expected in (0, 1)")
        if not 0 < self.hold <= 1:
            raise ValueError(f"tracking hold={self.hold}; expected in (0, 1]")
        if not self.region_cutoff > 0:
            raise ValueError(f"tracking region_cutoff={self.region_cutoff}; expected > 0 Hz")


def signer_region(keypoints: np.ndarray, params: TrackingParams) -> Region | None:
    """The square around one frame's confident (64, 3) keypoints, or None if too few."""
    trusted = keypoints[:, 2] >= params.score_threshold
    if int(trusted.sum()) < params.min_points:
        return None
    shoulders = body_scale(keypoints, params.score_threshold)
    min_side = params.min_body_scales * shoulders if math.isfinite(shoulders) else 0.0
    return square_around(keypoints[trusted, :2], params.margin, min_side)


class SquareFilter:
    """Smooths a square (cx, cy, side) over frames: the signer region's and each hand crop's.

    A One Euro filter on the centre and side whose cutoff rises with the square's speed in its
    own sides per second; the square holds still while each new target square lies inside it
    and is at least `hold` of its side (a still input gives steady crops), and it grows at once
    to cover a target it would otherwise cut (a fast hand is never left outside its crop).
    """

    def __init__(self, cutoff: float, beta: float, hold: float) -> None:
        self.cutoff, self.beta, self.hold = cutoff, beta, hold
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next target is taken as it is."""
        self.state: np.ndarray | None = None  # smoothed (cx, cy, side)
        self._speed = 0.0

    def update(self, target: np.ndarray, dt: float) -> np.ndarray:
        """The smoothed square after seeing the target (cx, cy, side) dt seconds later."""
        x = np.asarray(target, np.float64)
        if self.state is None:
            self.state = x.copy()
            return self.state
        inside = (np.abs(x[:2] - self.state[:2]).max() + x[2] / 2) <= self.state[2] / 2
        if inside and x[2] >= self.hold * self.state[2]:
            self._speed = 0.0
            return self.state
        speed = float(np.linalg.norm(x - self.state)) / dt / self.state[2]
        a_d = float(smoothing_alpha(1.0, dt))
        self._speed = a_d * speed + (1 - a_d) * self._speed
        alpha = float(smoothing_alpha(self.cutoff + self.beta * self._speed, dt))
        state = alpha * x + (1 - alpha) * self.state
        # The smoothed square may lag a fast move; it grows at once to cover the new target
        # square, and only its shrinking and moving are smoothed.
        reach = np.abs(x[:2] - state[:2]).max() + x[2] / 2
        state[2] = max(state[2], 2 * reach)
        self.state = state
        return state


class RegionTracker:
    """Which region each frame runs on; fed the keypoints of every frame in order."""

    def __init__(self, params: TrackingParams, width: int, height: int, fps: float) -> None:
        self.params = params
        self.width, self.height = width, height
        self.dt = 1.0 / fps
        self._square = SquareFilter(params.region_cutoff, params.region_beta, params.hold)

    def reset(self) -> None:
        """Lose the signer: the next frame runs on the whole frame."""
        self._square.reset()

    @property
    def region(self) -> Region | None:
        """The region for the next frame, or None: run on the whole frame."""
        state = self._square.state
        return None if state is None else Region(*(float(v) for v in state))

    def lost(self, keypoints: np.ndarray) -> bool:
        """Whether a frame's keypoints say tracking failed (too few points, collapsed, outside)."""
        target = signer_region(keypoints, self.params)
        if target is None:
            return True
        if target.side < self.params.min_region * min(self.width, self.height):
            return True
        return not (0 <= target.cx < self.width and 0 <= target.cy < self.height)

    def observe(self, keypoints: np.ndarray, dt: float | None = None) -> None:
        """Update the region from one frame's (64, 3) keypoints in frame pixels, dt seconds
        after the previous frame (default 1 / fps)."""
        if self.lost(keypoints):
            self.reset()
            return
        target = signer_region(keypoints, self.params)
        assert target is not None  # not lost
        self._square.update(np.array([target.cx, target.cy, target.side]), dt or self.dt)

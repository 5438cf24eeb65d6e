"""Temporal smoothing of keypoint sequences: a vectorised, confidence-aware One Euro filter.

The One Euro filter (Casiez et al., CHI 2012) is a low-pass filter whose cutoff rises with speed:
still points are smoothed hard (jitter goes), fast points follow closely (no lag on a fast sign).
Per frame and point:

    alpha(cutoff) = 1 / (1 + tau / dt),  tau = 1 / (2 pi cutoff)
    speed_hat     = low-pass(|x - x_prev| / dt, d_cutoff)
    cutoff        = min_cutoff + beta * speed_hat / scale
    x_hat         = low-pass(x, cutoff)

plus a jump gate: a point that lands more than `jump_gate` signer sizes away from its filtered
position is held there for that one frame. The demo models' hand jitter is mostly such one-frame
gross errors, which a low-pass filter alone can only trade for lag (docs/VIDEO.md measures it).

All 64 points are filtered in one numpy step (not one object per coordinate). The speed that
drives the cutoff is measured in signer sizes per second (`scale` = the extent of the signer's
confident points, itself smoothed), as MediaPipe normalises by its region of interest: the same
`beta` then works for a signer filling a 4K frame or a third of a 360p one. A point whose score
falls below `score_threshold` is passed through and its filter reset, so when it comes back it
starts where it is instead of being dragged from where it vanished. Causal: each output depends
on the current and past frames only, so the live demo uses the same filter.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class OneEuroParams:
    """One Euro settings (docs/VIDEO.md says how the defaults were measured)."""

    min_cutoff: float = 1.0  # Hz: the cutoff of a still point (lower = smoother, more lag)
    beta: float = 4.0  # cutoff gain per (signer size / s) of speed (higher = less lag)
    d_cutoff: float = 1.0  # Hz: the low-pass on the speed estimate itself
    score_threshold: float = 0.1  # below this a point is missing: passed through, filter reset
    # Optional (low, high) scores: a point scoring `low` or less moves only 5% of the filter's
    # step, one at `high` or more the full step, linearly between. Off by default: it suits the
    # body model's scores, not the hand model's lower ones (docs/VIDEO.md).
    confidence: tuple[float, float] | None = None
    # A point that moves faster than this many signer sizes per second from its filtered
    # position is held back for that frame: a one-frame spike (the model's typical gross error)
    # is dropped, a real move is followed from the next frame on. Per second, not per frame, so
    # a low or variable frame rate (longer steps, longer moves) is not mistaken for spikes.
    # 7.5 = 0.3 signer sizes in one frame at 25 fps. None: no gate.
    jump_gate: float | None = 7.5

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"smoothing {name}={getattr(self, name)}; expected > 0 Hz")
        if not self.beta >= 0:
            raise ValueError(f"smoothing beta={self.beta}; expected >= 0")
        if self.jump_gate is not None and not self.jump_gate > 0:
            raise ValueError(f"smoothing jump_gate={self.jump_gate}; expected > 0 or None")
        if self.confidence is not None and not 0 <= self.confidence[0] < self.confidence[1]:
            raise ValueError(f"smoothing confidence={self.confidence}; expected 0 <= low < high")


# Signer sizes: the jump gate never holds a move shorter than this in one frame.
JUMP_FLOOR = 0.05


def smoothing_alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    """The exponential-smoothing weight of the new sample for a cutoff (Hz) and step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, np.float64))
    return 1.0 / (1.0 + tau / dt)


def signer_scale(keypoints: np.ndarray, threshold: float) -> float:
    """The larger side of the box of the confident points (pixels); NaN with fewer than two."""
    trusted = keypoints[:, :2][keypoints[:, 2] >= threshold]
    if len(trusted) < 2:
        return math.nan
    return float(np.max(trusted.max(0) - trusted.min(0)))


class OneEuroFilter:
    """Causal One Euro filter over (K, 3) keypoint frames (x, y, score); scores pass unchanged."""

    def __init__(self, params: OneEuroParams, num_points: int) -> None:
        self.params = params
        self.num_points = num_points
        self.reset()

    def reset(self) -> None:
        """Forget the past (a new video, or tracking restarted)."""
        self._x = np.zeros((self.num_points, 2))
        self._speed = np.zeros(self.num_points)
        self._alive = np.zeros(self.num_points, bool)
        self._held = np.zeros(self.num_points, bool)  # held back by the gate last frame
        self._scale = math.nan

    def __call__(self, keypoints: np.ndarray, dt: float) -> np.ndarray:
        """Filter one frame (K, 3) taken dt seconds after the previous one; returns (K, 3)."""
        p = self.params
        if not dt > 0:
            raise ValueError(f"dt={dt}; consecutive frames need a positive time step")
        xy = np.asarray(keypoints[:, :2], np.float64)
        present = np.asarray(keypoints[:, 2]) >= p.score_threshold
        scale = signer_scale(keypoints, p.score_threshold)
        if math.isfinite(scale) and scale > 1.0:
            # The normaliser moves slowly (it is not the quantity being smoothed).
            self._scale = scale if math.isnan(self._scale) else (
                0.9 * self._scale + 0.1 * scale)
        norm = self._scale if math.isfinite(self._scale) and self._scale > 1.0 else 1.0

        if p.jump_gate is not None:
            # A speed, with a floor of a twentieth of the signer per frame: at high frame rates
            # (240 fps slow motion, near-duplicate frames) the per-frame distance of the gate
            # would fall inside the model's ordinary frame-to-frame noise.
            jump = np.linalg.norm(xy - self._x, axis=1) / norm  # signer sizes in this step
            held = self._alive & ~self._held & (jump > max(p.jump_gate * dt, JUMP_FLOOR))
            xy = np.where(held[:, None], self._x, xy)
            self._held = held
        speed = np.linalg.norm(xy - self._x, axis=1) / dt / norm
        a_d = smoothing_alpha(p.d_cutoff, dt)
        speed_hat = np.where(self._alive, a_d * speed + (1 - a_d) * self._speed, 0.0)
        alpha = smoothing_alpha(p.min_cutoff + p.beta * speed_hat, dt)
        if p.confidence is not None:
            low, high = p.confidence
            scores = np.asarray(keypoints[:, 2], np.float64)
            alpha = alpha * np.clip((scores - low) / (high - low), 0.05, 1.0)
        alpha = alpha[:, None]
        filtered = np.where(self._alive[:, None], alpha * xy + (1 - alpha) * self._x, xy)

        # Present points carry their state on; missing points restart from scratch next time.
        self._x = np.where(present[:, None], filtered, 0.0)
        self._speed = np.where(present, speed_hat, 0.0)
        self._alive = present
        out = np.array(keypoints, np.float32, copy=True)
        out[:, :2] = np.where(present[:, None], filtered, keypoints[:, :2])
        return out

"""Zero-lag smoothing of a whole keypoint sequence: robust local polynomial regression.

A file is processed whole, so each frame's smoothed point may use the frames after it as well
as those before. Every point's track is replaced, frame by frame, by the value at that frame of
a polynomial (`degree` 1: a line, 2: a parabola) fitted by weighted least squares to the track
in a Gaussian time window of `window` seconds (local regression, LOESS; Savitzky-Golay is its
unweighted fixed-window case). A line fitted to samples of a line is that line, so a point
moving at constant velocity comes back exactly - no lag and no lead, at the sequence's ends
too, whatever its speed: fast hand motion is never taken for noise, which is what a causal
filter (`smoothing.OneEuroFilter`) can only trade against lag.

The demo models' hand jitter is mostly one-frame gross errors, which a least-squares fit would
spread over its neighbours. So the fit is robust (Cleveland's LOWESS): after each fit every
sample's residual is measured in part sizes - the extent of that hand's confident points for hand
points (hand sizes), of all confident points for the others (signer sizes) - and weighted by
Tukey's biweight, zero from `outlier` sizes on, then the track is fitted again. Points scoring
below `score_threshold` are missing: they give no weight and come back unchanged. Scores pass
unchanged. A frame where the torso and head jump (their median point faster than `cut_speed`
signer sizes per second: a cut, a new person) starts a new segment, and no fit reaches across
it. Time is taken from per-frame timestamps, so a variable frame rate needs no change. numpy
only.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from signlang_jax.keypoints import GROUPS

HAND_POINTS = frozenset(i for hand in ("left_hand", "right_hand")
                        for i in range(GROUPS[hand].start, GROUPS[hand].stop))


@dataclasses.dataclass(frozen=True)
class OfflineParams:
    """Offline smoother settings (docs/VIDEO.md says how the defaults were measured)."""

    window: float = 0.16  # s: Gaussian sigma of the fitting window (3 sigma each side is used)
    degree: int = 1  # 1: local line (exact at constant velocity); 2: also at constant acceleration
    outlier: float = 0.5  # part sizes: a residual this large gets no weight in the refit
    iterations: int = 2  # robust refits (0: plain weighted least squares)
    score_threshold: float = 0.1  # a point scoring below this is missing: unchanged, no weight
    score_weighted: bool = True  # weight each sample by its score as well
    # The window narrows to window / (1 + speed_gain x speed), speed in part sizes per second
    # (hand sizes for hand points) from a first fit: 0 keeps it fixed.
    speed_gain: float = 0.6
    # A frame where the torso and head move faster than this (signer sizes per second) starts
    # a new segment - a cut in an edited video, a new person - and no fit crosses it. None
    # (default): never cut; the body model's own jumps trigger false cuts below ~24 on the
    # tuning clips and leave more jitter (docs/VIDEO.md).
    cut_speed: float | None = None

    def __post_init__(self) -> None:
        if not self.window > 0:
            raise ValueError(f"offline smoothing window={self.window}; expected > 0 seconds")
        if self.degree not in (0, 1, 2):
            raise ValueError(f"offline smoothing degree={self.degree}; expected 0, 1 or 2")
        if not self.outlier > 0:
            raise ValueError(f"offline smoothing outlier={self.outlier}; expected > 0")
        if self.cut_speed is not None and not self.cut_speed > 0:
            raise ValueError(f"offline smoothing cut_speed={self.cut_speed}; expected > 0 or "
                             "None")
        if not self.speed_gain >= 0:
            raise ValueError(f"offline smoothing speed_gain={self.speed_gain}; expected >= 0")
        if not 0 <= self.iterations <= 5:
            raise ValueError(f"offline smoothing iterations={self.iterations}; expected 0..5")


def frame_times(num_frames: int, fps: float) -> np.ndarray:
    """Timestamps (s) of `num_frames` frames at a constant `fps`."""
    if not fps > 0:
        raise ValueError(f"fps={fps}; expected a positive frame rate")
    return np.arange(num_frames, dtype=np.float64) / fps


def part_sizes(keypoints: np.ndarray, threshold: float) -> np.ndarray:
    """(T, K) size of each point's part per frame: its hand's extent, else the signer's.

    The extent is the larger side of the box of the part's points scoring `threshold` or more;
    frames where a part has fewer than two take the part's median over the sequence (1 pixel if
    it never has two).
    """
    kp = np.asarray(keypoints, np.float64)
    present = kp[..., 2] >= threshold
    sizes = np.empty(kp.shape[:2])
    parts = {"signer": np.arange(kp.shape[1])}
    parts.update({hand: np.arange(GROUPS[hand].start, GROUPS[hand].stop)
                  for hand in ("left_hand", "right_hand")})
    for idx in parts.values():  # hands last: their points take the hand size
        extent = _extent(kp[:, idx, :2], present[:, idx])
        known = np.isfinite(extent)
        fill = float(np.median(extent[known])) if known.any() else 1.0
        extent = np.where(known, extent, fill)
        sizes[:, idx] = np.maximum(extent, 1.0)[:, None]
    return sizes


def _extent(xy: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(T,) larger side of the box of the present points per frame; NaN with fewer than two."""
    big = np.where(present[..., None], xy, np.nan)
    enough = present.sum(1) >= 2
    out = np.full(len(xy), np.nan)
    if enough.any():
        lo = np.nanmin(big[enough], axis=1)
        hi = np.nanmax(big[enough], axis=1)
        out[enough] = np.max(hi - lo, axis=1)
    return out


def smooth_offline(keypoints: np.ndarray, times: np.ndarray, params: OfflineParams
                   ) -> np.ndarray:
    """(T, K, 3) keypoints smoothed with zero lag; `times` (T,) seconds, strictly increasing."""
    kp = np.asarray(keypoints, np.float64)
    times = np.asarray(times, np.float64)
    if kp.ndim != 3 or kp.shape[2] != 3 or times.shape != kp.shape[:1]:
        raise ValueError(f"keypoints {kp.shape} and times {times.shape}: expected (T, K, 3) "
                         "and (T,)")
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise ValueError("times must increase strictly from frame to frame")
    out = np.array(keypoints, np.float32, copy=True)
    if len(kp) < 2:
        return out
    present = kp[..., 2] >= params.score_threshold
    sizes = part_sizes(kp, params.score_threshold)
    weights = present * (kp[..., 2] if params.score_weighted else 1.0)
    sigma = np.full(present.shape, params.window)
    segment = np.zeros(len(kp), np.int64)
    if params.cut_speed is not None:
        segment = np.cumsum(cuts(kp, times, params.cut_speed, params.score_threshold))
    if params.speed_gain > 0:
        # The window narrows with speed (in part sizes per second): a fast stroke keeps its
        # shape, a still hand is smoothed over the whole window.
        _, velocity = _local_fit(kp[..., :2], weights, times, sigma, 1, segment)
        speed = np.linalg.norm(velocity, axis=-1) / sizes
        sigma = params.window / (1.0 + params.speed_gain * speed)
    robust = np.ones(present.shape)
    fitted = kp[..., :2]
    for _ in range(params.iterations + 1):
        fitted, _ = _local_fit(kp[..., :2], weights * robust, times, sigma, params.degree,
                               segment)
        residual = np.linalg.norm(kp[..., :2] - fitted, axis=-1) / (params.outlier * sizes)
        robust = (1 - np.minimum(residual, 1) ** 2) ** 2
    out[..., :2] = np.where(present[..., None], fitted, kp[..., :2])
    return out


def cuts(keypoints: np.ndarray, times: np.ndarray, speed: float, threshold: float
         ) -> np.ndarray:
    """(T,) bool: frames whose median body or face point moved faster than `speed` signer
    sizes per second since the previous frame (points confident in both; hands move fast
    while signing, the torso and head do not); frame 0 is never a cut."""
    kp = np.asarray(keypoints, np.float64)
    out = np.zeros(len(kp), bool)
    size = part_sizes(kp, threshold)[:, 0]  # the signer's size (point 0 is a body point)
    steady = np.asarray([i for i in range(kp.shape[1]) if i not in HAND_POINTS])
    kp = kp[:, steady]
    both = (kp[1:, :, 2] >= threshold) & (kp[:-1, :, 2] >= threshold)
    step = np.linalg.norm(kp[1:, :, :2] - kp[:-1, :, :2], axis=-1)
    for t in np.flatnonzero(both.sum(1) >= 3):
        moved = float(np.median(step[t, both[t]])) / (times[t + 1] - times[t])
        out[t + 1] = moved > speed * size[t]
    return out


def _local_fit(xy: np.ndarray, weights: np.ndarray, times: np.ndarray, sigma: np.ndarray,
               degree: int, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's value (T, K, 2) and velocity (px/s) of the weighted polynomial fit around
    it, in a Gaussian time window of `sigma` (T, K) seconds, within its own segment (T,)."""
    num = len(times)
    step = float(np.median(np.diff(times)))
    radius = max(1, math.ceil(3 * float(sigma.max()) / step))
    order = degree + 1
    moments = np.zeros((2 * order - 1, *weights.shape))  # sum of w u^m, u = dt / sigma
    targets = np.zeros((order, *xy.shape))  # sum of w u^m y
    frame = np.arange(num)
    for offset in range(-radius, radius + 1):
        source = frame + offset
        inside = (source >= 0) & (source < num)
        source = np.clip(source, 0, num - 1)
        inside &= segment[source] == segment
        u = np.where(inside, times[source] - times, 0.0)[:, None] / sigma  # (T, K)
        # Beyond 6 sigma a weight is below 1e-8: zero it, and keep u^m finite.
        near = inside[:, None] & (np.abs(u) <= 6.0)
        u = np.where(near, u, 0.0)
        w = np.where(near, np.exp(-0.5 * u * u), 0.0) * weights[source]
        power = np.ones_like(u)
        for m in range(2 * order - 1):
            moments[m] += w * power
            if m < order:
                targets[m] += (w * power)[..., None] * xy[source]
            power = power * u
    coefficients = _solve(moments, targets, xy)
    velocity = coefficients[1] / sigma[..., None] if order > 1 else np.zeros_like(xy)
    return coefficients[0], velocity


def _solve(moments: np.ndarray, targets: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(order, T, K, 2) coefficients of each frame's fit, at a lower degree where singular."""
    order = targets.shape[0]
    out = np.zeros((order, *xy.shape))
    out[0] = xy
    solved = np.zeros(xy.shape[:2], bool)
    for degree in range(order - 1, -1, -1):
        n = degree + 1
        matrix = np.stack([np.stack([moments[i + j] for j in range(n)], -1)
                           for i in range(n)], -2)  # (T, K, n, n)
        det = np.linalg.det(matrix)
        ok = ~solved & (np.abs(det) > 1e-9 * np.maximum(moments[0], 1e-300) ** n) & (
            moments[0] > 0)
        if ok.any():
            rhs = np.moveaxis(targets[:n], 0, -2)[ok]  # (M, n, 2)
            solution = np.linalg.solve(matrix[ok], rhs)  # (M, n, 2)
            for i in range(n):
                out[i][ok] = solution[:, i, :]
            solved |= ok
    return out

"""One video's frames -> keypoints: region tracking, the model, re-detection and smoothing.

The one implementation behind `python -m signlang_jax.video` (batches of frames) and
`python -m signlang_jax.live_demo` (one frame at a time, with keys toggling tracking and
smoothing). Per batch:

1. every frame of the batch runs on the tracker's current region - within a batch the region is
   the one the previous batch ended with, so batch 1 follows the signer frame by frame; with no
   region (the first frame, or after tracking was lost) the batch's first frame runs alone on
   the whole frame and the others on the region it gives;
2. a tracked frame whose keypoints say tracking failed is re-detected on the whole frame;
3. the tracker then sees every frame's keypoints in order, and the One Euro filter smooths them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from signlang_jax.crop import Region, full_frame_region
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import NUM_KEYPOINTS
from signlang_jax.video.smoothing import OneEuroFilter, OneEuroParams
from signlang_jax.video.tracking import RegionTracker, TrackingParams

DEFAULT_TRACKING = TrackingParams()
DEFAULT_SMOOTHING = OneEuroParams()


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Keypoints of consecutive frames, before and after smoothing, and how each was found."""

    keypoints: np.ndarray  # (N, 64, 3) final (smoothed when smoothing is on), frame pixels
    raw: np.ndarray  # (N, 64, 3) before smoothing
    tracked: np.ndarray  # (N,) bool: ran on the tracked region (False: on the whole frame)
    regions: np.ndarray  # (N, 3) float32 cx, cy, side of the square the body model saw


class SequenceProcessor:
    """Keeps the tracker and filter state of one video between batches."""

    def __init__(self, model: RegionPredictor, width: int, height: int, fps: float,
                 tracking: TrackingParams | None = DEFAULT_TRACKING,
                 smoothing: OneEuroParams | None = DEFAULT_SMOOTHING) -> None:
        self.model = model
        self.width, self.height, self.fps = width, height, fps
        self.tracker = RegionTracker(tracking or TrackingParams(), width, height, fps)
        self.smoother = OneEuroFilter(smoothing or OneEuroParams(), NUM_KEYPOINTS)
        self.tracking = tracking is not None
        self.smoothing = smoothing is not None
        self.redetections = 0

    def set_tracking(self, on: bool) -> None:
        """Turn region tracking on or off (on restarts from the whole frame)."""
        self.tracking = on
        self.tracker.reset()

    def set_smoothing(self, on: bool) -> None:
        """Turn smoothing on or off (on starts a fresh filter)."""
        self.smoothing = on
        self.smoother.reset()

    def process(self, frames: Sequence[np.ndarray]) -> BatchResult:
        """Keypoints for the next consecutive RGB frames of the video."""
        if self.tracking and self.tracker.region is None and len(frames) > 1:
            # Nothing to track yet: find the signer on the first frame alone, so the rest of
            # the batch already runs on its region.
            first = self._run(frames[:1])
            rest = self._run(frames[1:])
            return BatchResult(*(np.concatenate([a, b]) for a, b in zip(
                dataclasses.astuple(first), dataclasses.astuple(rest), strict=True)))
        return self._run(frames)

    def _run(self, frames: Sequence[np.ndarray]) -> BatchResult:
        whole = full_frame_region(self.width, self.height)
        region = self.tracker.region if self.tracking else None
        regions = [region or whole] * len(frames)
        raw = self.model.predict(frames, regions)
        tracked = np.full(len(frames), region is not None)
        if region is not None:
            redo = [n for n in range(len(frames)) if self.tracker.lost(raw[n])]
            if redo:
                raw[redo] = self.model.predict([frames[n] for n in redo], [whole] * len(redo))
                tracked[redo] = False
                for n in redo:
                    regions[n] = whole
                self.redetections += len(redo)
            redone = set(redo)
        else:
            redone = set()
        final = raw.copy()
        for n in range(len(frames)):
            if self.tracking:
                if n in redone:  # found again on the whole frame: restart from there
                    self.tracker.reset()
                self.tracker.observe(raw[n])
            if self.smoothing:
                final[n] = self.smoother(raw[n], 1.0 / self.fps)
        boxes = np.array([[r.cx, r.cy, r.side] for r in regions], np.float32)
        return BatchResult(final, raw, tracked, boxes.reshape(len(frames), 3))


def describe(tracking: TrackingParams | None, smoothing: OneEuroParams | None) -> dict:
    """The settings as a JSON-ready dict (stored in every output file)."""
    return {"tracking": None if tracking is None else dataclasses.asdict(tracking),
            "smoothing": None if smoothing is None else dataclasses.asdict(smoothing)}


def region_of(row: np.ndarray) -> Region:
    """A `Region` from one (cx, cy, side) row of `BatchResult.regions`."""
    return Region(float(row[0]), float(row[1]), float(row[2]))

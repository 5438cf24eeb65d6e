"""One video's frames -> keypoints: region tracking, the body model, re-detection, hand tracking
and the causal filter.

The one implementation behind `python -m signlang_jax.video` (batches of frames) and
`python -m signlang_jax.live_demo` (one frame at a time, with keys toggling tracking and
smoothing). Per batch:

1. every frame of the batch runs the body model on the tracker's current region - within a batch
   the region is the one the previous batch ended with, so batch 1 follows the signer frame by
   frame; with no region (the first frame, or after tracking was lost) the batch's first frame
   is detected alone and the others run on the region it gives;
2. points out of the signer's reach are dropped (`video.reach`: a second person in the region
   never lends the signer a wrist or a hand);
3. a tracked frame whose keypoints say tracking failed is re-detected; a detection finds the
   people on the frame and picks the signer (`video.people`: largest and central at first, the
   one nearest where the signer was after a loss);
4. the tracker then sees every frame's body keypoints in order;
5. with a hand stage, frame after frame, the hand tracker (`video.hands`) places each hand's
   crop (from the hand's previous points, or the body rule), the hand model runs on it and its
   points are merged (and checked against the signer's reach) - so hands follow hands at any
   batch size;
6. the causal One Euro filter smooths the result when it is on (`live_demo`, `--causal`); the
   batch job's default zero-lag smoother needs the whole file and runs after the last batch
   (`video.offline`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from signlang_jax.crop import HANDS, HandCropRule, Region, full_frame_region
from signlang_jax.inference.hand_stage import merge_hand
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import NUM_KEYPOINTS
from signlang_jax.video.hands import HandPlacement, HandTracker, HandTrackingParams
from signlang_jax.video.offline import OfflineParams
from signlang_jax.video.people import Candidate, PersonFinder, PersonParams
from signlang_jax.video.reach import SignerFrame, keep_signer
from signlang_jax.video.smoothing import OneEuroFilter, OneEuroParams
from signlang_jax.video.tracking import RegionTracker, TrackingParams

DEFAULT_TRACKING = TrackingParams()
DEFAULT_PEOPLE = PersonParams()
DEFAULT_SMOOTHING = OneEuroParams()  # causal: live_demo and the batch job's --causal
DEFAULT_HANDS = HandTrackingParams()
DEFAULT_OFFLINE = OfflineParams()  # the batch job's default


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Keypoints of consecutive frames, before and after smoothing, and how each was found."""

    keypoints: np.ndarray  # (N, 64, 3) final (smoothed when smoothing is on), frame pixels
    raw: np.ndarray  # (N, 64, 3) before smoothing
    tracked: np.ndarray  # (N,) bool: ran on the tracked region (False: on the whole frame)
    regions: np.ndarray  # (N, 3) float32 cx, cy, side of the square the body model saw
    # (N, 2, 4) float32 cx, cy, side, angle of each hand's crop (left, right); NaN: no crop
    hand_regions: np.ndarray
    hand_tracked: np.ndarray  # (N, 2) bool: the crop followed the hand's own previous points


class SequenceProcessor:
    """Keeps the tracker and filter state of one video between batches."""

    def __init__(self, model: RegionPredictor, width: int, height: int, fps: float,
                 tracking: TrackingParams | None = DEFAULT_TRACKING,
                 smoothing: OneEuroParams | None = DEFAULT_SMOOTHING,
                 hands: HandTrackingParams | None = DEFAULT_HANDS,
                 people: PersonParams | None = DEFAULT_PEOPLE) -> None:
        self.model = model
        self.width, self.height, self.fps = width, height, fps
        self.tracker = RegionTracker(tracking or TrackingParams(), width, height, fps)
        # With tracking on: who the signer is (None: the whole-frame points, whoever they are).
        self.people = people
        self.finder = PersonFinder(model, people or PersonParams(), self.tracker.params, width,
                                   height)
        self.signer = SignerFrame()
        self.smoother = OneEuroFilter(smoothing or OneEuroParams(), NUM_KEYPOINTS)
        stage = model.hand_stage
        self.hands = HandTracker(hands or HandTrackingParams(),
                                 stage.rule if stage is not None else HandCropRule(),
                                 width, height, fps)
        self.tracking = tracking is not None
        self.smoothing = smoothing is not None
        self.hand_tracking = hands is not None
        self.redetections = 0
        self._last_time: float | None = None  # seconds: the last frame's time stamp

    def set_tracking(self, on: bool) -> None:
        """Turn region tracking on or off; both trackers restart (the next frame runs on the
        whole frame, its hand crops placed by the body model)."""
        self.tracking = on
        self.tracker.reset()
        self.hands.reset()

    def set_smoothing(self, on: bool) -> None:
        """Turn smoothing on or off (on starts a fresh filter)."""
        self.smoothing = on
        self.smoother.reset()

    def process(self, frames: Sequence[np.ndarray], times: Sequence[float] | None = None
                ) -> BatchResult:
        """Keypoints for the next consecutive RGB frames of the video.

        times: each frame's time stamp in seconds (a variable frame rate steps unevenly); the
        trackers and the causal filter use the real step between frames. None: 1 / fps apart.
        """
        if times is None:
            start = 0.0 if self._last_time is None else self._last_time + 1.0 / self.fps
            times = [start + n / self.fps for n in range(len(frames))]
        if self.tracking and self.tracker.region is None and len(frames) > 1:
            # Nothing to track yet: find the signer on the first frame alone, so the rest of
            # the batch already runs on its region.
            first = self._run(frames[:1], times[:1])
            rest = self._run(frames[1:], times[1:])
            return BatchResult(*(np.concatenate([a, b]) for a, b in zip(
                dataclasses.astuple(first), dataclasses.astuple(rest), strict=True)))
        return self._run(frames, times)

    def _step(self, time: float) -> float:
        """Seconds from the previous frame to this one (1 / fps for the first, or a stamp that
        does not advance)."""
        last, self._last_time = self._last_time, float(time)
        return time - last if last is not None and time > last else 1.0 / self.fps

    def _run(self, frames: Sequence[np.ndarray], times: Sequence[float]) -> BatchResult:
        steps = [self._step(t) for t in times]
        whole = full_frame_region(self.width, self.height)
        region = self.tracker.region if self.tracking else None
        regions = [region or whole] * len(frames)
        if region is None and self.tracking:
            raw = np.zeros((len(frames), NUM_KEYPOINTS, 3), np.float32)  # each one detected
        else:
            raw = self.model.predict_body(frames, regions)
        tracked = np.full(len(frames), region is not None)
        hand_regions = np.full((len(frames), len(HANDS), 4), np.nan, np.float32)
        hand_tracked = np.zeros((len(frames), len(HANDS)), bool)
        threshold = self.tracker.params.score_threshold
        for n in range(len(frames)):
            if self.tracking:
                if tracked[n] and self.people is not None:
                    raw[n] = keep_signer(raw[n], self.signer, threshold, steps[n],
                                         self.people.slack)
                if not tracked[n] or self.tracker.lost(raw[n]):
                    if tracked[n]:
                        self.redetections += 1
                        tracked[n] = False
                    raw[n], regions[n] = self._detect(frames[n], times[n])
                self.tracker.observe(raw[n], steps[n])
                if self.tracker.region is None:
                    self.finder.lost(times[n])
                else:
                    self.finder.tracked(self.tracker.region)
            if self.model.hand_stage is not None:
                self.hands.dt = steps[n]
                raw[n] = self._hands(frames[n], raw[n], hand_regions[n], hand_tracked[n])
                if self.tracking and self.people is not None:  # hands within the arms' reach
                    raw[n] = keep_signer(raw[n], self.signer, threshold, 0.0, self.people.slack)
        final = raw.copy()
        if self.smoothing:
            for n in range(len(frames)):
                final[n] = self.smoother(raw[n], steps[n])
        boxes = np.array([[r.cx, r.cy, r.side] for r in regions], np.float32)
        return BatchResult(final, raw, tracked, boxes.reshape(len(frames), 3), hand_regions,
                           hand_tracked)

    def _detect(self, frame: np.ndarray, time: float) -> tuple[np.ndarray, Region]:
        """(points, the square that gave them) of a frame with no tracked region; both trackers
        restart from it. Without person finding: the whole frame's points, as on a still."""
        self.tracker.reset()
        self.hands.reset()
        self.signer.forget()
        whole = full_frame_region(self.width, self.height)
        if self.people is None:
            return self.model.predict_body([frame], [whole])[0], whole
        found: Candidate | None = self.finder.detect(frame, time)
        if found is None:  # nobody, or nobody near where the signer was: no points
            return np.zeros((NUM_KEYPOINTS, 3), np.float32), whole
        # The candidate's shoulders become the signer's: later frames are measured from them.
        points = keep_signer(found.keypoints, self.signer, self.tracker.params.score_threshold,
                             0.0, self.people.slack)
        return points, found.region

    def _hands(self, frame: np.ndarray, body: np.ndarray, regions_out: np.ndarray,
               tracked_out: np.ndarray) -> np.ndarray:
        """One frame's (64, 3) points with both hands from the hand stage (crops from the hand
        tracker; without hand tracking, from the body rule every frame)."""
        stage = self.model.hand_stage
        assert stage is not None
        if not self.hand_tracking:
            self.hands.reset()  # every crop by the body rule, as on a still image
        placements = {p.hand: p for p in self.hands.place(body)}
        results = dict(self._points(frame, list(placements.values())))
        out = body
        for hand in HANDS:
            points = results.get(hand)
            if self.hand_tracking:
                points = self._own_hand(frame, hand, points, body, placements)
            if points is not None:
                out = merge_hand(out, hand, points, stage.min_score)
        for h, hand in enumerate(HANDS):
            if hand in placements:
                r = placements[hand].region
                regions_out[h] = (r.cx, r.cy, r.side, r.angle)
                tracked_out[h] = placements[hand].tracked
        return out

    def _own_hand(self, frame: np.ndarray, hand: str, points: np.ndarray | None,
                  body: np.ndarray, placements: dict[str, HandPlacement]) -> np.ndarray | None:
        """`hand`'s points once the hand tracker has seen them; re-run on the body rule's crop
        when they belong to the other hand, None (keep the body model's) if still so."""
        if points is None or self.hands.observe(hand, points, body):
            if points is None:
                self.hands.observe(hand, None, body)
            return points
        retry = self.hands.body_placement(hand, body)
        points = None
        if retry is not None:
            placements[hand] = retry
            points = dict(self._points(frame, [retry])).get(hand)
            if points is not None and not self.hands.observe(hand, points, body):
                points = None  # still the other hand's: keep the body model's points
        if points is None:
            self.hands.observe(hand, None, body)
            placements.pop(hand, None)
        return points

    def _points(self, frame: np.ndarray, placements: list[HandPlacement]
                ) -> list[tuple[str, np.ndarray]]:
        """[(hand, its (21, 3) hand-model points in frame pixels)] for crops on one frame."""
        stage = self.model.hand_stage
        assert stage is not None
        found = stage.points_at([frame], [(0, p.hand, p.region) for p in placements])
        return [(crop.hand, points) for crop, points in found]


def describe(tracking: TrackingParams | None, smoothing: OneEuroParams | OfflineParams | None,
             hands: HandTrackingParams | None = DEFAULT_HANDS,
             people: PersonParams | None = DEFAULT_PEOPLE) -> dict:
    """The settings as a JSON-ready dict (stored in every output file)."""
    kind = ("offline" if isinstance(smoothing, OfflineParams) else
            None if smoothing is None else "causal")
    return {"tracking": None if tracking is None else dataclasses.asdict(tracking),
            "people": None if tracking is None or people is None else dataclasses.asdict(people),
            "hand_tracking": None if hands is None else dataclasses.asdict(hands),
            "smoothing": None if smoothing is None else {"kind": kind,
                                                         **dataclasses.asdict(smoothing)}}


def region_of(row: np.ndarray) -> Region:
    """A `Region` from one (cx, cy, side) row of `BatchResult.regions`."""
    return Region(float(row[0]), float(row[1]), float(row[2]))

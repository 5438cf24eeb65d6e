"""Hands tracked as hands: each hand's crop placed from its own previous hand-stage points.

The still-image hand stage places each crop from the body model's points (`crop.hand_region`):
at the demo scale those come from a 32 x 32 heatmap, shake from frame to frame, and the hand
model's points shake with the crop. As MediaPipe Holistic does, a hand found on the previous
frame is instead cropped around its previous hand-model points, and the body model only places
the crop when the hand was lost:

    frame t-1 hand points (present, >= min_points confident)
      -> square around them and around them moved by the hand's last displacement
         (a fast hand is covered where it is going), crop-rule margin and minimum side,
         rotated upright (wrist -> middle knuckle)
      -> checks against frame t's body model: its centre near this side's wrist and not nearer
         the other wrist, inside the frame, wrists not crossing, the two squares apart
      -> smoothed over time (`tracking.SquareFilter` on centre and side, a low-pass on the angle)
    otherwise the body rule on frame t's body-model points (today's still-image placement)

After the hand model ran, its mean point score updates a per-hand "present" state with
hysteresis (becomes present at `present_score`, lost below `absent_score`), and a hand whose
points landed nearer the body model's other wrist (a left crop that drifted onto the right hand)
is rejected: the caller re-runs it on the body rule's crop, so left and right never swap.
numpy only: the batch job and `live_demo` share it through `video.sequence.SequenceProcessor`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from signlang_jax.crop import (
    HANDS,
    HandCropRule,
    Region,
    body_scale,
    hand_angle,
    hand_region,
    square_around,
)
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX
from signlang_jax.video.reach import FOREARM
from signlang_jax.video.smoothing import smoothing_alpha
from signlang_jax.video.tracking import SquareFilter

WRISTS = {hand: KEYPOINT_INDEX[f"{hand.removesuffix('_hand')}_wrist"] for hand in HANDS}
ELBOWS = {hand: KEYPOINT_INDEX[f"{hand.removesuffix('_hand')}_elbow"] for hand in HANDS}
OTHER = {"left_hand": "right_hand", "right_hand": "left_hand"}


@dataclasses.dataclass(frozen=True)
class HandTrackingParams:
    """Hand tracking settings (docs/VIDEO.md says how the defaults were measured)."""

    present_score: float = 0.4  # mean hand-model score at which a hand becomes present
    absent_score: float = 0.25  # a present hand whose mean score falls below this is lost
    point_threshold: float = 0.2  # its points scoring at least this place the next crop
    min_points: int = 10  # fewer such points (of 21): the body rule places the next crop
    max_wrist_distance: float = 1.0  # shoulder widths: a crop farther from its body wrist is lost
    cross_distance: float = 0.25  # shoulder widths: body wrists closer than this are crossing
    crop_cutoff: float = 4.0  # Hz: One Euro min cutoff of each crop's centre and side
    crop_beta: float = 1.0  # its speed gain, per (crop side / s)
    angle_cutoff: float = 4.0  # Hz: low-pass of the crop's angle
    hold: float = 0.9  # a crop holds still while its new target lies inside it (1 = follow)
    lead: bool = True  # extend the crop by the hand's last displacement (fast hands)

    def __post_init__(self) -> None:
        if not 0 <= self.absent_score <= self.present_score <= 1:
            raise ValueError(f"hand tracking absent_score={self.absent_score}, present_score="
                             f"{self.present_score}; expected 0 <= absent <= present <= 1")
        if not 1 <= self.min_points <= 21:
            raise ValueError(f"hand tracking min_points={self.min_points}; expected 1..21")
        for name in ("max_wrist_distance", "crop_cutoff", "angle_cutoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"hand tracking {name}={getattr(self, name)}; expected > 0")
        if not 0 < self.hold <= 1:
            raise ValueError(f"hand tracking hold={self.hold}; expected in (0, 1]")


@dataclasses.dataclass
class _HandState:
    present: bool = False
    points: np.ndarray | None = None  # (21, 3) last hand-stage points, frame pixels
    displacement: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(2))
    angle: float | None = None  # smoothed crop angle, degrees


@dataclasses.dataclass(frozen=True)
class HandPlacement:
    """Where one hand is cropped on one frame, and whether it was tracked from its own points."""

    hand: str
    region: Region
    tracked: bool


class HandTracker:
    """Places both hands' crops frame after frame; fed the hand model's points in order."""

    def __init__(self, params: HandTrackingParams, rule: HandCropRule, width: int, height: int,
                 fps: float) -> None:
        self.params, self.rule = params, rule
        self.width, self.height = width, height
        self.dt = 1.0 / fps  # seconds to the frame being placed; set per frame for uneven rates
        self._squares = {hand: SquareFilter(params.crop_cutoff, params.crop_beta, params.hold)
                         for hand in HANDS}
        self.reset()

    def reset(self) -> None:
        """Lose both hands: the next crops come from the body rule, unsmoothed."""
        self._state = {hand: _HandState() for hand in HANDS}
        for square in self._squares.values():
            square.reset()

    def present(self, hand: str) -> bool:
        """Whether `hand` is currently found by the hand model (with hysteresis)."""
        return self._state[hand].present

    def place(self, body: np.ndarray) -> list[HandPlacement]:
        """Both hands' crops for the frame whose (64, 3) body-model points are `body`."""
        scale = body_scale(body, self.rule.score_threshold)
        crossing = self._crossing(body, scale)
        targets = {hand: None if crossing else self._tracked_target(hand, body, scale)
                   for hand in HANDS}
        left, right = targets["left_hand"], targets["right_hand"]
        if left is not None and right is not None and _overlap(left, right):
            targets = {hand: None for hand in HANDS}  # both followed the same hand
        placements = []
        for hand in HANDS:
            target = targets[hand]
            if target is None:
                target = hand_region(body, hand, self.rule, scale)
                if target is None:  # no wrist, no hand points: nothing to crop
                    self._forget(hand)
                    continue
            placements.append(HandPlacement(hand, self._smooth(hand, target),
                                            targets[hand] is not None))
        return placements

    def observe(self, hand: str, points: np.ndarray | None, body: np.ndarray) -> bool:
        """Take the hand model's (21, 3) frame-pixel points of `hand`; False: a left/right swap.

        None (no crop this frame) loses the hand. A rejected swap changes nothing: the caller
        re-runs the hand on the body rule's crop (`body_placement`) and observes that instead.
        """
        state = self._state[hand]
        if points is None:
            self._forget(hand)
            return True
        scale = body_scale(body, self.rule.score_threshold)
        if self._swapped(hand, points, body, scale):
            return False
        mean_score = float(points[:, 2].mean())
        p = self.params
        state.present = mean_score >= (p.absent_score if state.present else p.present_score)
        trusted = points[:, 2] >= p.point_threshold
        if state.points is not None and trusted.sum() >= p.min_points:
            before = state.points[:, 2] >= p.point_threshold
            both = trusted & before
            if both.any():
                state.displacement = (points[both, :2] - state.points[both, :2]).mean(0)
        else:
            state.displacement = np.zeros(2)
        state.points = np.array(points, np.float64)
        return True

    def body_placement(self, hand: str, body: np.ndarray) -> HandPlacement | None:
        """The body rule's crop of `hand` (after a rejected swap); restarts that hand's state."""
        self._forget(hand)
        region = hand_region(body, hand, self.rule)
        return None if region is None else HandPlacement(hand, self._smooth(hand, region), False)

    def _forget(self, hand: str) -> None:
        self._state[hand] = _HandState()
        self._squares[hand].reset()

    def _crossing(self, body: np.ndarray, scale: float) -> bool:
        """Whether the body model's wrists are so close that only it can tell the hands apart."""
        wrists = [WRISTS[hand] for hand in HANDS]
        if not math.isfinite(scale) or not (body[wrists, 2] >= self.rule.score_threshold).all():
            return False
        gap = float(np.linalg.norm(body[wrists[0], :2] - body[wrists[1], :2]))
        return gap < self.params.cross_distance * scale

    def _tracked_target(self, hand: str, body: np.ndarray, scale: float) -> Region | None:
        """The square around the hand's previous points; None: the body rule places it."""
        state, p = self._state[hand], self.params
        if not state.present or state.points is None:
            return None
        trusted = state.points[:, 2] >= p.point_threshold
        if trusted.sum() < p.min_points:
            return None
        points = state.points[trusted, :2]
        if p.lead:
            points = np.concatenate([points, points + state.displacement])
        composite = np.array(body, np.float64)
        composite[GROUPS[hand]] = state.points
        trusted_all = np.zeros(len(body), bool)
        trusted_all[GROUPS[hand]] = trusted
        angle = hand_angle(composite, hand, trusted_all) if self.rule.align else 0.0
        min_side = self.rule.min_side * scale if math.isfinite(scale) else 0.0
        target = square_around(points, self.rule.margin, min_side, angle)
        if not (0 <= target.cx < self.width and 0 <= target.cy < self.height):
            return None  # the hand left the frame
        if self._far_from_own_wrist(hand, np.array([target.cx, target.cy]), body, scale):
            return None
        return target

    def _far_from_own_wrist(self, hand: str, centre: np.ndarray, body: np.ndarray,
                            scale: float) -> bool:
        """Whether a hand at `centre` is nearer the other wrist, or too far from its own (or,
        without a wrist, from its elbow by more than a forearm more)."""
        trusted = body[:, 2] >= self.rule.score_threshold
        own, other = WRISTS[hand], WRISTS[OTHER[hand]]
        if not math.isfinite(scale):
            return False  # nothing to check against: keep following the hand
        if not trusted[own]:
            elbow = ELBOWS[hand]
            return bool(trusted[elbow]) and float(np.linalg.norm(centre - body[elbow, :2])) > (
                self.params.max_wrist_distance + FOREARM) * scale
        d_own = float(np.linalg.norm(centre - body[own, :2]))
        if d_own > self.params.max_wrist_distance * scale:
            return True
        return bool(trusted[other]) and float(np.linalg.norm(centre - body[other, :2])) < d_own

    def _swapped(self, hand: str, points: np.ndarray, body: np.ndarray, scale: float) -> bool:
        """Whether the hand model's points of `hand` belong to the other hand (body wrists say)."""
        trusted = points[:, 2] >= self.params.point_threshold
        if trusted.sum() < self.params.min_points or self._crossing(body, scale):
            return False
        centre = points[trusted, :2].mean(0)
        wrists_trusted = body[[WRISTS[h] for h in HANDS], 2] >= self.rule.score_threshold
        if not wrists_trusted.all():
            return False
        d_own = float(np.linalg.norm(centre - body[WRISTS[hand], :2]))
        d_other = float(np.linalg.norm(centre - body[WRISTS[OTHER[hand]], :2]))
        return d_other < d_own

    def _smooth(self, hand: str, target: Region) -> Region:
        """The target square after the hand's square filter and angle low-pass."""
        cx, cy, side = self._squares[hand].update(
            np.array([target.cx, target.cy, target.side]), self.dt)
        state = self._state[hand]
        if state.angle is None:
            angle = target.angle
        else:
            turn = (target.angle - state.angle + 180.0) % 360.0 - 180.0
            angle = state.angle + float(smoothing_alpha(self.params.angle_cutoff, self.dt)) * turn
        state.angle = angle
        return Region(float(cx), float(cy), float(side), angle)


def _overlap(a: Region, b: Region) -> bool:
    """Whether two squares' centres are within half their mean side (the same hand twice)."""
    return math.hypot(a.cx - b.cx, a.cy - b.cy) < 0.25 * (a.side + b.side)

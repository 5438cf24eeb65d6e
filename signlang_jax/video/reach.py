"""Which of a frame's points can belong to the signer: anatomical reach from their shoulders.

The body model is single-person: on a crop that also holds part of a second person it may put
a wrist, a hand or an ear on them, and the trackers would follow. Every point is therefore
checked against the signer's body before it is used: each keypoint has a parent in a tree rooted
at the centre of the shoulders (head points and shoulders hang from the root, an elbow from its
shoulder, a wrist and every hand point from the elbow, hips from shoulders,
knees from hips, ankles from knees) and a longest distance from it in shoulder widths
(`REACH_BOUNDS`). A point farther from its nearest accepted ancestor than the lengths on the way
plus the model's own error (`NOISE`) is not the signer's: its score is set to 0 (the job's
"not found"), its position is kept.

The shoulder centre and width come from the frame's own shoulders when both are confident and
agree with the signer seen so far (`SignerFrame`), else from the signer seen so far: a shoulder
put on the other person cannot move the root. The width remembered shrinks slowly (a signer
turning sideways narrows the shoulders, not the arms).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from signlang_jax.keypoints import FACE_NAMES, HAND_JOINTS, KEYPOINT_INDEX

ROOT = -1  # the shoulders' centre
# Longest distance, in shoulder widths, from each point to its parent: a real upper arm is about
# 0.8 shoulder widths, a forearm 0.7, a hand 0.5 (the renderer's: 0.6-0.68, 0.55-0.62,
# 0.45-0.55); a check allows the sum of the lengths on the way plus NOISE, once.
HEAD, SHOULDER, UPPER_ARM, FOREARM, HAND = 1.1, 0.6, 0.85, 0.8, 0.6
TORSO, THIGH, SHIN = 2.0, 1.2, 1.2
NOISE = 0.35  # shoulder widths: the model's own error on the two points measured


def _reach_tree() -> tuple[tuple[int, float], ...]:
    """(parent, length in shoulder widths) of every keypoint, indexed by keypoint."""
    k = KEYPOINT_INDEX
    tree: dict[int, tuple[int, float]] = {}
    for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear", *FACE_NAMES):
        tree[k[name]] = (ROOT, HEAD)
    for side in ("left", "right"):
        tree[k[f"{side}_shoulder"]] = (ROOT, SHOULDER)
        tree[k[f"{side}_elbow"]] = (k[f"{side}_shoulder"], UPPER_ARM)
        tree[k[f"{side}_wrist"]] = (k[f"{side}_elbow"], FOREARM)
        tree[k[f"{side}_hip"]] = (k[f"{side}_shoulder"], TORSO)
        tree[k[f"{side}_knee"]] = (k[f"{side}_hip"], THIGH)
        tree[k[f"{side}_ankle"]] = (k[f"{side}_knee"], SHIN)
        for joint in HAND_JOINTS:  # from the elbow: the body model's wrist is its least sure
            tree[k[f"{side}_hand_{joint}"]] = (k[f"{side}_elbow"], FOREARM + HAND)
    assert sorted(tree) == list(range(len(KEYPOINT_INDEX)))
    return tuple(tree[i] for i in range(len(tree)))


REACH_BOUNDS: tuple[tuple[int, float], ...] = _reach_tree()

def _depth(index: int) -> int:
    """Steps from the root to keypoint `index` in the reach tree."""
    parent = REACH_BOUNDS[index][0]
    return 0 if parent == ROOT else 1 + _depth(parent)


_ORDER: tuple[int, ...] = tuple(sorted(range(len(REACH_BOUNDS)), key=_depth))  # parents first
_SHOULDERS = (KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"])


def within_reach(keypoints: np.ndarray, centre: np.ndarray, scale: float, threshold: float,
                 slack: float = 1.0) -> np.ndarray:
    """Bool (64,): points within reach of their nearest accepted ancestor.

    keypoints: (64, >=3) x, y, score; centre: the shoulders' centre; scale: shoulder width in
    pixels; slack multiplies every allowance. Points from half the threshold are measured (a
    weak model's elbow at 0.25 still says where the arm is); lower ones are never accepted. A
    missing ancestor is skipped (its length added); below an ancestor that was found out of
    reach nothing is accepted (an elbow on someone else takes that wrist and hand with it).
    """
    considered = keypoints[:, 2] >= threshold / 2
    accepted = np.zeros(len(keypoints), bool)
    for i in _ORDER:
        if not considered[i]:
            continue
        parent, length = REACH_BOUNDS[i]
        while parent != ROOT and not accepted[parent]:
            if considered[parent]:  # found but out of reach: this limb is someone else's
                break
            parent, more = REACH_BOUNDS[parent]  # missing: measure from further up
            length += more
        if parent != ROOT and not accepted[parent]:
            continue
        anchor = centre if parent == ROOT else keypoints[parent, :2]
        limit = slack * (length + NOISE) * scale
        accepted[i] = np.linalg.norm(keypoints[i, :2] - anchor) <= limit
    return accepted


@dataclasses.dataclass(frozen=True)
class Root:
    """Where a body's reach is measured from: its shoulders' centre and width (pixels)."""

    centre: np.ndarray
    width: float
    whole: bool  # both shoulders and the nose found and in an upright body's places


def own_root(keypoints: np.ndarray, threshold: float) -> Root | None:
    """The root of one frame's points alone, or None (no shoulder, or one without the nose).

    Anchors count from half the threshold (a weak model's shoulders score low, and the anchors
    only place the bounds). Both shoulders agree with the nose when each is 0.25-2 shoulder
    widths from it, the farther at most twice the nearer, and the nose is above the shoulders'
    centre (at most a quarter width below it) and within 0.75 widths of it sideways: an upright
    person (`Root.whole`). Otherwise a shoulder is on someone else or missing, and the root is
    the shoulder nearer the nose moved half a width towards the nose's side, with the width the
    nose's distance to it (a neck and half the shoulders are about one width).
    """
    anchor = threshold / 2
    found = [i for i in _SHOULDERS if keypoints[i, 2] >= anchor]
    nose = keypoints[KEYPOINT_INDEX["nose"]]
    if not found or (len(found) == 1 and nose[2] < anchor):
        return None
    pair = keypoints[found, :2].astype(np.float64)
    width = float(np.linalg.norm(pair[0] - pair[-1]))
    if nose[2] < anchor:
        return Root(pair.mean(0), width, False) if width > 1.0 else None
    gaps = np.linalg.norm(pair - nose[:2], axis=1)
    near, far = float(gaps.min()), float(gaps.max())
    centre = pair.mean(0)
    upright = (nose[1] <= centre[1] + 0.25 * width
               and abs(nose[0] - centre[0]) <= 0.75 * width)
    if len(found) == 2 and 0.25 * width <= near and far <= 2.0 * min(width, near) + 1e-9:
        return Root(centre, width, upright)
    nearer = pair[int(gaps.argmin())]
    side = np.sign(nose[0] - nearer[0]) or 1.0
    return Root(nearer + [side * near / 2, 0.0], max(near, 1.0), False)


@dataclasses.dataclass
class SignerFrame:
    """The signer's shoulders seen so far: centre (px) and width (px), or nothing yet."""

    centre: np.ndarray | None = None
    scale: float = math.nan

    def root(self, keypoints: np.ndarray, threshold: float) -> tuple[np.ndarray, float] | None:
        """This frame's (shoulder centre, width): its own shoulders if they agree with the
        signer seen so far (or, with nothing seen yet, with the nose: `own_root`), else the
        remembered ones; None: nothing to measure from."""
        own = own_root(keypoints, threshold)
        if self.centre is None:
            return None if own is None else (own.centre, own.width)
        if own is not None and 0.5 * self.scale <= own.width <= 2.0 * self.scale and (
                np.linalg.norm(own.centre - self.centre) <= self.scale):
            return own.centre, own.width
        return self.centre, self.scale

    def remember(self, centre: np.ndarray, width: float, dt: float) -> None:
        """Keep this frame's root; the width may grow at once but shrinks with a 2 s time
        constant (turning sideways narrows the shoulders, not the arms)."""
        if self.centre is not None and width < self.scale:
            width = self.scale + (width - self.scale) * (1.0 - math.exp(-dt / 2.0))
        self.centre, self.scale = np.asarray(centre, np.float64), float(width)

    def forget(self) -> None:
        """No signer yet (a new detection)."""
        self.centre, self.scale = None, math.nan


def keep_signer(keypoints: np.ndarray, frame: SignerFrame, threshold: float, dt: float,
                slack: float = 1.0) -> np.ndarray:
    """The frame's (64, 3) points with every point out of the signer's reach set to score 0;
    updates `frame` (unchanged points if there is no root to measure from)."""
    root = frame.root(keypoints, threshold)
    if root is None:
        return keypoints
    centre, scale = root
    accepted = within_reach(keypoints, centre, scale, threshold, slack)
    out = np.array(keypoints, copy=True)
    out[(keypoints[:, 2] >= threshold / 2) & ~accepted, 2] = 0.0
    frame.remember(centre, scale, dt)
    return out

"""Finding the signer when a frame holds more than one person.

The body model is single-person: on a whole frame with two people its per-keypoint argmax takes
each point from whichever person answers more strongly, so a whole-frame detection mixes them
and the region around its points covers both. Each detection (the first frame, and every frame
after tracking was lost) therefore looks for the people first:

1. the body model runs on the whole frame; every peak of its head heatmaps (nose and eyes; local
   maxima of at least `seed_score` and `seed_ratio` of the highest) seeds a person, at most
   `max_seeds`;
2. the whole-frame points are kept to one body (`video.reach`); the square around them, the
   square around the points that body left out (someone else's), and around each seed squares
   of `seed_sides` of the frame's shorter side (the head near the top) are cut and run; the
   points each gives are kept to one body, and the square around them is run once more;
3. each result with enough points is a candidate (its points, its shoulders and its square);
   candidates whose shoulders nearly coincide are the same person (more points win);
4. the policy picks one (`choose`), preferring candidates whose shoulders and nose stand as an
   upright person's: at the first detection, by default, the person with the widest shoulders,
   a little in favour of the one nearest the centre (`signer`), or the leftmost / rightmost one
   (`left`, `right`: each participant of a recorded dialogue in its own run); after a loss, the
   candidate nearest the region the signer was last tracked in, within `reacquire` of its
   side, and nobody otherwise - until the signer has been gone `forget_after` seconds, when
   the first-detection rule applies again.

A model without heatmaps gives no seeds: the whole-frame points, kept to one body, are the only
candidate.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from signlang_jax.crop import Region, apply_affine, full_frame_region, invert_affine
from signlang_jax.dark import input_ratio
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import KEYPOINT_INDEX
from signlang_jax.video.reach import Root, SignerFrame, keep_signer, own_root
from signlang_jax.video.tracking import TrackingParams, signer_region

PERSON_POLICIES: tuple[str, ...] = ("signer", "left", "right")
HEAD_CHANNELS = tuple(KEYPOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye"))


@dataclasses.dataclass(frozen=True)
class PersonParams:
    """How the signer is found among several people (docs/VIDEO.md explains each default)."""

    policy: str = "signer"  # signer | left | right: whom the first detection takes
    seed_score: float = 0.08  # a head-heatmap peak at least this high seeds a candidate
    seed_ratio: float = 0.1  # ... and at least this fraction of the highest peak
    max_seeds: int = 4
    seed_sides: tuple[float, ...] = (0.5, 0.9)  # seed squares, x the frame's shorter side
    centre_weight: float = 0.25  # signer policy: width x (1 - this x distance to the centre)
    reacquire: float = 1.0  # after a loss: a candidate within this many last-region sides
    forget_after: float = 2.0  # seconds lost, after which the first-detection rule applies
    slack: float = 1.0  # multiplies every reach bound of `video.reach`

    def __post_init__(self) -> None:
        if self.policy not in PERSON_POLICIES:
            raise ValueError(f"person policy {self.policy!r}; expected one of "
                             f"{', '.join(PERSON_POLICIES)}")
        if not 0 < self.seed_ratio <= 1 or not 0 <= self.seed_score < 1:
            raise ValueError(f"person seed_score={self.seed_score}, seed_ratio="
                             f"{self.seed_ratio}; expected 0 <= score < 1, 0 < ratio <= 1")
        if self.max_seeds < 0 or not all(0 < s <= 2 for s in self.seed_sides):
            raise ValueError(f"person max_seeds={self.max_seeds}, seed_sides="
                             f"{self.seed_sides}; expected >= 0 and sides in (0, 2]")
        if self.reacquire <= 0 or self.forget_after < 0 or self.slack <= 0:
            raise ValueError(f"person reacquire={self.reacquire}, forget_after="
                             f"{self.forget_after}, slack={self.slack}; expected > 0, >= 0, > 0")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One person found on a frame: points (64, 3) in frame pixels and the square around them."""

    keypoints: np.ndarray
    region: Region
    score_threshold: float = 0.3
    root: Root | None = None  # its shoulders (None: none found; the region stands for them)
    width: float | None = None  # shoulder width over every view of this person (`distinct`)

    @property
    def whole(self) -> bool:
        """Shoulders and nose in an upright body's places (`reach.Root.whole`)."""
        return self.root is not None and bool(self.root.whole)

    @property
    def size(self) -> float:
        """Shoulder width in pixels: the median over the crops that found this person, else
        this crop's, else a third of the region's side."""
        if self.width is not None:
            return self.width
        return self.root.width if self.root is not None else self.region.side / 3

    @property
    def centre(self) -> np.ndarray:
        """The shoulders' centre (the region's without shoulders)."""
        if self.root is not None:
            return np.asarray(self.root.centre, np.float64)
        return np.array([self.region.cx, self.region.cy])

    @property
    def found(self) -> int:
        """How many points are confident after the reach check."""
        return int((self.keypoints[:, 2] >= self.score_threshold).sum())


def head_peaks(heatmaps: np.ndarray, params: PersonParams) -> np.ndarray:
    """(M, 2) heatmap-pixel positions of head peaks (nose and eyes maps), strongest first."""
    head = np.max(heatmaps[list(HEAD_CHANNELS)], axis=0).astype(np.float32)
    top = float(head.max()) if head.size else 0.0
    if top <= 0:
        return np.zeros((0, 2))
    # A local maximum of its 5 x 5 neighbourhood: eyes and nose of one head make one peak.
    peak = (head >= cv2.dilate(head, np.ones((5, 5), np.uint8))) & (
        head >= max(params.seed_score, params.seed_ratio * top))
    ys, xs = np.nonzero(peak)
    order = np.argsort(-head[ys, xs], kind="stable")[:params.max_seeds]
    return np.stack([xs[order], ys[order]], 1).astype(np.float64)


def seed_regions(seeds: np.ndarray, width: int, height: int, params: PersonParams
                 ) -> list[Region]:
    """Squares around each seed (frame pixels) of each of `seed_sides`, the head near the top."""
    shorter = min(width, height)
    return [Region(float(x), float(y) + 0.3 * side, side)
            for x, y in seeds for side in (f * shorter for f in params.seed_sides)]


def scan_regions(width: int, height: int) -> list[Region]:
    """Squares of the frame's shorter side along its longer side, half a side apart, ends
    included: on a wide frame each person is seen at least as large as on the whole frame and
    nearer the middle of some square (none for a square frame: the whole frame is that)."""
    shorter, longer = min(width, height), max(width, height)
    count = math.ceil((longer - shorter) / (shorter / 2)) + 1 if longer > 1.1 * shorter else 0
    centres = np.linspace(shorter / 2, longer - shorter / 2, count) - 0.5
    if width >= height:
        return [Region(float(c), (height - 1) / 2, float(shorter)) for c in centres]
    return [Region((width - 1) / 2, float(c), float(shorter)) for c in centres]


def choose(candidates: list[Candidate], params: PersonParams, width: int, height: int,
           last: Region | None) -> Candidate | None:
    """The candidate the policy takes; `last`: the region the signer was last tracked in (a
    re-detection), None for a first detection."""
    if not candidates:
        return None
    # A skeleton whose shoulders and nose disagree is likely two people's: the last resort.
    candidates = [c for c in candidates if c.whole] or candidates
    if last is not None:
        def distance(c: Candidate) -> float:
            return float(np.hypot(*(c.centre - [last.cx, last.cy])))
        nearest = min(candidates, key=distance)
        return nearest if distance(nearest) <= params.reacquire * last.side else None
    if params.policy == "left":
        return min(candidates, key=lambda c: c.centre[0])
    if params.policy == "right":
        return max(candidates, key=lambda c: c.centre[0])
    half_diagonal = math.hypot(width, height) / 2

    def size_and_centrality(c: Candidate) -> float:
        off = float(np.hypot(*(c.centre - [(width - 1) / 2, (height - 1) / 2])))
        return c.size * (1.0 - params.centre_weight * min(off / half_diagonal, 1.0))
    return max(candidates, key=size_and_centrality)


def distinct(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate per person: shoulders within half a width of each other and widths within
    1.5x are one person's. The candidate with the most confident points stays, its width the
    median of the group's (one crop's shoulders are a noisy measure of who is larger)."""
    groups: list[list[Candidate]] = []
    for c in sorted(candidates, key=lambda c: -c.found):
        for group in groups:
            k = group[0]
            if (float(np.hypot(*(c.centre - k.centre))) < 0.5 * max(c.size, k.size)
                    and max(c.size, k.size) < 1.5 * min(c.size, k.size)):
                group.append(c)
                break
        else:
            groups.append([c])
    return [dataclasses.replace(g[0], width=float(np.median([c.size for c in g])))
            for g in groups]


class PersonFinder:
    """Detects the people of a frame and picks the signer (module docstring)."""

    def __init__(self, model: RegionPredictor, params: PersonParams, tracking: TrackingParams,
                 width: int, height: int) -> None:
        self.model, self.params, self.tracking = model, params, tracking
        self.width, self.height = width, height
        self.last: Region | None = None  # where the signer was last tracked
        self.lost_at: float | None = None  # when (seconds) the signer was lost

    def candidates(self, frame: np.ndarray) -> list[Candidate]:
        """Every distinct person found on one frame."""
        whole = full_frame_region(self.width, self.height)
        mapped = self.model.predict_body_maps([frame], [whole])
        if mapped is None:
            points = self.model.predict_body([frame], [whole])[0]
            one = self._candidate(points)
            return [] if one is None else [one]
        points, heatmaps, matrix = mapped[0][0], mapped[1][0], mapped[2][0]
        ratio = input_ratio(self.model.input_size, heatmaps.shape[-1], self.model.udp)
        seeds = apply_affine(head_peaks(heatmaps, self.params) * ratio, invert_affine(matrix))
        kept, root = self._one_body(points)
        # The whole frame's points of one body, and those it left out: someone else.
        rest = np.array(points, copy=True)
        rest[kept[:, 2] >= self.tracking.score_threshold, 2] = 0.0
        first = [r for r in (self._square(kept, root), self._region(rest)) if r is not None]
        first += seed_regions(seeds, self.width, self.height, self.params)
        first += scan_regions(self.width, self.height)
        refined = [r for r in map(self._region, self._run(frame, first)) if r is not None]
        found = [self._candidate(p) for p in self._run(frame, refined)]
        return distinct([c for c in found if c is not None])

    def detect(self, frame: np.ndarray, time: float) -> Candidate | None:
        """The signer on a frame with no tracked region (first frame, or after a loss)."""
        if self.lost_at is not None and time - self.lost_at > self.params.forget_after:
            self.last = None  # gone too long: whoever the first-detection rule finds
        return choose(self.candidates(frame), self.params, self.width, self.height, self.last)

    def tracked(self, region: Region) -> None:
        """The signer is tracked in `region` on this frame."""
        self.last, self.lost_at = region, None

    def lost(self, time: float) -> None:
        """The signer was lost on the frame at `time` (the first loss counts)."""
        if self.lost_at is None:
            self.lost_at = time

    def _run(self, frame: np.ndarray, regions: list[Region]) -> np.ndarray:
        if not regions:
            return np.zeros((0, 64, 3), np.float32)
        return self.model.predict_body([frame] * len(regions), regions)

    def _one_body(self, points: np.ndarray) -> tuple[np.ndarray, Root | None]:
        """The points kept to the body of their own shoulders (no earlier signer to go by) and
        that body's root (None: no shoulders to measure from; all points kept)."""
        threshold = self.tracking.score_threshold
        root = own_root(points, threshold)
        if root is None:
            return points, None
        return keep_signer(points, SignerFrame(), threshold, 0.0, self.params.slack), root

    def _square(self, kept: np.ndarray, root: Root | None) -> Region | None:
        """The tracker's square around kept points, at least `min_body_scales` shoulder widths
        (a weak model's shoulders may score under the threshold: the root's width counts)."""
        region = signer_region(kept, self.tracking)
        if region is None or root is None:
            return region
        return dataclasses.replace(region, side=max(region.side,
                                                    self.tracking.min_body_scales * root.width))

    def _region(self, points: np.ndarray) -> Region | None:
        return self._square(*self._one_body(points))

    def _candidate(self, points: np.ndarray) -> Candidate | None:
        kept, root = self._one_body(points)
        region = self._square(kept, root)
        if region is None:
            return None
        return Candidate(kept, region, self.tracking.score_threshold, root)

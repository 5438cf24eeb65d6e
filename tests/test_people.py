"""Two people in frame: the reach check, person candidates, the policy, and the job end to end
on a stand-in model that mixes people as a single-person model does."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from signlang_jax.crop import Region
from signlang_jax.evaluation.identity import mixing_summary, points_on_other
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, NUM_KEYPOINTS
from signlang_jax.synth.clips import render_clip
from signlang_jax.video.people import (
    Candidate,
    PersonParams,
    choose,
    distinct,
    head_peaks,
    scan_regions,
)
from signlang_jax.video.reach import Root, SignerFrame, keep_signer, own_root, within_reach
from signlang_jax.video.sequence import SequenceProcessor
from signlang_jax.video.tracking import TrackingParams

K = KEYPOINT_INDEX
RIGHT_ARM = [K["right_wrist"], *GROUPS["right_hand"]]


def skeleton(cx: float, cy: float, s: float, score: float = 0.9) -> np.ndarray:
    """(64, 3) an upright person: shoulders' centre (cx, cy), shoulder width s."""
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    places = {"nose": (0, -0.8), "left_eye": (0.15, -0.9), "right_eye": (-0.15, -0.9),
              "left_ear": (0.3, -0.85), "right_ear": (-0.3, -0.85),
              "left_shoulder": (0.5, 0), "right_shoulder": (-0.5, 0),
              "left_elbow": (0.7, 0.7), "right_elbow": (-0.7, 0.7),
              "left_wrist": (0.6, 1.3), "right_wrist": (-0.6, 1.3),
              "left_hip": (0.35, 1.6), "right_hip": (-0.35, 1.6)}
    for name, (dx, dy) in places.items():
        kp[K[name]] = (cx + dx * s, cy + dy * s, score)
    for side in ("left", "right"):
        wrist = kp[K[f"{side}_wrist"], :2]
        for j, index in enumerate(GROUPS[f"{side}_hand"]):
            angle = 2 * math.pi * j / 21
            kp[index] = (wrist[0] + 0.15 * s * math.cos(angle),
                         wrist[1] + 0.2 * s + 0.15 * s * math.sin(angle), score)
    for face, body in zip(GROUPS["face"], range(5), strict=True):
        kp[face] = kp[body]
    return kp


# ----------------------------------------------------------------------------- reach


def test_within_reach_by_hand():
    """Shoulder width 100 px: a wrist may be (0.8 + 0.35) x 100 = 115 px from its elbow."""
    kp = skeleton(300, 200, 100)
    elbow = kp[K["right_elbow"], :2]
    kp[K["right_wrist"], :2] = elbow + [0, 114]
    assert within_reach(kp, np.array([300.0, 200]), 100.0, 0.3)[K["right_wrist"]]
    kp[K["right_wrist"], :2] = elbow + [0, 116]
    accepted = within_reach(kp, np.array([300.0, 200]), 100.0, 0.3)
    assert not accepted[K["right_wrist"]] and accepted[K["left_wrist"]]
    # Hand points hang from the elbow: (0.8 + 0.6 + 0.35) x 100 = 175 px.
    hand = GROUPS["right_hand"].start
    kp[hand, :2] = elbow + [0, 174]
    assert within_reach(kp, np.array([300.0, 200]), 100.0, 0.3)[hand]
    # A missing elbow is skipped: the wrist is measured from the shoulder, 0.85 + 0.8 + 0.35.
    kp[K["right_elbow"], 2] = 0.1  # under half the threshold: missing
    shoulder = kp[K["right_shoulder"], :2]
    kp[K["right_wrist"], :2] = shoulder + [0, 199]
    assert within_reach(kp, np.array([300.0, 200]), 100.0, 0.3)[K["right_wrist"]]
    kp[K["right_wrist"], :2] = shoulder + [0, 201]
    assert not within_reach(kp, np.array([300.0, 200]), 100.0, 0.3)[K["right_wrist"]]
    # An elbow found out of reach takes its wrist and hand with it, wherever they are.
    kp = skeleton(300, 200, 100)
    kp[K["right_elbow"], :2] = (600, 200)
    accepted = within_reach(kp, np.array([300.0, 200]), 100.0, 0.3)
    assert not accepted[RIGHT_ARM + [K["right_elbow"]]].any()
    assert accepted[K["left_wrist"]]


def test_own_root_by_hand():
    kp = skeleton(300, 200, 100)
    root = own_root(kp, 0.3)
    np.testing.assert_allclose(root.centre, [300, 200])
    assert root.width == pytest.approx(100) and root.whole
    # The left shoulder on someone 400 px away: the root is the right shoulder moved half the
    # nose's distance towards it, the width that distance (0.5, 0.8) x 100 -> 94.34 px.
    kp[K["left_shoulder"], :2] = (750, 200)
    root = own_root(kp, 0.3)
    assert not root.whole and root.width == pytest.approx(math.hypot(50, 80), abs=1e-3)
    np.testing.assert_allclose(root.centre, [250 + root.width / 2, 200], atol=1e-6)
    kp = skeleton(300, 200, 100)
    kp[K["nose"], 2] = 0.0  # no nose: the shoulders as they are, not checked
    assert own_root(kp, 0.3).width == pytest.approx(100) and not own_root(kp, 0.3).whole
    kp[K["left_shoulder"], 2] = 0.0
    assert own_root(kp, 0.3) is None


def test_signer_frame_keeps_to_the_signer_seen_so_far():
    frame = SignerFrame()
    person = skeleton(300, 200, 100)
    kept = keep_signer(person, frame, 0.3, 0.04)
    np.testing.assert_array_equal(kept, person)  # all within reach: unchanged
    assert frame.scale == pytest.approx(100)
    # Shoulders that jump to someone else do not move the root: their points are dropped.
    other = skeleton(700, 200, 60)
    kept = keep_signer(other, frame, 0.3, 0.04)
    assert (kept[:, 2] == 0).all()
    np.testing.assert_allclose(frame.centre, [300, 200])
    # A narrower signer (turning sideways) shrinks the width with a 2 s time constant.
    keep_signer(skeleton(300, 200, 50), frame, 0.3, 2.0)
    assert frame.scale == pytest.approx(100 + (50 - 100) * (1 - math.exp(-1)))


# ----------------------------------------------------------------------------- candidates


def test_head_peaks_and_scan_squares():
    maps = np.zeros((NUM_KEYPOINTS, 32, 32), np.float32)
    yy, xx = np.mgrid[:32, :32]
    maps[0] = 0.9 * np.exp(-((xx - 8) ** 2 + (yy - 6) ** 2) / 4.0)
    maps[1] = 0.5 * np.exp(-((xx - 24) ** 2 + (yy - 10) ** 2) / 4.0)
    maps[2, 30, 30] = 0.05  # under the floor
    peaks = head_peaks(maps, PersonParams())
    np.testing.assert_array_equal(peaks, [[8, 6], [24, 10]])
    assert len(head_peaks(maps, PersonParams(seed_ratio=0.6))) == 1
    assert [r.cx for r in scan_regions(640, 360)] == [179.5, 319.5, 459.5]
    assert {r.side for r in scan_regions(640, 360)} == {360.0}
    assert [r.cy for r in scan_regions(360, 640)] == [179.5, 319.5, 459.5]
    assert scan_regions(400, 380) == []


def candidate(cx: float, cy: float, width: float, whole: bool = True) -> Candidate:
    root = Root(np.array([cx, cy]), width, whole)
    return Candidate(skeleton(cx, cy, width), Region(cx, cy + width, 3 * width), 0.3, root)


def test_choose_by_policy():
    big_edge, small_centre = candidate(100, 150, 80), candidate(320, 150, 60)
    params = PersonParams()
    # signer: width x (1 - 0.25 x distance to the centre / half diagonal): 80 x 0.835 > 60.
    assert choose([small_centre, big_edge], params, 640, 360, None) is big_edge
    assert choose([small_centre, candidate(20, 30, 62)], params, 640, 360, None) is small_centre
    assert choose([small_centre, big_edge], PersonParams(policy="right"), 640, 360,
                  None) is small_centre
    assert choose([small_centre, big_edge], PersonParams(policy="left"), 640, 360,
                  None) is big_edge
    # After a loss: the nearest to where the signer was, within one side of that region.
    last = Region(300, 150, 100)
    assert choose([small_centre, big_edge], params, 640, 360, last) is small_centre
    assert choose([big_edge], params, 640, 360, last) is None  # 200 px away > 100
    # A skeleton whose shoulders and nose disagree is taken only when nothing else is found.
    mixed = candidate(300, 150, 200, whole=False)
    assert choose([mixed, small_centre], params, 640, 360, None) is small_centre
    assert choose([mixed], params, 640, 360, None) is mixed


def test_distinct_merges_views_of_one_person_with_the_median_width():
    views = [candidate(100, 100, 50), candidate(110, 100, 60), candidate(104, 98, 56),
             candidate(400, 100, 55)]
    people = distinct(views)
    assert len(people) == 2
    assert sorted(p.size for p in people) == [55.0, 56.0]


# ----------------------------------------------------------------------------- end to end


class TwoPeopleModel:
    """A stand-in single-person body model on frames of bright rectangles, one per person.

    Each rectangle (2 s wide, 2.8 s tall, s = its shoulder width) is a person whose shoulders'
    centre is 1.1 s below its top. The model answers for the largest rectangle in view, except
    that its right wrist and right hand go to another rectangle when one is in view (as a
    single-person model's argmax mixes people). Heatmaps hold a head peak at every person's
    nose, so person finding sees them all.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size

    def people(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """(cx, cy, s, area) of each rectangle in view, largest first."""
        bright = (image[..., 0] > 128).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(bright)
        found = []
        for x, y, w, _height, area in stats[1:count]:
            if area < 4:
                continue
            s = w / 2.0
            found.append((x + w / 2.0 - 0.5, y - 0.5 + 1.1 * s, s, float(area)))
        return sorted(found, key=lambda p: -p[3])

    def maps(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (N, 64, 3) input pixels, heatmaps (N, 64, S/4, S/4))."""
        n, side = len(images), self.size // 4
        points = np.zeros((n, NUM_KEYPOINTS, 3), np.float32)
        maps = np.zeros((n, NUM_KEYPOINTS, side, side), np.float32)
        yy, xx = np.mgrid[:side, :side]
        for i, image in enumerate(images):
            people = self.people(image)
            if not people:
                continue
            cx, cy, s, _ = people[0]
            points[i] = skeleton(cx, cy, s)
            if len(people) > 1:
                other = skeleton(*people[1][:3])
                points[i, RIGHT_ARM] = other[RIGHT_ARM]
            for px, py, ps, _ in people:
                nose = np.array([px, py - 0.8 * ps]) / 4.0
                maps[i, 0] = np.maximum(maps[i, 0], 0.9 * np.exp(
                    -((xx - nose[0]) ** 2 + (yy - nose[1]) ** 2) / 2.0))
        return points, maps

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, 64, 3) keypoints in input pixels."""
        return self.maps(images)[0]


def people_frame(people: list[tuple[float, float, float]], width: int = 320,
                 height: int = 180) -> np.ndarray:
    """A dark frame with one bright rectangle per (shoulders' cx, cy, s)."""
    frame = np.full((height, width, 3), 20, np.uint8)
    for cx, cy, s in people:
        x0, y0 = round(cx - s), round(cy - 1.1 * s)
        frame[max(y0, 0):max(y0 + round(2.8 * s), 0), max(x0, 0):max(x0 + round(2 * s), 0)] = 255
    return frame


def run(frames: list[np.ndarray], people: PersonParams | None, fps: float = 25.0
        ) -> np.ndarray:
    model = TwoPeopleModel()
    predictor = RegionPredictor(model, 64, None, 1, "two people", model.maps)
    processor = SequenceProcessor(predictor, frames[0].shape[1], frames[0].shape[0], fps,
                                  TrackingParams(min_body_scales=2.0), None, None, people)
    return np.concatenate([processor.process([f]).raw for f in frames])


def test_the_job_keeps_to_the_larger_person_and_never_mixes():
    """A signer (shoulders 30 px) and a smaller person (20 px) walking in from the right, up to
    30 px from the signer's side, and out again: the points of every frame are the signer's;
    without person finding (the job before) the right hand is the other person's whenever both
    are seen."""
    walk = np.concatenate([np.linspace(330, 190, 15), np.linspace(190, 330, 15)])
    frames = [people_frame([(x, 70, 20), (110, 80, 30)]) for x in walk]
    truth = skeleton(110, 80, 30)
    for people, mixes in ((PersonParams(), False), (None, True)):
        raw = run(frames, people)
        found = raw[..., 2] >= 0.3
        signer = found & (np.linalg.norm(raw[..., :2] - truth[:, :2], axis=-1) < 6)
        on_other = found & ~signer
        assert on_other.any(axis=1).any() == mixes
        if not mixes:
            assert signer[:, GROUPS["body"]].sum(1).min() >= 10  # the signer's body every frame


@pytest.mark.parametrize("policy, chosen", [("left", 70), ("right", 240), ("signer", 240)])
def test_person_policy_picks_who_to_follow(policy, chosen):
    frames = [people_frame([(70, 80, 24), (240, 80, 30)])] * 3
    raw = run(frames, PersonParams(policy=policy))
    np.testing.assert_allclose(raw[-1, K["nose"], 0], chosen, atol=3)


def test_when_the_signer_leaves_the_other_person_waits_for_forget_after():
    """The signer walks out; the other person is farther than one region side from where the
    signer was: no points until `forget_after` seconds have passed, then them."""
    fps = 10.0
    frames = [people_frame([(60, 80, 30), (270, 80, 20)])] * 3
    frames += [people_frame([(270, 80, 20)])] * 30  # 3 s without the signer
    raw = run(frames, PersonParams(forget_after=2.0), fps)
    nose = raw[:, K["nose"]]
    assert (np.abs(nose[:3, 0] - 60) < 3).all()
    lost = nose[3:3 + 20]  # within 2 s of the loss: nobody
    assert (lost[:, 2] == 0).all()
    assert (np.abs(nose[-5:, 0] - 270) < 3).all() and (nose[-5:, 2] > 0).all()


# ----------------------------------------------------------------------------- measure


def test_points_on_other_by_hand():
    truth = np.zeros((1, NUM_KEYPOINTS, 3))
    other = np.full((1, NUM_KEYPOINTS, 3), np.nan)
    other[0, K["right_wrist"]] = (100, 0, 1)
    other[0, K["left_wrist"]] = (0, 100, 1)
    bbox = np.array([[0, 0, 200, 100]])  # radius 0.1 x 200 = 20 px
    pred = np.zeros((1, NUM_KEYPOINTS, 3))
    pred[..., 2] = 0.9
    pred[0, K["right_wrist"], :2] = (90, 0)  # 10 px from their right wrist: on them
    pred[0, K["left_wrist"], :2] = (95, 5)  # their right wrist is the mirror: on them
    pred[0, K["nose"], :2] = (0, 95)  # near their left wrist, but not the same kind: chance
    pred[0, K["left_elbow"], :2] = (19, 0)  # within 20 px of its own truth: the signer's
    on = points_on_other(pred, truth, other, bbox)
    assert np.nonzero(on[0])[0].tolist() == [K["left_wrist"], K["right_wrist"]]
    pred[0, K["left_wrist"], 2] = 0.2  # not found: not counted
    on = points_on_other(pred, truth, other, bbox)
    assert mixing_summary(on, pred[..., 2] >= 0.3) == {
        "frames": 1, "mixed_frames": 1, "swapped_frames": 0, "points_on_other": 1,
        "found_points": 63}


def test_a_companion_leaves_the_signer_labels_unchanged():
    alone, labels, info = render_clip(3, 1, 160, 90, 4)
    both, labels_both, info_both = render_clip(3, 1, 160, 90, 4, companion="behind")
    assert info["companion"] is None and info_both["companion"] == "behind"
    for a, b in zip(labels, labels_both, strict=True):
        others = b.pop("others")
        assert a == b and len(others[0]["keypoints"]) == NUM_KEYPOINTS
    assert not np.array_equal(alone, both)  # the second person is in the pixels
    with pytest.raises(ValueError, match="companion='crowd'"):
        render_clip(3, 1, 160, 90, 4, companion="crowd")


@pytest.mark.parametrize("field, value, message", [
    ("policy", "tallest", "person policy 'tallest'; expected one of signer, left, right"),
    ("seed_ratio", 0.0, "seed_ratio=0.0"),
    ("seed_sides", (0.5, 3.0), r"seed_sides=\(0.5, 3.0\)"),
    ("reacquire", 0.0, "reacquire=0.0"),
])
def test_person_settings_out_of_range_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        PersonParams(**{field: value})

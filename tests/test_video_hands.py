"""Tests for hands on video: hand tracking (crop placement, presence, left/right) and the
zero-lag offline smoother."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from signlang_jax.crop import HandCropRule, body_scale, hand_angle, hand_region, square_around
from signlang_jax.inference.hand_stage import HandCrop
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, NUM_KEYPOINTS
from signlang_jax.video.hands import HandTracker, HandTrackingParams
from signlang_jax.video.offline import (
    OfflineParams,
    cuts,
    frame_times,
    part_sizes,
    smooth_offline,
)
from signlang_jax.video.sequence import DEFAULT_SMOOTHING, SequenceProcessor
from signlang_jax.video.smoothing import OneEuroFilter

RULE = HandCropRule()
LEFT, RIGHT = GROUPS["left_hand"], GROUPS["right_hand"]
# No smoothing of the crop (any cutoff this high gives alpha ~ 1) and no hold: exact targets.
FOLLOW = HandTrackingParams(crop_cutoff=1e9, angle_cutoff=1e9, hold=1.0, lead=False)


def hand_shape(centre: tuple[float, float], size: float = 40.0) -> np.ndarray:
    """21 hand points (x, y) around `centre`: wrist below, fingers fanning upwards."""
    angles = np.linspace(-0.6, 0.6, 5)
    pts = [np.array([0.0, size / 2])]  # wrist
    for a in angles:
        for j in range(1, 5):
            r = size / 2 * (j / 4)
            pts.append(np.array([math.sin(a) * r, -r + size / 4]))
    return np.asarray(centre) + np.array(pts)


def body_points(left_wrist: tuple[float, float], right_wrist: tuple[float, float],
                score: float = 0.9) -> np.ndarray:
    """64 points: shoulders 100 px apart at y=100, elbows below, the given wrists, hands unknown."""
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    for name, xy in (("left_shoulder", (250, 100)), ("right_shoulder", (150, 100)),
                     ("left_elbow", (260, 180)), ("right_elbow", (140, 180)),
                     ("left_wrist", left_wrist), ("right_wrist", right_wrist)):
        kp[KEYPOINT_INDEX[name]] = (*xy, score)
    return kp


def with_score(xy: np.ndarray, score: float) -> np.ndarray:
    return np.concatenate([xy, np.full((len(xy), 1), score)], 1)


# ----------------------------------------------------------------------------- hand tracking


def test_first_frame_uses_the_body_rule_then_the_hand_points_place_the_crop():
    tracker = HandTracker(FOLLOW, RULE, 640, 360, 25.0)
    body = body_points((262, 230), (138, 230))
    first = {p.hand: p for p in tracker.place(body)}
    for hand in ("left_hand", "right_hand"):
        want = hand_region(body, hand, RULE)
        assert not first[hand].tracked
        np.testing.assert_allclose([first[hand].region.cx, first[hand].region.cy,
                                    first[hand].region.side, first[hand].region.angle],
                                   [want.cx, want.cy, want.side, want.angle], atol=1e-9)
    left_points = with_score(hand_shape((270, 255)), 0.8)
    right_points = with_score(hand_shape((130, 255)), 0.8)
    assert tracker.observe("left_hand", left_points, body)
    assert tracker.observe("right_hand", right_points, body)
    assert tracker.present("left_hand") and tracker.present("right_hand")

    # Next frame: the body model's wrist shook by 15 px; the crop comes from the hand points.
    shaken = body_points((277, 240), (130, 225))
    placed = {p.hand: p for p in tracker.place(shaken)}
    composite = shaken.astype(np.float64).copy()
    composite[LEFT] = left_points
    trusted = np.zeros(NUM_KEYPOINTS, bool)
    trusted[LEFT] = True
    angle = hand_angle(composite, "left_hand", trusted)
    want = square_around(left_points[:, :2], RULE.margin,
                         RULE.min_side * body_scale(shaken, RULE.score_threshold), angle)
    got = placed["left_hand"]
    assert got.tracked
    np.testing.assert_allclose([got.region.cx, got.region.cy, got.region.side, got.region.angle],
                               [want.cx, want.cy, want.side, want.angle], atol=1e-6)
    # The body rule would have moved with the shaken wrist; the hand crop did not.
    body_rule = hand_region(shaken, "left_hand", RULE)
    assert abs(body_rule.cx - first["left_hand"].region.cx) > 10


def test_the_lead_covers_where_a_fast_hand_goes():
    params = dataclasses.replace(FOLLOW, lead=True)
    tracker = HandTracker(params, RULE, 640, 360, 25.0)
    body = body_points((262, 230), (138, 230))
    tracker.place(body)
    tracker.observe("left_hand", with_score(hand_shape((270, 255)), 0.8), body)
    tracker.place(body)
    moved = with_score(hand_shape((300, 255)), 0.8)  # 30 px to the right in one frame
    tracker.observe("left_hand", moved, body)
    region = {p.hand: p for p in tracker.place(body_points((292, 230), (138, 230)))}["left_hand"]
    # The crop spans the last points and the same points 30 px further on.
    want = square_around(np.concatenate([moved[:, :2], moved[:, :2] + [30, 0]]), RULE.margin,
                         RULE.min_side * 100, region.region.angle)
    assert region.region.cx == pytest.approx(want.cx, abs=1e-6)
    assert region.region.side == pytest.approx(want.side, abs=1e-6)


def test_presence_has_hysteresis():
    params = dataclasses.replace(FOLLOW, present_score=0.3, absent_score=0.15)
    tracker = HandTracker(params, RULE, 640, 360, 25.0)
    body = body_points((262, 230), (138, 230))
    states = []
    for score in (0.2, 0.35, 0.2, 0.16, 0.1, 0.2, 0.29, 0.31):
        tracker.place(body)
        tracker.observe("left_hand", with_score(hand_shape((270, 255)), score), body)
        states.append(tracker.present("left_hand"))
    assert states == [False, True, True, True, False, False, False, True]


def test_an_absent_hand_is_placed_by_the_body_rule():
    tracker = HandTracker(FOLLOW, RULE, 640, 360, 25.0)
    body = body_points((262, 230), (138, 230))
    tracker.place(body)
    tracker.observe("left_hand", with_score(hand_shape((270, 255)), 0.05), body)  # not found
    shaken = body_points((280, 240), (138, 230))
    placed = {p.hand: p for p in tracker.place(shaken)}["left_hand"]
    want = hand_region(shaken, "left_hand", RULE)
    assert not placed.tracked
    assert (placed.region.cx, placed.region.cy) == pytest.approx((want.cx, want.cy), abs=1e-6)


def test_a_hand_that_leaves_the_frame_or_its_wrist_falls_back_to_the_body_rule():
    tracker = HandTracker(FOLLOW, RULE, 640, 360, 25.0)
    body = body_points((262, 230), (138, 230))
    tracker.place(body)
    tracker.observe("left_hand", with_score(hand_shape((650, 255)), 0.8), body)  # outside
    assert not {p.hand: p for p in tracker.place(body)}["left_hand"].tracked
    tracker.observe("left_hand", with_score(hand_shape((400, 255)), 0.8), body)  # 1.4 shoulders
    assert not {p.hand: p for p in tracker.place(body)}["left_hand"].tracked
    tracker.observe("left_hand", with_score(hand_shape((300, 255)), 0.8), body)  # near: tracked
    assert {p.hand: p for p in tracker.place(body)}["left_hand"].tracked


def test_points_that_belong_to_the_other_hand_are_rejected():
    tracker = HandTracker(FOLLOW, RULE, 640, 360, 25.0)
    body = body_points((262, 230), (138, 230))
    tracker.place(body)
    # The "left" crop returned a hand next to the body model's RIGHT wrist: a swap.
    assert not tracker.observe("left_hand", with_score(hand_shape((140, 255)), 0.8), body)
    retry = tracker.body_placement("left_hand", body)
    want = hand_region(body, "left_hand", RULE)
    assert retry is not None and not retry.tracked
    assert (retry.region.cx, retry.region.cy) == pytest.approx((want.cx, want.cy), abs=1e-6)


def test_crop_smoothing_steadies_a_still_hand_and_grows_at_once_for_a_fast_one():
    body = body_points((262, 230), (138, 230))
    rng = np.random.default_rng(0)
    jittered = [with_score(hand_shape((270, 255)) + rng.normal(0, 1.0, (21, 2)), 0.8)
                for _ in range(16)]
    centres = {}
    for name, params in (("smoothed", HandTrackingParams(lead=False)), ("raw", FOLLOW)):
        tracker = HandTracker(params, RULE, 640, 360, 25.0)
        regions = []
        for points in jittered:
            regions.append({p.hand: p for p in tracker.place(body)}["left_hand"].region)
            tracker.observe("left_hand", points, body)
        centres[name] = np.array([[r.cx, r.cy] for r in regions[2:]])
    moves = {k: np.abs(np.diff(v, axis=0)).mean() for k, v in centres.items()}
    assert moves["smoothed"] < 0.5 * moves["raw"]  # 1 px point jitter: the crop barely moves
    fast = with_score(hand_shape((310, 255)), 0.8)  # 40 px in one frame
    tracker = HandTracker(HandTrackingParams(lead=False), RULE, 640, 360, 25.0)
    for points in jittered[:5]:
        tracker.place(body)
        tracker.observe("left_hand", points, body)
    tracker.observe("left_hand", fast, body)
    r = {p.hand: p for p in tracker.place(body_points((302, 230), (138, 230)))}["left_hand"].region
    assert (np.abs(fast[:, :2] - [r.cx, r.cy]).max(0) <= r.side / 2).all()  # inside the crop


@dataclasses.dataclass
class OracleStage:
    """A hand stage whose 'model' returns the true hand nearest the crop's centre."""

    truth: dict  # frame index -> {hand: (21, 3)}
    rule: HandCropRule = dataclasses.field(default_factory=HandCropRule)
    min_score: float = 0.0
    frame: int = 0

    def points_at(self, images, placements):
        out = []
        for n, hand, region in placements:
            hands = self.truth[self.frame]
            nearest = min(hands, key=lambda h: np.linalg.norm(
                hands[h][:, :2].mean(0) - [region.cx, region.cy]))
            out.append((HandCrop(n, hand, np.eye(2, 3), np.zeros((1, 1, 3))), hands[nearest]))
        return out


def test_left_and_right_never_swap_when_the_hands_cross():
    """Hands cross in front of the body; the hand model sees whichever hand its crop holds."""
    frames, truth, bodies = 40, {}, []
    rng = np.random.default_rng(1)
    for t in range(frames):
        lx = 300 - 200 * t / (frames - 1)  # left hand moves right -> left, right the other way
        rx = 100 + 200 * t / (frames - 1)
        truth[t] = {"left_hand": with_score(hand_shape((lx, 255)), 0.8),
                    "right_hand": with_score(hand_shape((rx, 255)), 0.8)}
        # The body model's wrists (at the hands' wrists, forearms upright) are noisy.
        body = body_points((lx + rng.normal(0, 3), 275 + rng.normal(0, 3)), (rx, 275))
        body[[KEYPOINT_INDEX["left_elbow"], KEYPOINT_INDEX["right_elbow"]], :2] = [
            (lx, 355), (rx, 355)]
        bodies.append(body)
    stage = OracleStage(truth)
    predictor = RegionPredictor(lambda x: None, 64, stage, 1, "oracle")  # type: ignore[arg-type]
    predictor.predict_body = lambda images, regions: np.stack(  # type: ignore[method-assign]
        [bodies[stage.frame]])
    processor = SequenceProcessor(predictor, 640, 360, 25.0, None, None)
    tracked_frames = 0
    for t in range(frames):
        stage.frame = t
        result = processor.process([np.zeros((360, 640, 3), np.uint8)])
        if abs(truth[t]["left_hand"][0, 0] - truth[t]["right_hand"][0, 0]) > 12:
            # Apart by more than the body model's noise: each side keeps its own hand.
            np.testing.assert_allclose(result.keypoints[0, LEFT], truth[t]["left_hand"],
                                       atol=1e-5)
            np.testing.assert_allclose(result.keypoints[0, RIGHT], truth[t]["right_hand"],
                                       atol=1e-5)
        tracked_frames += int(result.hand_tracked[0].all())
    assert tracked_frames > frames // 2  # it did track the hands, not only the body rule


def test_without_hand_tracking_every_crop_is_the_body_rule():
    body = body_points((262, 230), (138, 230))
    truth = {0: {"left_hand": with_score(hand_shape((270, 255)), 0.8),
                 "right_hand": with_score(hand_shape((130, 255)), 0.8)}}
    stage = OracleStage(truth)
    predictor = RegionPredictor(lambda x: None, 64, stage, 1, "oracle")  # type: ignore[arg-type]
    predictor.predict_body = lambda images, regions: body[None].copy()  # type: ignore
    processor = SequenceProcessor(predictor, 640, 360, 25.0, None, None, hands=None)
    for _ in range(3):
        result = processor.process([np.zeros((360, 640, 3), np.uint8)])
        want = hand_region(body, "left_hand", RULE)
        np.testing.assert_allclose(result.hand_regions[0, 0],
                                   [want.cx, want.cy, want.side, want.angle], atol=1e-4)
        assert not result.hand_tracked.any()


def test_live_demo_keeps_the_causal_filter():
    """The live demo's processor smooths with the causal One Euro filter, frame by frame."""
    from signlang_jax.live_demo import LiveView

    rng = np.random.default_rng(0)
    bodies = [body_points((262 + rng.normal(0, 3), 230), (138, 230)) for _ in range(6)]
    calls = iter(range(6))
    predictor = RegionPredictor(lambda x: None, 64, None, 1, "truth")  # type: ignore[arg-type]
    predictor.predict_body = lambda images, regions: bodies[next(calls)][None].copy()  # type: ignore
    view = LiveView(predictor, 25.0, tracking=False, smoothing=True, conf_threshold=0.3)
    reference = OneEuroFilter(DEFAULT_SMOOTHING, NUM_KEYPOINTS)
    for body in bodies:
        view.overlay(np.zeros((360, 640, 3), np.uint8))
        result = view.last
        np.testing.assert_allclose(result.keypoints[0], reference(body, 1 / 25), atol=1e-5)


# ----------------------------------------------------------------------------- offline smoother


def linear_track(times: np.ndarray, start=(100.0, 50.0), velocity=(300.0, -120.0)) -> np.ndarray:
    kp = np.zeros((len(times), NUM_KEYPOINTS, 3))
    kp[..., 0] = start[0] + velocity[0] * times[:, None] + np.arange(NUM_KEYPOINTS)
    kp[..., 1] = start[1] + velocity[1] * times[:, None] + 2 * np.arange(NUM_KEYPOINTS)
    kp[..., 2] = 0.9
    return kp


@pytest.mark.parametrize("degree", [1, 2])
def test_offline_smoother_is_exact_with_zero_lag_at_constant_velocity(degree):
    times = frame_times(50, 25.0)
    kp = linear_track(times)
    out = smooth_offline(kp, times, OfflineParams(degree=degree))
    np.testing.assert_allclose(out, kp, atol=1e-3)  # float32 output of exact values
    # Variable frame rate (uneven steps) and a very fast point (3000 px/s): still exact.
    uneven = np.cumsum(np.r_[0, np.random.default_rng(0).uniform(0.02, 0.08, 49)])
    fast = linear_track(uneven, velocity=(3000.0, 500.0))
    params = OfflineParams(degree=degree, cut_speed=None)  # 24 signer sizes/s: no cuts
    np.testing.assert_allclose(smooth_offline(fast, uneven, params), fast, atol=2e-3)


def test_offline_smoother_matches_a_weighted_polyfit_by_hand():
    times = frame_times(30, 25.0)
    rng = np.random.default_rng(3)
    kp = linear_track(times)
    kp[..., :2] += rng.normal(0, 3, kp[..., :2].shape)
    kp[..., 2] = rng.uniform(0.2, 1.0, kp.shape[:2])  # samples weighted by their scores
    params = OfflineParams(window=0.1, degree=2, iterations=0, speed_gain=0.0)
    out = smooth_offline(kp, times, params)
    t, k = 12, 5
    radius = math.ceil(3 * 0.1 * 25)
    idx = np.arange(t - radius, t + radius + 1)
    u = (times[idx] - times[t]) / 0.1
    w = np.exp(-0.5 * u * u) * kp[idx, k, 2]
    for axis in (0, 1):
        # np.polyfit weights multiply the residuals: sqrt of the least-squares weights.
        coeffs = np.polyfit(u, kp[idx, k, axis], 2, w=np.sqrt(w))
        assert out[t, k, axis] == pytest.approx(coeffs[-1], abs=1e-3)


def test_the_window_narrows_with_speed_so_a_fast_circle_keeps_its_size():
    """A hand circling at 1.5 turns/s (14 hand sizes/s): a fixed window shrinks the circle, the
    speed-adaptive one (speed in hand sizes per second) far less; a still hand is unchanged."""
    times = frame_times(50, 25.0)
    kp = np.zeros((50, NUM_KEYPOINTS, 3))
    kp[..., 2] = 0.9
    hand = np.arange(LEFT.start, LEFT.stop)
    phase = 2 * np.pi * 1.5 * times
    kp[:, hand, 0] = 300 + 60 * np.cos(phase)[:, None] + np.arange(21) * 2.0  # 40 px wide
    kp[:, hand, 1] = 200 + 60 * np.sin(phase)[:, None]
    kp[:, :17, :2] = [[0, 0]] * 16 + [[500, 500]]  # a still body sets the signer size
    radius = {}
    for gain in (0.0, 0.6):
        out = smooth_offline(kp, times, OfflineParams(speed_gain=gain))
        centre = out[10:40, hand[0], :2] - [300, 200]
        radius[gain] = float(np.linalg.norm(centre, axis=-1).mean())
        np.testing.assert_allclose(out[:, :17], kp[:, :17], atol=1e-3)
    assert 60 - radius[0.6] < 0.5 * (60 - radius[0.0])
    assert radius[0.0] < 50  # the fixed window visibly shrank it


def test_offline_smoother_removes_a_one_frame_spike_without_touching_the_rest():
    times = frame_times(40, 25.0)
    kp = linear_track(times)
    spiked = kp.copy()
    hand = GROUPS["left_hand"].start + 8
    spiked[20, hand, :2] += (60.0, -40.0)  # far more than 0.3 hand sizes
    out = smooth_offline(spiked, times, OfflineParams())
    np.testing.assert_allclose(out, kp, atol=1e-3)  # the spike is gone, exactly


def test_a_cut_splits_the_sequence_and_no_fit_crosses_it():
    """A new shot: every point jumps by two signer sizes between frames 19 and 20."""
    times = frame_times(40, 25.0)
    kp = linear_track(times)
    kp[20:, :, 0] += 250.0  # the signer spans 126 px
    assert cuts(kp, times, 8.0, 0.1).tolist() == [t == 20 for t in range(40)]
    np.testing.assert_allclose(smooth_offline(kp, times, OfflineParams(cut_speed=8.0)), kp,
                               atol=1e-3)
    blended = smooth_offline(kp, times, OfflineParams())  # the default never cuts
    assert np.abs(blended[17:23, :, 0] - kp[17:23, :, 0]).max() > 5.0


def test_missing_points_pass_unchanged_and_are_not_used():
    times = frame_times(20, 25.0)
    kp = linear_track(times)
    kp[7, 3] = (999.0, -999.0, 0.05)  # below the score threshold: missing
    out = smooth_offline(kp, times, OfflineParams())
    np.testing.assert_array_equal(out[7, 3], kp[7, 3].astype(np.float32))
    np.testing.assert_allclose(out[6:9, 4], kp[6:9, 4], atol=1e-3)
    np.testing.assert_allclose(out[[6, 8], 3], kp[[6, 8], 3], atol=1e-3)  # neighbours exact
    np.testing.assert_array_equal(out[..., 2], kp[..., 2].astype(np.float32))  # scores kept


def test_part_sizes_by_hand():
    kp = np.zeros((2, NUM_KEYPOINTS, 3))
    kp[..., 2] = 0.0
    kp[0, :2] = [(0, 0, 1), (30, 10, 1)]  # body: extent 30
    kp[0, LEFT.start:LEFT.start + 2] = [(100, 100, 1), (108, 112, 1)]  # left hand: 12
    kp[1, :2] = [(0, 0, 1), (50, 10, 1)]
    sizes = part_sizes(kp, 0.1)
    assert sizes[0, 0] == pytest.approx(112.0)  # the signer spans every confident point
    assert sizes[0, LEFT.start] == pytest.approx(12.0)
    assert sizes[1, LEFT.start] == pytest.approx(12.0)  # no left hand on frame 1: the median
    assert sizes[1, 0] == pytest.approx(50.0)
    assert sizes[0, RIGHT.start] == 1.0  # never seen: 1 px


def test_offline_smoother_rejects_bad_input():
    times = frame_times(5, 25.0)
    kp = linear_track(times)
    with pytest.raises(ValueError, match="increase strictly"):
        smooth_offline(kp, times[::-1].copy(), OfflineParams())
    with pytest.raises(ValueError, match=r"\(T, K, 3\)"):
        smooth_offline(kp[..., :2], times, OfflineParams())
    for bad in ({"window": 0}, {"degree": 3}, {"outlier": -1}, {"iterations": 9},
                {"cut_speed": 0}, {"speed_gain": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            OfflineParams(**bad)
    with pytest.raises(ValueError, match="fps"):
        frame_times(3, 0.0)
    one = smooth_offline(kp[:1], times[:1], OfflineParams())  # one frame: unchanged
    np.testing.assert_array_equal(one, kp[:1].astype(np.float32))


def test_hand_tracking_rejects_bad_settings():
    for bad, name in (({"present_score": 0.1, "absent_score": 0.2}, "absent_score"),
                      ({"min_points": 0}, "min_points"), ({"hold": 0}, "hold"),
                      ({"crop_cutoff": 0}, "crop_cutoff")):
        with pytest.raises(ValueError, match=name):
            HandTrackingParams(**bad)


def test_region_corners_are_the_crop_outline_and_the_overlay_draws_hand_crops():
    from signlang_jax.crop import Region, apply_affine, crop_matrix, invert_affine, region_corners
    from signlang_jax.video.overlay import annotate

    region = Region(100.0, 80.0, 40.0, 30.0)
    edge = np.array([[-0.5, -0.5], [39.5, -0.5], [39.5, 39.5], [-0.5, 39.5]])
    want = apply_affine(edge, invert_affine(crop_matrix(region, 40)))
    np.testing.assert_allclose(region_corners(region), want, atol=1e-9)
    frame = np.zeros((200, 300, 3), np.uint8)
    none = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    hands = np.array([[100, 80, 40, 30], [np.nan] * 4], np.float32)
    out = annotate(frame, none, np.array([150, 100, 20]), True, 0.3,
                   hand_regions=hands, hand_tracked=np.array([True, False]))
    x, y = np.round((want[0] + want[1]) / 2).astype(int)  # the middle of one side
    patch = out[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).max(0)
    assert patch[1] > 150 and patch[0] == 0  # followed from the hand's points: green
    out = annotate(frame, none, np.array([150, 100, 20]), True, 0.3,
                   hand_regions=hands, hand_tracked=np.array([False, False]))
    patch = out[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).max(0)
    assert patch[0] > 150 and patch[1] < 100  # placed by the body model: red

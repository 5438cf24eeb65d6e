"""Tests for the video job: One Euro smoothing, region tracking, inputs, and the CLI end to end."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from signlang_jax.crop import Region, crop_matrix, full_frame_region
from signlang_jax.data.augment import letterbox_matrix
from signlang_jax.data.sequence_files import read_npz, read_pose
from signlang_jax.data.videos import (
    VideoReadError,
    find_inputs,
    probe,
    read_frames,
    read_timed_frames,
)
from signlang_jax.inference.region import RegionPredictor
from signlang_jax.keypoints import NUM_KEYPOINTS
from signlang_jax.video import cli
from signlang_jax.video.hands import HandTrackingParams
from signlang_jax.video.offline import OfflineParams
from signlang_jax.video.sequence import SequenceProcessor
from signlang_jax.video.smoothing import OneEuroFilter, OneEuroParams, smoothing_alpha
from signlang_jax.video.tracking import (
    RegionTracker,
    TrackingParams,
    signer_region,
)
from tests.video_helpers import BlobModel, blob_frame, blob_points, constant_onnx, rotate_mp4

ROOT = Path(__file__).resolve().parent.parent


def frame_points(xy: np.ndarray, score: float = 0.9) -> np.ndarray:
    return np.concatenate([xy, np.full((len(xy), 1), score)], 1).astype(np.float32)


# ----------------------------------------------------------------------------- smoothing


def test_one_euro_step_by_hand():
    """First frame passes through; a still point's next output is alpha-weighted (beta = 0)."""
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0, jump_gate=None), 1)
    assert f(np.array([[10.0, 20.0, 1.0]]), 1 / 25)[0, :2].tolist() == [10.0, 20.0]
    # tau = 1 / (2 pi) = 0.159155, alpha = 1 / (1 + tau * 25) = 0.200849
    assert float(smoothing_alpha(1.0, 1 / 25)) == pytest.approx(0.2008486, abs=1e-7)
    out = f(np.array([[20.0, 20.0, 1.0]]), 1 / 25)
    assert out[0, 0] == pytest.approx(10 + 0.2008486 * 10, abs=1e-4)
    assert out[0, 1] == pytest.approx(20.0) and out[0, 2] == 1.0


def reference_one_euro(track: np.ndarray, params: OneEuroParams, dt: float,
                       scale: float) -> np.ndarray:
    """Casiez et al.'s filter for one 2-D point, written out loop by loop (speed = |velocity|)."""
    out, prev, speed_prev = [], None, 0.0
    for x in track:
        if prev is None:
            prev, speed_prev = x, 0.0
            out.append(x)
            continue
        speed = math.hypot(*(x - prev)) / dt / scale
        a_d = 1 / (1 + 1 / (2 * math.pi * params.d_cutoff) / dt)
        speed_prev = a_d * speed + (1 - a_d) * speed_prev
        cutoff = params.min_cutoff + params.beta * speed_prev
        a = 1 / (1 + 1 / (2 * math.pi * cutoff) / dt)
        prev = a * x + (1 - a) * prev
        out.append(prev)
    return np.array(out)


def test_one_euro_matches_the_loop_reference_for_every_point():
    rng = np.random.default_rng(0)
    params = OneEuroParams(min_cutoff=0.7, beta=3.0, d_cutoff=1.2)
    # Points 0 and 1 fix the signer box at 100 px (the filter's normaliser); the rest wander
    # inside it.
    tracks = rng.uniform(30, 70, (NUM_KEYPOINTS, 2)) + np.cumsum(
        rng.normal(0, 1, (30, NUM_KEYPOINTS, 2)), 0)
    tracks[:, 0], tracks[:, 1] = (0, 0), (100, 100)
    assert tracks[:, 2:].min() > 0 and tracks[:, 2:].max() < 100
    f = OneEuroFilter(params, NUM_KEYPOINTS)
    got = np.stack([f(frame_points(t), 1 / 30)[:, :2] for t in tracks])
    for k in (2, 17, 40, 63):
        want = reference_one_euro(tracks[:, k], params, 1 / 30, scale=100.0)
        np.testing.assert_allclose(got[:, k], want, atol=1e-3)


def test_one_euro_is_scale_invariant_cuts_jitter_and_beta_cuts_lag():
    rng = np.random.default_rng(1)
    t = np.arange(100) / 25
    base = rng.uniform(0, 100, (NUM_KEYPOINTS, 2))
    clean = base + 20 * np.sin(2 * math.pi * 0.5 * t)[:, None, None]  # a slow sign, 0.5 Hz
    noisy = clean + rng.normal(0, 1.0, clean.shape)

    def run(tracks: np.ndarray, params: OneEuroParams) -> np.ndarray:
        f = OneEuroFilter(params, NUM_KEYPOINTS)
        return np.stack([f(frame_points(p), 1 / 25)[:, :2] for p in tracks])

    params = OneEuroParams(min_cutoff=0.5, beta=1.0)
    np.testing.assert_allclose(run(noisy, params), run(4 * noisy, params) / 4, atol=1e-3)
    accel = lambda x: np.abs(np.diff(x, 2, axis=0)).mean()
    still = base + rng.normal(0, 1.0, clean.shape)
    assert accel(run(still, params)) < accel(still) / 4
    # A point moving at one signer size per second: beta raises the cutoff, the lag shrinks.
    ramp = base + 100 * t[:, None, None]
    lag = lambda beta: np.abs(run(ramp, OneEuroParams(0.5, beta))[-1] - ramp[-1]).mean()
    assert lag(10.0) < lag(0.0) / 5


def test_a_point_that_disappears_restarts_where_it_comes_back():
    f = OneEuroFilter(OneEuroParams(min_cutoff=0.5, beta=0.0), NUM_KEYPOINTS)
    pts = frame_points(np.tile([[50.0, 50.0]], (NUM_KEYPOINTS, 1)))
    pts[1, :2] = (150, 150)  # keeps the signer scale at 100 px
    f(pts, 1 / 25)
    f(pts, 1 / 25)
    gone = pts.copy()
    gone[5, 2] = 0.05  # below score_threshold: passed through unchanged
    gone[5, :2] = (0, 0)
    assert f(gone, 1 / 25)[5].tolist() == pytest.approx([0.0, 0.0, 0.05])
    back = pts.copy()
    back[5, :2] = (90, 10)
    out = f(back, 1 / 25)
    assert out[5, :2].tolist() == [90.0, 10.0]  # not dragged from (50, 50)
    assert out[6, :2].tolist() == pytest.approx([50.0, 50.0])


def test_confidence_damps_low_scores_by_hand():
    params = OneEuroParams(min_cutoff=1.0, beta=0.0, confidence=(0.2, 0.5), jump_gate=None)
    f = OneEuroFilter(params, 3)
    f(np.array([[0.0, 0, 0.9], [0.0, 0, 0.9], [0.0, 0, 0.9]]), 1 / 25)
    out = f(np.array([[10.0, 0, 0.35], [10.0, 0, 0.9], [10.0, 0, 0.15]]), 1 / 25)
    alpha = 0.2008486  # min_cutoff 1 Hz at 25 fps (test_one_euro_step_by_hand)
    # score 0.35 is half-way from 0.2 to 0.5; 0.9 takes the full step; 0.15 the 5% floor
    assert out[:, 0] == pytest.approx([10 * alpha * 0.5, 10 * alpha, 10 * alpha * 0.05], abs=1e-4)


def test_the_jump_gate_drops_a_one_frame_spike_and_follows_a_real_move():
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0, jump_gate=7.5), NUM_KEYPOINTS)
    pts = frame_points(np.tile([[50.0, 50.0]], (NUM_KEYPOINTS, 1)))
    pts[1, :2] = (150, 150)  # signer box 100 px: 7.5 sizes/s at 25 fps is 30 px in a frame
    f(pts, 1 / 25)
    spike = pts.copy()
    spike[5, :2] = (90, 50)  # 40 px for one frame: held where it was
    assert f(spike, 1 / 25)[5, :2].tolist() == pytest.approx([50.0, 50.0])
    assert f(pts, 1 / 25)[5, :2].tolist() == pytest.approx([50.0, 50.0])
    moved = pts.copy()
    moved[5, :2] = (90, 50)
    assert f(moved, 1 / 25)[5, :2].tolist() == pytest.approx([50.0, 50.0])  # first frame: held
    alpha = 0.2008486  # the second frame of the move is followed (beta 0: the plain low-pass)
    assert f(moved, 1 / 25)[5, 0] == pytest.approx(50 + alpha * 40, abs=1e-4)
    small = pts.copy()
    small[6, :2] = (75, 50)  # 25 px < 30 px: never held
    assert f(small, 1 / 25)[6, 0] == pytest.approx(50 + alpha * 25, abs=1e-4)


def test_the_jump_gate_is_a_speed_so_low_frame_rates_keep_real_motion():
    """At 10 fps a hand moving 4 signer sizes/s covers 40 px of a 100 px signer per frame: a
    per-frame gate of 0.3 sizes would hold it back; the per-second gate follows it at once and
    still holds a spike of 100 px in 0.1 s (10 sizes/s)."""
    pts = frame_points(np.tile([[50.0, 50.0]], (NUM_KEYPOINTS, 1)))
    pts[1, :2] = (150, 150)
    f = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0), NUM_KEYPOINTS)  # default 7.5/s
    f(pts, 0.1)
    moved = pts.copy()
    moved[5, :2] = (90, 50)
    alpha = float(smoothing_alpha(1.0, 0.1))
    assert f(moved, 0.1)[5, 0] == pytest.approx(50 + alpha * 40, abs=1e-4)  # followed
    spike = moved.copy()
    spike[6, :2] = (150, 50)
    assert f(spike, 0.1)[6, 0] == pytest.approx(50.0)  # held
    # At 240 fps the gate's distance (7.5 / 240 = 0.03 sizes) would be model noise: the floor
    # of 0.05 signer sizes per frame lets a 4 px (0.04) step through.
    fast = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0), NUM_KEYPOINTS)
    fast(pts, 1 / 240)
    nudged = pts.copy()
    nudged[5, :2] = (54, 50)
    assert fast(nudged, 1 / 240)[5, 0] > 50.0  # followed, not held


def test_one_euro_rejects_bad_settings():
    for bad in ({"min_cutoff": 0}, {"beta": -1}, {"d_cutoff": -2}, {"confidence": (0.5, 0.2)},
                {"jump_gate": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            OneEuroParams(**bad)
    with pytest.raises(ValueError, match="dt"):
        OneEuroFilter(OneEuroParams(), 3)(np.zeros((3, 3)), 0.0)


# ----------------------------------------------------------------------------- tracking


def test_signer_region_by_hand():
    params = TrackingParams(margin=0.25, min_points=3, min_body_scales=0.0)
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    kp[:3] = [[100, 100, 0.9], [140, 180, 0.9], [120, 150, 0.5]]
    kp[3] = [1000, 1000, 0.2]  # not confident: ignored
    # extent 40 x 80 -> side 1.5 x 80 = 120 around the box centre (120, 140)
    assert signer_region(kp, params) == Region(120.0, 140.0, 120.0)
    kp[2, 2] = 0.1
    assert signer_region(kp, params) is None  # 2 confident points < min_points
    # shoulders 50 px apart: at least 3 shoulder widths
    kp[2, 2] = 0.9
    kp[5], kp[6] = [100, 120, 0.9], [150, 120, 0.9]
    assert signer_region(kp, TrackingParams(min_points=3)).side == pytest.approx(150.0)


def test_full_frame_region_is_the_letterbox():
    for w, h in ((640, 360), (360, 480), (100, 100)):
        np.testing.assert_allclose(crop_matrix(full_frame_region(w, h), 96),
                                   letterbox_matrix(w, h, 96), atol=1e-12)


def test_tracker_follows_smoothly_grows_at_once_and_loses():
    tracker = RegionTracker(TrackingParams(min_points=3, min_body_scales=0.0), 640, 360, 25.0)
    assert tracker.region is None
    square = lambda x0, side: frame_points(blob_points(x0, 100, side))
    tracker.observe(square(100, 80))
    first = tracker.region
    assert first is not None and first.cx == pytest.approx(139.5) and first.side == pytest.approx(
        1.5 * 70, rel=1e-6)
    tracker.observe(square(110, 80))  # a 10 px step: the region moves only part of the way
    assert first.cx < tracker.region.cx < 149.5
    tracker.observe(square(110, 160))  # the signer's points reach past: side grows at once
    grown = tracker.region
    assert grown.side >= 1.5 * 140 - 1e-6
    assert tracker.lost(np.zeros((NUM_KEYPOINTS, 3), np.float32))
    tracker.observe(np.zeros((NUM_KEYPOINTS, 3), np.float32))
    assert tracker.region is None
    # a collapsed region (side < 15% of 360 px) and a centre outside the frame are lost too
    assert tracker.lost(square(100, 20))
    assert tracker.lost(square(700, 80))


def test_tracker_holds_a_still_region_while_the_signer_stays_inside():
    tracker = RegionTracker(TrackingParams(min_points=3, min_body_scales=0.0), 640, 360, 25.0)
    square = lambda x0, side: frame_points(blob_points(x0, 100, side))
    tracker.observe(square(100, 80))
    held = tracker.region
    tracker.observe(square(102, 76))  # inside, side 0.95 of the region's (>= hold 0.8): kept
    assert tracker.region == held
    tracker.observe(square(110, 50))  # inside but 0.6 of the size: the region follows
    assert tracker.region != held and tracker.region.side < held.side


def test_sequence_uses_the_real_time_between_frames():
    """Frames 0.1 s apart in a '25 fps' processor: the causal filter steps by 0.1 s (what the
    same filter gives called with dt 0.1), and without times the steps are 1 / fps."""
    width, height = 320, 180
    frames = [blob_frame(width, height, x, 60, 40) for x in (40, 60, 80, 100)]
    params = OneEuroParams(min_cutoff=1.0, beta=0.0, jump_gate=None)

    def run(times: list[float] | None) -> np.ndarray:
        predictor = RegionPredictor(BlobModel(), 64, None, batch_size=1, description="blob")
        processor = SequenceProcessor(predictor, width, height, 25.0, None, params, None)
        results = [processor.process(frames[i:i + 2], None if times is None else times[i:i + 2])
                   for i in (0, 2)]
        raw = np.concatenate([r.raw for r in results])
        return np.concatenate([r.keypoints for r in results]), raw

    for times, dt in (([0.0, 0.1, 0.2, 0.3], 0.1), (None, 1 / 25)):
        smoothed, raw = run(times)
        reference = OneEuroFilter(params, NUM_KEYPOINTS)
        np.testing.assert_allclose(smoothed, [reference(r, dt) for r in raw], atol=1e-5)


def test_sequence_tracks_a_moving_blob_and_redetects_when_lost():
    width, height, model = 320, 180, BlobModel()
    predictor = RegionPredictor(model, 64, None, batch_size=2, description="blob")
    # people=None: the blob's grid of points is no body to find or keep within reach.
    processor = SequenceProcessor(predictor, width, height, 25.0,
                                  TrackingParams(min_points=3, min_body_scales=0.0), None,
                                  people=None)
    xs = [40, 44, 48, 52, None, 60, 64]  # None: the blob leaves the frame
    frames = [blob_frame(width, height, x, 60, 40) if x is not None
              else blob_frame(width, height, -100, 60, 10) for x in xs]
    results = [processor.process(frames[i:i + 2]) for i in range(0, len(frames), 2)]
    tracked = np.concatenate([r.tracked for r in results])
    keypoints = np.concatenate([r.keypoints for r in results])
    regions = np.concatenate([r.regions for r in results])
    # Batches [0, 1] [2, 3] [4, 5] [6]: 0 runs alone on the whole frame (no region yet), 1 on
    # the region 0 gives, 2-3 on the region after 1; 4 finds nothing there, is re-detected on
    # the whole frame (nothing either) and resets the tracker; 5 ran on its batch's region (from
    # frame 3) and restarts the tracker for 6.
    assert tracked.tolist() == [False, True, True, True, False, True, True]
    assert processor.redetections == 1
    np.testing.assert_allclose(regions[0], [(width - 1) / 2, (height - 1) / 2, width])
    assert [len(c) for c in model.calls] == [1, 1, 2, 2, 1, 1]  # 4's re-detection alone
    for n, x in enumerate(xs):
        if x is None:
            assert (keypoints[n, :, 2] == 0).all()
            continue
        # Whole frame: 64 px input for 320 px (5 px per input pixel); tracked: finer.
        tolerance = 5.0 if not tracked[n] else 2.0
        np.testing.assert_allclose(keypoints[n, :, :2], blob_points(x, 60, 40), atol=tolerance)
    assert regions[2, 2] < width / 2  # the tracked region zooms in


def test_a_redetection_restarts_the_tracker_where_the_signer_is():
    width, height, model = 320, 180, BlobModel()
    predictor = RegionPredictor(model, 64, None, batch_size=1, description="blob")
    # people=None: the blob's grid of points is no body to find or keep within reach.
    processor = SequenceProcessor(predictor, width, height, 25.0,
                                  TrackingParams(min_points=3, min_body_scales=0.0), None,
                                  people=None)
    for x in (40, 40, 40):
        processor.process([blob_frame(width, height, x, 60, 40)])
    jumped = processor.process([blob_frame(width, height, 250, 60, 40)])
    assert not jumped.tracked[0]  # the old region held nothing: re-detected on the whole frame
    # The tracker starts from the re-detection alone, not from a blend with the old region.
    want = signer_region(frame_points(blob_points(250, 60, 40)),
                         TrackingParams(min_points=3, min_body_scales=0.0))
    got = processor.tracker.region
    np.testing.assert_allclose([got.cx, got.cy, got.side], [want.cx, want.cy, want.side],
                               atol=3.0)


# ----------------------------------------------------------------------------- inputs


def write_video(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def blob_clip(n: int = 5, width: int = 96, height: int = 64) -> list[np.ndarray]:
    return [blob_frame(width, height, 20 + 3 * i, 16, 24) for i in range(n)]


def test_find_inputs_files_folders_globs_frames_and_problems(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    a = write_video(clips / "a.mp4", blob_clip())
    b = write_video(clips / "b.avi", blob_clip())
    frames = tmp_path / "signer1" / "images"
    frames.mkdir(parents=True)
    for i, frame in enumerate(blob_clip(3)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), frame)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    other = tmp_path / "other"
    other.mkdir()
    write_video(other / "a.mp4", blob_clip())
    inputs, problems = find_inputs([str(clips), str(frames), str(tmp_path / "c*" / "*.mp4"),
                                    str(tmp_path / "notes.txt"), str(tmp_path / "empty"),
                                    str(tmp_path / "missing.mp4"), str(other / "a.mp4")])
    assert [(i.name, i.path, len(i.frames)) for i in inputs] == [
        ("b", b, 0), ("signer1", frames, 3)]  # both a.mp4 refused: they would write one 'a'
    assert len(problems) == 4
    assert "notes.txt: not a video file" in problems[0]
    assert "empty: no video files" in problems[1]
    assert "missing.mp4: no such file" in problems[2]
    assert problems[3].startswith(f"{a}, {other / 'a.mp4'}: would all write the output 'a'")
    # the same file twice (relative and absolute) is one input, not a clash
    same, problems = find_inputs([str(a), os.path.relpath(a)])
    assert len(same) == 1 and problems == []
    assert find_inputs([str(tmp_path / "*.txt")])[1] == [
        f"{tmp_path / '*.txt'}: matches no video file or folder of frames"]


def test_corpus_folders_are_searched_and_outputs_mirror_their_paths(tmp_path):
    """PHOENIX-style nested frame folders all called '1', videos at any depth, and a glob."""
    corpus = tmp_path / "corpus"
    for signer in ("a", "b"):
        take = corpus / signer / "take" / "1"
        take.mkdir(parents=True)
        for i, frame in enumerate(blob_clip(2)):
            cv2.imwrite(str(take / f"{i:02d}.png"), frame)
    write_video(corpus / "a" / "extra.mp4", blob_clip(2))
    (corpus / "b" / "images").mkdir()
    cv2.imwrite(str(corpus / "b" / "images" / "0.png"), blob_clip(1)[0])
    (corpus / ".cache").mkdir()
    write_video(corpus / ".cache" / "hidden.mp4", blob_clip(2))
    inputs, problems = find_inputs([str(corpus)])
    assert problems == []
    assert [i.name for i in inputs] == ["a/extra", "a/take/1", "b", "b/take/1"]
    # A linked folder keeps its place in the tree, wherever its target lies.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_video(elsewhere / "x.mp4", blob_clip(2))
    (corpus / "linked").symlink_to(elsewhere, target_is_directory=True)
    inputs, problems = find_inputs([str(corpus)])
    assert problems == [] and "linked/x" in [i.name for i in inputs]
    globbed, problems = find_inputs([str(corpus / "*" / "take" / "1")])
    assert problems == [] and [i.name for i in globbed] == ["a/take/1", "b/take/1"]
    assert find_inputs([str(corpus / "a" / "take" / "1")])[0][0].name == "1"


def test_video_job_writes_corpus_outputs_below_out(constant_model, tmp_path):
    body, _ = constant_model
    corpus = tmp_path / "corpus"
    for signer in ("a", "b"):
        take = corpus / signer / "1"
        take.mkdir(parents=True)
        for i, frame in enumerate(blob_clip(3)):
            cv2.imwrite(str(take / f"{i:02d}.png"), frame)
    out = tmp_path / "out"
    assert cli.main([str(corpus), "--out", str(out), "--onnx", str(body)]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz")) == [
        "a/1.npz", "b/1.npz"]
    assert read_npz(out / "b" / "1.npz").keypoints.shape == (3, 64, 3)


def test_read_frames_in_order_and_errors_name_the_file(tmp_path):
    clip = blob_clip(4)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    item = find_inputs([str(folder)])[0][0]
    info = probe(item, 12.5)
    assert (info.width, info.height, info.fps, info.num_frames) == (96, 64, 12.5, 4)
    got = list(read_frames(item, info, prefetch=1))
    assert len(got) == 4 and all((g == c).all() for g, c in zip(got, clip, strict=True))
    (folder / "02.png").write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match="02.png: cannot decode"):
        list(read_frames(item, info))
    cv2.imwrite(str(folder / "02.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(VideoReadError, match="02.png: frame size 10x10 differs"):
        list(read_frames(item, info))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoReadError, match="broken.mp4: cannot decode this video"):
        probe(find_inputs([str(broken)])[0][0], 25.0)


def test_reader_stops_cleanly_when_the_consumer_stops(tmp_path):
    video = write_video(tmp_path / "v.mp4", blob_clip(40))
    item = find_inputs([str(video)])[0][0]
    frames = read_frames(item, probe(item, 25.0), prefetch=2)
    next(frames)
    frames.close()  # the decoding thread must not hang on a full queue
    import threading

    assert not [t for t in threading.enumerate() if t.name == "decode-v" and t.is_alive()]


def write_vfr_video(path: Path, codec: str) -> list[float]:
    """50 blob frames: 1 s at 30 fps, then 2 s at 10 fps (a phone recording's variable rate),
    written with PyAV with millisecond time stamps; returns the frames' times in seconds."""
    import fractions

    av = pytest.importorskip("av")
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=30)
    stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
    stream.time_base = fractions.Fraction(1, 1000)
    times = [n / 30 for n in range(30)] + [1 + n / 10 for n in range(20)]
    for n, seconds in enumerate(times):
        frame = av.VideoFrame.from_ndarray(blob_frame(96, 64, 10 + n, 20, 16), format="rgb24")
        frame.pts, frame.time_base = round(seconds * 1000), fractions.Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return [round(t * 1000) / 1000 for t in times]


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mkv"), ("libvpx-vp9", ".webm")])
def test_variable_frame_rate_videos_keep_their_time_stamps(constant_model, tmp_path, codec,
                                                          suffix):
    """OpenCV announces 88 frames at 30 fps for this 50-frame file: it is complete, not
    truncated, and every frame keeps the container's time (to its millisecond)."""
    body, _ = constant_model
    video = tmp_path / f"vfr{suffix}"
    truth = write_vfr_video(video, codec)
    item = find_inputs([str(video)])[0][0]
    stamps = [t for _, t in read_timed_frames(item, probe(item, 25.0))]
    np.testing.assert_allclose(stamps, truth, atol=1e-6)
    out = tmp_path / "out"
    assert cli.main([str(video), "--out", str(out), "--onnx", str(body)]) == 0
    sequence = read_npz(out / "vfr.npz")
    np.testing.assert_allclose(sequence.timestamps, truth, atol=1e-6)
    assert sequence.fps == pytest.approx(49 / 2.9)  # the average rate
    # --fps 10: a constant rate for tools that assume one (frame k at k / 10 s)
    assert cli.main([str(video), "--out", str(tmp_path / "at10"), "--onnx", str(body),
                     "--fps", "10"]) == 0
    resampled = read_npz(tmp_path / "at10" / "vfr.npz")
    np.testing.assert_allclose(resampled.timestamps, np.arange(30) / 10)
    assert resampled.fps == 10.0 and "resampled" in resampled.metadata


def test_a_rotated_phone_video_is_read_upright(constant_model, tmp_path):
    """Stored 96x64 with a 90-degree rotation: decoded, sized and written as 64x96 upright."""
    body, _ = constant_model
    frames = [blob_frame(96, 64, 4, 4, 16) for _ in range(5)]  # a blob at the top left
    video = rotate_mp4(write_video(tmp_path / "phone.mp4", frames))
    item = find_inputs([str(video)])[0][0]
    info = probe(item, 25.0)
    assert (info.width, info.height) == (64, 96)
    first = next(read_frames(item, info))
    ys, xs = np.nonzero(first[..., 0] > 128)
    assert xs.min() > 40 and ys.max() < 30  # turned clockwise: now at the top right
    out = tmp_path / "out"
    assert cli.main([str(video), "--out", str(out), "--onnx", str(body)]) == 0
    sequence = read_npz(out / "phone.npz")
    assert (sequence.width, sequence.height, sequence.num_frames) == (64, 96, 5)


def test_a_frame_size_change_mid_video_is_an_error_naming_the_frame(constant_model, tmp_path,
                                                                   monkeypatch, capsys):
    """Decoders can switch resolution mid-stream (adaptive streams, spliced files): reported with
    the frame index, no output written, the job's other inputs still done."""
    from signlang_jax.data import videos

    body, _ = constant_model
    good = write_video(tmp_path / "good.mp4", blob_clip(3))
    spliced = write_video(tmp_path / "spliced.mp4", blob_clip(3))
    real = videos.decode_video

    def resized(path, wanted=None):
        for index, frame, seconds in real(path, wanted):
            if path.name == "spliced.mp4" and index == 2:
                frame = cv2.resize(frame, (48, 32))
            yield index, frame, seconds

    monkeypatch.setattr(videos, "decode_video", resized)
    out = tmp_path / "out"
    assert cli.main([str(good), str(spliced), "--out", str(out), "--onnx", str(body)]) == 1
    assert "spliced.mp4: frame 2 is 48x32, the video's first frame 96x64" in capsys.readouterr().err
    assert (out / "good.npz").exists() and not (out / "spliced.npz").exists()


def test_resampling_to_a_constant_rate_is_exact_on_linear_motion():
    from signlang_jax.data.sequence_files import KeypointSequence
    from signlang_jax.video.resample import resample

    times = np.array([0.0, 1 / 30, 2 / 30, 0.1, 0.2, 0.35, 0.5])  # uneven, 0.5 s in all
    kp = np.zeros((len(times), NUM_KEYPOINTS, 3), np.float32)
    kp[..., 0] = 100 + 300 * times[:, None]  # 300 px/s
    kp[..., 1] = 50
    kp[..., 2] = 0.9
    kp[5, 7, 2] = 0.0  # point 7 missing at 0.35 s
    seq = KeypointSequence(kp, 7 / 0.5, 640, 360, np.ones(len(times), bool),
                           np.zeros((len(times), 3), np.float32), {}, times)
    out = resample(seq, 20.0, min_score=0.1)
    np.testing.assert_allclose(out.timestamps, np.arange(11) / 20)
    assert out.fps == 20.0 and "linear in time to 20 fps from 7 frames" in out.metadata["resampled"]
    np.testing.assert_allclose(out.keypoints[:, 0, 0], 100 + 300 * np.arange(11) / 20, atol=1e-4)
    # Between 0.2 s and 0.35 s point 7 is missing on one side: never mixed into a made-up
    # position, it takes the nearer frame's value (0.25 s: the 0.2 s frame; 0.3 s: the missing
    # 0.35 s one); point 0 beside it is interpolated.
    np.testing.assert_array_equal(out.keypoints[5, 7], kp[4, 7])
    np.testing.assert_array_equal(out.keypoints[6, 7], kp[5, 7])
    np.testing.assert_allclose(out.keypoints[5, 0, 0], 100 + 300 * 0.25, atol=1e-4)
    np.testing.assert_allclose(out.keypoints[2, 7, :2], kp[3, 7, :2])  # 0.1 s: exact frame


def test_a_video_that_breaks_off_is_an_error_not_a_short_sequence(tmp_path):
    writer = cv2.VideoWriter(str(tmp_path / "whole.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (96, 64))
    for frame in blob_clip(20):
        writer.write(frame)
    writer.release()
    data = (tmp_path / "whole.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:int(len(data) * 0.7)])  # header still says 20
    item = find_inputs([str(tmp_path / "cut.avi")])[0][0]
    with pytest.raises(VideoReadError, match=r"cut.avi: decoding stopped at 0\.\d\d s after \d+ "
                       r"frames, short of the 0\.80 s the file states \(truncated or corrupt\)"):
        list(read_frames(item, probe(item, 25.0)))


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def constant_model(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A 32 px constant ONNX body model: every point at input (8 + k/4, 12), score 0.9."""
    folder = tmp_path_factory.mktemp("onnx")
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    kp[:, 0] = 8 + np.arange(NUM_KEYPOINTS) / 4
    kp[:, 1] = 12
    kp[:, 2] = 0.9
    return constant_onnx(folder / "body.onnx", kp, 32), kp


def test_cli_writes_npz_pose_and_overlay_then_skips(constant_model, tmp_path):
    body, kp = constant_model
    video = write_video(tmp_path / "clip.mp4", blob_clip(5), fps=10.0)
    out = tmp_path / "out"
    args = [str(video), "--out", str(out), "--onnx", str(body), "--format", "npz,pose",
            "--overlay", "--batch-size", "2", "--no-smoothing", "--no-tracking"]
    assert cli.main(args) == 0
    seq = read_npz(out / "clip.npz")
    assert seq.keypoints.shape == (5, NUM_KEYPOINTS, 3) and seq.fps == 10.0
    assert (seq.width, seq.height) == (96, 64) and not seq.tracked.any()
    # input pixel p of the 32 px letterbox of 96 x 64 -> frame pixel (p - 15.5) * 3 + (47.5, 31.5)
    want_x = (kp[:, 0] - 15.5) * 3 + 47.5
    want_y = (kp[:, 1] - 15.5) * 3 + 31.5
    np.testing.assert_allclose(seq.keypoints[:, :, 0], np.tile(want_x, (5, 1)), atol=1e-4)
    np.testing.assert_allclose(seq.keypoints[:, :, 1], np.tile(want_y, (5, 1)), atol=1e-4)
    assert json.loads(seq.metadata["settings"]) == {
        "tracking": None, "smoothing": None, "people": None,  # no tracking: no one to find
        "hand_tracking": dataclasses.asdict(HandTrackingParams())}
    pose = read_pose(out / "clip.pose")
    np.testing.assert_allclose(pose.keypoints, seq.keypoints, atol=1e-4)
    overlay = cv2.VideoCapture(str(out / "clip.overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    overlay.release()
    assert sorted(p.name for p in out.iterdir()) == ["clip.npz", "clip.overlay.mp4", "clip.pose",
                                                     "manifest"]
    before = (out / "clip.npz").stat().st_mtime_ns
    assert cli.main(args) == 0  # finished: skipped
    assert (out / "clip.npz").stat().st_mtime_ns == before
    assert cli.main([*args, "--overwrite"]) == 0
    assert (out / "clip.npz").stat().st_mtime_ns != before


def test_cli_skips_a_bad_video_and_still_processes_the_others(constant_model, tmp_path, capsys):
    body, _ = constant_model
    good = write_video(tmp_path / "good.mp4", blob_clip(3))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x01garbage" * 50)
    out = tmp_path / "out"
    (out / "bad.npz").parent.mkdir()
    (out / "bad.npz").write_bytes(b"an older result that must survive")
    code = cli.main([str(bad), str(good), "--out", str(out), "--onnx", str(body), "--overwrite"])
    assert code == 1
    err = capsys.readouterr().err
    assert "bad.mp4" in err and "cannot decode this video" in err
    assert read_npz(out / "good.npz").keypoints.shape == (3, NUM_KEYPOINTS, 3)
    assert (out / "bad.npz").read_bytes() == b"an older result that must survive"
    assert not [p for p in out.iterdir() if "partial" in p.name or p.name.startswith(".")]


def test_cli_tracks_and_smooths_by_default(constant_model, tmp_path):
    body, _ = constant_model
    video = write_video(tmp_path / "clip.mp4", blob_clip(6))
    out = tmp_path / "out"
    # --person any: the constant model's row of points is no body to find or keep within reach.
    assert cli.main([str(video), "--out", str(out), "--onnx", str(body),
                     "--batch-size", "1", "--person", "any"]) == 0
    seq = read_npz(out / "clip.npz")
    # Frame 0 runs on the whole frame; the constant points are confident, so every later frame
    # runs on the region around the previous frame's points.
    assert seq.tracked.tolist() == [False, True, True, True, True, True]
    assert seq.region[1, 2] < seq.region[0, 2]
    settings = json.loads(seq.metadata["settings"])
    assert settings["smoothing"] == {"kind": "offline", **dataclasses.asdict(OfflineParams())}
    assert settings["hand_tracking"] == dataclasses.asdict(HandTrackingParams())
    # --causal: the live demo's One Euro filter instead, recorded as such.
    assert cli.main([str(video), "--out", str(out), "--onnx", str(body), "--causal",
                     "--overwrite"]) == 0
    settings = json.loads(read_npz(out / "clip.npz").metadata["settings"])
    assert settings["smoothing"] == {"kind": "causal", **dataclasses.asdict(OneEuroParams())}


def test_every_numeric_flag_out_of_range_is_refused_before_any_work(constant_model, tmp_path,
                                                                    capsys):
    """The issue's silent switches (exit 0, a stage off) and NaN: one line per flag, exit 2,
    nothing created."""
    body, _ = constant_model
    out = tmp_path / "never_made"
    cases = [("--track-threshold", "5", "--track-threshold 5.0: expected a value in [0, 1] (a "
              "point at or above this score is confident)"),
             ("--smooth-threshold", "7", "--smooth-threshold 7.0: expected a value in [0, 1]"),
             ("--hand-min-score", "5", "--hand-min-score 5.0: expected a value in [0, 1]"),
             ("--threads", "-3", "--threads -3: expected a value in [0, 1024]"),
             ("--fps", "nan", "--fps nan: expected a value in (0, 1000]"),
             ("--track-min-points", "0", "--track-min-points 0: expected a value in [1, 64]"),
             ("--jump-gate", "-1", "--jump-gate -1.0: expected a value in [0, inf)"),
             ("--min-cutoff", "inf", "--min-cutoff inf: expected a value in (0, inf)")]
    all_flags = [word for flag, value, _ in cases for word in (flag, value)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["x.mp4", "--out", str(out), "--onnx", str(body), *all_flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    for _, _, line in cases:  # every problem at once, each on its own line
        assert line in err, err
    assert not out.exists()
    with pytest.raises(SystemExit):
        cli.main(["x.mp4", "--out", str(out), "--onnx", str(body), "--causal",
                  "--smooth-confidence", "0.5", "0.2"])
    assert "--smooth-confidence 0.5 0.2: expected 0 <= LOW < HIGH <= 1" in capsys.readouterr().err


def test_cli_bad_arguments_are_usage_errors(constant_model, tmp_path, capsys):
    body, _ = constant_model
    for extra, message in ((["--format", "csv"], "--format"), (["--batch-size", "0"],
                           "--batch-size"), (["--hand-checkpoint", "x"], "--hand-checkpoint"),
                           (["--min-score", "-1"], "--min-score"),
                           (["--smooth-window", "0"], "--smooth-window 0.0: expected a value "
                                                      "in (0, inf)"),
                           (["--smooth-degree", "3"], "--smooth-degree")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["x.mp4", "--out", str(tmp_path), "--onnx", str(body), *extra])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    video = write_video(tmp_path / "v.mp4", blob_clip(2))
    assert cli.main([str(video), "--out", str(tmp_path / "o"), "--onnx",
                     str(tmp_path / "missing.onnx")]) == 1
    assert "missing.onnx: no such ONNX file" in capsys.readouterr().err
    # --out that cannot be written: refused before any work, the file there untouched
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    assert cli.main([str(video), "--out", str(blocker), "--onnx", str(body)]) == 1
    assert f"--out {blocker}: cannot write there" in capsys.readouterr().err
    assert blocker.read_text() == "keep me"
    # an input problem next to a good video: the video is done, the exit code says 1
    assert cli.main([str(video), str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o2"),
                     "--onnx", str(body)]) == 1
    err = capsys.readouterr().err
    assert "nope.mp4: no such file" in err and "1 of 1 videos done (0 failed)" in err


def test_onnx_files_whose_input_does_not_match_are_refused(tmp_path):
    from signlang_jax.inference.onnx_runtime import OnnxModel, OnnxModelError

    path = constant_onnx(tmp_path / "m.onnx", np.zeros((NUM_KEYPOINTS, 3), np.float32), 32)
    assert OnnxModel(path).input_size == 32
    import onnx

    model = onnx.load(str(path))
    next(p for p in model.metadata_props if p.key == "input_size").value = "64"
    onnx.save(model, str(tmp_path / "lies.onnx"))
    with pytest.raises(OnnxModelError, match=r"lies.onnx: inputs .*expected one 'images' "
                       r"\(N, 3, 64, 64\)"):
        OnnxModel(tmp_path / "lies.onnx")


def test_onnx_video_path_runs_without_jax_or_torch_installed(constant_model, tmp_path):
    """The CLI with --onnx in a subprocess where importing JAX, flax or torch fails."""
    body, _ = constant_model
    video = write_video(tmp_path / "clip.mp4", blob_clip(3))
    code = f"""
import importlib.abc, sys
BLOCKED = ("jax", "jaxlib", "flax", "torch", "optax", "orbax", "grain", "tensorflow",
           "ml_collections", "absl", "tensorboardX")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed on this deployment machine")
sys.meta_path.insert(0, Block())
from signlang_jax.video.cli import main
sys.exit(main([{str(video)!r}, "--out", {str(tmp_path / "out")!r}, "--onnx", {str(body)!r},
               "--overlay"]))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert read_npz(tmp_path / "out" / "clip.npz").keypoints.shape == (3, NUM_KEYPOINTS, 3)


def test_jax_checkpoint_path_equals_the_image_predictor(tiny_run, synth_root, tmp_path):
    """--checkpoint, untracked and unsmoothed: each frame as `Predictor.predict_image` sees it."""
    from signlang_jax.inference.predictor import Predictor, load_model

    frames = [cv2.cvtColor(cv2.imread(str(synth_root / "images" / f"{i:06d}.jpg")),
                           cv2.COLOR_BGR2RGB) for i in range(3)]
    folder = tmp_path / "clip_a"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert cli.main([str(folder), "--out", str(out), "--checkpoint", f"{tiny_run}:latest",
                     "--no-tracking", "--no-smoothing", "--batch-size", "2"]) == 0
    seq = read_npz(out / "clip_a.npz")
    model, config, _ = load_model(tiny_run, "latest")
    predictor = Predictor(model, config)
    want = np.stack([predictor.predict_image(f) for f in frames])
    np.testing.assert_allclose(seq.keypoints, want, atol=1e-3)
    assert seq.metadata["model"].startswith("jax ")


def test_runtime_install_is_small():
    """`pip install signlang-jax[runtime]`: numpy, OpenCV, tqdm and onnxruntime, nothing heavy."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["runtime"]
    names = sorted(d.split(">")[0].split("=")[0].split("[")[0].strip() for d in wanted)
    assert names == ["numpy", "onnxruntime", "opencv-python-headless", "tqdm"]

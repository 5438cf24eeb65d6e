"""Tests for the exported hand model and the onnxruntime-only two-stage runtime.

The tiny body run (conftest's `tiny_run`) and the tiny hand run (tests/test_hand_stage.py) each
get one more checkpoint of random, well-conditioned weights (O(1) heatmaps: a few training steps
leave every score below the crop rule's trust threshold, so no hand would be cropped), exported
with keypoints; `signlang_jax.inference.onnx_runtime.OnnxPredictor` must then reproduce the JAX
two-stage
`Predictor` on rendered frames: the same crops, the same points.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from interop import to_onnx, verify_onnx
from signlang_jax.data.hand_crops import hand_crop_rule
from signlang_jax.errors import ConfigError
from signlang_jax.inference.hand_stage import cut_hand_crops
from signlang_jax.inference.onnx_runtime import OnnxModel, OnnxModelError, OnnxPredictor
from signlang_jax.keypoints import GROUPS, HAND_EDGES, HAND_JOINTS, KEYPOINT_NAMES
from tests import tiny_hand_config
from tests.test_hand_stage import random_body_run, randomised_copy, train_hand_run

ROOT = Path(__file__).resolve().parent.parent
FRAMES = (0, 1, 2)  # render_sample(FRAME_SEED, i, 64): both hands of each are cropped
FRAME_SEED = 7


@pytest.fixture(scope="module")
def runs(tiny_run, synth_root, tmp_path_factory) -> tuple[str, str]:
    """(body, hand) checkpoint specs: the random step of each run (`randomised_copy`)."""
    body = random_body_run(tiny_run, tmp_path_factory)
    hand = randomised_copy(train_hand_run(synth_root, tmp_path_factory),
                           tiny_hand_config.get_config(),
                           tmp_path_factory.mktemp("random_hand") / "run", 1)
    return f"{body}:latest", f"{hand}:latest"


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> tuple[Path, Path]:
    """(body.onnx, hand.onnx) written by the CLI with --with-keypoints (verified on export)."""
    folder = tmp_path_factory.mktemp("hand_onnx")
    paths = folder / "body.onnx", folder / "hand.onnx"
    for run, path in zip(runs, paths, strict=True):
        assert to_onnx.main(["--checkpoint", run, "--output", str(path),
                             "--with-keypoints"]) == 0
    return paths


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def frames() -> list[np.ndarray]:
    from signlang_jax.synth import render_sample

    return [render_sample(FRAME_SEED, i, 64)[0] for i in FRAMES]


def test_hand_export_metadata_and_shapes(exported):
    body_path, hand_path = exported
    meta = metadata(hand_path)
    assert meta["task"] == "hand" and meta["mirrored_hand"] == "right_hand"
    assert json.loads(meta["keypoint_names"]) == list(HAND_JOINTS)
    assert json.loads(meta["skeleton"]) == [list(edge) for edge in HAND_EDGES]
    assert json.loads(meta["hand_crop_rule"]) == dataclasses.asdict(
        hand_crop_rule(tiny_hand_config.get_config()))
    assert (meta["input_size"], meta["heatmap_size"], meta["num_keypoints"]) == ("32", "8", "21")
    assert meta["checkpoint_step"] == "5"
    assert "flip_permutation" not in meta and "keypoint_groups" not in meta
    body_meta = metadata(body_path)
    assert body_meta["task"] == "wholebody"
    assert json.loads(body_meta["keypoint_names"]) == list(KEYPOINT_NAMES)
    assert "hand_crop_rule" not in body_meta and "mirrored_hand" not in body_meta

    import onnxruntime as ort

    session = ort.InferenceSession(str(hand_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    heatmaps, keypoints = session.run(None, {"images": x})
    assert heatmaps.shape == (3, 21, 8, 8) and keypoints.shape == (3, 21, 3)
    model = OnnxModel(hand_path)
    assert (model.task, model.input_size) == ("hand", 32)



def differing_points(ref: np.ndarray, got: np.ndarray, ref_heatmaps: np.ndarray,
                     size: int) -> np.ndarray:
    """(N, K) mask of points decoded elsewhere by onnxruntime; each must be a near-tie.

    ref, got: (N, K, 3) in input pixels; ref_heatmaps (N, H, W, K) of the JAX model. A float
    difference of ~1e-6 can move an argmax only between values that close (`_near_tie`).
    """
    np.testing.assert_allclose(got[..., 2], ref[..., 2], atol=1e-4)
    moved = np.abs(got[..., :2] - ref[..., :2]).max(-1) > 1e-3
    for n, k in np.argwhere(moved):
        assert verify_onnx._near_tie(ref_heatmaps[n, :, :, k], ref[n, k, :2], got[n, k, :2],
                                     1e-4, size), (n, k, ref[n, k], got[n, k])
    assert moved.mean() < 0.05  # ties are rare: a systematic difference is not one
    return moved


def test_onnx_predictor_matches_jax_two_stage(runs, exported):
    from signlang_jax.crop import to_original
    from signlang_jax.data.augment import letterbox_matrix, warp_image
    from signlang_jax.inference.predictor import Predictor, load_for_inference, load_hand_stage

    body_run, hand_run = runs
    loaded = load_for_inference(body_run)
    assert loaded.step == 5
    jax_body = Predictor(loaded.model, loaded.config)
    jax_stage = load_hand_stage(hand_run, min_score=0.2)  # a threshold both sides of which occur
    jax_two = Predictor(loaded.model, loaded.config, hand_stage=jax_stage)
    onnx_two = OnnxPredictor(*exported, hand_min_score=0.2)
    onnx_stage = onnx_two.hand_stage
    assert onnx_stage.rule == jax_stage.rule == hand_crop_rule(tiny_hand_config.get_config())
    assert onnx_stage.crop_size == jax_stage.crop_size == 32
    assert onnx_stage.min_score == jax_stage.min_score == 0.2
    images = frames()

    # Body model on the letterboxed frames (64 -> 32 px), then in frame pixels.
    matrices = [letterbox_matrix(64, 64, 32) for _ in images]
    batch = np.stack([warp_image(im, m, 32) for im, m in zip(images, matrices, strict=True)])
    body_kp, body_heatmaps = jax_body.predict_batch(batch)
    body_tied = differing_points(body_kp, onnx_two.body.predict_batch(batch), body_heatmaps, 32)
    body_j = np.stack([to_original(kp, m) for kp, m in zip(body_kp, matrices, strict=True)])
    np.testing.assert_allclose(body_j, np.stack([jax_body.predict_image(im) for im in images]),
                               atol=1e-4)
    body_o = onnx_two.predict_body(images)

    # Identical crops from both paths' body points (frames without a tie among them).
    crops_j = cut_hand_crops(images, body_j, jax_stage.rule, 32)
    crops_o = cut_hand_crops(images, body_o, onnx_stage.rule, 32)
    assert [(c.image_index, c.hand) for c in crops_j] == [
        (n, hand) for n in range(len(images)) for hand in ("left_hand", "right_hand")]
    compared = 0
    for a, b in zip(crops_j, crops_o, strict=True):
        if not body_tied[a.image_index].any():
            assert (a.image_index, a.hand) == (b.image_index, b.hand)
            np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-3, rtol=0)
            assert np.abs(a.pixels.astype(int) - b.pixels).max() <= 1
            compared += 1
    assert compared >= 4

    # The hand model on the same crops: JAX (with heatmaps) vs onnxruntime, in crop pixels.
    hand_loaded = load_for_inference(hand_run)
    hand_predictor = Predictor(hand_loaded.model, hand_loaded.config)
    with pytest.raises(ValueError, match="the hand model has no flip test"):
        Predictor(hand_loaded.model, hand_loaded.config, flip_test=True)
    with pytest.raises(ConfigError, match="--checkpoint names a hand model"):
        Predictor(hand_loaded.model, hand_loaded.config, hand_stage=jax_stage)
    pixels = np.stack([c.pixels for c in crops_j])
    hand_kp, hand_heatmaps = hand_predictor.predict_batch(pixels)
    np.testing.assert_array_equal(jax_stage.predict_crops(pixels), hand_kp)
    hand_tied = differing_points(hand_kp, onnx_stage.predict_crops(pixels), hand_heatmaps, 32)
    pairs_j = jax_stage.hand_points(images, body_j)
    pairs_o = onnx_stage.hand_points(images, body_j)  # the same crops by construction
    for k, ((cj, pj), (co, po)) in enumerate(zip(pairs_j, pairs_o, strict=True)):
        np.testing.assert_array_equal(cj.matrix, co.matrix)
        keep = ~hand_tied[k]
        np.testing.assert_allclose(po[keep, :2], pj[keep, :2], atol=1e-3, rtol=0)
        np.testing.assert_allclose(po[:, 2], pj[:, 2], atol=1e-4)

    # The two-stage results, frame by frame (a tie anywhere in a frame may move its crops).
    final_j = np.stack([jax_two.predict_image(im) for im in images])
    final_o = np.stack([onnx_two.predict_image(im) for im in images])
    hands = np.concatenate([GROUPS["left_hand"], GROUPS["right_hand"]])
    replaced = np.abs(final_j[:, hands] - body_j[:, hands]).max(-1) > 0
    assert replaced.any() and not replaced.all()  # scores on both sides of min_score 0.2
    hand_tied_frames = {crops_j[k].image_index for k in np.flatnonzero(hand_tied.any(1))}
    exact = [n for n in range(len(images))
             if not body_tied[n].any() and n not in hand_tied_frames]
    assert len(exact) >= 2
    np.testing.assert_allclose(final_o[exact, :, :2], final_j[exact, :, :2], atol=1e-3, rtol=0)
    np.testing.assert_allclose(final_o[exact, :, 2], final_j[exact, :, 2], atol=1e-4)


def test_onnx_runtime_imports_neither_jax_nor_torch(exported, tmp_path):
    body_path, hand_path = exported
    image = frames()[0]
    np.save(tmp_path / "frame.npy", image)
    code = f"""
import json, sys
import numpy as np
from signlang_jax.inference.onnx_runtime import OnnxPredictor
predictor = OnnxPredictor({str(body_path)!r}, {str(hand_path)!r})
np.save({str(tmp_path / "keypoints.npy")!r},
        predictor.predict_image(np.load({str(tmp_path / "frame.npy")!r})))
heavy = ("jax", "jaxlib", "flax", "torch", "optax", "orbax", "grain", "tensorflow")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    keypoints = np.load(tmp_path / "keypoints.npy")
    assert keypoints.shape == (64, 3) and keypoints.dtype == np.float32
    np.testing.assert_allclose(keypoints, OnnxPredictor(body_path, hand_path)
                               .predict_image(image), atol=1e-5)


def rewritten(source: Path, destination: Path, drop_output: str | None = None,
              drop_metadata: str | None = None, metadata: dict | None = None) -> Path:
    """A copy of an ONNX file without an output or a metadata field, or with changed fields."""
    model = onnx.load(str(source))
    if drop_output:
        outputs = [o for o in model.graph.output if o.name != drop_output]
        del model.graph.output[:]
        model.graph.output.extend(outputs)
    props = {p.key: p.value for p in model.metadata_props if p.key != drop_metadata}
    props.update(metadata or {})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(destination))
    return destination


def test_unusable_onnx_files_are_refused_naming_the_file(exported, tmp_path):
    from signlang_jax.inference.onnx_runtime import hand_stage_from_onnx

    body_path, hand_path = exported

    def refused(message: str, *args: object) -> None:
        with pytest.raises(OnnxModelError, match=re.escape(message)):
            OnnxPredictor(*args)

    no_keypoints = rewritten(hand_path, tmp_path / "heatmaps_only.onnx", drop_output="keypoints")
    no_outputs = rewritten(no_keypoints, tmp_path / "no_outputs.onnx", drop_output="heatmaps")
    refused(f"{no_outputs}: outputs [] have neither 'keypoints' nor 'heatmaps'; export it with "
            "python -m interop.to_onnx", body_path, no_outputs)
    refused(f"{body_path}: metadata task='wholebody'; expected a hand model", body_path,
            body_path)
    refused(f"{hand_path}: metadata task='hand'; expected the whole-body model", hand_path,
            hand_path)
    refused(f"{tmp_path / 'missing.onnx'}: no such ONNX file", tmp_path / "missing.onnx")
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    refused(f"{tmp_path / 'garbage.onnx'}: onnxruntime cannot load it", tmp_path / "garbage.onnx")
    no_task = rewritten(body_path, tmp_path / "no_task.onnx", drop_metadata="task")
    refused(f"{no_task}: metadata field 'task' is missing", no_task)
    no_rule = rewritten(hand_path, tmp_path / "no_rule.onnx", drop_metadata="hand_crop_rule")
    refused(f"{no_rule}: metadata field 'hand_crop_rule' is missing or incomplete", body_path,
            no_rule)
    rule = json.loads(metadata(hand_path)["hand_crop_rule"])
    del rule["reach"]
    partial = rewritten(hand_path, tmp_path / "partial_rule.onnx",
                        metadata={"hand_crop_rule": json.dumps(rule)})
    message = f"{partial}: metadata field 'hand_crop_rule' is missing or incomplete ('reach')"
    with pytest.raises(OnnxModelError, match=re.escape(message)):
        hand_stage_from_onnx(partial)
    # DARK reads the heatmaps with the targets' sigma: a file without either is refused for it.
    dark_message = ": DARK decoding needs the 'heatmaps' output and the 'sigma' metadata"
    for broken in (rewritten(hand_path, tmp_path / "no_sigma.onnx", drop_metadata="sigma"),
                   rewritten(hand_path, tmp_path / "no_maps.onnx", drop_output="heatmaps")):
        with pytest.raises(OnnxModelError, match=re.escape(f"{broken}{dark_message}")):
            hand_stage_from_onnx(broken, decoder="dark")
        hand_stage_from_onnx(broken, decoder="argmax")  # its in-graph keypoints still serve


def test_video_job_tracks_hands_and_smooths_offline_by_default(exported, tmp_path):
    """The job's default = the processor with hand tracking, then the offline smoother."""
    import cv2

    from signlang_jax.data.sequence_files import read_npz
    from signlang_jax.inference.onnx_runtime import load_onnx
    from signlang_jax.video import cli as video_cli
    from signlang_jax.video.hands import HandTrackingParams
    from signlang_jax.video.offline import OfflineParams, frame_times, smooth_offline
    from signlang_jax.video.sequence import SequenceProcessor
    from signlang_jax.video.tracking import TrackingParams

    body_path, hand_path = exported
    clip = [f for f in frames() for _ in range(3)]  # a still signer held 3 frames, 3 times
    folder = tmp_path / "clip"
    folder.mkdir()
    for n, frame in enumerate(clip):  # PNG: lossless, so the job sees exactly these pixels
        cv2.imwrite(str(folder / f"{n:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert video_cli.main([str(folder), "--out", str(out), "--onnx", str(body_path),
                           "--hand-onnx", str(hand_path)]) == 0
    seq = read_npz(out / "clip.npz")
    settings = json.loads(seq.metadata["settings"])
    assert settings["hand_tracking"] == dataclasses.asdict(HandTrackingParams())
    assert settings["smoothing"]["kind"] == "offline"

    pair = load_onnx(body_path, hand_path, 0.0, 1, hand_decoder="dark")  # the job's default
    processor = SequenceProcessor(pair, 64, 64, 25.0, TrackingParams(), None,
                                  HandTrackingParams())
    raw = np.concatenate([processor.process([f]).raw for f in clip])
    want = smooth_offline(raw, frame_times(len(raw), 25.0), OfflineParams())
    np.testing.assert_allclose(seq.keypoints, want, atol=1e-4)
    assert not np.allclose(seq.keypoints, raw, atol=1e-3)  # the smoother did something
    assert video_cli.main([str(folder), "--out", str(tmp_path / "raw"), "--onnx",
                           str(body_path), "--hand-onnx", str(hand_path), "--no-smoothing",
                           "--no-hand-tracking"]) == 0
    still_rule = read_npz(tmp_path / "raw" / "clip.npz").keypoints
    body_rule = SequenceProcessor(pair, 64, 64, 25.0, TrackingParams(), None, None)
    np.testing.assert_allclose(
        still_rule, np.concatenate([body_rule.process([f]).raw for f in clip]), atol=1e-4)


def test_heatmap_only_exports_decode_to_the_in_graph_keypoints(exported, tmp_path):
    """An export without --with-keypoints (the seed's heatmap contract) is decoded in numpy by
    the in-graph rule: the same points, bit for bit, with either decoder."""
    body_path, hand_path = exported
    rng = np.random.default_rng(4)
    for path, task in ((body_path, "wholebody"), (hand_path, "hand")):
        bare = rewritten(path, tmp_path / f"bare_{task}.onnx", drop_output="keypoints")
        size = OnnxModel(path, task=task).input_size
        images = rng.integers(0, 256, (5, size, size, 3), dtype=np.uint8)
        for decoder in ("argmax", "dark"):
            want = OnnxModel(path, task=task, decoder=decoder).predict_batch(images)
            got = OnnxModel(bare, task=task, decoder=decoder).predict_batch(images)
            np.testing.assert_array_equal(got, want)


def test_numpy_argmax_decoder_is_the_jax_codec_exactly():
    import jax.numpy as jnp

    from signlang_jax import codec, dark

    maps = np.random.default_rng(5).random((3, 21, 24, 24)).astype(np.float32)
    maps[0, 0] = 0.0  # a flat map: the first maximum, as argmax everywhere
    for udp in (False, True):
        want = np.asarray(codec.decode_heatmaps(jnp.asarray(maps.transpose(0, 2, 3, 1)), 96,
                                                udp))
        np.testing.assert_array_equal(dark.decode_heatmaps(maps, 96, udp), want)


def test_numpy_dark_matches_the_jax_codec():
    import jax.numpy as jnp

    from signlang_jax import codec, dark

    rng = np.random.default_rng(0)
    size, heat, sigma = 96, 24, 1.5
    centres = rng.uniform(1, heat - 2, (2, 5, 2))
    yy, xx = np.mgrid[0:heat, 0:heat]
    maps = np.exp(-((xx[None, None] - centres[..., 0, None, None]) ** 2
                    + (yy[None, None] - centres[..., 1, None, None]) ** 2) / (2 * sigma**2))
    maps = (0.8 * maps + rng.normal(0, 0.01, maps.shape)).astype(np.float32)  # (N, K, H, W)
    nhwc = jnp.asarray(maps.transpose(0, 2, 3, 1))
    argmax = np.asarray(codec.decode_heatmaps(nhwc, size))
    want = np.asarray(codec.dark_refine(nhwc, jnp.asarray(argmax), size, sigma))
    got = dark.dark_refine(maps, argmax, size, sigma)
    np.testing.assert_allclose(got, want, atol=2e-3)
    inner = (centres > 2).all(-1) & (centres < heat - 3).all(-1)
    # DARK lands nearer the true centres than the quarter-pixel shift does.
    error = {name: np.abs(points[..., :2] / (size / heat) - centres)[inner].mean()
             for name, points in (("argmax", argmax), ("dark", got))}
    assert error["dark"] < 0.5 * error["argmax"]


def test_onnx_dark_decoding_matches_the_jax_predictor(runs, exported):
    from signlang_jax.inference.predictor import Predictor, load_for_inference

    _, hand_run = runs
    loaded = load_for_inference(hand_run)
    jax_dark = Predictor(loaded.model, loaded.config, "dark")
    onnx_dark = OnnxModel(exported[1], task="hand", decoder="dark")
    pixels = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    want, _ = jax_dark.predict_batch(pixels)
    got = onnx_dark.predict_batch(pixels)
    # Random weights give flat maps whose Newton steps magnify float noise: equal to 0.05 px,
    # but for the rare argmax near-tie (which moves a point by a whole heatmap pixel or more).
    close = np.abs(got[..., :2] - want[..., :2]).max(-1) < 0.05
    assert close.mean() > 0.95
    np.testing.assert_allclose(got[..., 2], want[..., 2], atol=1e-4)
    with pytest.raises(ValueError, match="decoder 'soft'"):
        OnnxModel(exported[1], decoder="soft")

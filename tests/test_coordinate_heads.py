"""The codec's two ablation options: UDP heatmap coordinates and the SimCC head, by hand."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from signlang_jax.codec import (
    dark_refine,
    decode_heatmaps,
    flip_back,
    render_heatmaps,
    simcc_heatmaps,
    simcc_labels,
    simcc_loss,
)
from signlang_jax.keypoints import FLIP_PERMUTATION


def test_udp_maps_corner_pixel_centres_onto_each_other():
    # 64 -> 16 under UDP: r = 15 / 63; x = 21 -> 5.0, x = 63 -> 15.0 (plain: 15.75).
    kps = np.array([[[21.0, 63.0, 1.0], [0.0, 42.0, 1.0]]], np.float32)
    hm = np.asarray(render_heatmaps(jnp.asarray(kps), 64, 16, 2.0, udp=True))
    assert hm[0, 15, 5, 0] == 1.0 and hm[0, 10, 0, 1] == 1.0
    assert math.isclose(hm[0, 15, 6, 0], math.exp(-1 / 8), rel_tol=1e-6)
    out = np.asarray(decode_heatmaps(jnp.asarray(hm), 64, udp=True))
    np.testing.assert_allclose(out[0, :, :2], kps[0, :, :2], atol=1e-5)  # exact pixels
    plain = np.asarray(decode_heatmaps(jnp.asarray(hm), 64))
    np.testing.assert_allclose(plain[0, 0, :2], [20.0, 60.0], atol=1e-5)  # the wrong convention


def test_udp_decoders_recover_subpixel_points_and_flip_is_a_pure_mirror():
    rng = np.random.default_rng(3)
    kps = np.zeros((1, 64, 3), np.float32)
    kps[0, :, :2] = rng.uniform(20, 230, (64, 2))
    kps[0, :, 2] = 1
    hm = render_heatmaps(jnp.asarray(kps), 256, 64, 2.0, udp=True)
    dark = np.asarray(dark_refine(hm, decode_heatmaps(hm, 256, udp=True), 256, 2.0, udp=True))
    assert np.abs(dark[0, :, :2] - kps[0, :, :2]).max() < 0.2  # input px
    flipped = kps.copy()
    flipped[..., 0] = 255 - kps[..., 0]
    flipped = flipped[:, list(FLIP_PERMUTATION)]
    flipped_maps = render_heatmaps(jnp.asarray(flipped), 256, 64, 2.0, udp=True)
    back = np.asarray(flip_back(flipped_maps, 256, udp=True))
    mirrored = np.asarray(flipped_maps)[:, :, ::-1, :][..., list(FLIP_PERMUTATION)]
    np.testing.assert_array_equal(back, mirrored)  # no sub-pixel shift under UDP
    np.testing.assert_allclose(back, np.asarray(hm), atol=1e-5)


def test_simcc_labels_by_hand():
    kps = np.array([[[10.25, 3.0, 1.0]]], np.float32)  # split 2: bins 20.5 and 6.0
    x, y = (np.asarray(a) for a in simcc_labels(jnp.asarray(kps), 32, 64, 2.0))
    assert x.shape == y.shape == (1, 1, 64)
    np.testing.assert_allclose([x.sum(), y.sum()], [1.0, 1.0], rtol=1e-6)
    bins = np.arange(64)
    gx = np.exp(-((bins - 20.5) ** 2) / 8)
    np.testing.assert_allclose(x[0, 0], gx / gx.sum(), rtol=1e-5, atol=1e-12)
    assert y[0, 0].argmax() == 6 and x[0, 0, 20] == x[0, 0, 21]


def test_simcc_loss_is_the_weighted_mean_kl():
    kps = np.array([[[10.0, 3.0, 1.0], [5.0, 5.0, 0.5], [7.0, 7.0, 0.0]]], np.float32)
    x, y = simcc_labels(jnp.asarray(kps), 32, 64, 2.0)
    exact = simcc_loss(jnp.log(x + 1e-30), jnp.log(y + 1e-30), x, y, kps[..., 2])
    assert abs(float(exact[0])) < 1e-6  # the labels themselves: no loss
    # Uniform logits: KL(t || uniform) = sum t log t + log 64 per axis.
    flat = jnp.zeros((1, 3, 64))
    loss = float(simcc_loss(flat, flat, x, y, kps[..., 2])[0])

    def kl(t: np.ndarray) -> float:
        t = t[t > 0]
        return float(np.sum(t * np.log(t)) + math.log(64))

    x, y = np.asarray(x), np.asarray(y)
    per = [0.5 * (kl(x[0, k]) + kl(y[0, k])) for k in range(3)]
    assert math.isclose(loss, (per[0] * 1.0 + per[1] * 0.5 + 0) / 3, rel_tol=1e-5)


def test_simcc_heatmaps_decode_to_the_label_centres_with_unit_peak():
    rng = np.random.default_rng(0)
    kps = np.ones((2, 5, 3), np.float32)
    kps[..., :2] = rng.uniform(4, 28, (2, 5, 2))
    kps[0, 0, :2] = [12.0, 20.5]  # on bin centres (24, 41)
    x, y = simcc_labels(jnp.asarray(kps), 32, 64, 3.0)
    maps = simcc_heatmaps(jnp.log(x + 1e-30), jnp.log(y + 1e-30), 3.0)
    assert maps.shape == (2, 64, 64, 5)
    argmax = np.asarray(decode_heatmaps(maps, 32))
    assert abs(argmax[0, 0, 2] - 1.0) < 1e-4  # a prediction equal to its label scores 1
    np.testing.assert_allclose(argmax[0, 0, :2], [12.0, 20.5], atol=1e-5)
    dark = np.asarray(dark_refine(maps, jnp.asarray(argmax), 32, 3.0))
    assert np.abs(dark[..., :2] - kps[..., :2]).max() < 0.01  # input px


@pytest.mark.parametrize("fields, message", [
    ({"model__head": "simcc", "model__heatmap_size": 128},
     "--config.model.heatmap_size=128: must be 1024, the SimCC head's bins for "
     "data.image_size=512 and model.simcc_split=2"),
    ({"model__head": "coords"}, "--config.model.head='coords': must be one of"),
    ({"model__udp": 1}, "--config.model.udp=1: must be"),
    ({"model__simcc_split": 0}, "--config.model.simcc_split=0: must be"),
])
def test_bad_head_settings_are_refused_naming_the_flag(fields, message):
    from signlang_jax.errors import ConfigError
    from signlang_jax.training.config_check import validate_config
    from tests.test_config_check import config_with

    with pytest.raises(ConfigError) as info:
        validate_config(config_with(**fields), 1)
    assert message in str(info.value), str(info.value)


def _simcc_config(train_config):
    config = train_config
    config.data.image_size = 64
    config.model.head = "simcc"
    config.model.heatmap_size = 128
    config.model.simcc_hidden = 64
    config.model.width = 16
    config.model.deconv_filters = 32
    config.model.sigma = 2.0
    config.optim.lr = 5e-3
    config.optim.warmup_steps = 10
    return config


def test_simcc_model_memorises_four_samples(train_config):
    """As the heatmap model's overfit test: PCK@0.1 on the samples goes near 1."""
    from tests.conftest import memorise_four_samples

    first, last, metrics = memorise_four_samples(_simcc_config(train_config))
    assert last < 0.3 * first
    assert metrics["val/pck@0.1"] > 0.9, metrics


def test_simcc_run_predicts_heatmaps_and_is_refused_by_export(train_config, tmp_path):
    from interop.to_onnx import ExportError, export_onnx
    from signlang_jax.inference.predictor import Predictor
    from signlang_jax.inference.restore import load_checkpoint
    from signlang_jax.training.train import train_and_evaluate

    config = _simcc_config(train_config)
    config.train.num_steps = 2
    workdir = tmp_path / "simcc_run"
    train_and_evaluate(config, workdir)
    loaded = load_checkpoint(workdir)
    keypoints, heatmaps = Predictor(loaded.model, loaded.config, "dark").predict_batch(
        np.zeros((2, 64, 64, 3), np.uint8))
    assert heatmaps.shape == (2, 128, 128, 64) and keypoints.shape == (2, 64, 3)
    assert np.all((keypoints[..., :2] >= 0) & (keypoints[..., :2] <= 64))
    output = tmp_path / "simcc.onnx"
    with pytest.raises(ExportError, match="model.head='simcc'"):
        export_onnx(workdir, output)
    assert not output.exists()


def test_udp_model_exports_and_onnxruntime_decodes_it_like_jax(train_config, tmp_path):
    """A model.udp run exports (parity checked by the export itself, in-graph keypoints in the
    UDP convention), says so in its metadata, and DARK in numpy reads it as JAX does."""
    import onnx

    from interop.to_onnx import export_onnx
    from signlang_jax.inference.onnx_runtime import OnnxModel
    from signlang_jax.inference.predictor import Predictor
    from signlang_jax.inference.restore import load_checkpoint
    from signlang_jax.training.train import train_and_evaluate

    train_config.model.udp = True
    train_config.train.num_steps = 2
    workdir = tmp_path / "udp_run"
    train_and_evaluate(train_config, workdir)
    output = tmp_path / "udp.onnx"
    export_onnx(workdir, output, with_keypoints=True)
    meta = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert meta["heatmap_coordinates"] == "udp" and "x_heatmap * 31 / 7" in meta["decoding"]
    loaded = load_checkpoint(workdir)
    pixels = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    for decoder, tolerance in (("argmax", 1e-4), ("dark", 0.05)):
        want, _ = Predictor(loaded.model, loaded.config, decoder).predict_batch(pixels)
        got = OnnxModel(output, decoder=decoder).predict_batch(pixels)
        close = np.abs(got[..., :2] - want[..., :2]).max(-1) < tolerance
        assert close.mean() > 0.95, (decoder, close.mean())  # but for rare argmax near-ties

"""Inference in a chosen compute dtype (float32, bfloat16, the run's own) and the CLIs' flags.

Measured on tiny_run (4 steps, 32 px input, 8x8 heatmaps) over its 24 synthetic images: the
bf16 heatmaps differ from the f32 ones by at most 0.26 % of the f32 peak, but that model's
heatmaps are still flat (peak 0.006, no keypoint's top cell leads the runner-up by more than the
bf16 error), so 27 % of the argmax keypoints move to a near-tied cell: mean 1.6 px, max 7.3 px.
The same model trained for 200 steps: heatmaps within 1.7 % of the peak, 2 % of the keypoints
move, mean 0.04 px, max 2 px. The tests check the dtype-independent facts: close heatmaps, and
bf16 choosing a cell that f32 rates within that closeness of its best.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from signlang_jax import infer_image, live_demo
from signlang_jax.data.augment import AugmentParams, augment_sample
from signlang_jax.data.images import read_image
from signlang_jax.inference.cli_args import INFERENCE_DTYPES
from signlang_jax.inference.predictor import Predictor, load_model
from signlang_jax.models import resolve_dtype
from signlang_jax.training import compile_cache

HEATMAP_TOLERANCE = 0.03  # of the f32 heatmaps' peak; measured 0.0026 here, 0.017 trained


def param_dtypes(model: nnx.Module) -> set[str]:
    """The dtypes of every variable (parameters and BatchNorm statistics)."""
    return {str(leaf.dtype) for leaf in jax.tree.leaves(nnx.state(model))}


def input_batch(synth_root, image_size: int, num_keypoints: int) -> np.ndarray:
    """The synthetic images letterboxed to the model's input, uint8 (N, S, S, 3)."""
    images = []
    for path in sorted((synth_root / "images").iterdir()):
        image = read_image(path)
        h, w = image.shape[:2]
        sample = augment_sample(image, np.zeros((num_keypoints, 3), np.float32),
                                np.array([0, 0, w, h], np.float32), image_size, None,
                                AugmentParams())
        images.append(sample["image"])
    return np.stack(images)


def test_bfloat16_predictions_close_to_float32(tiny_run, synth_root):
    """Weights stay float32; bf16 heatmaps within 3 % of the peak; keypoints at near-tied cells."""
    model32, config32, step32 = load_model(tiny_run, dtype="float32")
    model16, config16, step16 = load_model(tiny_run, dtype="bfloat16")
    assert step16 == step32
    assert (config32.model.dtype, config16.model.dtype) == ("float32", "bfloat16")
    assert model32.dtype == jnp.float32 and model16.dtype == jnp.bfloat16
    assert param_dtypes(model32) == param_dtypes(model16) == {"float32"}
    images = input_batch(synth_root, config32.data.image_size, config32.model.num_keypoints)
    keypoints32, heatmaps32 = Predictor(model32, config32).predict_batch(images)
    keypoints16, heatmaps16 = Predictor(model16, config16).predict_batch(images)
    assert heatmaps16.dtype == np.float32 and heatmaps16.shape == heatmaps32.shape
    tolerance = HEATMAP_TOLERANCE * np.abs(heatmaps32).max()
    np.testing.assert_allclose(heatmaps16, heatmaps32, rtol=0, atol=tolerance)
    np.testing.assert_allclose(keypoints16[..., 2], keypoints32[..., 2], rtol=0, atol=tolerance)
    # Where bf16 picks another cell, f32 rates that cell within the tolerance of its best one.
    n, h, w, k = heatmaps32.shape
    flat32 = heatmaps32.reshape(n, h * w, k)
    chosen16 = heatmaps16.reshape(n, h * w, k).argmax(axis=1)
    rated = np.take_along_axis(flat32, chosen16[:, None, :], axis=1)[:, 0]
    assert np.all(rated >= flat32.max(axis=1) - 2 * tolerance)
    distance = np.linalg.norm(keypoints16[..., :2] - keypoints32[..., :2], axis=-1)
    assert distance.mean() < 4.0  # input pixels of 32; measured 1.6 (flat heatmaps), see above


def test_trained_dtype_is_the_runs_own(tiny_run):
    """"trained" keeps the run's model.dtype ("auto": bf16 on GPU, f32 on CPU)."""
    model, config, _ = load_model(tiny_run, "latest", dtype="trained")
    assert config.model.dtype == "auto"
    assert model.dtype == resolve_dtype("auto")
    assert param_dtypes(model) == {"float32"}


def test_bad_dtype_is_refused(tiny_run, capsys):
    """load_model names the choices; the CLIs refuse the value before loading anything."""
    with pytest.raises(ValueError, match=r"dtype='float16': expected one of float32, bfloat16, "
                       r"trained"):
        load_model(tiny_run, dtype="float16")
    for parser in (infer_image.build_parser(), live_demo.build_parser()):
        base = ["--checkpoint", "run"] + (["--image", "x", "--out", "y"]
                                          if parser.prog.endswith("infer_image") else [])
        assert parser.parse_args(base).dtype == "float32"
        assert parser.parse_args(base + ["--dtype", "bfloat16"]).dtype == "bfloat16"
        with pytest.raises(SystemExit):
            parser.parse_args(base + ["--dtype", "float16"])
        assert "invalid choice: 'float16'" in capsys.readouterr().err
    assert INFERENCE_DTYPES == ("float32", "bfloat16", "trained")


def test_clis_enable_the_compilation_cache(monkeypatch, tmp_path):
    """infer_image and live_demo turn the persistent cache on before any work."""
    calls = []
    monkeypatch.setattr(compile_cache, "enable_compilation_cache", lambda: calls.append(1))
    monkeypatch.setattr(infer_image, "enable_compilation_cache", lambda: calls.append(2))
    assert infer_image.main(["--checkpoint", str(tmp_path), "--image", str(tmp_path / "none.png"),
                             "--out", str(tmp_path / "o.jpg")]) == 1
    assert live_demo.main(["--checkpoint", str(tmp_path), "--no-display"]) == 2
    assert calls == [2, 1]

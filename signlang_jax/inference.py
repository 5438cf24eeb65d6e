"""Loading a trained model and predicting keypoints on images of any size.

`load_model(checkpoint, step)` restores a Flax model (eval mode) and its config from a training
workdir; `Predictor` wraps it in one jitted function: uint8 batch -> heatmaps -> keypoints, with
the decoder (argmax + quarter shift, or DARK) and the optional flip test of `signlang_jax.codec`.
`Predictor.predict_image` letterboxes any image to the model's input size and maps the keypoints
back to the original pixels.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from configs import default
from signlang_jax.codec import dark_refine, decode_heatmaps, flip_back
from signlang_jax.data.augment import AugmentParams, augment_sample
from signlang_jax.train import (
    TrainingError,
    _abstract,
    best_step,
    create_state,
    make_checkpoint_manager,
    resolve_checkpoint,
    restore_checkpoint,
)

DECODERS = ("argmax", "dark")


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """The --checkpoint/--step pair every CLI that loads a trained model shares."""
    parser.add_argument("--checkpoint", required=True,
                        help="training workdir (or its checkpoints/ folder, or a step folder "
                        "such as runs/x/checkpoints/1600)")
    parser.add_argument("--step", default="best",
                        help="best (highest val PCK@0.1, default), latest, or a step number")


def _merged_config(saved: dict) -> ml_collections.ConfigDict:
    """The default config updated with a saved one (older workdirs may lack newer fields)."""
    config = default.get_config()
    config.update_from_flattened_dict(
        {k: v for k, v in _flatten(saved).items() if _has(config, k)})
    return config


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def _has(config: ml_collections.ConfigDict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False
        node = node[part]
    return True


def load_model(checkpoint: str | Path, step: str | int = "best"
               ) -> tuple[nnx.Module, ml_collections.ConfigDict, int]:
    """(model in eval mode, its training config, step) from a workdir or checkpoint folder.

    `checkpoint`: a training workdir, its checkpoints/ folder, or a step folder
    (checkpoints/1600, which fixes the step). `step`: 'best' (highest val PCK@0.1; the latest if
    none has metrics), 'latest', or a step number.
    """
    directory, fixed = resolve_checkpoint(checkpoint)
    config_path = directory.parent / "config.json"
    if not config_path.exists():
        raise TrainingError(f"{config_path} not found: {checkpoint} is not a training workdir "
                            "of signlang_jax.main")
    config = _merged_config(json.loads(config_path.read_text()))
    manager = make_checkpoint_manager(directory, config, read_only=True)
    try:
        if fixed is not None:
            chosen = fixed
        elif step == "latest":
            chosen = manager.latest_step()
        elif step == "best":
            chosen = best_step(manager)
            chosen = manager.latest_step() if chosen is None else chosen
        else:
            chosen = int(step)
        if chosen is None or chosen not in manager.all_steps():
            raise TrainingError(f"no checkpoint {step if fixed is None else fixed} in "
                                f"{directory} (available: {list(manager.all_steps())})")
        graphdef, state, _ = create_state(config, 1)
        state = restore_checkpoint(manager, chosen, _abstract(state), None)
    finally:
        manager.close()
    model, _ = nnx.merge(graphdef, state)
    model.eval()
    return model, config, chosen


class Predictor:
    """Jitted batch prediction with a chosen decoder and optional flip test."""

    def __init__(self, model: nnx.Module, config: ml_collections.ConfigDict,
                 decoder: str = "argmax", flip_test: bool = False) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.config = config
        self.image_size = config.data.image_size
        graphdef, state = nnx.split(model)
        self._state = state
        self._forward = jax.jit(functools.partial(
            _predict, graphdef, self.image_size, config.model.sigma, decoder, flip_test))

    def predict_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (N, K, 3) in input pixels with scores, heatmaps (N, H, W, K)).

        images: uint8 (N, S, S, 3) RGB at the model's input size.
        """
        keypoints, heatmaps = self._forward(self._state, jnp.asarray(images))
        return np.asarray(keypoints), np.asarray(heatmaps)

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """Keypoints (K, 3) in the ORIGINAL image's pixels for one RGB uint8 image of any size."""
        h, w = image.shape[:2]
        dummy = np.zeros((self.config.model.num_keypoints, 3), np.float32)
        sample = augment_sample(image, dummy, np.array([0, 0, w, h], np.float32),
                                self.image_size, None, AugmentParams())
        keypoints, _ = self.predict_batch(sample["image"][None])
        return to_original(keypoints[0], sample["affine"])


def to_original(keypoints: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (K, 3) input-pixel keypoints back through a (2, 3) original -> input affine."""
    matrix = np.vstack([affine.astype(np.float64), [0, 0, 1]])
    inverse = np.linalg.inv(matrix)[:2]
    xy = keypoints[:, :2] @ inverse[:, :2].T + inverse[:, 2]
    return np.concatenate([xy, keypoints[:, 2:]], axis=1).astype(np.float32)


def _predict(graphdef: nnx.GraphDef, image_size: int, sigma: float, decoder: str,
             flip_test: bool, state: nnx.State, images: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(graphdef, state)
    x = images.astype(jnp.float32) / 255.0
    heatmaps = model(x)
    if flip_test:
        heatmaps = 0.5 * (heatmaps + flip_back(model(x[:, :, ::-1, :]), image_size))
    keypoints = decode_heatmaps(heatmaps, image_size)
    if decoder == "dark":
        keypoints = dark_refine(heatmaps, keypoints, image_size, sigma)
    return keypoints, heatmaps

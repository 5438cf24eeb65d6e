"""Loading a trained model and predicting keypoints on images of any size.

`load_model(checkpoint, step, dtype)` restores a Flax model (eval mode) and its config from a
training workdir (checkpoint syntax: `signlang_jax.inference.restore`),
computing in float32 (the default),
bfloat16 or the run's own model.dtype; `Predictor` wraps it in one jitted function:
uint8 batch -> heatmaps -> keypoints, with the decoder (argmax + quarter shift, or DARK) and the
optional flip test of `signlang_jax.codec`. `Predictor.predict_image` letterboxes any image to the
model's input size and maps the keypoints back to the original pixels. Given a hand stage
(`load_hand_stage`: a hand-model checkpoint, `signlang_jax.inference.hand_stage`), the
hand points are then
refined on crops of the original image.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from signlang_jax.codec import dark_refine, decode_heatmaps, flip_back
from signlang_jax.crop import to_original
from signlang_jax.dark import DECODERS
from signlang_jax.data.augment import AugmentParams, augment_sample
from signlang_jax.errors import ConfigError
from signlang_jax.inference.cli_args import INFERENCE_DTYPES
from signlang_jax.inference.hand_stage import DEFAULT_MIN_SCORE, HandStage
from signlang_jax.inference.restore import LoadedCheckpoint, load_checkpoint, split_spec
from signlang_jax.models.layers import xla_compiler_options


def load_hand_stage(checkpoint: str | Path, step: str | int | None = None,
                    dtype: str = "float32", min_score: float = DEFAULT_MIN_SCORE,
                    decoder: str = "argmax", batch_size: int = 16) -> HandStage:
    """The hand stage of a hand-model checkpoint, with its training run's crop rule."""
    from signlang_jax.data.hand_crops import hand_crop_rule

    loaded = load_for_inference(checkpoint, step, dtype, task="hand")
    predictor = Predictor(loaded.model, loaded.config, decoder)
    return HandStage(predictor.predict_keypoints,
                     loaded.config.data.image_size, hand_crop_rule(loaded.config), min_score,
                     batch_size)


# The one check of a checkpoint's task, worded for the flag that names each kind of model.
_WRONG_TASK = {
    "wholebody": "--checkpoint {checkpoint} is a {found} model ({directory}): give the whole-body "
                 "model here and the hand model as --hand-checkpoint",
    "hand": "--hand-checkpoint {checkpoint}: {directory} is a {found} model; expected a hand "
            "model trained with configs/hand.py (task='hand')",
}


def load_for_inference(checkpoint: str | Path, step: str | int | None = None,
                       dtype: str = "float32", task: str | None = None) -> LoadedCheckpoint:
    """The `LoadedCheckpoint` a CLI asked for: the best step unless a step is named.

    "Named" = --step, a :suffix or a step folder. dtype: one of INFERENCE_DTYPES, the compute
    dtype (parameters stay float32); the config's model.dtype is the one asked for ("trained":
    the run's own value). task: the `config.task` the caller needs ("wholebody" for
    --checkpoint, "hand" for --hand-checkpoint); another is refused naming the flag.
    """
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(INFERENCE_DTYPES)} "
                         "(bfloat16 is faster on GPUs; float32 matches export and parity checks)")
    path, chosen = split_spec(checkpoint, step)
    if chosen is None and not path.name.isdigit():
        chosen = "best"
    loaded = load_checkpoint(path, chosen, dtype=dtype)
    found = loaded.config.get("task", "wholebody")
    if task is not None and found != task:
        raise ConfigError(_WRONG_TASK[task].format(checkpoint=checkpoint, found=found,
                                                   directory=loaded.directory))
    return loaded


def load_model(checkpoint: str | Path, step: str | int | None = None, dtype: str = "float32",
               task: str | None = None) -> tuple[nnx.Module, ml_collections.ConfigDict, int]:
    """(model in eval mode, its training config, step) of `load_for_inference`."""
    loaded = load_for_inference(checkpoint, step, dtype, task)
    return loaded.model, loaded.config, loaded.step


class Predictor:
    """Jitted batch prediction with a chosen decoder and optional flip test."""

    def __init__(self, model: nnx.Module, config: ml_collections.ConfigDict,
                 decoder: str = "argmax", flip_test: bool = False,
                 hand_stage: HandStage | None = None) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        if flip_test and config.get("task", "wholebody") == "hand":
            raise ValueError("the hand model has no flip test: a mirrored left hand is a right "
                             "hand, which it is not trained on")
        if hand_stage is not None and config.get("task", "wholebody") == "hand":
            raise ConfigError("a hand stage refines a whole-body model's hands; --checkpoint "
                              "names a hand model")
        self.config = config
        self.hand_stage = hand_stage
        self.image_size = config.data.image_size
        graphdef, state = nnx.split(model)
        self._state = state
        self._forward = jax.jit(functools.partial(
            _predict, graphdef, self.image_size, config.model.sigma,
            bool(config.model.get("udp", False)), decoder, flip_test),
            compiler_options=xla_compiler_options())

    def predict_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keypoints (N, K, 3) in input pixels with scores, heatmaps (N, H, W, K)).

        images: uint8 (N, S, S, 3) RGB at the model's input size.
        """
        keypoints, heatmaps = self._forward(self._state, jnp.asarray(images))
        return np.asarray(keypoints), np.asarray(heatmaps)

    def predict_keypoints(self, images: np.ndarray) -> np.ndarray:
        """(N, K, 3) keypoints in input pixels; the heatmaps are not copied to the host."""
        keypoints, _ = self._forward(self._state, jnp.asarray(images))
        return np.asarray(keypoints)

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """Keypoints (K, 3) in the ORIGINAL image's pixels for one RGB uint8 image of any size."""
        h, w = image.shape[:2]
        dummy = np.zeros((self.config.model.num_keypoints, 3), np.float32)
        sample = augment_sample(image, dummy, np.array([0, 0, w, h], np.float32),
                                self.image_size, None, AugmentParams())
        keypoints, _ = self.predict_batch(sample["image"][None])
        keypoints = to_original(keypoints[0], sample["affine"])
        if self.hand_stage is not None:
            keypoints = self.hand_stage.refine([image], keypoints[None])[0]
        return keypoints


def _predict(graphdef: nnx.GraphDef, image_size: int, sigma: float, udp: bool, decoder: str,
             flip_test: bool, state: nnx.State, images: jax.Array
             ) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(graphdef, state)
    x = images.astype(jnp.float32) / 255.0
    heatmaps = model(x)
    if flip_test:
        heatmaps = 0.5 * (heatmaps + flip_back(model(x[:, :, ::-1, :]), image_size, udp))
    keypoints = decode_heatmaps(heatmaps, image_size, udp)
    if decoder == "dark":
        keypoints = dark_refine(heatmaps, keypoints, image_size, sigma, udp)
    return keypoints, heatmaps

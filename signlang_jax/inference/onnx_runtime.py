"""Run exported models with onnxruntime alone: numpy, OpenCV and onnxruntime, no JAX, no torch.

    predictor = OnnxPredictor("body.onnx", hand_path="hand.onnx")
    keypoints = predictor.predict_image(rgb)  # (64, 3): x, y in the image's pixels, score

The body graph runs on the letterboxed image (the same square as `letterbox_matrix` and the JAX
`Predictor`, cut by the video job's `RegionPredictor`); the hand graph runs through the same
`HandStage` as the JAX path, with the crop rule stored in the hand file's metadata, so both paths
cut identical crops from identical body points. A file exported with `--with-keypoints` gives
its decoded keypoints; one without (the original project's heatmap-only contract) is decoded
here in numpy by the same rule (`signlang_jax.dark.decode_heatmaps`, identical points).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from signlang_jax.crop import HandCropRule, Region, full_frame_region
from signlang_jax.dark import DECODERS, dark_refine, decode_heatmaps
from signlang_jax.inference.hand_stage import DEFAULT_MIN_SCORE, HandStage
from signlang_jax.inference.region import RegionPredictor

# What each task's file is, for the error when a file of the other task is given.
_TASK_HINTS = {"wholebody": "the whole-body model (a hand model goes to --hand-onnx / hand_path)",
               "hand": "a hand model (exported from a configs/hand.py run)"}


class OnnxModelError(ValueError):
    """An ONNX file that this runtime cannot use; the message names the file and the fix."""


DEVICES = ("cpu", "cuda")


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for `device`; OnnxModelError when this onnxruntime
    cannot run there (the CPU build has no CUDA provider)."""
    import onnxruntime as ort

    if device not in DEVICES:
        raise OnnxModelError(f"device {device!r}; expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise OnnxModelError(f"--device cuda: this onnxruntime ({ort.__version__}) has no CUDA "
                             f"execution provider (it has {ort.get_available_providers()}); "
                             "pip install onnxruntime-gpu in place of onnxruntime")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxModel:
    """One exported graph: uint8 NHWC batches in, (N, K, 3) keypoints in input pixels out."""

    def __init__(self, path: str | Path, threads: int = 0, task: str | None = None,
                 decoder: str = "argmax", device: str = "cpu") -> None:
        import onnxruntime as ort

        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r}; expected one of {DECODERS}")

        self.path = Path(path)
        if not self.path.is_file():
            raise OnnxModelError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        # Body and hand graphs run one after the other in two sessions: idle threads of one
        # must not spin (busy-wait) while the other computes, or they fight for the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        providers = providers_for(device)
        try:
            self._session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise OnnxModelError(f"{self.path}: onnxruntime cannot load it: {e}") from None
        self.metadata = self._session.get_modelmeta().custom_metadata_map
        outputs = [o.name for o in self._session.get_outputs()]
        if "keypoints" not in outputs and "heatmaps" not in outputs:
            raise OnnxModelError(f"{self.path}: outputs {outputs} have neither 'keypoints' nor "
                                 "'heatmaps'; export it with python -m interop.to_onnx")
        for key in ("input_size", "task"):
            if key not in self.metadata:
                raise OnnxModelError(f"{self.path}: metadata field {key!r} is missing; export "
                                     "it with this version's python -m interop.to_onnx")
        self.input_size = int(self.metadata["input_size"])
        self.task = self.metadata["task"]
        if task is not None and self.task != task:
            raise OnnxModelError(f"{self.path}: metadata task={self.task!r}; expected "
                                 f"{_TASK_HINTS[task]}")
        inputs = self._session.get_inputs()
        if not _input_fits(inputs, self.input_size):
            raise OnnxModelError(f"{self.path}: inputs {[(i.name, i.shape) for i in inputs]}; "
                                 f"expected one 'images' (N, 3, {self.input_size}, "
                                 f"{self.input_size}) as metadata input_size says; export it "
                                 "with python -m interop.to_onnx")
        self._keypoints_index = outputs.index("keypoints") if "keypoints" in outputs else None
        self.decoder = decoder
        if decoder == "dark" and ("heatmaps" not in outputs or "sigma" not in self.metadata):
            raise OnnxModelError(f"{self.path}: DARK decoding needs the 'heatmaps' output and "
                                 "the 'sigma' metadata; re-export it with python -m "
                                 "interop.to_onnx")
        self._heatmaps_index = outputs.index("heatmaps") if "heatmaps" in outputs else None
        # Files exported before the field existed use the plain convention.
        self._udp = self.metadata.get("heatmap_coordinates", "plain") == "udp"

    @property
    def udp(self) -> bool:
        """Whether the heatmaps use UDP coordinates (metadata `heatmap_coordinates`)."""
        return self._udp

    @property
    def has_heatmaps(self) -> bool:
        """Whether the file has the 'heatmaps' output (every `to_onnx` export has)."""
        return self._heatmaps_index is not None

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """(N, K, 3) keypoints in input pixels for uint8 (N, S, S, 3) RGB images."""
        return self._run(images)[0]

    def predict_maps(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((N, K, 3) keypoints in input pixels, (N, K, H, W) heatmaps) for uint8 (N, S, S, 3)
        RGB images; only for a file with heatmaps (`has_heatmaps`)."""
        keypoints, heatmaps = self._run(images)
        if heatmaps is None:
            raise OnnxModelError(f"{self.path}: no 'heatmaps' output")
        return keypoints, heatmaps

    def _run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / np.float32(255)
        try:
            outputs = self._session.run(None, {"images": x})
        except Exception as e:  # onnxruntime's own error types
            raise OnnxModelError(f"{self.path}: onnxruntime failed on a batch of shape "
                                 f"{x.shape}: {e}") from None
        if self._keypoints_index is None:  # a heatmap-only export: the in-graph rule, here
            keypoints = decode_heatmaps(outputs[self._heatmaps_index], self.input_size,
                                        self._udp)
        else:
            keypoints = outputs[self._keypoints_index]
        if self.decoder == "dark":
            keypoints = dark_refine(outputs[self._heatmaps_index], keypoints, self.input_size,
                                    float(self.metadata["sigma"]), self._udp)
        heatmaps = None if self._heatmaps_index is None else outputs[self._heatmaps_index]
        return keypoints, heatmaps


def _whole_frames(images: list[np.ndarray]) -> list[Region]:
    """The letterbox square of each image (`letterbox_matrix`'s)."""
    return [full_frame_region(im.shape[1], im.shape[0]) for im in images]


def _input_fits(inputs: list, size: int) -> bool:
    """One input 'images' (N, 3, size, size); symbolic sizes (dynamic axes) are accepted."""
    if len(inputs) != 1 or inputs[0].name != "images" or len(inputs[0].shape) != 4:
        return False
    _, channels, *spatial = inputs[0].shape
    return channels == 3 and all(d == size or not isinstance(d, int) for d in spatial)


def hand_stage_from_onnx(path: str | Path, min_score: float = DEFAULT_MIN_SCORE,
                         batch_size: int = 16, threads: int = 0, decoder: str = "argmax",
                         device: str = "cpu") -> HandStage:
    """The `HandStage` of an exported hand model, with the crop rule of its metadata."""
    model = OnnxModel(path, threads, task="hand", decoder=decoder, device=device)
    try:
        saved = json.loads(model.metadata["hand_crop_rule"])
        rule = HandCropRule(**{f.name: saved[f.name] for f in dataclasses.fields(HandCropRule)})
    except (KeyError, TypeError, ValueError) as e:
        raise OnnxModelError(f"{model.path}: metadata field 'hand_crop_rule' is missing or "
                             f"incomplete ({e}); re-export the hand model") from None
    return HandStage(model.predict_batch, model.input_size, rule, min_score, batch_size)


class OnnxPredictor:
    """Body graph on the letterboxed frame, then (optionally) the hand stage on frame crops."""

    def __init__(self, body_path: str | Path, hand_path: str | Path | None = None,
                 hand_min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.body = OnnxModel(body_path, task="wholebody")
        self.hand_stage = (None if hand_path is None
                           else hand_stage_from_onnx(hand_path, hand_min_score))

    def predict_body(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, 64, 3) body-model keypoints in each frame's own pixels."""
        return self._letterboxed(None).predict(images, _whole_frames(images))

    def predict_images(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, 64, 3) keypoints in each frame's pixels: body model, then the hand stage."""
        return self._letterboxed(self.hand_stage).predict(images, _whole_frames(images))

    def _letterboxed(self, hand_stage: HandStage | None) -> RegionPredictor:
        # The video job's region predictor on each image's letterbox square: one crop path.
        return RegionPredictor(self.body.predict_batch, self.body.input_size, hand_stage,
                               batch_size=16, description=f"onnx {self.body.path}")

    def predict_image(self, image: np.ndarray) -> np.ndarray:
        """(64, 3) keypoints in the pixels of one RGB uint8 image of any size."""
        return self.predict_images([image])[0]


def load_onnx(body: str | Path, hand: str | Path | None, hand_min_score: float,
              batch_size: int, threads: int = 0, hand_decoder: str = "argmax",
              device: str = "cpu") -> RegionPredictor:
    """A `RegionPredictor` on exported ONNX files (onnxruntime only), on `device`."""
    model = OnnxModel(body, threads, task="wholebody", device=device)
    stage = None if hand is None else hand_stage_from_onnx(
        hand, hand_min_score, threads=threads, decoder=hand_decoder, device=device)
    described = f"onnx {model.path}" + ("" if hand is None else f" + hand {hand}")
    return RegionPredictor(model.predict_batch, model.input_size, stage, batch_size, described,
                           model.predict_maps if model.has_heatmaps else None, model.udp)

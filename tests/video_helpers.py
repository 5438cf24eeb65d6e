"""Fixtures for the video tests: stand-in models with known answers, and moving-blob frames.

`constant_onnx` writes a real ONNX file (built with onnx.helper, no torch) that answers every
image with the same keypoints: the CLI, the onnxruntime loader and the import boundary can be
tested without training. `BlobModel` is a numpy "body model" that finds a bright square in its
input and places the 64 points on it, so tracking and the crop geometry have exact answers.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.crop import HandCropRule
from signlang_jax.keypoints import NUM_KEYPOINTS


def constant_onnx(path: Path, keypoints: np.ndarray, input_size: int, task: str = "wholebody",
                  rule: HandCropRule | None = None, gain: float = 0.0) -> Path:
    """An ONNX file mapping images (N, 3, S, S) to the constant `keypoints` (N, K, 3), plus
    `gain` x each image's mean pixel value (0: truly constant)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = len(keypoints)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0, axes=[1, 2, 3]),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Reshape", ["nothing", "shape"], ["column"]),
        helper.make_node("Add", ["column", "points"], ["keypoints"]),
    ]
    inits = [numpy_helper.from_array(np.array(gain, np.float32), "zero"),
             numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
             numpy_helper.from_array(np.asarray(keypoints, np.float32)[None], "points")]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info(
            "images", TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        [helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["N", k, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {"input_size": str(input_size), "task": task}
    if rule is not None:
        meta["hand_crop_rule"] = json.dumps(dataclasses.asdict(rule))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def blob_frame(width: int, height: int, x0: float, y0: float, side: float) -> np.ndarray:
    """A dark RGB frame with one white axis-aligned square [x0, x0 + side) x [y0, y0 + side)."""
    frame = np.full((height, width, 3), 20, np.uint8)
    cv2.rectangle(frame, (round(x0), round(y0)), (round(x0 + side) - 1, round(y0 + side) - 1),
                  (255, 255, 255), -1)
    return frame


def blob_points(x0: float, y0: float, side: float) -> np.ndarray:
    """The 64 (x, y) points `BlobModel` puts on a square: an 8 x 8 grid across it."""
    t = (np.arange(8) + 0.5) / 8
    gx, gy = np.meshgrid(x0 - 0.5 + side * t, y0 - 0.5 + side * t)
    return np.stack([gx.ravel(), gy.ravel()], 1)


class BlobModel:
    """A stand-in body model: the 64 points on an 8 x 8 grid over the bright pixels it sees.

    Scores are 0.9, or 0 for every point when the input holds no bright pixel (signer lost).
    Records the batches it was called with.
    """

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """(N, 64, 3) points in input pixels."""
        self.calls.append(images)
        out = np.zeros((len(images), NUM_KEYPOINTS, 3), np.float32)
        for n, image in enumerate(images):
            weight = image[..., 0].astype(np.float64) / 255.0
            weight = np.where(weight > 0.5, weight, 0.0)
            if weight.sum() < 1:
                continue
            ys, xs = np.nonzero(weight)
            # The square's pixel edges from the bright pixels' extent (pixel centres +- 0.5).
            x0, x1, y0, y1 = xs.min() - 0.5, xs.max() + 0.5, ys.min() - 0.5, ys.max() + 0.5
            side = max(x1 - x0, y1 - y0)
            out[n, :, :2] = blob_points(x0 + 0.5, y0 + 0.5, side)
            out[n, :, 2] = 0.9
        return out


def rotate_mp4(path: Path) -> Path:
    """Mark an .mp4 as a phone does when recording upright: a 90-degree display matrix in its
    track header (tkhd, version 0: the matrix is 44 bytes after the box type)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0 and data[at + 4] == 0, "expected a version-0 tkhd box"
    data[at + 44:at + 80] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path

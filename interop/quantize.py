"""int8 ONNX for CPU deployment: onnxruntime's static quantization, calibrated and checked.

`python -m interop.to_onnx ... --int8` first exports and verifies the float graph as always, then
quantizes it here: QDQ format, int8 weights per output channel, uint8 activations whose ranges are
calibrated (MinMax) on `count` images of the checkpoint's own dataset (its val split, prepared as
validation prepares it: letterboxed images, or hand crops for a hand model). The result is
checked against the float graph on up to `count` further val images (the export's rendered
verification images too): the keypoints a runtime reads from each (the in-graph `keypoints`, or
the argmax decoding of the heatmaps for a heatmap-only file) may move by at most
`MAX_MEDIAN_SHIFT` heatmap pixels at the median; the shift's median and 90th percentile are
reported either way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from interop.onnx_metadata import INPUT_NAME, ExportError, verification_images
from interop.verify_onnx import VerificationError

MAX_MEDIAN_SHIFT = 0.5  # heatmap pixels: a quarter of the demo models' heatmap sigma


@dataclasses.dataclass
class Int8Check:
    """How far the int8 graph's keypoints moved from the float graph's, in heatmap pixels."""

    images: int
    calibration_images: int
    median_shift: float
    p90_shift: float

    def summary(self) -> str:
        """One line for the export report."""
        return (f"int8 vs float onnxruntime on {self.images} held-out and rendered images "
                f"(calibrated on {self.calibration_images} val images): keypoints moved by "
                f"{self.median_shift:.3f} heatmap px at the median, {self.p90_shift:.3f} at the "
                f"90th percentile (limit {MAX_MEDIAN_SHIFT} at the median)")


def dataset_images(config: object, image_size: int, count: int) -> np.ndarray:
    """Float32 (M, 3, S, S) in [0, 1]: up to `count` val images of the checkpoint's data."""
    import cv2

    from signlang_jax.data.pipeline import make_dataset

    try:
        chunks, seen = [], 0
        for batch in make_dataset(config, "val", batch_size=8, num_workers=0):
            images = np.asarray(batch["image"])
            if "mask" in batch:  # the last val batch is padded
                images = images[np.asarray(batch["mask"], bool).reshape(-1)]
            if images.shape[1] != image_size:
                images = np.stack([cv2.resize(im, (image_size, image_size),
                                              interpolation=cv2.INTER_AREA) for im in images])
            chunks.append(images)
            seen += len(images)
            if seen >= count:
                break
    except Exception as e:  # a dataset that is not there or not readable: say which
        raise ExportError(f"--int8 calibrates on the checkpoint's own data (data.root="
                          f"{config.data.root!r}, data.sources={config.data.sources!r}), which "
                          f"cannot be read here: {e}") from None
    if not chunks:
        raise ExportError(f"--int8: the checkpoint's val split (data.root={config.data.root!r}) "
                          "has no images to calibrate on")
    images = np.concatenate(chunks)[:count]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / np.float32(255)


def quantize_int8(float_path: Path, int8_path: Path, config: object, image_size: int,
                  count: int) -> Int8Check:
    """Write the int8 graph of `float_path` to `int8_path` and check it (see the module doc)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = dataset_images(config, image_size, 2 * count)
    calibration, held_out = images[:count], images[count:]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter([{INPUT_NAME: calibration[i:i + 1]}
                                for i in range(len(calibration))])

        def get_next(self) -> dict | None:
            return next(self._feeds, None)

    prepared = int8_path.with_name(int8_path.name + ".pre")
    try:
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8,
                        activation_type=QuantType.QUInt8)
    finally:
        prepared.unlink(missing_ok=True)
    model = onnx.load(str(int8_path))
    props = {p.key: p.value for p in onnx.load(str(float_path)).metadata_props}
    props["precision"] = "int8 (QDQ, per-channel weights, calibrated activations)"
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(int8_path))
    rendered = verification_images(image_size, config)["real"].transpose(0, 3, 1, 2)
    checked = np.ascontiguousarray(np.concatenate([held_out, rendered]), np.float32)
    return _compare(float_path, int8_path, checked, image_size, len(calibration))


def _compare(float_path: Path, int8_path: Path, images: np.ndarray, image_size: int,
             calibrated: int) -> Int8Check:
    import onnxruntime as ort

    from signlang_jax.dark import decode_heatmaps

    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
        None, {INPUT_NAME: images}) for p in (float_path, int8_path)]
    ratio = image_size / outputs[0][0].shape[-1]
    # What a runtime reads: the in-graph keypoints where the graph has them (quantized ops may
    # break argmax ties differently from a decoding of the dequantized heatmaps), else those.
    points = [(out[1] if len(out) > 1 else decode_heatmaps(out[0], image_size))[..., :2] / ratio
              for out in outputs]
    shift = np.linalg.norm(points[0] - points[1], axis=-1)
    check = Int8Check(len(images), calibrated, float(np.median(shift)),
                      float(np.percentile(shift, 90)))
    if check.median_shift > MAX_MEDIAN_SHIFT:
        raise VerificationError(f"the int8 graph does not reproduce the float one: "
                                f"{check.summary()}")
    return check

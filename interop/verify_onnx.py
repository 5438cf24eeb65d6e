"""Verifying an exported ONNX file against the JAX model it came from.

`verify_onnx` runs `onnx.checker`, then onnxruntime and the JAX model (eval mode) on the
verification images of `interop.onnx_metadata` at batch sizes 1 and 3, and compares heatmaps
(max abs difference within a tolerance) and decoded keypoints (identical, except where JAX's own
heatmap has a near-tie that the graph's rounding may break the other way). `interop.to_onnx`
moves a file onto its output path only after it passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from interop.onnx_metadata import INPUT_NAME, VERIFY_COUNT, ExportError, verification_images

# Max abs heatmap difference, onnxruntime vs JAX: float32 graphs must agree to this; an fp16
# graph is checked against FP16_TOLERANCE x max(1, peak |heatmap|) (half precision keeps ~3
# significant digits through ~20 layers).
FLOAT32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2
VERIFY_BATCH_SIZES = (1, VERIFY_COUNT)


class VerificationError(ExportError):
    """The exported graph does not reproduce the JAX model."""


@dataclasses.dataclass
class ParityRow:
    """One verification run: onnxruntime vs JAX on one image set and batch size."""

    images: str  # "random" or "real"
    batch: int
    max_abs_diff: float  # heatmaps, onnxruntime vs JAX
    keypoints_equal: int  # decoded positions identical to JAX's decode
    keypoints_tied: int  # positions that differ only where JAX's heatmap has a near-tie
    keypoints_total: int


def verify_onnx(path: Path, model: object, config: object, image_size: int,
                with_keypoints: bool, fp16: bool) -> tuple[list[ParityRow], float]:
    """Check the file and compare onnxruntime with the JAX model; raise VerificationError.

    Returns (one ParityRow per image set and batch size, the heatmap tolerance used).
    """
    import onnxruntime as ort

    from interop.convert import nhwc_to_nchw

    _check_graph(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    udp = bool(config.model.get("udp", False))
    jax_heatmaps, decode = _jax_functions(model, image_size, udp)
    rows, problems, tolerance = [], [], FLOAT32_TOLERANCE
    for kind, images in verification_images(image_size, config).items():
        for batch in VERIFY_BATCH_SIZES:
            x = images[:batch]
            ref = jax_heatmaps(x)  # (N, H, W, K)
            outputs = session.run(None, {INPUT_NAME: nhwc_to_nchw(x)})
            if fp16:
                tolerance = FP16_TOLERANCE * max(1.0, float(np.abs(ref).max()))
            row, found = _compare(kind, batch, ref, outputs, decode, image_size, udp,
                                  with_keypoints, tolerance)
            rows.append(row)
            problems += found
    if problems:
        raise VerificationError("the exported graph does not reproduce the JAX model:\n  "
                                + "\n  ".join(problems[:20]))
    return rows, tolerance


def _check_graph(path: Path) -> None:
    """`onnx.checker` with the full check (shape inference too); VerificationError if it fails."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise VerificationError(f"onnx.checker rejected the exported graph: {e}") from None


def _jax_functions(model: object, image_size: int, udp: bool
                   ) -> tuple[Callable[[np.ndarray], np.ndarray],
                              Callable[[np.ndarray], np.ndarray]]:
    """(NHWC images -> JAX heatmaps (N, H, W, K), heatmaps -> decoded (N, K, 3)), jitted."""
    import jax
    from flax import nnx

    from signlang_jax.codec import decode_heatmaps

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    decode = jax.jit(decode_heatmaps, static_argnums=(1, 2))
    return (lambda x: np.asarray(forward(state, x)),
            lambda heatmaps: np.asarray(decode(heatmaps, image_size, udp)))


def _compare(kind: str, batch: int, ref: np.ndarray, outputs: list[np.ndarray],
             decode: Callable[[np.ndarray], np.ndarray], image_size: int, udp: bool,
             with_keypoints: bool, tolerance: float) -> tuple[ParityRow, list[str]]:
    """One run's ParityRow and problems: onnxruntime `outputs` vs JAX heatmaps `ref`."""
    from interop.convert import nchw_to_nhwc, nhwc_to_nchw

    heatmaps = nchw_to_nhwc(outputs[0])
    if heatmaps.shape != ref.shape:
        raise VerificationError(f"onnxruntime heatmaps {outputs[0].shape} for batch "
                                f"{batch}; the JAX model gives {nhwc_to_nchw(ref).shape}")
    where, problems = f"{kind} batch {batch}", []
    diff = float(np.abs(heatmaps - ref).max())
    ref_kp, own_kp = decode(ref), decode(heatmaps)
    got_kp = outputs[1] if with_keypoints else own_kp
    if with_keypoints and not (np.array_equal(got_kp[..., :2], own_kp[..., :2])
                               and np.allclose(got_kp[..., 2], own_kp[..., 2],
                                               rtol=1e-6, atol=1e-7)):
        problems.append(f"{where}: the in-graph keypoints differ from decode_heatmaps of the "
                        "graph's own heatmaps")
    equal = np.all(got_kp[..., :2] == ref_kp[..., :2], axis=-1)
    tied = 0
    for n, k in np.argwhere(~equal):
        if _near_tie(ref[n, :, :, k], ref_kp[n, k, :2], got_kp[n, k, :2], 2 * diff, image_size,
                     udp):
            tied += 1
        else:
            problems.append(f"{where}: keypoint {k} of image {n} decodes to {got_kp[n, k, :2]} "
                            f"in onnxruntime, {ref_kp[n, k, :2]} in JAX")
    if diff > tolerance or not np.isfinite(diff):
        problems.append(f"{where}: max abs heatmap difference {diff:.3e} exceeds the tolerance "
                        f"{tolerance:.0e}")
    return ParityRow(kind, batch, diff, int(equal.sum()), tied, int(equal.size)), problems


def _near_tie(ref: np.ndarray, ref_xy: np.ndarray, got_xy: np.ndarray, margin: float,
              image_size: int, udp: bool = False) -> bool:
    """Whether a decoded-position difference is explained by values within `margin` in `ref`.

    ref: one heatmap (H, W) of the reference; positions in input pixels.
    """
    from signlang_jax.codec import input_ratio

    h, w = ref.shape
    ratio = input_ratio(image_size, w, udp)
    # Undo the quarter-pixel shift: round to the nearest heatmap pixel.
    rx, ry = (int(round(v / ratio)) for v in ref_xy)
    gx, gy = (int(round(v / ratio)) for v in got_xy)
    if (rx, ry) != (gx, gy):  # another argmax: its value must be within margin of the max
        return bool(ref[gy, gx] >= ref.max() - margin)
    # Same peak, other shift: one of the neighbour differences must be within margin.
    near_x = 0 < rx < w - 1 and abs(ref[ry, rx + 1] - ref[ry, rx - 1]) <= margin
    near_y = 0 < ry < h - 1 and abs(ref[ry + 1, rx] - ref[ry - 1, rx]) <= margin
    return bool(near_x or near_y)

"""Heatmap decoding in numpy, for runtimes without JAX (onnxruntime, the video job).

`decode_heatmaps` is `signlang_jax.codec.decode_heatmaps` (and the exported graphs' in-graph
keypoints) in numpy, op for op in float32: it decodes files exported without `--with-keypoints`.
`dark_refine` is `signlang_jax.codec.dark_refine` (Zhang et al. 2020), step for step: blur each
heatmap with the Gaussian DARK uses for the targets' sigma (zero padding, OpenCV's sigma for the
kernel size), rescale it to its own maximum, take the log, and move the integer argmax by one
Newton step -H^-1 grad; points within 2 heatmap pixels of the border keep the argmax.
`tests/test_hand_onnx.py` checks that both give the JAX codec's points. Heatmaps are (N, K, H, W)
here, as onnxruntime returns them.
"""

from __future__ import annotations

import numpy as np

# How heatmaps become points: the argmax with a quarter-pixel shift toward the larger neighbour
# (`codec.decode_heatmaps`, the exported graphs' own keypoints), or DARK's refinement.
DECODERS = ("argmax", "dark")


def input_ratio(image_size: int, heatmap_size: int, udp: bool = False) -> float:
    """Input pixels per heatmap pixel (`codec.input_ratio`: plain or UDP coordinates)."""
    return (image_size - 1) / (heatmap_size - 1) if udp else image_size / heatmap_size


def decode_heatmaps(heatmaps: np.ndarray, image_size: int, udp: bool = False) -> np.ndarray:
    """(N, K, 3) keypoints in input pixels and scores from (N, K, H, W) heatmaps: per channel
    argmax (the first maximum), score = the maximum, a quarter-pixel shift toward the larger
    neighbour where both neighbours exist, then to input pixels."""
    n, k, h, w = heatmaps.shape
    flat = np.asarray(heatmaps, np.float32).reshape(n, k, h * w)
    index = flat.argmax(-1)
    score = flat.max(-1)
    y, x = index // w, index % w

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        yy, xx = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
        return np.take_along_axis(flat, (yy * w + xx)[..., None], axis=-1)[..., 0]

    dx = np.where((x > 0) & (x < w - 1), np.sign(at(y, x + 1) - at(y, x - 1)), 0)
    dy = np.where((y > 0) & (y < h - 1), np.sign(at(y + 1, x) - at(y - 1, x)), 0)
    ratio = np.float32(input_ratio(image_size, w, udp))
    xs = (x.astype(np.float32) + np.float32(0.25) * dx.astype(np.float32)) * ratio
    ys = (y.astype(np.float32) + np.float32(0.25) * dy.astype(np.float32)) * ratio
    return np.stack([xs, ys, score], axis=-1)


def dark_kernel_size(sigma: float) -> int:
    """Blur kernel size DARK uses for targets of `sigma` (MMPose's rule: 11 for sigma 2)."""
    return max(3, int((sigma * 20 - 7) // 3) | 1)


def _blur(heatmaps: np.ndarray, kernel_size: int) -> np.ndarray:
    """Separable Gaussian blur of (N, K, H, W) maps, zero padding (as cv2 with sigma=0)."""
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    taps = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    pad = kernel_size // 2
    h, w = heatmaps.shape[2:]
    x = np.pad(heatmaps, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    x = sum(kernel[i] * x[:, :, i:i + h, :] for i in range(kernel_size))
    return sum(kernel[i] * x[:, :, :, i:i + w] for i in range(kernel_size))


def dark_refine(heatmaps: np.ndarray, keypoints: np.ndarray, image_size: int,
                sigma: float, udp: bool = False) -> np.ndarray:
    """(N, K, 3) keypoints (input pixels) refined from (N, K, H, W) heatmaps; scores kept.

    udp: the heatmaps use UDP coordinates (`model.udp`, `codec.input_ratio`)."""
    hm = np.asarray(heatmaps, np.float64)
    n, k, h, w = hm.shape
    blurred = _blur(hm, dark_kernel_size(sigma))
    peak = hm.max(axis=(2, 3), keepdims=True)
    blurred = blurred * peak / np.maximum(blurred.max(axis=(2, 3), keepdims=True), 1e-10)
    logs = np.log(np.maximum(blurred, 1e-10)).reshape(n, k, h * w)
    index = hm.reshape(n, k, h * w).argmax(-1)
    y, x = index // w, index % w

    def at(dy: int, dx: int) -> np.ndarray:
        yy, xx = np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)
        return np.take_along_axis(logs, (yy * w + xx)[..., None], axis=-1)[..., 0]

    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    inner = (x >= 2) & (x < w - 2) & (y >= 2) & (y < h - 2) & (np.abs(det) > 1e-12)
    safe = np.where(inner, det, 1.0)
    off_x = np.where(inner, -(dyy * dx - dxy * dy) / safe, 0.0)
    off_y = np.where(inner, -(dxx * dy - dxy * dx) / safe, 0.0)
    ratio = input_ratio(image_size, w, udp)
    out = np.array(keypoints, np.float32, copy=True)
    out[..., 0] = (x + off_x) * ratio
    out[..., 1] = (y + off_y) * ratio
    return out

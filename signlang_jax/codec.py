"""Heatmap codec: keypoints <-> Gaussian heatmaps, the loss between them, and decoding.

The convention, written once (training, evaluation, inference and export all call these):

- A keypoint at input-image pixel (x, y) (OpenCV pixel-centre convention) sits at heatmap pixel
  (x * r, y * r) with r = heatmap_size / image_size (MMPose's non-UDP convention; 512 -> 128 gives
  r = 1/4). Heatmap pixel centres are the integers 0..heatmap_size-1. With `udp=True`
  (`model.udp`, Huang et al. 2020's unbiased data processing) r = (heatmap_size - 1) /
  (image_size - 1) instead: the first and last pixel centres of image and heatmap coincide, so a
  mirrored heatmap lines up with the mirrored image exactly. Both decode what they encode and
  our augmentation is exact in either; UDP won the hand model's ablation (docs/HANDS.md), so
  configs/hand.py uses it, while the body model keeps the plain convention.
- Targets are *unbiased* Gaussians: exp(-((u - x r)^2 + (v - y r)^2) / (2 sigma^2)) evaluated on
  the whole grid at the exact sub-pixel centre, peak 1 when the centre is on a pixel; sigma is in
  heatmap pixels (2 at 128 x 128). Keypoints with weight 0 get an all-zero target.
- Loss: mean over N x H x W x K of w_k (pred - target)^2 (MMPose's KeypointMSELoss with target
  weights; the original SimpleBaseline loss is half of it).
- Decoding: per channel argmax, score = the maximum, then a quarter-pixel shift toward the larger
  neighbour (both axes), then back to input pixels by dividing by r.

All functions are pure jax.numpy and jit-able; heatmaps are channels-last (N, H, W, K).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from signlang_jax.dark import dark_kernel_size


def heatmap_ratio(image_size: int, heatmap_size: int, udp: bool = False) -> float:
    """Heatmap pixels per input pixel: heatmap_size / image_size, or the UDP (size - 1) ratio."""
    if udp:
        return (heatmap_size - 1) / (image_size - 1)
    return heatmap_size / image_size


def input_ratio(image_size: int, heatmap_size: int, udp: bool = False) -> float:
    """Input pixels per heatmap pixel (the inverse of `heatmap_ratio`, computed exactly)."""
    if udp:
        return (image_size - 1) / (heatmap_size - 1)
    return image_size / heatmap_size


def render_heatmaps(keypoints: jax.Array, image_size: int, heatmap_size: int,
                    sigma: float, udp: bool = False) -> jax.Array:
    """Gaussian targets (N, H, W, K) float32 from keypoints (N, K, 3) = x, y, weight."""
    ratio = heatmap_ratio(image_size, heatmap_size, udp)
    centre = keypoints[..., :2].astype(jnp.float32) * ratio  # (N, K, 2)
    grid = jnp.arange(heatmap_size, dtype=jnp.float32)
    # Separable: the 2D Gaussian is the outer product of two 1D ones.
    gx = jnp.exp(-((grid[None, None, :] - centre[..., 0:1]) ** 2) / (2 * sigma**2))  # (N, K, W)
    gy = jnp.exp(-((grid[None, None, :] - centre[..., 1:2]) ** 2) / (2 * sigma**2))  # (N, K, H)
    present = (keypoints[..., 2] > 0).astype(jnp.float32)  # (N, K)
    return jnp.einsum("nkh,nkw,nk->nhwk", gy, gx, present)


def heatmap_loss(predicted: jax.Array, target: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted MSE: mean over N, H, W, K of w_k (pred - target)^2, in float32.

    predicted, target: (N, H, W, K); weights: (N, K).
    """
    diff = predicted.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff) * weights[:, None, None, :].astype(jnp.float32))


def per_keypoint_mse(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared heatmap error per sample and keypoint: (N, K)."""
    diff = predicted.astype(jnp.float32) - target.astype(jnp.float32)
    return jnp.mean(jnp.square(diff), axis=(1, 2))


def decode_heatmaps(heatmaps: jax.Array, image_size: int, udp: bool = False) -> jax.Array:
    """Keypoints (N, K, 3) = x, y in input-image pixels, score, from heatmaps (N, H, W, K).

    argmax + quarter-pixel shift toward the larger neighbour; score = the heatmap maximum.
    """
    n, h, w, k = heatmaps.shape
    flat = jnp.moveaxis(heatmaps.astype(jnp.float32), 3, 1).reshape(n, k, h * w)
    index = jnp.argmax(flat, axis=-1)
    score = jnp.max(flat, axis=-1)
    y, x = index // w, index % w
    maps = flat.reshape(n, k, h, w)

    def at(yy: jax.Array, xx: jax.Array) -> jax.Array:
        yy, xx = jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)
        return jnp.take_along_axis(maps.reshape(n, k, h * w), (yy * w + xx)[..., None],
                                   axis=-1)[..., 0]

    # Shift only where both neighbours exist (as MMPose): 0.25 px toward the larger one.
    dx = jnp.where((x > 0) & (x < w - 1), jnp.sign(at(y, x + 1) - at(y, x - 1)), 0.0)
    dy = jnp.where((y > 0) & (y < h - 1), jnp.sign(at(y + 1, x) - at(y - 1, x)), 0.0)
    ratio = input_ratio(image_size, w, udp)
    xs = (x.astype(jnp.float32) + 0.25 * dx) * ratio
    ys = (y.astype(jnp.float32) + 0.25 * dy) * ratio
    return jnp.stack([xs, ys, score], axis=-1)


def _gaussian_blur(heatmaps: jax.Array, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur of (N, H, W, K) heatmaps, as cv2.GaussianBlur(k, sigma=0)."""
    # OpenCV's sigma for a given kernel size when sigma=0.
    sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    taps = jnp.arange(kernel_size, dtype=jnp.float32) - (kernel_size - 1) / 2
    kernel = jnp.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    pad = kernel_size // 2
    # Zero padding (MMPose pads with zeros too), then a 1D conv along each axis.
    x = jnp.pad(heatmaps, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    h, w = heatmaps.shape[1:3]
    x = sum(kernel[i] * x[:, i:i + h, :, :] for i in range(kernel_size))
    return sum(kernel[i] * x[:, :, i:i + w, :] for i in range(kernel_size))


def dark_refine(heatmaps: jax.Array, keypoints: jax.Array, image_size: int,
                sigma: float, udp: bool = False) -> jax.Array:
    """DARK sub-pixel refinement (Zhang et al. 2020) of argmax-decoded keypoints.

    Blur each heatmap (kernel from `sigma`), rescale it to its original maximum, take the log,
    and move the integer argmax by one Newton step -H^-1 grad; points within 2 px of the border
    keep the argmax. heatmaps (N, H, W, K), keypoints (N, K, 3) from `decode_heatmaps` (their
    quarter-pixel shift is replaced, the score kept).
    """
    n, h, w, k = heatmaps.shape
    hm = heatmaps.astype(jnp.float32)
    blurred = _gaussian_blur(hm, dark_kernel_size(sigma))
    peak = jnp.max(hm, axis=(1, 2), keepdims=True)
    blurred = blurred * peak / jnp.maximum(jnp.max(blurred, axis=(1, 2), keepdims=True), 1e-10)
    logs = jnp.log(jnp.maximum(blurred, 1e-10))
    flat = jnp.moveaxis(logs, 3, 1).reshape(n, k, h * w)
    index = jnp.argmax(jnp.moveaxis(hm, 3, 1).reshape(n, k, h * w), axis=-1)
    y, x = index // w, index % w

    def at(dy: int, dx: int) -> jax.Array:
        yy, xx = jnp.clip(y + dy, 0, h - 1), jnp.clip(x + dx, 0, w - 1)
        return jnp.take_along_axis(flat, (yy * w + xx)[..., None], axis=-1)[..., 0]

    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    inner = (x >= 2) & (x < w - 2) & (y >= 2) & (y < h - 2) & (jnp.abs(det) > 1e-12)
    safe = jnp.where(inner, det, 1.0)
    # offset = -H^-1 g with H = [[dxx, dxy], [dxy, dyy]]
    off_x = jnp.where(inner, -(dyy * dx - dxy * dy) / safe, 0.0)
    off_y = jnp.where(inner, -(dxx * dy - dxy * dx) / safe, 0.0)
    ratio = input_ratio(image_size, w, udp)
    xs = (x.astype(jnp.float32) + off_x) * ratio
    ys = (y.astype(jnp.float32) + off_y) * ratio
    return jnp.stack([xs, ys, keypoints[..., 2]], axis=-1)


def flip_back(heatmaps: jax.Array, image_size: int, udp: bool = False) -> jax.Array:
    """Map heatmaps predicted on a horizontally flipped image back onto the original image.

    Mirrors the heatmaps, swaps left/right channels with `FLIP_PERMUTATION`, then shifts them by
    the exact sub-pixel offset of this codec: an image point x flips to S - 1 - x, i.e. heatmap
    column (S - 1) r - u, while mirroring the array maps column u to W - 1 - u, so the mirrored
    map is off by d = (S - 1) r - (W - 1) columns (+0.75 for 512 -> 128), corrected here by linear
    interpolation (MMPose shifts by a whole pixel, which is exact only for its own convention).
    Under UDP the mirrored map needs no shift: x -> S - 1 - x is u -> W - 1 - u.
    """
    from signlang_jax.keypoints import FLIP_PERMUTATION

    w = heatmaps.shape[2]
    mirrored = heatmaps[:, :, ::-1, :][..., jnp.asarray(FLIP_PERMUTATION)]
    # Move content right by `shift` (0 under UDP).
    shift = (image_size - 1) * heatmap_ratio(image_size, w, udp) - (w - 1)
    whole = math.floor(shift)
    frac = shift - whole

    def shifted(x: jax.Array, by: int) -> jax.Array:
        if by == 0:
            return x
        if by > 0:
            return jnp.pad(x, ((0, 0), (0, 0), (by, 0), (0, 0)))[:, :, :w, :]
        return jnp.pad(x, ((0, 0), (0, 0), (0, -by), (0, 0)))[:, :, -by:, :]

    return (1 - frac) * shifted(mirrored, whole) + frac * shifted(mirrored, whole + 1)


# ---------------------------------------------------------------------------- SimCC (RTMPose)
# A coordinate-classification head (`model.head="simcc"`, Li et al. 2022) predicts, per keypoint,
# one distribution over `bins` x positions and one over y. Bin b is heatmap pixel b of the
# convention above with heatmap_size = bins = image_size * model.simcc_split, so every decoder
# reads the head's output as a heatmap: `simcc_heatmaps` is the outer product of the two.


def simcc_labels(keypoints: jax.Array, image_size: int, bins: int, sigma: float,
                 udp: bool = False) -> tuple[jax.Array, jax.Array]:
    """1D Gaussian targets (x (N, K, bins), y (N, K, bins)), each summing to 1; sigma in bins."""
    ratio = heatmap_ratio(image_size, bins, udp)
    centre = keypoints[..., :2].astype(jnp.float32) * ratio  # (N, K, 2)
    grid = jnp.arange(bins, dtype=jnp.float32)

    def axis(c: jax.Array) -> jax.Array:
        g = jnp.exp(-((grid - c[..., None]) ** 2) / (2 * sigma**2))
        return g / jnp.maximum(g.sum(-1, keepdims=True), 1e-30)

    return axis(centre[..., 0]), axis(centre[..., 1])


def simcc_loss(x_logits: jax.Array, y_logits: jax.Array, x_labels: jax.Array,
               y_labels: jax.Array, weights: jax.Array) -> jax.Array:
    """Per-sample loss (N,): mean over K of w_k (KL(x label || softmax x) + KL(y ...)) / 2."""

    def kl(labels: jax.Array, logits: jax.Array) -> jax.Array:
        log_q = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        log_t = jnp.log(jnp.where(labels > 0, labels, 1.0))
        return jnp.sum(labels * (log_t - log_q), axis=-1)  # (N, K)

    per_keypoint = 0.5 * (kl(x_labels, x_logits) + kl(y_labels, y_logits))
    return jnp.mean(per_keypoint * weights.astype(jnp.float32), axis=-1)


def simcc_heatmaps(x_logits: jax.Array, y_logits: jax.Array, sigma: float) -> jax.Array:
    """Heatmaps (N, bins, bins, K): outer product of the softmaxed x and y distributions.

    Each is scaled by sqrt(2 pi) sigma, so a prediction equal to its Gaussian label peaks at 1
    like a heatmap target, and the peak (the keypoint's score) falls as the prediction spreads.
    """
    scale = math.sqrt(2 * math.pi) * sigma
    px = jax.nn.softmax(x_logits.astype(jnp.float32), axis=-1) * scale  # (N, K, bins)
    py = jax.nn.softmax(y_logits.astype(jnp.float32), axis=-1) * scale
    return jnp.einsum("nky,nkx->nyxk", py, px)

"""Heatmap codec: keypoints <-> Gaussian heatmaps, the loss between them, and decoding.

The convention, written once (training, evaluation, inference and export all call these):

- A keypoint at input-image pixel (x, y) (OpenCV pixel-centre convention) sits at heatmap pixel
  (x * r, y * r) with r = heatmap_size / image_size (MMPose's non-UDP convention; 512 -> 128 gives
  r = 1/4). Heatmap pixel centres are the integers 0..heatmap_size-1.
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

import jax
import jax.numpy as jnp


def render_heatmaps(keypoints: jax.Array, image_size: int, heatmap_size: int,
                    sigma: float) -> jax.Array:
    """Gaussian targets (N, H, W, K) float32 from keypoints (N, K, 3) = x, y, weight."""
    ratio = heatmap_size / image_size
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


def decode_heatmaps(heatmaps: jax.Array, image_size: int) -> jax.Array:
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
    ratio = image_size / w
    xs = (x.astype(jnp.float32) + 0.25 * dx) * ratio
    ys = (y.astype(jnp.float32) + 0.25 * dy) * ratio
    return jnp.stack([xs, ys, score], axis=-1)

"""Drawing primitives, colours, backgrounds and camera effects of the synthetic renderer.

All shapes are drawn anti-aliased with sub-pixel (fixed-point) coordinates; `fill` also writes a
part id into the owner map that decides keypoint visibility (see `signlang_jax.synth.parts`).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import cv2
import numpy as np

# Sub-pixel drawing: OpenCV takes fixed-point coordinates with `SHIFT` fractional bits.
SHIFT = 4
FIXED = float(1 << SHIFT)


def fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates to OpenCV's fixed-point int32 (`SHIFT` fractional bits)."""
    return np.rint(np.asarray(points) * FIXED).astype(np.int32)


def capsules(p0: np.ndarray, p1: np.ndarray, r0: np.ndarray, r1: np.ndarray,
              k: int = 8) -> np.ndarray:
    """(n, 2k, 2) fixed-point convex outlines of tapered capsules from p0 (radius r0) to p1 (r1)."""
    p0, p1 = np.atleast_2d(p0), np.atleast_2d(p1)
    r0, r1 = np.broadcast_to(r0, len(p0))[:, None], np.broadcast_to(r1, len(p0))[:, None]
    d = p1 - p0
    length = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-6)[:, None]
    d = d / length
    n = np.stack([-d[:, 1], d[:, 0]], 1)
    # The tangent points of the two circles' outer hull lie at angle acos((r0 - r1) / L) from d.
    alpha = np.arccos(np.clip((r0 - r1) / length, -0.999, 0.999))
    t = np.linspace(0.0, 1.0, k)[None]
    t1 = -alpha + 2 * alpha * t
    t0 = alpha + (2 * np.pi - 2 * alpha) * t
    arc1 = p1[:, None] + r1[..., None] * (np.cos(t1)[..., None] * d[:, None]
                                          + np.sin(t1)[..., None] * n[:, None])
    arc0 = p0[:, None] + r0[..., None] * (np.cos(t0)[..., None] * d[:, None]
                                          + np.sin(t0)[..., None] * n[:, None])
    return fixed(np.concatenate([arc1, arc0], 1))


def fill(img: np.ndarray, owner: np.ndarray, polys: np.ndarray, color: tuple, part: int) -> None:
    """Fill convex polygons anti-aliased into the image and hard-edged into the owner map."""
    for poly in polys:
        cv2.fillConvexPoly(img, poly, color, cv2.LINE_AA, SHIFT)
        if owner is not None:
            cv2.fillConvexPoly(owner, poly, part, cv2.LINE_8, SHIFT)


def limb(img: np.ndarray, owner: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float,
          r1: float, color: tuple, part: int) -> None:
    """One outlined capsule limb from p0 to p1."""
    edge = max(0.8, 0.08 * max(r0, r1))
    fill(img, owner, capsules(p0, p1, r0 + edge, r1 + edge), shade(color, 0.65), part)
    fill(img, None, capsules(p0, p1, r0, r1), color, part)


def ellipse(img: np.ndarray, centre: np.ndarray, axes: Sequence[float], angle: float,
             color: tuple, thickness: int = -1) -> None:
    """Anti-aliased sub-pixel ellipse (axes are half-lengths in pixels, angle in degrees)."""
    axes_fixed = (max(1, round(axes[0] * FIXED)), max(1, round(axes[1] * FIXED)))
    cv2.ellipse(img, tuple(int(v) for v in fixed(centre)), axes_fixed, angle, 0, 360, color,
                thickness, cv2.LINE_AA, SHIFT)


def shade(color: Sequence[float], factor: float) -> tuple:
    """Colour scaled by `factor` (darker below 1), as the int tuple OpenCV wants."""
    return tuple(int(min(255, max(0, round(c * factor)))) for c in color)


def mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple:
    """Colour `t` of the way from a to b."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))


# Monk skin tone scale (RGB), from the lightest to the darkest, interpolated for variety.
_SKIN_TONES = np.array([
    (246, 237, 228), (243, 231, 219), (247, 234, 208), (234, 218, 186), (215, 189, 150),
    (160, 126, 86), (130, 92, 67), (96, 65, 52), (58, 49, 42), (41, 36, 32),
], np.float64)


def skin_colour(rng: np.random.Generator) -> tuple:
    """A random human skin tone (RGB), slightly warmed/cooled."""
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    base = _SKIN_TONES[i] + (_SKIN_TONES[i + 1] - _SKIN_TONES[i]) * (t - i)
    # Pale tones read as paper on white backgrounds; pull them towards a rosier shade.
    warmth = np.array([1.0, rng.uniform(0.9, 0.98), rng.uniform(0.82, 0.95)])
    base = base * rng.uniform(0.85, 1.0) * warmth
    return shade(base, 1.0)


def colour(rng: np.random.Generator, value: tuple[float, float] = (0.15, 0.95)) -> tuple:
    """A random saturated-or-not colour (RGB) with brightness in `value`."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.9), rng.uniform(*value))
    return (int(r * 255), int(g * 255), int(b * 255))


def hair_colour(rng: np.random.Generator) -> tuple:
    """A natural-looking hair colour (RGB)."""
    palette = ((20, 16, 14), (45, 30, 20), (80, 50, 30), (120, 80, 45), (190, 150, 90),
               (150, 60, 30), (160, 160, 160))
    return shade(palette[rng.integers(len(palette))], rng.uniform(0.8, 1.15))


# ----------------------------------------------------------------------------- background & post


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cheap textured background: gradient and low-frequency noise, then random shapes."""
    # A 2x2 (or 3x3) colour grid resized up is a smooth multi-colour gradient.
    grid = rng.integers(0, 256, (rng.integers(2, 4),) * 2 + (3,), dtype=np.uint8)
    img = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)
    # Low-frequency noise at ~1/16 to 1/4 resolution, cubic-upsampled: blotchy texture.
    cells = int(rng.integers(3, max(4, size // 16)))
    noise = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    if rng.random() < 0.6:  # mostly grey texture with a tint: real scenes are not rainbow noise
        grey = rng.integers(0, 256, (cells, cells, 1), dtype=np.uint16)
        tint = rng.integers(100, 256, 3, dtype=np.uint16)
        noise = ((grey * 3 + noise) * tint // 1024).astype(np.uint8)
    noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    w = rng.uniform(0.15, 0.7)
    img = cv2.addWeighted(img, 1 - w, noise, w, 0.0)
    unit = size / 512.0
    for _ in range(int(rng.integers(2, 14))):
        kind = rng.integers(4)
        color = colour(rng, (0.05, 1.0)) if rng.random() < 0.85 else skin_colour(rng)
        p = rng.uniform(-0.1, 1.1, 2) * size
        q = rng.uniform(-0.1, 1.1, 2) * size
        thick = -1 if rng.random() < 0.6 else max(1, int(rng.uniform(1, 12) * unit))
        if kind == 0:
            cv2.rectangle(img, fixed(p), fixed(q), color, thick, cv2.LINE_AA, SHIFT)
        elif kind == 1:
            ellipse(img, p, np.abs(q - p) * 0.5 + 1, rng.uniform(0, 180), color, thick)
        elif kind == 2:
            cv2.line(img, fixed(p), fixed(q), color, max(1, int(rng.uniform(1, 10) * unit)),
                     cv2.LINE_AA, SHIFT)
        else:
            pts = fixed(rng.uniform(-0.1, 1.1, (3, 2)) * size)
            cv2.fillConvexPoly(img, pts, color, cv2.LINE_AA, SHIFT)
    return img


def postprocess(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Camera effects: blur, brightness/contrast/gamma/colour cast, sensor noise."""
    return apply_camera_effects(img, sample_camera_effects(rng), rng)


def sample_camera_effects(rng: np.random.Generator) -> dict:
    """Random blur, tone curve (gamma, contrast, brightness, colour cast) and noise strength."""
    blur = rng.uniform(0.3, 1.4) if rng.random() < 0.6 else None  # sigma per 512 px of height
    gamma, contrast = rng.uniform(0.75, 1.35), rng.uniform(0.7, 1.25)
    brightness, cast = rng.uniform(-35, 35), rng.uniform(0.85, 1.15, 3)
    v = np.arange(256, dtype=np.float64)[:, None] / 255.0
    lut = ((v ** gamma) * 255.0 - 128.0) * contrast * cast[None] + 128.0 + brightness
    noise = rng.uniform(1.0, 9.0) if rng.random() < 0.8 else None  # std in grey levels
    return {"blur": blur, "lut": np.clip(np.rint(lut), 0, 255).astype(np.uint8)[:, None, :],
            "noise": noise}


def apply_camera_effects(img: np.ndarray, effects: dict,
                         noise_rng: np.random.Generator) -> np.ndarray:
    """Apply `sample_camera_effects` to an image; the sensor noise is drawn from `noise_rng`."""
    if effects["blur"] is not None:
        sigma = effects["blur"] * img.shape[0] / 512.0
        if sigma >= 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    # One per-channel lookup table applies gamma, contrast, brightness and a colour cast at once.
    img = cv2.LUT(img, effects["lut"])
    if effects["noise"] is not None:
        # Uniform noise of std `sigma`: uint8 draws are ~10x cheaper than Gaussian floats.
        k = effects["noise"] * math.sqrt(3.0) / 128.0
        noise = noise_rng.integers(0, 256, img.shape, dtype=np.uint8)
        img = cv2.addWeighted(img, 1.0, noise, k, -128.0 * k)
    return img

"""Pure numpy/OpenCV augmentation math: one affine warp per sample plus one colour matrix.

Geometry: every sample is mapped to an S x S input by one 2x3 affine matrix `M` (source pixel ->
output pixel, OpenCV's pixel-centre convention) composed of a letterbox fit, a random scale,
rotation and shift about the output centre, and an optional horizontal flip x' = S - 1 - x. The
image is warped with `M` and the keypoints are transformed with the same `M`, so pixels and
labels agree exactly; a flip also permutes the keypoints with `FLIP_PERMUTATION` so that
`left_*` stays the person's left. Keypoints that leave the frame get weight 0.

Photometry: brightness, contrast, saturation and hue are all linear in RGB, so they compose into
one 3x4 matrix applied in a single `cv2.transform` pass (cheaper than HSV round trips).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from signlang_jax.keypoints import FLIP_PERMUTATION

_FLIP = np.asarray(FLIP_PERMUTATION)
# Below this overall scale the warp would alias: pre-shrink with area averaging first.
_AREA_RESIZE_BELOW = 0.75


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random augmentation (mirrors `config.augment`)."""

    flip_prob: float = 0.5
    scale_min: float = 0.75
    scale_max: float = 1.25
    rotation_prob: float = 0.6
    rotation_deg: float = 30.0
    shift_frac: float = 0.1
    color_prob: float = 0.8
    brightness: float = 0.125
    contrast: float = 0.3
    saturation: float = 0.3
    hue_deg: float = 10.0
    blur_prob: float = 0.1
    blur_sigma_max: float = 1.5


def _h(m: np.ndarray) -> np.ndarray:
    """2x3 affine -> 3x3 homogeneous."""
    return np.vstack([m, [0.0, 0.0, 1.0]])


def letterbox_matrix(width: int, height: int, size: int) -> np.ndarray:
    """2x3 matrix fitting a width x height image centred into size x size, aspect kept."""
    scale = size / max(width, height)
    c_src = np.array([(width - 1) / 2, (height - 1) / 2])
    c_out = (size - 1) / 2
    return np.array([[scale, 0.0, c_out - scale * c_src[0]],
                     [0.0, scale, c_out - scale * c_src[1]]])


def random_matrix(rng: np.random.Generator, size: int, params: AugmentParams) -> tuple[
        np.ndarray, bool]:
    """A random 2x3 scale/rotation/shift (about the output centre) and whether to flip."""
    scale = rng.uniform(params.scale_min, params.scale_max)
    angle = rng.uniform(-params.rotation_deg, params.rotation_deg) if (
        rng.random() < params.rotation_prob) else 0.0
    shift = rng.uniform(-params.shift_frac, params.shift_frac, size=2) * size
    flip = bool(rng.random() < params.flip_prob)
    centre = (size - 1) / 2
    m = cv2.getRotationMatrix2D((centre, centre), angle, scale)
    m[:, 2] += shift
    if flip:
        m = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ _h(m)
    return m, flip


def transform_keypoints(keypoints: np.ndarray, matrix: np.ndarray, size: int,
                        flip: bool) -> np.ndarray:
    """Apply a 2x3 `matrix` to (K, 3) keypoints; off-frame points get weight 0.

    The frame is the output's pixel area, -0.5 <= x, y <= size - 0.5 (pixel centres at
    integers). With `flip` the keypoints are also permuted so that each channel keeps its name.
    """
    xy = keypoints[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    inside = np.all((xy >= -0.5) & (xy <= size - 0.5), axis=1)
    out = np.concatenate([xy, (keypoints[:, 2] * inside)[:, None]], axis=1).astype(np.float32)
    return out[_FLIP] if flip else out


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp an (H, W, C) uint8 image into (size, size, C) with a 2x3 source->output matrix.

    Large reductions first shrink the image with area averaging (which a bilinear warp lacks)
    and fold that resize into the matrix, so the mapping stays exact. Only the part of the
    image the output sees (plus the averaging's reach) is shrunk: a hand crop of a 4K frame
    costs what the crop does, not what the frame does.
    """
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale < _AREA_RESIZE_BELOW:
        image, matrix = _cut_to_view(image, matrix, size, margin=2.0 / scale + 2.0)
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        rx, ry = new_w / w, new_h / h
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        # cv2.resize maps pixel centres as x_r = (x + 0.5) * rx - 0.5; undo it before `matrix`.
        undo = np.array([[1 / rx, 0.0, 0.5 / rx - 0.5], [0.0, 1 / ry, 0.5 / ry - 0.5]])
        matrix = matrix @ _h(undo)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _cut_to_view(image: np.ndarray, matrix: np.ndarray, size: int, margin: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The part of `image` the size x size output maps from (widened by `margin` pixels), and
    the matrix from that part; the image itself when the view covers most of it."""
    h, w = image.shape[:2]
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5],
                        [size - 0.5, size - 0.5]])
    inverse = np.linalg.inv(_h(matrix))[:2]
    source = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(source.min(0) - margin).astype(int)
    x1, y1 = np.ceil(source.max(0) + margin).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:  # the view lies outside the image: a 1-pixel cut keeps it black
        x0, y0, x1, y1 = 0, 0, 1, 1
    elif (x1 - x0) * (y1 - y0) > 0.8 * w * h:
        return image, matrix
    shift = np.array([[1.0, 0.0, float(x0)], [0.0, 1.0, float(y0)]])
    return image[y0:y1, x0:x1], matrix @ _h(shift)


# Rec. 601 luma and the YIQ basis used for hue rotation.
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def color_matrix(rng: np.random.Generator, params: AugmentParams, mean_luma: float) -> np.ndarray:
    """A random 3x4 RGB colour transform: hue rotation, saturation, contrast, brightness."""
    hue = np.deg2rad(rng.uniform(-params.hue_deg, params.hue_deg))
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(hue), -np.sin(hue)],
                         [0.0, np.sin(hue), np.cos(hue)]])
    hue_m = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ
    saturation = rng.uniform(1 - params.saturation, 1 + params.saturation)
    sat_m = saturation * np.eye(3) + (1 - saturation) * np.outer(np.ones(3), _LUMA)
    contrast = rng.uniform(1 - params.contrast, 1 + params.contrast)
    brightness = rng.uniform(-params.brightness, params.brightness) * 255.0
    linear = contrast * (sat_m @ hue_m)
    offset = (1 - contrast) * mean_luma + brightness
    return np.hstack([linear, np.full((3, 1), offset)])


def photometric(image: np.ndarray, rng: np.random.Generator, params: AugmentParams) -> np.ndarray:
    """Random colour jitter and blur of an RGB uint8 image (returns a new array)."""
    if rng.random() < params.color_prob:
        mean_luma = float(np.dot(cv2.mean(image)[:3], _LUMA))
        image = cv2.transform(image, color_matrix(rng, params, mean_luma))
    if rng.random() < params.blur_prob:
        sigma = rng.uniform(0.1, params.blur_sigma_max)
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    return image


def augment_sample(image: np.ndarray, keypoints: np.ndarray, bbox: np.ndarray, size: int,
                   rng: np.random.Generator | None, params: AugmentParams) -> dict[str, np.ndarray]:
    """Letterbox (and, given `rng`, randomly augment) one sample to `size` x `size`.

    Returns `image` uint8 (S, S, 3), `keypoints` float32 (64, 3) = x, y, weight in output pixels,
    `bbox` float32 (4,) = the axis-aligned box around the transformed input box, and `affine`
    float32 (2, 3) = the source->output matrix (invert it to map predictions back).
    """
    h, w = image.shape[:2]
    matrix = letterbox_matrix(w, h, size)
    flip = False
    if rng is not None:
        random_m, flip = random_matrix(rng, size, params)
        matrix = (_h(random_m) @ _h(matrix))[:2]
    out_image = warp_image(image, matrix, size)
    if rng is not None:
        out_image = photometric(out_image, rng, params)
    x, y, bw, bh = bbox
    corners = np.array([[x, y], [x + bw, y], [x, y + bh], [x + bw, y + bh]])
    corners = corners @ matrix[:, :2].T + matrix[:, 2]
    lo, hi = corners.min(0), corners.max(0)
    return {
        "image": out_image,
        "keypoints": transform_keypoints(keypoints, matrix, size, flip),
        "bbox": np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]], np.float32),
        "affine": matrix.astype(np.float32),
    }

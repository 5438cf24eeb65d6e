"""Image files of a dataset: JPEG and PNG only, decoded to RGB uint8 as the labels expect.

EXIF orientation is ignored (labels refer to the stored pixels). Grayscale becomes RGB, 16-bit
keeps its 8 most significant bits, opaque RGBA drops alpha; transparent RGBA, other formats and
truncated or corrupt files are refused with a `Problem` naming the file. Folder datasets
(`read_image`) and packs (`decode_image` of the stored bytes) decode with the same function.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.data.problems import DatasetError, Problem

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")


def decode_image(data: bytes, file: str) -> np.ndarray:
    """Decode encoded JPEG/PNG bytes to RGB uint8 (H, W, 3); `file` names it in errors.

    Grayscale is replicated to three channels, 16-bit is scaled to 8-bit and an alpha channel is
    dropped when fully opaque; transparency and truncated files are rejected.
    """
    if data[:3] == b"\xff\xd8\xff":
        # libjpeg decodes a truncated file with only a warning, padding it with grey: catch it here.
        if b"\xff\xd9" not in data[-1024:]:
            raise DatasetError([Problem(file, "", "truncated JPEG (no end-of-image marker)",
                                        "image_decode")])
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            raise DatasetError([Problem(file, "", "truncated PNG (no IEND chunk)",
                                        "image_decode")])
    else:
        raise DatasetError([Problem(file, "", "not a JPEG or PNG file", "image_decode")])
    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise DatasetError([Problem(file, "", "image could not be decoded (corrupt file)",
                                    "image_decode")])
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)  # 16-bit PNG: keep the 8 most significant bits
    elif image.dtype != np.uint8:
        raise DatasetError([Problem(file, "", f"unsupported pixel type {image.dtype}; expected "
                                    "8- or 16-bit", "image_format")])
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        if image[:, :, 3].min() < 255:
            raise DatasetError([Problem(
                file, "", "RGBA image with transparent pixels: composite it onto a background "
                "(the keypoints' context is undefined where it is transparent)", "image_format")])
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DatasetError([Problem(file, "", f"unsupported channel count {channels}", "image_format")])


def read_image(path: str | os.PathLike, file: str | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); errors name `file` (default: the path)."""
    file = file or str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DatasetError([Problem(file, "", f"cannot read image: {e.strerror}",
                                    "missing_image")]) from None
    return decode_image(data, file)

"""Model calls on batches padded to a power of two: a jitted model compiles a few batch shapes
at most however a video's length, its re-detections or its number of visible hands fall, and
one frame's two hand crops do not pay for a batch of 16."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def padded_size(count: int, batch_size: int) -> int:
    """The batch shape that `count` (1..batch_size) images are padded to: the next power of two."""
    return min(batch_size, 1 << (count - 1).bit_length())


def predict_padded(predict: Callable[[np.ndarray], Any], images: np.ndarray,
                   batch_size: int) -> Any:
    """predict(images) in chunks of at most batch_size, each zero-padded to a power of two; a
    predict that returns a tuple of arrays gives the tuple of their concatenations."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        padded = np.zeros((padded_size(len(chunk), batch_size), *chunk.shape[1:]), chunk.dtype)
        padded[:len(chunk)] = chunk
        result = predict(padded)
        if isinstance(result, tuple):
            out.append(tuple(np.asarray(r)[:len(chunk)] for r in result))
        else:
            out.append(np.asarray(result)[:len(chunk)])
    if out and isinstance(out[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*out, strict=True))
    return np.concatenate(out)

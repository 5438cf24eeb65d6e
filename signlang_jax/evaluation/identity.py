"""Whose points are these? Measuring whether a single-person prediction mixes two people.

A frame with a second person is scored against both people's truth. A predicted point (score at
or above `min_score`: one the video job's outputs and tracker treat as found) is **on the other
person** when it is wrong for the signer (at least `radius` from its own keypoint, a fraction
of the signer's box as in PCK: a point PCK counts as correct is the signer's even where the two
overlap) and lies within `radius` of the other person's same keypoint or its mirror (visible):
the single-person model answering for their left wrist, or the hand stage cropping their hand
on either side. Any of their keypoints would count chance: the signer's own errors that happen
to land on a body passing behind (measured: `benchmarks/two_people.py` reports that floor).

A frame **mixes** when any of its points is on the other person; it is **swapped** when most
of its found points are.
"""

from __future__ import annotations

import numpy as np

from signlang_jax.keypoints import FLIP_PERMUTATION


def points_on_other(pred: np.ndarray, truth: np.ndarray, other: np.ndarray, bbox: np.ndarray,
                    radius: float = 0.1, min_score: float = 0.3) -> np.ndarray:
    """Bool (T, K): each found point of (T, K, 3) `pred` lies on the other person.

    truth: (T, K, >=2) the signer's keypoints; other: (T, K, 3) the other person's x, y,
    visible (NaN or visible 0 where absent); bbox: (T, 4) the signer's boxes (x, y, w, h).
    """
    scale = np.maximum(bbox[:, 2], bbox[:, 3])[:, None]  # (T, 1)
    found = pred[..., 2] >= min_score
    own = np.linalg.norm(pred[..., :2] - truth[..., :2], axis=-1)  # (T, K)
    seen = (other[..., 2] > 0) & np.isfinite(other[..., :2]).all(-1)  # (T, K)
    nearest = np.full(own.shape, np.inf)
    for index in (np.arange(pred.shape[1]), np.asarray(FLIP_PERMUTATION)):
        gap = np.linalg.norm(pred[..., :2] - other[:, index, :2], axis=-1)
        nearest = np.minimum(nearest, np.where(seen[:, index], gap, np.inf))
    return found & (own >= radius * scale) & (nearest < radius * scale)


def mixing_summary(on_other: np.ndarray, found: np.ndarray) -> dict[str, float | int]:
    """Frames that mix or swap people and points on the other person, from (T, K) masks."""
    per_frame = on_other.sum(1)
    found_per_frame = found.sum(1)
    return {"frames": int(len(on_other)),
            "mixed_frames": int((per_frame > 0).sum()),
            "swapped_frames": int((2 * per_frame > np.maximum(found_per_frame, 1)).sum()),
            "points_on_other": int(on_other.sum()),
            "found_points": int(found.sum())}

"""Resampling a keypoint sequence to a constant frame rate (`--fps N` of the video job).

A variable-rate video keeps its own time stamps in the `.npz`; tools that assume one rate (and
the `.pose` format, which stores one) can ask for N frames per second instead. Output frame k is
at time k / N, from 0 to the last input time stamp. Coordinates and scores are interpolated
linearly in time between the two input frames around it, where both hold the point (score >
`min_score`); a point missing on either side takes the nearer frame's value (a missing point is
not interpolated into a made-up position). `tracked` and `region` come from the nearer frame.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from signlang_jax.data.sequence_files import KeypointSequence


def resample(sequence: KeypointSequence, fps: float, min_score: float = 0.0
             ) -> KeypointSequence:
    """`sequence` at a constant `fps`, frame k at k / fps (see the module docstring)."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps={fps}; expected a positive frame rate")
    times = np.asarray(sequence.timestamps, np.float64)
    count = int(math.floor(times[-1] * fps + 1e-9)) + 1
    wanted = np.arange(count, dtype=np.float64) / fps
    if len(times) == 1:
        before = after = np.zeros(count, np.int64)
    else:  # the input frames around each wanted time
        after = np.clip(np.searchsorted(times, wanted, side="right"), 1, len(times) - 1)
        before = after - 1
    span = times[after] - times[before]  # 0 only for a one-frame sequence
    weight = np.divide(wanted - times[before], span, out=np.zeros_like(span), where=span > 0)
    weight = np.clip(weight, 0.0, 1.0)
    nearer = np.where(weight < 0.5, before, after)
    kp = sequence.keypoints
    a, b = kp[before], kp[after]  # (count, K, 3)
    both = (a[..., 2] > min_score) & (b[..., 2] > min_score)
    w = weight[:, None, None]
    mixed = (1 - w) * a + w * b
    keypoints = np.where(both[..., None], mixed, kp[nearer]).astype(np.float32)
    return dataclasses.replace(
        sequence, keypoints=keypoints, fps=float(fps),
        tracked=sequence.tracked[nearer], region=sequence.region[nearer],
        metadata={**sequence.metadata, "resampled": describe_resampling(sequence, fps)},
        timestamps=wanted)


def describe_resampling(sequence: KeypointSequence, fps: float) -> str:
    """What the metadata records of a resampling: from how many frames at what average rate."""
    return (f"linear in time to {fps:g} fps from {sequence.num_frames} frames at "
            f"{sequence.fps:.3f} fps average")

"""The video job's numeric flags: every one range-checked before any work, one line each.

A value outside its range used to run with exit 0 and silently switch a stage off (a
`--track-threshold 5` no point ever reaches, a `--smooth-threshold 7` that leaves every point
unsmoothed); now it stops the job with the flag, the value, the range and what the flag means.
NaN and infinity are outside every range.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(low: float, high: float, low_open: bool = False, high_open: bool = False
            ) -> tuple[Callable[[float], bool], str]:
    """(test, range text) for a finite number between `low` and `high`."""
    text = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def test(v: float) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return math.isfinite(v) and above and below

    return test, text


SCORE = _number(0, 1)
POSITIVE = _number(0, math.inf, low_open=True, high_open=True)
NON_NEGATIVE = _number(0, math.inf, high_open=True)

# attribute of the parsed arguments -> (flag, (test, range), meaning). None values (an optional
# flag not given) are not checked.
FLAG_RULES: dict[str, tuple[str, tuple[Callable[[float], bool], str], str]] = {
    "hand_min_score": ("--hand-min-score", SCORE,
                       "a hand-model point replaces the body model's from this score"),
    "threads": ("--threads", _number(0, 1024),
                "onnxruntime threads, 0 = onnxruntime's choice"),
    "workers": ("--workers", _number(1, 100000), "Ray actors, each with its own model"),
    "min_score": ("--min-score", SCORE, "points below this score are stored as missing"),
    "batch_size": ("--batch-size", _number(1, 4096), "frames per model call"),
    "frames_fps": ("--frames-fps", _number(0, 1000, low_open=True),
                   "frames per second of folders of frames"),
    "fps": ("--fps", _number(0, 1000, low_open=True), "the outputs' resampled frame rate"),
    "track_threshold": ("--track-threshold", SCORE,
                        "a point at or above this score is confident"),
    "track_min_points": ("--track-min-points", _number(1, 64),
                         "fewer confident points than this loses tracking"),
    "track_margin": ("--track-margin", _number(0, 2),
                     "the region's margin around the points, in extents"),
    "smooth_window": ("--smooth-window", POSITIVE, "seconds: the offline fit's window sigma"),
    "smooth_outlier": ("--smooth-outlier", POSITIVE,
                       "hand (or signer) sizes off the fit that make an outlier"),
    "smooth_cut_speed": ("--smooth-cut-speed", POSITIVE,
                         "signer sizes per second that start a new segment"),
    "smooth_threshold": ("--smooth-threshold", SCORE,
                         "points below this score are not smoothed"),
    "min_cutoff": ("--min-cutoff", POSITIVE, "Hz: the causal filter's cutoff at rest"),
    "beta": ("--beta", NON_NEGATIVE, "the causal filter's cutoff gain per speed"),
    "d_cutoff": ("--d-cutoff", POSITIVE, "Hz: the causal filter's speed low-pass"),
    "jump_gate": ("--jump-gate", NON_NEGATIVE,
                  "signer sizes per second: a faster move is held a frame"),
}


def flag_problems(args: argparse.Namespace) -> list[str]:
    """One line per numeric flag of `args` outside its range (empty when all are fine)."""
    problems = []
    for attribute, (flag, (test, text), meaning) in FLAG_RULES.items():
        value = getattr(args, attribute, None)
        if value is not None and not test(value):
            problems.append(f"{flag} {value}: expected a value in {text} ({meaning})")
    confidence = getattr(args, "smooth_confidence", None)
    if confidence is not None:
        low, high = confidence
        if not (SCORE[0](low) and SCORE[0](high) and low < high):
            problems.append(f"--smooth-confidence {low} {high}: expected 0 <= LOW < HIGH <= 1 "
                            "(scores between which a point's step is damped)")
    return problems

"""Procedural 2D signer: a fast, deterministic synthetic dataset for the 64-keypoint schema.

Real sign-language data with hand keypoints is scarce and slow to label, so this package draws a
stylised but anatomically structured signer with OpenCV primitives (head and face, torso, arms, legs
and two articulated 21-joint hands in varied handshapes) on noisy, textured backgrounds. Every
keypoint sits on a drawn joint, and a per-pixel map of which body part was drawn last decides which
keypoints are occluded, so the labels match the pixels.

Modules: `parts` (part ids, owner map, visibility), `scene` (drawing primitives, colours,
backgrounds, camera effects), `hand` (the hand model), `signer` (pose and drawing of the signer),
`stills` (still samples and datasets), `cli` (`python -m signlang_jax.synth --out DIR --num N
--seed S`), `motion` (keyframed signing over time) and `clips` (video clips with per-frame labels,
`python -m signlang_jax.synth.clips`; import it from there, it is not re-exported here so that
`-m` runs it cleanly).
"""

from signlang_jax.synth.cli import build_parser, main
from signlang_jax.synth.hand import draw_hand
from signlang_jax.synth.parts import KEYPOINT_OWNERS, PART_IDS, keypoint_visibility
from signlang_jax.synth.stills import (
    JPEG_QUALITY,
    generate_dataset,
    render_sample,
    render_sample_with_owners,
)

__all__ = [
    "JPEG_QUALITY", "KEYPOINT_OWNERS", "PART_IDS", "build_parser", "draw_hand", "generate_dataset",
    "keypoint_visibility", "main", "render_sample", "render_sample_with_owners",
]

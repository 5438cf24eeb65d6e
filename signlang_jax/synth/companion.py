"""A second person in a synthetic clip: the case a single-person video job must not confuse.

Real signing videos often hold more than the signer: an interpreter beside them, a second
participant, someone walking past in the background. `plan_companion` samples such a person for a
clip and `draw_companion` draws them *behind* the signer (the signer is drawn last and hides
them where they overlap), so the labels of the signer stay exactly those of a one-person clip;
the companion's own keypoints are returned for measuring whether predicted points land on them.

Kinds (`COMPANIONS`):
- "beside": a second, smaller signer (0.5-0.8 of the signer's size) standing on the roomier side
  of the frame for the whole clip, signing with their own motion.
- "behind": a smaller person walking across the frame behind the signer, entering at one edge
  and leaving at the other during the clip, so they cross behind the signer on the way.
"""

from __future__ import annotations

import numpy as np

from signlang_jax.synth.motion import pose_at, sample_motion
from signlang_jax.synth.signer import draw_signer, sample_signer
from signlang_jax.synth.stills import visibility

COMPANIONS: tuple[str, ...] = ("beside", "behind")
SIZE_RANGE: tuple[float, float] = (0.5, 0.8)  # companion's shoulder width / the signer's


def plan_companion(rng: np.random.Generator, kind: str, signer_camera: dict, width: int,
                   height: int, duration: float) -> dict:
    """Everything random about the second person of a clip (world pixels at frame 0's camera)."""
    if kind not in COMPANIONS:
        raise ValueError(f"companion={kind!r}; expected one of {', '.join(COMPANIONS)}")
    person = sample_signer(rng)
    look = person["look"]
    look["front"], look["back"] = look["back"] + look["front"], []
    motion = sample_motion(rng, person["pose"], duration)
    signer_scale = float(signer_camera["scale"])
    signer_x, signer_y = (float(v) for v in signer_camera["centre"])
    scale = signer_scale * rng.uniform(*SIZE_RANGE)
    # A smaller person stands farther back: shoulders a little higher or lower than the signer's.
    y = signer_y + rng.uniform(-0.4, 0.3) * signer_scale
    plan = {"kind": kind, "look": look, "motion": motion, "scale": scale}
    if kind == "beside":
        side = -1.0 if signer_x > width / 2 else 1.0  # the side with more room
        x = signer_x + side * (rng.uniform(1.8, 2.6) * signer_scale + scale)
        x = float(np.clip(x, 0.7 * scale, width - 0.7 * scale))
        plan["start"] = plan["end"] = [x, y]
    else:
        outside = 1.6 * scale  # wholly out of the frame, arms included
        left, right = -outside, width + outside
        if rng.random() < 0.5:
            left, right = right, left
        plan["start"], plan["end"] = [left, y], [right, y]
    return plan


def companion_centre(plan: dict, t: float, duration: float) -> np.ndarray:
    """The companion's shoulders' centre in world pixels at time t (a steady walk, or still)."""
    tau = min(max(t / duration, 0.0), 1.0) if duration > 0 else 0.0
    start, end = np.asarray(plan["start"]), np.asarray(plan["end"])
    return start + (end - start) * tau


def draw_companion(img: np.ndarray, plan: dict, t: float, centre: np.ndarray, scale: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Draw the companion at `centre` (px, this frame's camera) with shoulder width `scale` px.

    Returns their keypoints (64, 2) and whether each is visible before the signer is drawn
    (`companion_visible` then removes the points the signer hides).
    """
    owner = np.zeros(img.shape[:2], np.uint8)
    person = {"look": plan["look"], "pose": pose_at(plan["motion"], t)}
    kp, hidden = draw_signer(img, owner, person, centre, scale)
    return kp, visibility(kp, hidden, owner)


def companion_visible(kp: np.ndarray, visible: np.ndarray, signer_owner: np.ndarray
                      ) -> np.ndarray:
    """The companion's visible points once the signer is drawn over them (owner map nonzero)."""
    height, width = signer_owner.shape
    cols = np.clip(np.rint(kp[:, 0]), 0, width - 1).astype(np.intp)
    rows = np.clip(np.rint(kp[:, 1]), 0, height - 1).astype(np.intp)
    return visible & (signer_owner[rows, cols] == 0)

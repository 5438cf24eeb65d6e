"""Procedural 2D signer: a fast, deterministic synthetic dataset for the 64-keypoint schema.

Real sign-language data with hand keypoints is scarce and slow to label, so this module draws a
stylised but anatomically structured signer with OpenCV primitives (head and face, torso, arms, legs
and two articulated 21-joint hands in varied handshapes) on noisy, textured backgrounds and writes
`images/NNNNNN.jpg` + `labels/NNNNNN.json` in the layout `signlang_jax.data.dataset` reads. Every
keypoint sits on a drawn joint, and a per-pixel map of which body part was drawn last decides which
keypoints are occluded, so the labels match the pixels. Sample `i` of seed `s` depends only on
`(s, i)`, which makes the output byte-identical for any number of worker processes.

Run `python -m signlang_jax.synth --out DIR --num N --seed S` (see `--help`), or call
`render_sample` / `generate_dataset` from Python.
"""

from __future__ import annotations

import argparse
import colorsys
import importlib
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.keypoints import GROUPS, HAND_JOINTS, KEYPOINT_INDEX, KEYPOINT_NAMES, group_of

JPEG_QUALITY: int = 92

# Sub-pixel drawing: OpenCV takes fixed-point coordinates with `_SHIFT` fractional bits.
_SHIFT = 4
_FIXED = float(1 << _SHIFT)

_K = KEYPOINT_INDEX
# The person's left appears on the image right (+x) for a signer facing the camera.
_SIDES: tuple[tuple[str, float], ...] = (("left", 1.0), ("right", -1.0))
_HAND_GROUPS: tuple[str, ...] = tuple(g for g in GROUPS if g.endswith("_hand"))

# ----------------------------------------------------------------------------- parts and owners

# Ids written into the owner map: which part drew each pixel last. 0 is the background.
PART_IDS: dict[str, int] = {
    name: i
    for i, name in enumerate(
        ("background", "torso", "neck", "head")
        + tuple(f"{side}_{p}" for side, _ in _SIDES for p in ("upper_arm", "forearm"))
        + tuple(f"{side}_{p}" for side, _ in _SIDES for p in ("thigh", "shin"))
        + _HAND_GROUPS
    )
}

# Face anchors are copies of body points: face_nose is nose, face_left_eye is left_eye, ...
_FACE_TO_BODY: dict[int, int] = {
    i: _K[KEYPOINT_NAMES[i].removeprefix("face_")] for i in GROUPS["face"]
}
_HEAD_POINTS: frozenset[int] = frozenset(_FACE_TO_BODY.values()) | frozenset(_FACE_TO_BODY)

# Which parts a body joint belongs to (a joint is not occluded by its own limbs).
_JOINT_PARTS: dict[str, tuple[str, ...]] = {
    "shoulder": ("torso", "neck", "{side}_upper_arm"),
    "elbow": ("{side}_upper_arm", "{side}_forearm"),
    "wrist": ("{side}_forearm", "{side}_hand"),
    "hip": ("torso", "{side}_thigh"),
    "knee": ("{side}_thigh", "{side}_shin"),
    "ankle": ("{side}_shin",),
}


def _owner_sets() -> tuple[frozenset[int], ...]:
    """For every keypoint, the part ids that may be drawn over it without hiding it."""
    owners = []
    for i, name in enumerate(KEYPOINT_NAMES):
        group = group_of(i)
        if i in _HEAD_POINTS:
            parts: tuple[str, ...] = ("head",)
        elif group in _HAND_GROUPS:
            # A hand never occludes itself; its wrist also lies on the end of the forearm.
            side = group.removesuffix("_hand")
            parts = (group, f"{side}_forearm") if name.endswith("_wrist") else (group,)
        else:
            side, _, joint = name.partition("_")
            parts = tuple(p.format(side=side) for p in _JOINT_PARTS[joint])
        owners.append(frozenset(PART_IDS[p] for p in parts))
    return tuple(owners)


KEYPOINT_OWNERS: tuple[frozenset[int], ...] = _owner_sets()


def _owner_table() -> np.ndarray:
    """Bool (64, 256) lookup [keypoint, part id]: True where that part does not hide the point."""
    table = np.zeros((len(KEYPOINT_NAMES), 256), bool)
    table[:, PART_IDS["background"]] = True  # nothing drawn over it
    for i, own in enumerate(KEYPOINT_OWNERS):
        table[i, list(own)] = True
    return table


_OWNER_TABLE = _owner_table()


def keypoint_visibility(xy: np.ndarray, owner_map: np.ndarray) -> np.ndarray:
    """Bool (64,): keypoint inside the frame and the part drawn last at its pixel is its own."""
    height, width = owner_map.shape
    xy = np.asarray(xy, np.float64)
    finite = np.isfinite(xy).all(1)
    inside = finite & (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1)
    inside &= (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    cols = np.clip(np.rint(np.where(finite, xy[:, 0], 0)), 0, width - 1).astype(np.intp)
    rows = np.clip(np.rint(np.where(finite, xy[:, 1], 0)), 0, height - 1).astype(np.intp)
    owner = owner_map[rows, cols]
    return inside & _OWNER_TABLE[np.arange(len(xy)), owner]


# ----------------------------------------------------------------------------- hand model

# The hand model follows the schema's hand order: wrist, then 5 fingers (thumb to little), each a
# chain of 4 joints from the palm outwards. Parameters below are indexed by finger position.
_FINGERS: tuple[str, ...] = tuple(dict.fromkeys(j.split("_")[0] for j in HAND_JOINTS[1:]))
_CHAINS: np.ndarray = np.array(
    [[i for i, j in enumerate(HAND_JOINTS) if j.startswith(f + "_")] for f in _FINGERS]
)
_WRIST = HAND_JOINTS.index("wrist")
assert _CHAINS.shape == (5, 4), "the hand model expects 5 fingers of 4 joints each"

# Canonical right hand, palm towards the camera, fingers up. Units: hand length (wrist to the tip of
# the extended middle finger). x points to the thumb side, y down (to the wrist), z to the camera.
_BASE_XY = np.array([(0.13, -0.13), (0.15, -0.51), (0.05, -0.535), (-0.05, -0.51), (-0.14, -0.455)])
_SEG_LEN = np.array([
    (0.22, 0.16, 0.12), (0.21, 0.12, 0.095), (0.23, 0.135, 0.10), (0.21, 0.125, 0.095),
    (0.165, 0.095, 0.085),
])
_SPLAY_DEG = np.array([0.0, 6.0, 0.0, -6.0, -13.0])  # finger base direction, + leans to the thumb
_RADII = np.array([  # half-width at each joint of the chain, tapering to the tip
    (0.085, 0.058, 0.050, 0.043), (0.052, 0.048, 0.043, 0.038), (0.054, 0.050, 0.045, 0.040),
    (0.051, 0.047, 0.042, 0.037), (0.045, 0.041, 0.037, 0.033),
])
# Palm outline (x, y) added to the hull of wrist + finger bases: wrist corners, hypothenar and
# knuckle edges.
_PALM_EXTRA = np.array([(0.16, 0.03), (-0.15, 0.03), (-0.18, -0.22), (0.19, -0.47), (-0.18, -0.42)])
_PALM_HULL_JOINTS = np.array([_WRIST, *_CHAINS[:, 0]])

# Handshapes: (name, probability). Names are only used inside `_handshape`.
_SHAPES: tuple[tuple[str, float], ...] = (
    ("fist", 0.13), ("flat", 0.13), ("point", 0.12), ("spread", 0.12), ("pinch", 0.12),
    ("v", 0.1), ("thumb_up", 0.06), ("claw", 0.07), ("random", 0.15),
)
_SHAPE_P = np.array([p for _, p in _SHAPES]) / sum(p for _, p in _SHAPES)


def _curl_angles(rng: np.random.Generator, curl: np.ndarray) -> np.ndarray:
    """(n, 3) MCP/PIP/DIP flexion in radians for curl amounts in [0, 1]."""
    full = np.array([rng.uniform(70, 90), rng.uniform(90, 105), rng.uniform(50, 75)])
    jitter = rng.normal(0.0, 5.0, (len(curl), 3))
    return np.radians(np.maximum(curl[:, None] * full[None] + jitter, -10.0))


def _handshape(rng: np.random.Generator) -> dict:
    """Joint angles of a random handshape (angles in radians)."""
    shape = _SHAPES[rng.choice(len(_SHAPES), p=_SHAPE_P)][0]
    u = rng.uniform
    curled = lambda n=1: u(0.85, 1.0, n)
    straight = lambda n=1: u(0.0, 0.1, n)
    splay = 1.0
    # Thumb: base angle from the finger direction towards +x, two flexions, elevation, front bias.
    thumb = {"psi": u(15, 30), "flex": (u(40, 60), u(30, 50)), "elev": u(15, 30), "front": 0.3}
    pinch = False
    if shape == "fist":
        curl = curled(4)
    elif shape == "flat":
        curl, splay = straight(4), u(0.2, 0.8)
        thumb = {"psi": u(3, 20), "flex": (u(0, 10), u(0, 15)), "elev": u(0, 15), "front": 0.0}
    elif shape == "point":
        curl = np.concatenate([straight(), curled(3)])
    elif shape == "spread":
        curl, splay = u(0.0, 0.15, 4), u(2.0, 3.0)
        thumb = {"psi": u(50, 75), "flex": (u(0, 15), u(0, 15)), "elev": u(0, 15), "front": 0.0}
    elif shape == "pinch":
        others = straight(3) if rng.random() < 0.5 else curled(3)
        curl, splay, pinch = np.concatenate([u(0.3, 0.55, 1), others]), u(0.5, 1.8), True
        thumb = {"psi": u(30, 50), "flex": (0.0, 0.0), "elev": u(20, 35), "front": 0.2}
    elif shape == "v":
        curl, splay = np.concatenate([straight(2), curled(2)]), u(2.0, 3.2)
    elif shape == "thumb_up":
        curl = curled(4)
        thumb = {"psi": u(30, 60), "flex": (u(0, 10), u(0, 10)), "elev": u(5, 25), "front": 0.3}
    elif shape == "claw":
        curl, splay = u(0.4, 0.7, 4), u(1.0, 2.5)
        thumb = {"psi": u(30, 60), "flex": (u(10, 30), u(10, 30)), "elev": u(10, 40), "front": 0.1}
    else:  # random mix
        curl, splay = u(0.0, 1.0, 4), u(0.5, 2.5)
        thumb = {"psi": u(0, 70), "flex": (u(0, 60), u(0, 60)), "elev": u(0, 35), "front": 0.1}
    return {
        "flex": _curl_angles(rng, curl),
        "splay": np.radians(_SPLAY_DEG[1:] * splay + rng.normal(0.0, 2.0, 4)),
        "thumb_psi": math.radians(thumb["psi"]),
        "thumb_flex": np.radians(thumb["flex"]),
        "thumb_elev": math.radians(thumb["elev"]),
        "thumb_front": thumb["front"],
        "pinch": pinch,
        "length": rng.uniform(0.94, 1.06, 5),  # per-finger length variation
    }


def _hand_points(shape: dict) -> np.ndarray:
    """(21, 3) canonical right-hand joints for a handshape (see `_BASE_XY` for the frame)."""
    pts = np.zeros((len(HAND_JOINTS), 3))
    ez = np.array([0.0, 0.0, 1.0])
    for f in range(1, 5):
        psi = shape["splay"][f - 1]
        u = np.array([math.sin(psi), -math.cos(psi), 0.0])
        p = np.array([*_BASE_XY[f], 0.0])
        pts[_CHAINS[f, 0]] = p
        cum = 0.0
        for k in range(3):
            # Flexion turns the finger towards the camera (the palm side), so a curled finger
            # projects back onto the palm, like a fist seen from the front.
            cum += shape["flex"][f - 1, k]
            p = p + _SEG_LEN[f, k] * shape["length"][f] * (math.cos(cum) * u + math.sin(cum) * ez)
            pts[_CHAINS[f, k + 1]] = p
    # Thumb: flexion swings it across the palm (towards -x) in the palm plane, elevated towards z.
    elev = shape["thumb_elev"]
    p = np.array([*_BASE_XY[0], 0.02])
    pts[_CHAINS[0, 0]] = p
    psi = shape["thumb_psi"]
    for k in range(3):
        if k:
            psi -= shape["thumb_flex"][k - 1]
        e = elev if k == 0 else elev * 0.3
        direction = np.array(
            [math.sin(psi) * math.cos(e), -math.cos(psi) * math.cos(e), math.sin(e)]
        )
        p = p + _SEG_LEN[0, k] * shape["length"][0] * direction
        pts[_CHAINS[0, k + 1]] = p
    if shape["pinch"]:
        _pinch_thumb(pts)
    return pts


def _pinch_thumb(pts: np.ndarray) -> None:
    """Bend the thumb in place so its tip meets the index fingertip (two-link IK in xy)."""
    mcp, ip, tip = _CHAINS[0, 1], _CHAINS[0, 2], _CHAINS[0, 3]
    target = pts[_CHAINS[1, 3]] + np.array([0.03, 0.0, 0.02])  # touch at the pads, thumb in front
    l1 = float(np.linalg.norm(pts[ip] - pts[mcp]))
    l2 = float(np.linalg.norm(pts[tip] - pts[ip]))
    base = pts[mcp, :2]
    d = target[:2] - base
    dist = float(np.linalg.norm(d))
    stretch = min(max(dist / (l1 + l2) * 1.02, 1.0), 1.4)  # reach a far tip by a longer thumb
    l1, l2 = l1 * stretch, l2 * stretch
    dist = min(max(dist, abs(l1 - l2) + 1e-3), (l1 + l2) * 0.999)
    unit = d / max(float(np.linalg.norm(d)), 1e-9)
    angle = math.acos(np.clip((l1 * l1 + dist * dist - l2 * l2) / (2 * l1 * dist), -1.0, 1.0))
    candidates = [_rotate2(unit, a) * l1 + base for a in (angle, -angle)]
    elbow = max(candidates, key=lambda c: c[0])  # the joint bulges out on the thumb side
    pts[ip] = [*elbow, (pts[mcp, 2] + target[2]) / 2 + 0.03]
    pts[tip] = [*(base + unit * dist), target[2]]


def _rotate2(v: np.ndarray, angle: float) -> np.ndarray:
    """2D vector `v` rotated by `angle` radians."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _rot3(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about the vertical axis (yaw) after one about the horizontal axis (pitch)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


# ----------------------------------------------------------------------------- drawing helpers


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates to OpenCV's fixed-point int32 (`_SHIFT` fractional bits)."""
    return np.rint(np.asarray(points) * _FIXED).astype(np.int32)


def _capsules(p0: np.ndarray, p1: np.ndarray, r0: np.ndarray, r1: np.ndarray,
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
    return _fixed(np.concatenate([arc1, arc0], 1))


def _fill(img: np.ndarray, owner: np.ndarray, polys: np.ndarray, color: tuple, part: int) -> None:
    """Fill convex polygons anti-aliased into the image and hard-edged into the owner map."""
    for poly in polys:
        cv2.fillConvexPoly(img, poly, color, cv2.LINE_AA, _SHIFT)
        if owner is not None:
            cv2.fillConvexPoly(owner, poly, part, cv2.LINE_8, _SHIFT)


def _limb(img: np.ndarray, owner: np.ndarray, p0: np.ndarray, p1: np.ndarray, r0: float,
          r1: float, color: tuple, part: int) -> None:
    """One outlined capsule limb from p0 to p1."""
    edge = max(0.8, 0.08 * max(r0, r1))
    _fill(img, owner, _capsules(p0, p1, r0 + edge, r1 + edge), _shade(color, 0.65), part)
    _fill(img, None, _capsules(p0, p1, r0, r1), color, part)


def _ellipse(img: np.ndarray, centre: np.ndarray, axes: Sequence[float], angle: float,
             color: tuple, thickness: int = -1) -> None:
    """Anti-aliased sub-pixel ellipse (axes are half-lengths in pixels, angle in degrees)."""
    axes_fixed = (max(1, round(axes[0] * _FIXED)), max(1, round(axes[1] * _FIXED)))
    cv2.ellipse(img, tuple(int(v) for v in _fixed(centre)), axes_fixed, angle, 0, 360, color,
                thickness, cv2.LINE_AA, _SHIFT)


def _shade(color: Sequence[float], factor: float) -> tuple:
    """Colour scaled by `factor` (darker below 1), as the int tuple OpenCV wants."""
    return tuple(int(min(255, max(0, round(c * factor)))) for c in color)


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple:
    """Colour `t` of the way from a to b."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b, strict=True))


# Monk skin tone scale (RGB), from the lightest to the darkest, interpolated for variety.
_SKIN_TONES = np.array([
    (246, 237, 228), (243, 231, 219), (247, 234, 208), (234, 218, 186), (215, 189, 150),
    (160, 126, 86), (130, 92, 67), (96, 65, 52), (58, 49, 42), (41, 36, 32),
], np.float64)


def _skin_colour(rng: np.random.Generator) -> tuple:
    """A random human skin tone (RGB), slightly warmed/cooled."""
    t = rng.uniform(0, len(_SKIN_TONES) - 1)
    i = min(int(t), len(_SKIN_TONES) - 2)
    base = _SKIN_TONES[i] + (_SKIN_TONES[i + 1] - _SKIN_TONES[i]) * (t - i)
    # Pale tones read as paper on white backgrounds; pull them towards a rosier shade.
    warmth = np.array([1.0, rng.uniform(0.9, 0.98), rng.uniform(0.82, 0.95)])
    base = base * rng.uniform(0.85, 1.0) * warmth
    return _shade(base, 1.0)


def _colour(rng: np.random.Generator, value: tuple[float, float] = (0.15, 0.95)) -> tuple:
    """A random saturated-or-not colour (RGB) with brightness in `value`."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.9), rng.uniform(*value))
    return (int(r * 255), int(g * 255), int(b * 255))


def _hair_colour(rng: np.random.Generator) -> tuple:
    """A natural-looking hair colour (RGB)."""
    palette = ((20, 16, 14), (45, 30, 20), (80, 50, 30), (120, 80, 45), (190, 150, 90),
               (150, 60, 30), (160, 160, 160))
    return _shade(palette[rng.integers(len(palette))], rng.uniform(0.8, 1.15))


# ----------------------------------------------------------------------------- background & post


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
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
        color = _colour(rng, (0.05, 1.0)) if rng.random() < 0.85 else _skin_colour(rng)
        p = rng.uniform(-0.1, 1.1, 2) * size
        q = rng.uniform(-0.1, 1.1, 2) * size
        thick = -1 if rng.random() < 0.6 else max(1, int(rng.uniform(1, 12) * unit))
        if kind == 0:
            cv2.rectangle(img, _fixed(p), _fixed(q), color, thick, cv2.LINE_AA, _SHIFT)
        elif kind == 1:
            _ellipse(img, p, np.abs(q - p) * 0.5 + 1, rng.uniform(0, 180), color, thick)
        elif kind == 2:
            cv2.line(img, _fixed(p), _fixed(q), color, max(1, int(rng.uniform(1, 10) * unit)),
                     cv2.LINE_AA, _SHIFT)
        else:
            pts = _fixed(rng.uniform(-0.1, 1.1, (3, 2)) * size)
            cv2.fillConvexPoly(img, pts, color, cv2.LINE_AA, _SHIFT)
    return img


def _postprocess(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Camera effects: blur, brightness/contrast/gamma/colour cast, sensor noise."""
    size = img.shape[0]
    if rng.random() < 0.6:
        sigma = rng.uniform(0.3, 1.4) * size / 512.0
        if sigma >= 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
    # One per-channel lookup table applies gamma, contrast, brightness and a colour cast at once.
    v = np.arange(256, dtype=np.float64)[:, None] / 255.0
    gamma, contrast = rng.uniform(0.75, 1.35), rng.uniform(0.7, 1.25)
    brightness, cast = rng.uniform(-35, 35), rng.uniform(0.85, 1.15, 3)
    lut = ((v ** gamma) * 255.0 - 128.0) * contrast * cast[None] + 128.0 + brightness
    img = cv2.LUT(img, np.clip(np.rint(lut), 0, 255).astype(np.uint8)[:, None, :])
    if rng.random() < 0.8:
        # Uniform noise of std `sigma`: uint8 draws are ~10x cheaper than Gaussian floats.
        sigma = rng.uniform(1.0, 9.0)
        k = sigma * math.sqrt(3.0) / 128.0
        noise = rng.integers(0, 256, img.shape, dtype=np.uint8)
        img = cv2.addWeighted(img, 1.0, noise, k, -128.0 * k)
    return img


# ----------------------------------------------------------------------------- the signer


def _arm(rng: np.random.Generator, shoulder: np.ndarray, sgn: float, mode: str,
         target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (elbow, wrist) of one arm: the elbow is placed first, the forearm then reaches.

    Projected segment lengths may be shorter than the real ones (an arm pointing at the camera),
    which is what lets the hand reach the face with the elbow hanging below the shoulder.
    """
    u = rng.uniform
    l1, l2 = u(0.6, 0.68), u(0.55, 0.62)
    if mode == "raised":
        alpha, fore = math.radians(u(70, 150)), u(0.8, 1.0)
    elif mode == "rest":
        alpha, fore = math.radians(u(0, 25)), u(0.9, 1.0)
    elif mode == "face":
        alpha, fore = math.radians(u(-5, 45)), u(0.5, 0.9)
    else:
        alpha, fore = math.radians(u(-15, 60)), u(0.55, 1.0)
    # alpha: elbow angle from straight down, positive outwards (away from the body).
    elbow = shoulder + l1 * fore * np.array([sgn * math.sin(alpha), math.cos(alpha)])
    if mode in ("raised", "rest"):
        beta = alpha + math.radians(u(-60, 20) if mode == "raised" else u(-25, 30))
        return elbow, elbow + l2 * u(0.85, 1.0) * np.array([sgn * math.sin(beta), math.cos(beta)])
    reach = target - elbow
    dist = float(np.hypot(*reach))
    if dist > l2:  # out of reach: the forearm points at the target at full length
        return elbow, elbow + reach * (l2 / dist)
    return elbow, target


def _wrist_target(rng: np.random.Generator, sgn: float, head: np.ndarray) -> tuple:
    """Canonical wrist target for one arm and the mode it came from."""
    r = rng.random()
    if r < 0.68:  # signing space: face to belly, mostly in front of the chest
        return np.array([sgn * rng.uniform(-0.35, 0.8), rng.uniform(-0.95, 0.95)]), "sign"
    if r < 0.82:  # at the face: hand over or beside the face
        return head + np.array([sgn * rng.uniform(-0.15, 0.35), rng.uniform(0.05, 0.45)]), "face"
    if r < 0.94:
        return np.zeros(2), "rest"  # hanging down
    return np.zeros(2), "raised"


def draw_hand(rng: np.random.Generator, img: np.ndarray, owner: np.ndarray, group: str,
               wrist: np.ndarray, direction: np.ndarray, length: float, skin: tuple) -> np.ndarray:
    """Draw one articulated hand; return its 21 keypoints (pixels) in schema hand order.

    `group` is "left_hand" or "right_hand" (its id is written into `owner`), `wrist` the wrist
    position in pixels, `direction` a unit vector from the wrist towards the fingers, `length` the
    wrist-to-middle-fingertip length of the extended hand in pixels, `skin` an RGB colour. The
    handshape and the hand's 3D tilt are drawn from `rng`.
    """
    shape = _handshape(rng)
    pts3 = _hand_points(shape)
    palm3 = np.concatenate(
        [pts3[_PALM_HULL_JOINTS], np.c_[_PALM_EXTRA, np.zeros(len(_PALM_EXTRA))]]
    )
    if group.startswith("left"):  # the canonical hand is a right hand; mirror for the left one
        pts3, palm3 = pts3 * [-1, 1, 1], palm3 * [-1, 1, 1]
    # Palm or back to the camera, tilted: a rotation then an orthographic projection gives the
    # foreshortening of a hand seen at an angle.
    yaw = rng.normal(0.0, 0.4) + (math.pi if rng.random() < 0.4 else 0.0)
    pitch = float(np.clip(rng.normal(0.0, 0.35), -0.8, 0.8))
    rot = _rot3(yaw, pitch)
    pts3, palm3 = pts3 @ rot.T, palm3 @ rot.T
    ux, uy = direction
    plane = np.array([[-uy, -ux], [ux, -uy]])  # maps the canonical finger direction (0,-1) to u
    to_px = lambda p: wrist + length * (p[:, :2] @ plane.T)
    xy, palm_xy = to_px(pts3), to_px(palm3)
    z = pts3[:, 2]
    pid = PART_IDS[group]
    line = cv2.LINE_AA

    outline = _shade(skin, 0.62)
    crease = _shade(skin, 0.8)
    tip_col = _mix(skin, (255, 236, 228), 0.45)
    edge = max(0.7, 0.012 * length)
    palm_z = float(z[_PALM_HULL_JOINTS].mean())
    palm_facing = rot[2, 2] > 0
    order = sorted(range(5), key=lambda f: z[_CHAINS[f]].mean() + (shape["thumb_front"] if f == 0
                                                                      else 0.0))
    behind = [f for f in order if z[_CHAINS[f]].mean() < palm_z - 0.06]
    front = [f for f in order if f not in behind]

    def draw_finger(f: int) -> None:
        chain = _CHAINS[f]
        radii = np.maximum(_RADII[f] * length, 0.6)
        tint = rng.uniform(0.93, 1.06)
        p0, p1 = xy[chain[:-1]], xy[chain[1:]]
        k = 8 if radii[0] > 4 else 6
        _fill(img, owner, _capsules(p0, p1, radii[:-1] + edge, radii[1:] + edge, k), outline, pid)
        _fill(img, None, _capsules(p0, p1, radii[:-1], radii[1:], k), _shade(skin, tint), pid)
        if radii[-1] >= 1.5:
            # Creases across the finger at the inner joints, and a lighter nail/pad at the tip.
            for j in (1, 2):
                d = xy[chain[j + 1]] - xy[chain[j - 1]]
                d = d / max(float(np.hypot(*d)), 1e-9)
                n = np.array([-d[1], d[0]]) * radii[j] * 0.8
                cv2.line(img, _fixed(xy[chain[j]] - n), _fixed(xy[chain[j]] + n), crease,
                         max(1, round(radii[j] * 0.18)), line, _SHIFT)
            d = xy[chain[3]] - xy[chain[2]]
            angle = math.degrees(math.atan2(d[1], d[0]))
            _ellipse(img, xy[chain[3]], (radii[3] * 0.62, radii[3] * 0.5), angle, tip_col)

    def draw_palm() -> None:
        hull = cv2.convexHull(_fixed(palm_xy))
        cv2.fillConvexPoly(img, hull, skin, line, _SHIFT)
        cv2.fillConvexPoly(owner, hull, pid, cv2.LINE_8, _SHIFT)
        cv2.polylines(img, [hull], True, outline, max(1, round(edge)), line, _SHIFT)
        if length * 0.05 < 1.5:
            return
        width = max(1, round(length * 0.008))
        if palm_facing:  # palm creases
            a, b, c = xy[_CHAINS[1, 0]], xy[_CHAINS[4, 0]], xy[_WRIST]
            for t0, t1 in ((0.25, 0.3), (0.4, 0.45)):
                p, q = a + (c - a) * t0, b + (c - b) * t1
                mid = (p + q) / 2 + (c - (a + b) / 2) * 0.08
                cv2.polylines(img, [_fixed(np.stack([p, mid, q]))], False, crease, width, line,
                              _SHIFT)
        else:  # knuckles on the back of the hand
            knuckle_angle = math.degrees(math.atan2(uy, ux))
            for f in range(1, 5):
                r = _RADII[f, 0] * length * 0.45
                _ellipse(img, xy[_CHAINS[f, 0]], (r * 0.7, r), knuckle_angle, crease)

    for f in behind:
        draw_finger(f)
    draw_palm()
    for f in front:
        draw_finger(f)
    return xy


def _draw_signer(rng: np.random.Generator, img: np.ndarray,
                 owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw the signer; return keypoints (64, 2) in pixels and a mask of points hidden by pose."""
    size = img.shape[0]
    kp = np.zeros((len(KEYPOINT_NAMES), 2))
    hidden = np.zeros(len(KEYPOINT_NAMES), bool)
    u = rng.uniform

    # --- colours
    skin = _skin_colour(rng)
    hand_skin = _shade(skin, u(0.96, 1.05))
    shirt = _colour(rng)
    sleeve = shirt if rng.random() < 0.8 else _colour(rng)
    long_sleeves = rng.random() < 0.6
    trousers = _colour(rng, (0.1, 0.6))
    hair = _hair_colour(rng)

    # --- canonical skeleton, in units of the shoulder width, origin between the shoulders
    scale = size * u(0.21, 0.46)  # shoulder width in px; hands are 0.45-0.55 of it: 48-130 px
    theta = float(np.clip(rng.normal(0.0, 0.12), -0.35, 0.35))
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([size * (0.5 + u(-0.14, 0.14)), 1.06 * scale + size * u(0.02, 0.2)])
    to_px = lambda p: centre + scale * (np.asarray(p, np.float64) @ rot.T)

    half = 0.5 * u(0.92, 1.08)
    head = np.array([rng.normal(0.0, 0.04), -u(0.6, 0.68)])
    can: dict[str, np.ndarray] = {}
    for side, sgn in _SIDES:
        can[f"{side}_shoulder"] = np.array([sgn * half, rng.normal(0.0, 0.03)])
        hip = np.array([sgn * u(0.27, 0.34), u(1.5, 1.62)])
        knee = hip + [sgn * u(-0.05, 0.12), u(0.85, 0.95)]
        can[f"{side}_hip"], can[f"{side}_knee"] = hip, knee
        can[f"{side}_ankle"] = knee + [sgn * u(-0.06, 0.06), u(0.82, 0.92)]

    # Arms reach for wrist targets: signing space, face, rest or raised. Sometimes the second
    # hand goes near the first so the hands overlap.
    targets = {side: _wrist_target(rng, sgn, head) for side, sgn in _SIDES}
    if rng.random() < 0.25:
        a, b = ("left", "right") if rng.random() < 0.5 else ("right", "left")
        if targets[a][1] in ("sign", "face"):
            targets[b] = (targets[a][0] + rng.normal(0.0, 0.15, 2), "sign")
    forearm_dir = {}
    for side, sgn in _SIDES:
        elbow, wrist = _arm(rng, can[f"{side}_shoulder"], sgn, targets[side][1], targets[side][0])
        can[f"{side}_elbow"], can[f"{side}_wrist"] = elbow, wrist
        fdir = (wrist - elbow) / max(float(np.hypot(*(wrist - elbow))), 1e-9)
        if targets[side][1] == "face":  # hands at the face mostly point up
            fdir = _rotate2(np.array([0.0, -1.0]), rng.normal(0.0, 0.5))
        else:  # the wrist bends up to ~45 degrees either way
            fdir = _rotate2(fdir, u(-0.8, 0.8))
        forearm_dir[side] = rot @ fdir

    for name, p in can.items():
        kp[_K[name]] = to_px(p)

    # --- head features on an ellipsoid-ish head turned by `yaw`: feature at longitude phi lands at
    # x = rx * sin(phi + yaw) and is hidden once it turns past the silhouette.
    rx, ry = 0.24 * u(0.92, 1.08), 0.31 * u(0.95, 1.05)
    yaw = u(-0.55, 0.55)
    roll = rng.normal(0.0, 0.1)
    head_rot = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    tilt = rng.normal(0.0, 0.03)
    local = lambda x, y: to_px(head + head_rot @ np.array([x, y]))
    kp[_K["nose"]] = local(rx * 1.02 * math.sin(yaw), ry * (0.3 + tilt))
    eye_phi, ear_phi = 0.5, 1.45
    for side, sgn in _SIDES:
        kp[_K[f"{side}_eye"]] = local(rx * 0.9 * math.sin(sgn * eye_phi + yaw), ry * tilt)
        a = sgn * ear_phi + yaw
        kp[_K[f"{side}_ear"]] = local(rx * 1.04 * math.sin(a), ry * 0.1)
        hidden[_K[f"{side}_ear"]] = abs(a) > 1.62

    # --- draw order: legs, torso, neck, head, arms, hands; a hand may go behind the head.
    deg = math.degrees(theta + roll)
    part = PART_IDS
    for side, _ in _SIDES:
        hip, knee, ankle = (kp[_K[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        _limb(img, owner, hip, knee, 0.16 * scale, 0.12 * scale, trousers, part[f"{side}_thigh"])
        _limb(img, owner, knee, ankle, 0.12 * scale, 0.085 * scale, trousers, part[f"{side}_shin"])
        foot = ankle + (rot @ np.array([0.0, 0.06])) * scale
        _limb(img, owner, ankle, foot, 0.08 * scale, 0.09 * scale, _shade(trousers, 0.5),
              part[f"{side}_shin"])

    long_hair = rng.random() < 0.35
    if long_hair:  # hair falling behind the shoulders, drawn before the torso covers its end
        _ellipse(img, local(0.0, ry * 0.5), (rx * 1.25 * scale, ry * 1.45 * scale), deg, hair)
        _ellipse(owner, local(0.0, ry * 0.5), (rx * 1.25 * scale, ry * 1.45 * scale), deg,
                 part["head"])

    # Torso with sloping shoulders (trapezius) so the neck does not sit on a flat bar.
    torso = np.array([
        [-0.2, -0.13], [0.2, -0.13], [half + 0.05, -0.03], [half + 0.08, 0.3], [0.36, 1.62],
        [-0.36, 1.62], [-half - 0.08, 0.3], [-half - 0.05, -0.03],
    ])
    torso_px = _fixed(to_px(torso))
    cv2.fillConvexPoly(img, torso_px, shirt, cv2.LINE_AA, _SHIFT)
    cv2.fillConvexPoly(owner, torso_px, part["torso"], cv2.LINE_8, _SHIFT)
    cv2.polylines(img, [torso_px], True, _shade(shirt, 0.6), max(1, round(scale * 0.012)),
                  cv2.LINE_AA, _SHIFT)
    neck_top, neck_base = to_px(head + [0.0, ry * 0.6]), to_px([0.0, -0.1])
    _limb(img, owner, neck_top, neck_base, 0.11 * scale, 0.13 * scale, _shade(skin, 0.9),
          part["neck"])
    if rng.random() < 0.7:  # collar: a darker band where the neck meets the shirt
        cv2.ellipse(img, tuple(int(v) for v in _fixed(neck_base)),
                    (round(0.16 * scale * _FIXED), round(0.07 * scale * _FIXED)), deg, 0, 180,
                    _shade(shirt, 0.55), max(1, round(scale * 0.02)), cv2.LINE_AA, _SHIFT)

    def draw_arm(side: str) -> None:
        sh, el, wr = (kp[_K[f"{side}_{j}"]] for j in ("shoulder", "elbow", "wrist"))
        _limb(img, owner, sh, el, 0.125 * scale, 0.1 * scale, sleeve, part[f"{side}_upper_arm"])
        fore = sleeve if long_sleeves else _shade(skin, 0.97)
        _limb(img, owner, el, wr, 0.095 * scale, 0.072 * scale, fore, part[f"{side}_forearm"])
        if long_sleeves:  # cuff
            cuff = el + (wr - el) * 0.86
            _limb(img, None, cuff, wr + (wr - el) * 0.02, 0.08 * scale, 0.078 * scale,
                  _shade(sleeve, 0.8), part[f"{side}_forearm"])

    hand_len = {side: scale * u(0.45, 0.55) for side, _ in _SIDES}

    def paint_hand(side: str) -> None:
        group = f"{side}_hand"
        xy = draw_hand(rng, img, owner, group, kp[_K[f"{side}_wrist"]], forearm_dir[side],
                        hand_len[side], hand_skin)
        kp[GROUPS[group].start:GROUPS[group].stop] = xy

    sides = [side for side, _ in _SIDES]
    rng.shuffle(sides)
    back = [side for side in sides if rng.random() < 0.12]  # hands behind the head
    for side in back:
        draw_arm(side)
        paint_hand(side)

    hair_back = local(0.0, -ry * 0.12)
    _ellipse(img, hair_back, (rx * 1.1 * scale, ry * 1.0 * scale), deg, hair)
    _ellipse(owner, hair_back, (rx * 1.1 * scale, ry * 1.0 * scale), deg, part["head"])
    for side, _sgn in _SIDES:
        ear = kp[_K[f"{side}_ear"]]
        if not hidden[_K[f"{side}_ear"]]:
            _ellipse(img, ear, (0.055 * scale, 0.09 * scale), deg, _shade(skin, 0.8))
            _ellipse(img, ear, (0.04 * scale, 0.075 * scale), deg, skin)
            _ellipse(owner, ear, (0.055 * scale, 0.09 * scale), deg, part["head"])
    face_centre = local(rx * 0.1 * math.sin(yaw), ry * 0.1)
    _ellipse(img, face_centre, (rx * 0.98 * scale, ry * 0.92 * scale), deg, skin)
    _ellipse(owner, face_centre, (rx * 0.98 * scale, ry * 0.92 * scale), deg, part["head"])
    # fringe: hair covering the top of the face
    _ellipse(img, local(0.0, -ry * 0.72), (rx * 0.95 * scale, ry * 0.3 * scale), deg, hair)
    for side, sgn in _SIDES:
        eye = kp[_K[f"{side}_eye"]]
        squash = max(0.35, math.cos(sgn * eye_phi + yaw))
        _ellipse(img, eye, (0.055 * scale * squash, 0.03 * scale), deg, (240, 240, 235))
        _ellipse(img, eye, (0.024 * scale, 0.024 * scale), deg, _shade(hair, 0.6))
        _ellipse(img, eye, (0.01 * scale, 0.01 * scale), deg, (10, 10, 10))
        brow = local(rx * 0.9 * math.sin(sgn * eye_phi + yaw), -ry * 0.22)
        cv2.ellipse(img, tuple(int(v) for v in _fixed(brow)),
                    (round(0.06 * scale * squash * _FIXED), round(0.02 * scale * _FIXED)), deg,
                    200, 340, _shade(hair, 0.9), max(1, round(scale * 0.012)), cv2.LINE_AA,
                    _SHIFT)
    nose = kp[_K["nose"]]
    bridge = local(rx * 0.9 * math.sin(yaw), ry * 0.02)
    cv2.line(img, _fixed(bridge), _fixed(nose), _shade(skin, 0.78), max(1, round(scale * 0.012)),
             cv2.LINE_AA, _SHIFT)
    _ellipse(img, nose, (0.035 * scale, 0.022 * scale), deg, _shade(skin, 0.85))
    _ellipse(img, nose, (0.012 * scale, 0.012 * scale), deg, _shade(skin, 0.55))
    mouth = local(rx * 0.95 * math.sin(yaw), ry * 0.55)
    cv2.ellipse(img, tuple(int(v) for v in _fixed(mouth)),
                (round(0.07 * scale * _FIXED), round(0.025 * scale * _FIXED)), deg, 10, 170,
                _mix(skin, (150, 40, 50), 0.6), max(1, round(scale * 0.014)), cv2.LINE_AA, _SHIFT)

    front = [side for side in sides if side not in back]
    for side in front:
        draw_arm(side)
    for side in front:
        paint_hand(side)

    # Face anchors repeat the body's head points.
    for face, body in _FACE_TO_BODY.items():
        kp[face] = kp[body]
        hidden[face] = hidden[body]
    return kp, hidden


# ----------------------------------------------------------------------------- samples


def _label(index: int, kp: np.ndarray, visible: np.ndarray, size: int) -> dict:
    """The JSON label: clamped, rounded keypoints and the person's box."""
    inside = (kp >= 0).all(1) & (kp <= size - 1).all(1)
    clamped = np.clip(kp, 0.0, size - 1.0)
    pts = kp[inside] if inside.any() else clamped
    lo, hi = pts.min(0), pts.max(0)
    pad = (hi - lo) * 0.05  # ~10% larger box in total
    lo = np.clip(lo - pad, 0.0, size - 1.0)
    hi = np.clip(hi + pad, 0.0, size - 1.0)
    # A degenerate box (a single point in the frame) becomes 1 px wide, still inside the image.
    small = hi - lo < 1.0
    lo = np.where(small, np.clip((lo + hi) / 2 - 0.5, 0.0, size - 2.0), lo)
    wh = np.where(small, 1.0, hi - lo)
    return {
        "image": f"{index:06d}.jpg",
        "width": size,
        "height": size,
        "keypoints": [
            {"name": name, "x": round(float(x), 2), "y": round(float(y), 2), "visible": int(v)}
            for name, (x, y), v in zip(KEYPOINT_NAMES, clamped, visible, strict=True)
        ],
        "bbox": [round(float(lo[0]), 2), round(float(lo[1]), 2), round(float(wh[0]), 2),
                 round(float(wh[1]), 2)],
    }


def render_sample_with_owners(seed: int, index: int,
                              size: int = 512) -> tuple[np.ndarray, dict, np.ndarray]:
    """`render_sample` plus the (size, size) uint8 map of `PART_IDS` that decided occlusion."""
    if size < 16:
        raise ValueError(f"size={size}; expected at least 16 pixels")
    # Separate streams for background, signer and camera, all derived from (seed, index) only:
    # the signer's pose then does not depend on `size` (the background's draws do).
    streams = np.random.SeedSequence([seed, index]).spawn(3)
    background_rng, signer_rng, camera_rng = (np.random.default_rng(s) for s in streams)
    img = _background(background_rng, size)
    owner = np.zeros((size, size), np.uint8)
    kp, hidden = _draw_signer(signer_rng, img, owner)
    img = _postprocess(camera_rng, img)
    visible = keypoint_visibility(kp, owner) & ~hidden
    for face, body in _FACE_TO_BODY.items():  # identical by construction; keep them so
        visible[face] = visible[body]
    return img, _label(index, kp, visible, size), owner


def render_sample(seed: int, index: int, size: int = 512) -> tuple[np.ndarray, dict]:
    """Render sample `index` of `seed`: the RGB uint8 (size, size, 3) image and its label dict."""
    img, label, _ = render_sample_with_owners(seed, index, size)
    return img, label


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see a half-written file."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_sample(out_dir: str, seed: int, size: int, index: int) -> int:
    """Render and write one image/label pair; the label goes last so it implies a whole image."""
    img, label = render_sample(seed, index, size)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for sample {index}")
    root = Path(out_dir)
    _write_atomic(root / "images" / label["image"], jpeg.tobytes())
    _write_atomic(root / "labels" / f"{index:06d}.json", json.dumps(label).encode())
    return index


def _init_worker() -> None:
    """Pool initializer: one OpenCV thread per process, the processes are the parallelism."""
    cv2.setNumThreads(1)


def generate_dataset(out_dir: str | os.PathLike, num: int, seed: int, size: int = 512,
                     workers: int | None = None, start_index: int = 0, *,
                     overwrite: bool = False, progress: bool = False) -> None:
    """Write samples start_index .. start_index+num-1 of `seed` to out_dir/{images,labels}."""
    if num < 0 or seed < 0 or start_index < 0:
        raise ValueError(f"num={num}, seed={seed}, start_index={start_index}; expected >= 0")
    if size < 16:
        raise ValueError(f"size={size}; expected at least 16 pixels")
    root = Path(out_dir)
    labels = root / "labels"
    if labels.is_dir() and any(labels.iterdir()) and not overwrite:
        raise FileExistsError(f"{labels} already holds labels; refusing to overwrite them "
                              "(pass --overwrite / overwrite=True to write over them)")
    (root / "images").mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, max(num, 1)))
    indices = range(start_index, start_index + num)
    # Workers must find the job by its importable name, also when this file runs as __main__.
    this = importlib.import_module("signlang_jax.synth")
    job = partial(this._write_sample, str(root), seed, size)

    from tqdm import tqdm  # only needed here; keeps `render_sample` importable without it

    bar = tqdm(total=num, unit="img", disable=not progress, file=sys.stderr)
    try:
        if workers == 1:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                for _ in map(job, indices):
                    bar.update()
            finally:
                cv2.setNumThreads(threads)
        else:
            # forkserver: safe even if the caller has threads (JAX, OpenCV) running, unlike fork,
            # and workers fork from one server process, so they start faster than with spawn.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            chunk = max(1, min(16, num // (workers * 8)))
            with ctx.Pool(workers, initializer=this._init_worker) as pool:
                for _ in pool.imap_unordered(job, indices, chunksize=chunk):
                    bar.update()
    finally:
        bar.close()


# ----------------------------------------------------------------------------- CLI


def _positive(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}; expected an integer >= 1")
    return value


def _non_negative(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}; expected an integer >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of `python -m signlang_jax.synth`."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.synth",
        description="Write a synthetic dataset of a procedurally drawn signer: "
        "DIR/images/NNNNNN.jpg and DIR/labels/NNNNNN.json with the 64 keypoints of "
        "signlang_jax.keypoints. The same --seed gives identical files for any --workers.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output dataset folder")
    parser.add_argument("--num", required=True, type=_non_negative, metavar="N",
                        help="number of samples to write")
    parser.add_argument("--seed", required=True, type=_non_negative, metavar="S",
                        help="dataset seed; sample i depends only on (seed, i)")
    parser.add_argument("--size", type=_positive, default=512,
                        help="image width and height in pixels (default: 512)")
    parser.add_argument("--workers", type=_positive, default=None,
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--start-index", type=_non_negative, default=0,
                        help="index of the first sample, for writing a dataset in parts "
                        "(default: 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into DIR even if DIR/labels is not empty (files with the "
                        "same names are replaced, others are kept)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        generate_dataset(args.out, args.num, args.seed, size=args.size, workers=args.workers,
                         start_index=args.start_index, overwrite=args.overwrite, progress=True)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

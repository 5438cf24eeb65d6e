"""The procedural signer: random appearance and pose (`sample_signer`), drawn by `draw_signer`.

A signer is plain data: `look` (colours, proportions, draw order; fixed for a person) and `pose`
(canonical joint positions in units of the shoulder width with the origin between the shoulders,
the body lean, the head turn and the two hands). Stills sample one of each; clips keep the look and
interpolate poses. Sampling draws the random numbers in the order the original one-pass renderer
did, so still images are bitwise unchanged.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, KEYPOINT_NAMES
from signlang_jax.synth.hand import paint_hand, rotate2, sample_hand
from signlang_jax.synth.parts import FACE_TO_BODY, PART_IDS, SIDES
from signlang_jax.synth.scene import (
    FIXED,
    SHIFT,
    colour,
    ellipse,
    fixed,
    hair_colour,
    limb,
    mix,
    shade,
    skin_colour,
)

_K = KEYPOINT_INDEX


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


def reach(rng: np.random.Generator, shoulder: np.ndarray, sgn: float, mode: str,
          target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical elbow, wrist and unit finger direction of one arm reaching for a wrist target."""
    elbow, wrist = _arm(rng, shoulder, sgn, mode, target)
    fdir = (wrist - elbow) / max(float(np.hypot(*(wrist - elbow))), 1e-9)
    if mode == "face":  # hands at the face mostly point up
        fdir = rotate2(np.array([0.0, -1.0]), rng.normal(0.0, 0.5))
    else:  # the wrist bends up to ~45 degrees either way
        fdir = rotate2(fdir, rng.uniform(-0.8, 0.8))
    return elbow, wrist, fdir


def _sample_look(rng: np.random.Generator) -> dict:
    """Colours of skin, clothes and hair."""
    u = rng.uniform
    skin = skin_colour(rng)
    hand_skin = shade(skin, u(0.96, 1.05))
    shirt = colour(rng)
    sleeve = shirt if rng.random() < 0.8 else colour(rng)
    long_sleeves = rng.random() < 0.6
    trousers = colour(rng, (0.1, 0.6))
    return {"skin": skin, "hand_skin": hand_skin, "shirt": shirt, "sleeve": sleeve,
            "long_sleeves": long_sleeves, "trousers": trousers, "hair": hair_colour(rng)}


def _sample_body(rng: np.random.Generator, look: dict) -> tuple[np.ndarray, dict]:
    """Canonical head centre and shoulder, hip, knee and ankle positions (sets look["half"])."""
    u = rng.uniform
    look["half"] = half = 0.5 * u(0.92, 1.08)
    head = np.array([rng.normal(0.0, 0.04), -u(0.6, 0.68)])
    joints: dict[str, np.ndarray] = {}
    for side, sgn in SIDES:
        joints[f"{side}_shoulder"] = np.array([sgn * half, rng.normal(0.0, 0.03)])
        hip = np.array([sgn * u(0.27, 0.34), u(1.5, 1.62)])
        knee = hip + [sgn * u(-0.05, 0.12), u(0.85, 0.95)]
        joints[f"{side}_hip"], joints[f"{side}_knee"] = hip, knee
        joints[f"{side}_ankle"] = knee + [sgn * u(-0.06, 0.06), u(0.82, 0.92)]
    return head, joints


def sample_signer(rng: np.random.Generator) -> dict:
    """A random signer: {"look", "pose", "framing"}; framing is the still's camera, per image side.

    framing: "scale" (shoulder width), "dx" (offset of the shoulders' centre from the middle),
    "dy" (its height below 1.06 shoulder widths), all as fractions of the image side.
    """
    u = rng.uniform
    look = _sample_look(rng)
    framing = {"scale": u(0.21, 0.46)}  # hands are 0.45-0.55 of the shoulder width
    theta = float(np.clip(rng.normal(0.0, 0.12), -0.35, 0.35))
    framing["dx"] = u(-0.14, 0.14)
    framing["dy"] = u(0.02, 0.2)
    head, joints = _sample_body(rng, look)
    # Arms reach for wrist targets: signing space, face, rest or raised. Sometimes the second
    # hand goes near the first so the hands overlap.
    targets = {side: _wrist_target(rng, sgn, head) for side, sgn in SIDES}
    if rng.random() < 0.25:
        a, b = ("left", "right") if rng.random() < 0.5 else ("right", "left")
        if targets[a][1] in ("sign", "face"):
            targets[b] = (targets[a][0] + rng.normal(0.0, 0.15, 2), "sign")
    fdir = {}
    for side, sgn in SIDES:
        target, mode = targets[side]
        joints[f"{side}_elbow"], joints[f"{side}_wrist"], fdir[side] = reach(
            rng, joints[f"{side}_shoulder"], sgn, mode, target)
    # Head features sit on an ellipsoid-ish head of half-axes rx, ry turned by `yaw`.
    look["rx"], look["ry"] = 0.24 * u(0.92, 1.08), 0.31 * u(0.95, 1.05)
    pose = {"theta": theta, "head": head, "joints": joints, "fdir": fdir, "yaw": u(-0.55, 0.55),
            "roll": rng.normal(0.0, 0.1), "tilt": 0.0}
    pose["tilt"] = rng.normal(0.0, 0.03)
    look["long_hair"] = rng.random() < 0.35
    look["collar"] = rng.random() < 0.7
    look["hand_len"] = {side: u(0.45, 0.55) for side, _ in SIDES}
    sides = [side for side, _ in SIDES]
    rng.shuffle(sides)
    look["back"] = [side for side in sides if rng.random() < 0.12]  # hands behind the head
    look["front"] = [side for side in sides if side not in look["back"]]
    pose["hands"] = {side: sample_hand(rng, f"{side}_hand")
                     for side in look["back"] + look["front"]}
    return {"look": look, "pose": pose, "framing": framing}


def still_camera(framing: dict, size: int) -> tuple[np.ndarray, float]:
    """Pixel position of the shoulders' centre and the shoulder width in a square still."""
    scale = size * framing["scale"]
    centre = np.array([size * (0.5 + framing["dx"]), 1.06 * scale + size * framing["dy"]])
    return centre, scale


class _View:
    """Canonical body coordinates to pixels: lean `theta`, then scale and shift by the camera."""

    def __init__(self, pose: dict, look: dict, centre: np.ndarray, scale: float):
        c, s = math.cos(pose["theta"]), math.sin(pose["theta"])
        self.rot = np.array([[c, -s], [s, c]])
        self.centre, self.scale, self.head = centre, scale, pose["head"]
        roll = pose["roll"]
        self.head_rot = np.array([[math.cos(roll), -math.sin(roll)],
                                  [math.sin(roll), math.cos(roll)]])
        self.deg = math.degrees(pose["theta"] + roll)
        self.rx, self.ry, self.yaw = look["rx"], look["ry"], pose["yaw"]

    def to_px(self, p: np.ndarray | list) -> np.ndarray:
        """Canonical point(s) to pixels."""
        return self.centre + self.scale * (np.asarray(p, np.float64) @ self.rot.T)

    def local(self, x: float, y: float) -> np.ndarray:
        """A point of the head (relative to its centre, turned by the head roll) to pixels."""
        return self.to_px(self.head + self.head_rot @ np.array([x, y]))


def _keypoints(pose: dict, view: _View) -> tuple[np.ndarray, np.ndarray]:
    """Body and head keypoints (64, 2) in pixels (hands still zero) and the pose-hidden mask."""
    kp = np.zeros((len(KEYPOINT_NAMES), 2))
    hidden = np.zeros(len(KEYPOINT_NAMES), bool)
    for name, p in pose["joints"].items():
        kp[_K[name]] = view.to_px(p)
    # A feature at longitude phi lands at x = rx * sin(phi + yaw) and is hidden once it turns past
    # the silhouette.
    rx, ry, yaw, tilt, local = view.rx, view.ry, view.yaw, pose["tilt"], view.local
    kp[_K["nose"]] = local(rx * 1.02 * math.sin(yaw), ry * (0.3 + tilt))
    for side, sgn in SIDES:
        kp[_K[f"{side}_eye"]] = local(rx * 0.9 * math.sin(sgn * _EYE_PHI + yaw), ry * tilt)
        a = sgn * _EAR_PHI + yaw
        kp[_K[f"{side}_ear"]] = local(rx * 1.04 * math.sin(a), ry * 0.1)
        hidden[_K[f"{side}_ear"]] = abs(a) > 1.62
    return kp, hidden


_EYE_PHI, _EAR_PHI = 0.5, 1.45


def draw_signer(img: np.ndarray, owner: np.ndarray, signer: dict, centre: np.ndarray,
                scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw `signer` (shoulders' centre at `centre`, shoulder width `scale` px) into img / owner.

    Returns keypoints (64, 2) in pixels and a mask of points hidden by the pose (turned-away ears).
    Draw order: legs, torso, neck, head, arms, hands; a hand in look["back"] goes behind the head.
    """
    look, pose = signer["look"], signer["pose"]
    view = _View(pose, look, centre, scale)
    kp, hidden = _keypoints(pose, view)
    _draw_body(img, owner, kp, look, pose, view)

    def arm_and_hand(side: str, hand: bool) -> None:
        if not hand:
            _draw_arm(img, owner, kp, look, side, scale)
            return
        group = f"{side}_hand"
        xy = paint_hand(img, owner, group, kp[_K[f"{side}_wrist"]],
                        view.rot @ pose["fdir"][side], scale * look["hand_len"][side],
                        look["hand_skin"], pose["hands"][side])
        kp[GROUPS[group].start:GROUPS[group].stop] = xy

    for side in look["back"]:
        arm_and_hand(side, False)
        arm_and_hand(side, True)
    _draw_head(img, owner, kp, hidden, look, view)
    for side in look["front"]:
        arm_and_hand(side, False)
    for side in look["front"]:
        arm_and_hand(side, True)
    # Face anchors repeat the body's head points.
    for face, body in FACE_TO_BODY.items():
        kp[face] = kp[body]
        hidden[face] = hidden[body]
    return kp, hidden


def _draw_body(img: np.ndarray, owner: np.ndarray, kp: np.ndarray, look: dict, pose: dict,
               view: _View) -> None:
    """Legs, long hair behind the back, torso, neck and collar."""
    scale, deg, part, to_px = view.scale, view.deg, PART_IDS, view.to_px
    trousers, shirt, rx, ry = look["trousers"], look["shirt"], view.rx, view.ry
    for side, _ in SIDES:
        hip, knee, ankle = (kp[_K[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        limb(img, owner, hip, knee, 0.16 * scale, 0.12 * scale, trousers, part[f"{side}_thigh"])
        limb(img, owner, knee, ankle, 0.12 * scale, 0.085 * scale, trousers, part[f"{side}_shin"])
        foot = ankle + (view.rot @ np.array([0.0, 0.06])) * scale
        limb(img, owner, ankle, foot, 0.08 * scale, 0.09 * scale, shade(trousers, 0.5),
             part[f"{side}_shin"])
    if look["long_hair"]:  # hair falling behind the shoulders, drawn before the torso covers it
        centre, axes = view.local(0.0, ry * 0.5), (rx * 1.25 * scale, ry * 1.45 * scale)
        ellipse(img, centre, axes, deg, look["hair"])
        ellipse(owner, centre, axes, deg, part["head"])
    # Torso with sloping shoulders (trapezius) so the neck does not sit on a flat bar.
    half = look["half"]
    torso = np.array([
        [-0.2, -0.13], [0.2, -0.13], [half + 0.05, -0.03], [half + 0.08, 0.3], [0.36, 1.62],
        [-0.36, 1.62], [-half - 0.08, 0.3], [-half - 0.05, -0.03],
    ])
    torso_px = fixed(to_px(torso))
    cv2.fillConvexPoly(img, torso_px, shirt, cv2.LINE_AA, SHIFT)
    cv2.fillConvexPoly(owner, torso_px, part["torso"], cv2.LINE_8, SHIFT)
    cv2.polylines(img, [torso_px], True, shade(shirt, 0.6), max(1, round(scale * 0.012)),
                  cv2.LINE_AA, SHIFT)
    neck_top, neck_base = to_px(pose["head"] + [0.0, ry * 0.6]), to_px([0.0, -0.1])
    limb(img, owner, neck_top, neck_base, 0.11 * scale, 0.13 * scale, shade(look["skin"], 0.9),
         part["neck"])
    if look["collar"]:  # a darker band where the neck meets the shirt
        cv2.ellipse(img, tuple(int(v) for v in fixed(neck_base)),
                    (round(0.16 * scale * FIXED), round(0.07 * scale * FIXED)), deg, 0, 180,
                    shade(shirt, 0.55), max(1, round(scale * 0.02)), cv2.LINE_AA, SHIFT)


def _draw_arm(img: np.ndarray, owner: np.ndarray, kp: np.ndarray, look: dict, side: str,
              scale: float) -> None:
    """Upper arm and forearm (sleeve or skin), with a cuff on long sleeves."""
    sh, el, wr = (kp[_K[f"{side}_{j}"]] for j in ("shoulder", "elbow", "wrist"))
    sleeve = look["sleeve"]
    limb(img, owner, sh, el, 0.125 * scale, 0.1 * scale, sleeve, PART_IDS[f"{side}_upper_arm"])
    fore = sleeve if look["long_sleeves"] else shade(look["skin"], 0.97)
    limb(img, owner, el, wr, 0.095 * scale, 0.072 * scale, fore, PART_IDS[f"{side}_forearm"])
    if look["long_sleeves"]:
        cuff = el + (wr - el) * 0.86
        limb(img, None, cuff, wr + (wr - el) * 0.02, 0.08 * scale, 0.078 * scale,
             shade(sleeve, 0.8), PART_IDS[f"{side}_forearm"])


def _draw_head(img: np.ndarray, owner: np.ndarray, kp: np.ndarray, hidden: np.ndarray,
               look: dict, view: _View) -> None:
    """Hair, ears, face, eyes and brows, nose and mouth."""
    scale, deg, local, head_id = view.scale, view.deg, view.local, PART_IDS["head"]
    rx, ry, yaw, skin, hair = view.rx, view.ry, view.yaw, look["skin"], look["hair"]
    hair_back = local(0.0, -ry * 0.12)
    ellipse(img, hair_back, (rx * 1.1 * scale, ry * 1.0 * scale), deg, hair)
    ellipse(owner, hair_back, (rx * 1.1 * scale, ry * 1.0 * scale), deg, head_id)
    for side, _sgn in SIDES:
        ear = kp[_K[f"{side}_ear"]]
        if not hidden[_K[f"{side}_ear"]]:
            ellipse(img, ear, (0.055 * scale, 0.09 * scale), deg, shade(skin, 0.8))
            ellipse(img, ear, (0.04 * scale, 0.075 * scale), deg, skin)
            ellipse(owner, ear, (0.055 * scale, 0.09 * scale), deg, head_id)
    face_centre = local(rx * 0.1 * math.sin(yaw), ry * 0.1)
    ellipse(img, face_centre, (rx * 0.98 * scale, ry * 0.92 * scale), deg, skin)
    ellipse(owner, face_centre, (rx * 0.98 * scale, ry * 0.92 * scale), deg, head_id)
    # fringe: hair covering the top of the face
    ellipse(img, local(0.0, -ry * 0.72), (rx * 0.95 * scale, ry * 0.3 * scale), deg, hair)
    for side, sgn in SIDES:
        eye = kp[_K[f"{side}_eye"]]
        squash = max(0.35, math.cos(sgn * _EYE_PHI + yaw))
        ellipse(img, eye, (0.055 * scale * squash, 0.03 * scale), deg, (240, 240, 235))
        ellipse(img, eye, (0.024 * scale, 0.024 * scale), deg, shade(hair, 0.6))
        ellipse(img, eye, (0.01 * scale, 0.01 * scale), deg, (10, 10, 10))
        brow = local(rx * 0.9 * math.sin(sgn * _EYE_PHI + yaw), -ry * 0.22)
        cv2.ellipse(img, tuple(int(v) for v in fixed(brow)),
                    (round(0.06 * scale * squash * FIXED), round(0.02 * scale * FIXED)), deg,
                    200, 340, shade(hair, 0.9), max(1, round(scale * 0.012)), cv2.LINE_AA, SHIFT)
    nose = kp[_K["nose"]]
    bridge = local(rx * 0.9 * math.sin(yaw), ry * 0.02)
    cv2.line(img, fixed(bridge), fixed(nose), shade(skin, 0.78), max(1, round(scale * 0.012)),
             cv2.LINE_AA, SHIFT)
    ellipse(img, nose, (0.035 * scale, 0.022 * scale), deg, shade(skin, 0.85))
    ellipse(img, nose, (0.012 * scale, 0.012 * scale), deg, shade(skin, 0.55))
    mouth = local(rx * 0.95 * math.sin(yaw), ry * 0.55)
    cv2.ellipse(img, tuple(int(v) for v in fixed(mouth)),
                (round(0.07 * scale * FIXED), round(0.025 * scale * FIXED)), deg, 10, 170,
                mix(skin, (150, 40, 50), 0.6), max(1, round(scale * 0.014)), cv2.LINE_AA, SHIFT)

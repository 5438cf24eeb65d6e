"""The procedural signer: a random pose and appearance, drawn with its 64 keypoints."""

from __future__ import annotations

import math

import cv2
import numpy as np

from signlang_jax.keypoints import GROUPS, KEYPOINT_INDEX, KEYPOINT_NAMES
from signlang_jax.synth.hand import draw_hand, rotate2
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


def draw_signer(rng: np.random.Generator, img: np.ndarray,
                 owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw the signer; return keypoints (64, 2) in pixels and a mask of points hidden by pose."""
    size = img.shape[0]
    kp = np.zeros((len(KEYPOINT_NAMES), 2))
    hidden = np.zeros(len(KEYPOINT_NAMES), bool)
    u = rng.uniform

    # --- colours
    skin = skin_colour(rng)
    hand_skin = shade(skin, u(0.96, 1.05))
    shirt = colour(rng)
    sleeve = shirt if rng.random() < 0.8 else colour(rng)
    long_sleeves = rng.random() < 0.6
    trousers = colour(rng, (0.1, 0.6))
    hair = hair_colour(rng)

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
    for side, sgn in SIDES:
        can[f"{side}_shoulder"] = np.array([sgn * half, rng.normal(0.0, 0.03)])
        hip = np.array([sgn * u(0.27, 0.34), u(1.5, 1.62)])
        knee = hip + [sgn * u(-0.05, 0.12), u(0.85, 0.95)]
        can[f"{side}_hip"], can[f"{side}_knee"] = hip, knee
        can[f"{side}_ankle"] = knee + [sgn * u(-0.06, 0.06), u(0.82, 0.92)]

    # Arms reach for wrist targets: signing space, face, rest or raised. Sometimes the second
    # hand goes near the first so the hands overlap.
    targets = {side: _wrist_target(rng, sgn, head) for side, sgn in SIDES}
    if rng.random() < 0.25:
        a, b = ("left", "right") if rng.random() < 0.5 else ("right", "left")
        if targets[a][1] in ("sign", "face"):
            targets[b] = (targets[a][0] + rng.normal(0.0, 0.15, 2), "sign")
    forearm_dir = {}
    for side, sgn in SIDES:
        elbow, wrist = _arm(rng, can[f"{side}_shoulder"], sgn, targets[side][1], targets[side][0])
        can[f"{side}_elbow"], can[f"{side}_wrist"] = elbow, wrist
        fdir = (wrist - elbow) / max(float(np.hypot(*(wrist - elbow))), 1e-9)
        if targets[side][1] == "face":  # hands at the face mostly point up
            fdir = rotate2(np.array([0.0, -1.0]), rng.normal(0.0, 0.5))
        else:  # the wrist bends up to ~45 degrees either way
            fdir = rotate2(fdir, u(-0.8, 0.8))
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
    for side, sgn in SIDES:
        kp[_K[f"{side}_eye"]] = local(rx * 0.9 * math.sin(sgn * eye_phi + yaw), ry * tilt)
        a = sgn * ear_phi + yaw
        kp[_K[f"{side}_ear"]] = local(rx * 1.04 * math.sin(a), ry * 0.1)
        hidden[_K[f"{side}_ear"]] = abs(a) > 1.62

    # --- draw order: legs, torso, neck, head, arms, hands; a hand may go behind the head.
    deg = math.degrees(theta + roll)
    part = PART_IDS
    for side, _ in SIDES:
        hip, knee, ankle = (kp[_K[f"{side}_{j}"]] for j in ("hip", "knee", "ankle"))
        limb(img, owner, hip, knee, 0.16 * scale, 0.12 * scale, trousers, part[f"{side}_thigh"])
        limb(img, owner, knee, ankle, 0.12 * scale, 0.085 * scale, trousers, part[f"{side}_shin"])
        foot = ankle + (rot @ np.array([0.0, 0.06])) * scale
        limb(img, owner, ankle, foot, 0.08 * scale, 0.09 * scale, shade(trousers, 0.5),
              part[f"{side}_shin"])

    long_hair = rng.random() < 0.35
    if long_hair:  # hair falling behind the shoulders, drawn before the torso covers its end
        ellipse(img, local(0.0, ry * 0.5), (rx * 1.25 * scale, ry * 1.45 * scale), deg, hair)
        ellipse(owner, local(0.0, ry * 0.5), (rx * 1.25 * scale, ry * 1.45 * scale), deg,
                 part["head"])

    # Torso with sloping shoulders (trapezius) so the neck does not sit on a flat bar.
    torso = np.array([
        [-0.2, -0.13], [0.2, -0.13], [half + 0.05, -0.03], [half + 0.08, 0.3], [0.36, 1.62],
        [-0.36, 1.62], [-half - 0.08, 0.3], [-half - 0.05, -0.03],
    ])
    torso_px = fixed(to_px(torso))
    cv2.fillConvexPoly(img, torso_px, shirt, cv2.LINE_AA, SHIFT)
    cv2.fillConvexPoly(owner, torso_px, part["torso"], cv2.LINE_8, SHIFT)
    cv2.polylines(img, [torso_px], True, shade(shirt, 0.6), max(1, round(scale * 0.012)),
                  cv2.LINE_AA, SHIFT)
    neck_top, neck_base = to_px(head + [0.0, ry * 0.6]), to_px([0.0, -0.1])
    limb(img, owner, neck_top, neck_base, 0.11 * scale, 0.13 * scale, shade(skin, 0.9),
          part["neck"])
    if rng.random() < 0.7:  # collar: a darker band where the neck meets the shirt
        cv2.ellipse(img, tuple(int(v) for v in fixed(neck_base)),
                    (round(0.16 * scale * FIXED), round(0.07 * scale * FIXED)), deg, 0, 180,
                    shade(shirt, 0.55), max(1, round(scale * 0.02)), cv2.LINE_AA, SHIFT)

    def draw_arm(side: str) -> None:
        sh, el, wr = (kp[_K[f"{side}_{j}"]] for j in ("shoulder", "elbow", "wrist"))
        limb(img, owner, sh, el, 0.125 * scale, 0.1 * scale, sleeve, part[f"{side}_upper_arm"])
        fore = sleeve if long_sleeves else shade(skin, 0.97)
        limb(img, owner, el, wr, 0.095 * scale, 0.072 * scale, fore, part[f"{side}_forearm"])
        if long_sleeves:  # cuff
            cuff = el + (wr - el) * 0.86
            limb(img, None, cuff, wr + (wr - el) * 0.02, 0.08 * scale, 0.078 * scale,
                  shade(sleeve, 0.8), part[f"{side}_forearm"])

    hand_len = {side: scale * u(0.45, 0.55) for side, _ in SIDES}

    def paint_hand(side: str) -> None:
        group = f"{side}_hand"
        xy = draw_hand(rng, img, owner, group, kp[_K[f"{side}_wrist"]], forearm_dir[side],
                        hand_len[side], hand_skin)
        kp[GROUPS[group].start:GROUPS[group].stop] = xy

    sides = [side for side, _ in SIDES]
    rng.shuffle(sides)
    back = [side for side in sides if rng.random() < 0.12]  # hands behind the head
    for side in back:
        draw_arm(side)
        paint_hand(side)

    hair_back = local(0.0, -ry * 0.12)
    ellipse(img, hair_back, (rx * 1.1 * scale, ry * 1.0 * scale), deg, hair)
    ellipse(owner, hair_back, (rx * 1.1 * scale, ry * 1.0 * scale), deg, part["head"])
    for side, _sgn in SIDES:
        ear = kp[_K[f"{side}_ear"]]
        if not hidden[_K[f"{side}_ear"]]:
            ellipse(img, ear, (0.055 * scale, 0.09 * scale), deg, shade(skin, 0.8))
            ellipse(img, ear, (0.04 * scale, 0.075 * scale), deg, skin)
            ellipse(owner, ear, (0.055 * scale, 0.09 * scale), deg, part["head"])
    face_centre = local(rx * 0.1 * math.sin(yaw), ry * 0.1)
    ellipse(img, face_centre, (rx * 0.98 * scale, ry * 0.92 * scale), deg, skin)
    ellipse(owner, face_centre, (rx * 0.98 * scale, ry * 0.92 * scale), deg, part["head"])
    # fringe: hair covering the top of the face
    ellipse(img, local(0.0, -ry * 0.72), (rx * 0.95 * scale, ry * 0.3 * scale), deg, hair)
    for side, sgn in SIDES:
        eye = kp[_K[f"{side}_eye"]]
        squash = max(0.35, math.cos(sgn * eye_phi + yaw))
        ellipse(img, eye, (0.055 * scale * squash, 0.03 * scale), deg, (240, 240, 235))
        ellipse(img, eye, (0.024 * scale, 0.024 * scale), deg, shade(hair, 0.6))
        ellipse(img, eye, (0.01 * scale, 0.01 * scale), deg, (10, 10, 10))
        brow = local(rx * 0.9 * math.sin(sgn * eye_phi + yaw), -ry * 0.22)
        cv2.ellipse(img, tuple(int(v) for v in fixed(brow)),
                    (round(0.06 * scale * squash * FIXED), round(0.02 * scale * FIXED)), deg,
                    200, 340, shade(hair, 0.9), max(1, round(scale * 0.012)), cv2.LINE_AA,
                    SHIFT)
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

    front = [side for side in sides if side not in back]
    for side in front:
        draw_arm(side)
    for side in front:
        paint_hand(side)

    # Face anchors repeat the body's head points.
    for face, body in FACE_TO_BODY.items():
        kp[face] = kp[body]
        hidden[face] = hidden[body]
    return kp, hidden

"""The articulated 21-joint hand: handshapes, their 3D joint positions, and drawing one hand."""

from __future__ import annotations

import math

import cv2
import numpy as np

from signlang_jax.keypoints import HAND_JOINTS
from signlang_jax.synth.parts import PART_IDS
from signlang_jax.synth.scene import SHIFT, capsules, ellipse, fill, fixed, mix, shade

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
    # `pinch` is a bool for a still and a weight in [0, 1] while a clip blends two handshapes.
    pinch = float(shape["pinch"])
    if pinch > 0.0:
        pinched = pts.copy()
        _pinch_thumb(pinched)
        pts = pinched if pinch >= 1.0 else pts + (pinched - pts) * pinch
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
    candidates = [rotate2(unit, a) * l1 + base for a in (angle, -angle)]
    elbow = max(candidates, key=lambda c: c[0])  # the joint bulges out on the thumb side
    pts[ip] = [*elbow, (pts[mcp, 2] + target[2]) / 2 + 0.03]
    pts[tip] = [*(base + unit * dist), target[2]]


def rotate2(v: np.ndarray, angle: float) -> np.ndarray:
    """2D vector `v` rotated by `angle` radians."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _rot3(yaw: float, pitch: float) -> np.ndarray:
    """Rotation about the vertical axis (yaw) after one about the horizontal axis (pitch)."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return ry @ rx


def sample_hand(rng: np.random.Generator, group: str) -> dict:
    """Random handshape, 3D orientation (yaw, pitch) and per-finger tints of one hand.

    The tints are drawn in the order the fingers are painted, as `draw_hand` always did, so a
    still's random stream stays the same.
    """
    shape = _handshape(rng)
    yaw = rng.normal(0.0, 0.4) + (math.pi if rng.random() < 0.4 else 0.0)
    pitch = float(np.clip(rng.normal(0.0, 0.35), -0.8, 0.8))
    hand = {"shape": shape, "yaw": yaw, "pitch": pitch, "tints": np.ones(5)}
    geometry = _hand_geometry(hand, group)
    for f in geometry["behind"] + geometry["front"]:
        hand["tints"][f] = rng.uniform(0.93, 1.06)
    return hand


def blend_hands(a: dict, b: dict, t: float) -> dict:
    """The hand `t` of the way from `a` to `b` (angles, curls and orientation; looks from `a`)."""
    sa, sb = a["shape"], b["shape"]
    lerp = lambda x, y: x + (y - x) * t  # noqa: E731
    shape = {key: lerp(np.asarray(sa[key], np.float64), np.asarray(sb[key], np.float64))
             for key in ("flex", "splay", "thumb_psi", "thumb_flex", "thumb_elev", "thumb_front",
                         "pinch")}
    shape["length"] = sa["length"]
    # Turn the hand the short way round: palm-to-back is a forearm rotation, not a full spin.
    turn = (b["yaw"] - a["yaw"] + math.pi) % (2 * math.pi) - math.pi
    return {"shape": shape, "yaw": a["yaw"] + turn * t, "pitch": lerp(a["pitch"], b["pitch"]),
            "tints": a["tints"]}


def _hand_geometry(hand: dict, group: str) -> dict:
    """Rotated 3D joints (21, 3), palm outline and the fingers behind / in front of the palm."""
    shape = hand["shape"]
    pts3 = _hand_points(shape)
    palm3 = np.concatenate(
        [pts3[_PALM_HULL_JOINTS], np.c_[_PALM_EXTRA, np.zeros(len(_PALM_EXTRA))]]
    )
    if group.startswith("left"):  # the canonical hand is a right hand; mirror for the left one
        pts3, palm3 = pts3 * [-1, 1, 1], palm3 * [-1, 1, 1]
    # Palm or back to the camera, tilted: a rotation then an orthographic projection gives the
    # foreshortening of a hand seen at an angle.
    rot = _rot3(hand["yaw"], hand["pitch"])
    pts3, palm3 = pts3 @ rot.T, palm3 @ rot.T
    z = pts3[:, 2]
    palm_z = float(z[_PALM_HULL_JOINTS].mean())
    order = sorted(range(5), key=lambda f: z[_CHAINS[f]].mean() + (shape["thumb_front"] if f == 0
                                                                      else 0.0))
    behind = [f for f in order if z[_CHAINS[f]].mean() < palm_z - 0.06]
    front = [f for f in order if f not in behind]
    return {"pts3": pts3, "palm3": palm3, "palm_facing": rot[2, 2] > 0, "behind": behind,
            "front": front}


def draw_hand(rng: np.random.Generator, img: np.ndarray, owner: np.ndarray, group: str,
              wrist: np.ndarray, direction: np.ndarray, length: float, skin: tuple) -> np.ndarray:
    """Draw one random articulated hand; return its 21 keypoints (pixels) in schema hand order.

    `group` is "left_hand" or "right_hand" (its id is written into `owner`), `wrist` the wrist
    position in pixels, `direction` a unit vector from the wrist towards the fingers, `length` the
    wrist-to-middle-fingertip length of the extended hand in pixels, `skin` an RGB colour. The
    handshape and the hand's 3D tilt are drawn from `rng` (`sample_hand`).
    """
    return paint_hand(img, owner, group, wrist, direction, length, skin, sample_hand(rng, group))


def paint_hand(img: np.ndarray, owner: np.ndarray, group: str, wrist: np.ndarray,
               direction: np.ndarray, length: float, skin: tuple, hand: dict) -> np.ndarray:
    """Draw the hand `hand` (from `sample_hand` / `blend_hands`); arguments as `draw_hand`."""
    geometry = _hand_geometry(hand, group)
    ux, uy = direction
    plane = np.array([[-uy, -ux], [ux, -uy]])  # maps the canonical finger direction (0,-1) to u
    to_px = lambda p: wrist + length * (p[:, :2] @ plane.T)  # noqa: E731
    xy, palm_xy = to_px(geometry["pts3"]), to_px(geometry["palm3"])
    pid = PART_IDS[group]
    colours = {"skin": skin, "outline": shade(skin, 0.62), "crease": shade(skin, 0.8),
               "tip": mix(skin, (255, 236, 228), 0.45)}
    edge = max(0.7, 0.012 * length)
    for f in geometry["behind"]:
        _draw_finger(img, owner, xy[_CHAINS[f]], _RADII[f] * length, edge, colours,
                     hand["tints"][f], pid)
    _draw_palm(img, owner, xy, palm_xy, geometry["palm_facing"], length, edge, colours,
               math.degrees(math.atan2(uy, ux)), pid)
    for f in geometry["front"]:
        _draw_finger(img, owner, xy[_CHAINS[f]], _RADII[f] * length, edge, colours,
                     hand["tints"][f], pid)
    return xy


def _draw_finger(img: np.ndarray, owner: np.ndarray, chain_xy: np.ndarray, radii: np.ndarray,
                 edge: float, colours: dict, tint: float, pid: int) -> None:
    """One finger: outlined tapered capsules, creases at the inner joints, a lighter tip."""
    radii = np.maximum(radii, 0.6)
    p0, p1 = chain_xy[:-1], chain_xy[1:]
    k = 8 if radii[0] > 4 else 6
    fill(img, owner, capsules(p0, p1, radii[:-1] + edge, radii[1:] + edge, k),
         colours["outline"], pid)
    fill(img, None, capsules(p0, p1, radii[:-1], radii[1:], k), shade(colours["skin"], tint), pid)
    if radii[-1] < 1.5:
        return
    for j in (1, 2):
        d = chain_xy[j + 1] - chain_xy[j - 1]
        d = d / max(float(np.hypot(*d)), 1e-9)
        n = np.array([-d[1], d[0]]) * radii[j] * 0.8
        cv2.line(img, fixed(chain_xy[j] - n), fixed(chain_xy[j] + n), colours["crease"],
                 max(1, round(radii[j] * 0.18)), cv2.LINE_AA, SHIFT)
    d = chain_xy[3] - chain_xy[2]
    angle = math.degrees(math.atan2(d[1], d[0]))
    ellipse(img, chain_xy[3], (radii[3] * 0.62, radii[3] * 0.5), angle, colours["tip"])


def _draw_palm(img: np.ndarray, owner: np.ndarray, xy: np.ndarray, palm_xy: np.ndarray,
               palm_facing: bool, length: float, edge: float, colours: dict,
               knuckle_angle: float, pid: int) -> None:
    """The palm polygon, then palm creases (palm to the camera) or knuckles (back of the hand)."""
    line = cv2.LINE_AA
    hull = cv2.convexHull(fixed(palm_xy))
    cv2.fillConvexPoly(img, hull, colours["skin"], line, SHIFT)
    cv2.fillConvexPoly(owner, hull, pid, cv2.LINE_8, SHIFT)
    cv2.polylines(img, [hull], True, colours["outline"], max(1, round(edge)), line, SHIFT)
    if length * 0.05 < 1.5:
        return
    width = max(1, round(length * 0.008))
    if palm_facing:
        a, b, c = xy[_CHAINS[1, 0]], xy[_CHAINS[4, 0]], xy[_WRIST]
        for t0, t1 in ((0.25, 0.3), (0.4, 0.45)):
            p, q = a + (c - a) * t0, b + (c - b) * t1
            mid = (p + q) / 2 + (c - (a + b) / 2) * 0.08
            cv2.polylines(img, [fixed(np.stack([p, mid, q]))], False, colours["crease"], width,
                          line, SHIFT)
    else:
        for f in range(1, 5):
            r = _RADII[f, 0] * length * 0.45
            ellipse(img, xy[_CHAINS[f, 0]], (r * 0.7, r), knuckle_angle, colours["crease"])

"""Temporally coherent signing: keyframed arm and hand poses, eased transitions, slow drift.

A clip's motion is a timeline of keyframes. Each keyframe holds both arms and hands still for
`HOLD_S`, then moves to the next one over `TRANSITION_S` along a minimum-jerk profile, so
positions, velocities and accelerations are continuous and every move starts and ends at rest.
The dominant hand signs: it goes to the signing space, the face, across the body or onto the other
hand and changes handshape; the other hand often stays put. Body lean and head turn drift slowly
and independently of the keyframes. Everything here is canonical (units of the shoulder width,
see `signlang_jax.synth.signer`); the camera is the caller's.
"""

from __future__ import annotations

import math

import numpy as np

from signlang_jax.synth.hand import blend_hands, rotate2, sample_hand
from signlang_jax.synth.parts import SIDES
from signlang_jax.synth.signer import reach

HOLD_S: tuple[float, float] = (0.1, 0.5)  # a sign's hold, seconds
TRANSITION_S: tuple[float, float] = (0.15, 0.6)  # a movement between holds, seconds
_FAST_S: tuple[float, float] = (0.15, 0.25)  # the quick movements some transitions are
PEAK_SPEED: float = 6.0  # fastest wrist, shoulder widths per second (~2.4 m/s)
_SGN = dict(SIDES)
# Where the dominant hand goes next (mode, probability).
_DOMINANT_MODES = (("sign", 0.55), ("face", 0.17), ("across", 0.1), ("other_hand", 0.1),
                   ("rest", 0.08))


def min_jerk(tau: float) -> float:
    """Minimum-jerk ease from 0 to 1 over tau in [0, 1]: zero velocity and acceleration at ends."""
    tau = min(max(tau, 0.0), 1.0)
    return tau * tau * tau * (10.0 + tau * (-15.0 + 6.0 * tau))


def _lerp_angle(a: float, b: float, t: float) -> float:
    """Angle `t` of the way from a to b, turning the short way round."""
    return a + ((b - a + math.pi) % (2 * math.pi) - math.pi) * t


def _two_link(rng: np.random.Generator, shoulder: np.ndarray, sgn: float,
              target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elbow and wrist with the wrist on `target` (if the arm can reach it).

    The elbow first hangs down and out from the shoulder, foreshortened by a random amount (the
    upper arm points towards the camera); if the forearm cannot reach the target from there, the
    arm is solved at full length with the elbow on the side nearer that hanging elbow.
    """
    l1, l2 = rng.uniform(0.6, 0.68), rng.uniform(0.55, 0.62)
    alpha = math.radians(rng.uniform(-10, 50))  # from straight down, positive outwards
    hanging = shoulder + l1 * rng.uniform(0.55, 1.0) * np.array([sgn * math.sin(alpha),
                                                                 math.cos(alpha)])
    if float(np.hypot(*(target - hanging))) <= l2:
        return hanging, target
    d = target - shoulder
    dist = max(float(np.hypot(*d)), 1e-6)
    unit = d / dist
    dist = min(max(dist, abs(l1 - l2) + 0.02), (l1 + l2) * 0.98)
    angle = math.acos(np.clip((l1 * l1 + dist * dist - l2 * l2) / (2 * l1 * dist), -1.0, 1.0))
    elbows = [shoulder + l1 * rotate2(unit, a) for a in (angle, -angle)]
    elbow = min(elbows, key=lambda e: float(np.hypot(*(e - hanging))))
    return elbow, shoulder + unit * dist


def _side_key(rng: np.random.Generator, joints: dict, side: str, mode: str, target: np.ndarray,
              base_hand: dict, intent: str) -> dict:
    """One arm's keyframe: elbow, wrist, finger direction and a new hand (the clip's looks)."""
    shoulder = joints[f"{side}_shoulder"]
    if mode == "rest":
        elbow, wrist, fdir = reach(rng, shoulder, _SGN[side], mode, target)
    else:
        elbow, wrist = _two_link(rng, shoulder, _SGN[side], target)
        if mode == "face":  # hands at the face mostly point up
            fdir = rotate2(np.array([0.0, -1.0]), rng.normal(0.0, 0.5))
        else:  # the forearm's direction, the wrist bent up to ~35 degrees either way
            fdir = rotate2((wrist - elbow) / float(np.hypot(*(wrist - elbow))),
                           rng.uniform(-0.6, 0.6))
    hand = sample_hand(rng, f"{side}_hand")
    hand["tints"] = base_hand["tints"]  # the same person's fingers in every keyframe
    hand["shape"]["length"] = base_hand["shape"]["length"]
    return {"mode": intent, "elbow": elbow, "wrist": wrist, "fdir": fdir, "hand": hand}


def _target(rng: np.random.Generator, side: str, mode: str, head: np.ndarray,
            other: dict | None) -> tuple[str, np.ndarray]:
    """A wrist target for `mode`, and the arm mode: "sign", "face" or "rest"."""
    sgn = _SGN[side]
    if mode == "face":  # over or beside the face: the hand crosses the face
        return "face", head + np.array([sgn * rng.uniform(-0.25, 0.3), rng.uniform(0.0, 0.45)])
    if mode == "across":  # across the body to the other side of the chest
        return "sign", np.array([-sgn * rng.uniform(0.1, 0.6), rng.uniform(-0.3, 0.8)])
    if mode == "other_hand" and other is not None:
        return "sign", other["wrist"] + rng.normal(0.0, 0.1, 2)
    if mode == "rest":
        return "rest", np.zeros(2)
    # signing space: chin to belly, mostly in front of the chest
    return "sign", np.array([sgn * rng.uniform(-0.3, 0.75), rng.uniform(-0.6, 0.95)])


def _next_key(rng: np.random.Generator, pose: dict, prev: dict | None, dominant: str) -> dict:
    """The next keyframe {side: arm keyframe} after `prev` (None: the clip's first pose)."""
    joints, head, hands = pose["joints"], pose["head"], pose["hands"]
    other_side = next(side for side, _ in SIDES if side != dominant)
    key: dict = {}
    # The other hand: mostly still (a base or resting hand), sometimes signing too.
    r = rng.random()
    if prev is not None and r < 0.5:
        key[other_side] = prev[other_side]
    else:
        mode = "rest" if r > 0.9 else "sign"
        arm_mode, target = _target(rng, other_side, mode, head, None)
        key[other_side] = _side_key(rng, joints, other_side, arm_mode, target,
                                    hands[other_side], mode)
    names, probs = zip(*_DOMINANT_MODES, strict=True)
    mode = "sign" if prev is None else str(rng.choice(names, p=probs))
    if mode == "other_hand" and key[other_side]["mode"] == "rest":
        mode = "sign"  # a hanging hand is no place to sign on
    arm_mode, target = _target(rng, dominant, mode, head, key[other_side])
    key[dominant] = _side_key(rng, joints, dominant, arm_mode, target, hands[dominant], mode)
    if prev is not None and rng.random() < 0.3:  # a movement without a handshape change
        key[dominant]["hand"] = prev[dominant]["hand"]
    return key


def _travel(a: dict, b: dict) -> float:
    """The longest distance a wrist or elbow moves from keyframe a to b (shoulder widths)."""
    return max(float(np.hypot(*(b[side][joint] - a[side][joint])))
               for side, _ in SIDES for joint in ("wrist", "elbow"))


def sample_drift(rng: np.random.Generator) -> dict:
    """Slow sway of the body lean and head (amplitude, frequency in Hz, phase per quantity)."""
    def wave(amplitude: float) -> tuple[float, float, float]:
        return (amplitude * rng.uniform(0.5, 1.0), rng.uniform(0.05, 0.3),
                rng.uniform(0, 2 * math.pi))
    return {"theta": wave(0.03), "yaw": wave(0.25), "roll": wave(0.06), "tilt": wave(0.03),
            "head_x": wave(0.02), "head_y": wave(0.012)}


def sample_motion(rng: np.random.Generator, pose: dict, duration: float) -> dict:
    """The whole motion of a clip of `duration` seconds starting from the signer's `pose`.

    "moves" are the (start, end) times in seconds of the transitions from keys[k] to keys[k+1].
    The clip starts somewhere in the first hold, so frame 0 is not always at a keyframe.
    """
    dominant = "right" if rng.random() < 0.85 else "left"
    keys = [_next_key(rng, pose, None, dominant)]
    moves: list[tuple[float, float]] = []
    t = -rng.uniform(0.0, 0.4)
    while t < duration:
        t += rng.uniform(*HOLD_S)
        keys.append(_next_key(rng, pose, keys[-1], dominant))
        fast = rng.random() < 0.3
        span = rng.uniform(*_FAST_S) if fast else rng.uniform(0.25, TRANSITION_S[1])
        # A long way takes longer: min-jerk peaks at 1.875x the mean speed.
        span = max(span, 1.875 * _travel(keys[-2], keys[-1]) / PEAK_SPEED)
        moves.append((t, t + span))
        t += span
    return {"base": pose, "moves": moves, "keys": keys, "drift": sample_drift(rng),
            "dominant": dominant}


def _wave(params: tuple[float, float, float], t: float) -> float:
    amplitude, freq, phase = params
    return amplitude * math.sin(2 * math.pi * freq * t + phase)


def pose_at(motion: dict, t: float) -> dict:
    """The signer's pose at time `t` seconds (same structure as `sample_signer`'s pose)."""
    moves, keys, base, drift = motion["moves"], motion["keys"], motion["base"], motion["drift"]
    k = 0
    while k < len(moves) and t >= moves[k][1]:
        k += 1
    a = keys[k]
    b, s = a, 0.0
    if k < len(moves) and t > moves[k][0]:
        start, end = moves[k]
        b, s = keys[k + 1], min_jerk((t - start) / (end - start))
    joints = dict(base["joints"])
    fdir, hands = {}, {}
    for side, _ in SIDES:
        ka, kb = a[side], b[side]
        joints[f"{side}_elbow"] = ka["elbow"] + (kb["elbow"] - ka["elbow"]) * s
        joints[f"{side}_wrist"] = ka["wrist"] + (kb["wrist"] - ka["wrist"]) * s
        angle = _lerp_angle(math.atan2(ka["fdir"][1], ka["fdir"][0]),
                            math.atan2(kb["fdir"][1], kb["fdir"][0]), s)
        fdir[side] = np.array([math.cos(angle), math.sin(angle)])
        hands[side] = ka["hand"] if kb["hand"] is ka["hand"] else blend_hands(ka["hand"],
                                                                             kb["hand"], s)
    head = base["head"] + np.array([_wave(drift["head_x"], t), _wave(drift["head_y"], t)])
    return {
        "theta": base["theta"] + _wave(drift["theta"], t),
        "head": head,
        "joints": joints,
        "fdir": fdir,
        "yaw": 0.6 * base["yaw"] + _wave(drift["yaw"], t),  # turned at most ~0.6 rad
        "roll": base["roll"] + _wave(drift["roll"], t),
        "tilt": base["tilt"] + _wave(drift["tilt"], t),
        "hands": hands,
    }

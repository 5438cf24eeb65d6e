"""Synthetic signing clips: video ground truth with per-frame labels of the 64 keypoints.

A clip keeps one signer (skin, clothes, hair, proportions), one background and one camera look for
all its frames; the arms and hands move between keyframes with eased, realistic timing
(`signlang_jax.synth.motion`) while the camera drifts slowly (a smooth pan of a few percent of the
frame and a zoom of a few percent). The signer's height (top of the head to the hips) is a random
fraction of the frame height in `signer_height`, placed anywhere across the frame that keeps the
upper body in view. Frame labels use the dataset schema of the stills, so every clip folder is a
dataset root (`python -m signlang_jax.data.validate --data-root OUT/clip_0000`):

    OUT/clip_NNNN/images/000000.jpg ...   frames
    OUT/clip_NNNN/labels/000000.json ...  labels (image, width, height, keypoints, bbox)
    OUT/clip_NNNN/video.mp4               the same frames (mp4v)
    OUT/clip_NNNN/clip.json               fps, size, seed, index, framing, timing; written last

Clip `i` of seed `s` depends only on `(s, i)` and the arguments. Run
`python -m signlang_jax.synth.clips --out DIR --num N --seed S` (see `--help`), or call
`render_clip` / `generate_clips`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.files import commit, temporary_sibling, write_atomic
from signlang_jax.keypoints import KEYPOINT_INDEX
from signlang_jax.parallel import run_jobs
from signlang_jax.synth.companion import (
    COMPANIONS,
    companion_centre,
    companion_visible,
    draw_companion,
    plan_companion,
)
from signlang_jax.synth.motion import pose_at, sample_motion
from signlang_jax.synth.scene import apply_camera_effects, background, sample_camera_effects
from signlang_jax.synth.signer import draw_signer, sample_signer
from signlang_jax.synth.stills import JPEG_QUALITY, make_label, visibility

MIN_SIDE: int = 32  # smallest frame width or height
DEFAULT_SIGNER_HEIGHT: tuple[float, float] = (0.33, 0.9)
_CLIP_SALT = 0x636C6970  # "clip": clip (s, i) and still (s, i) draw different signers
_HAIR_TOP = 1.12  # top of the hair above the head centre, in head half-heights (ry)


def check_clip_args(width: int, height: int, num_frames: int, fps: float,
                    signer_height: tuple[float, float], companion: str | None = None) -> None:
    """Raise ValueError naming the argument if the clip arguments cannot make a clip."""
    if companion is not None and companion not in COMPANIONS:
        raise ValueError(f"companion={companion!r}; expected one of {', '.join(COMPANIONS)}")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ValueError(f"width={width}, height={height}; both must be at least {MIN_SIDE} px")
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}; expected at least 1")
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps={fps}; expected a positive number")
    lo, hi = signer_height
    if not 0.05 <= lo <= hi <= 1.5:
        raise ValueError(f"signer_height=({lo}, {hi}); expected 0.05 <= low <= high <= 1.5 "
                         "(fractions of the frame height)")


def _sample_camera(rng: np.random.Generator, pose: dict, look: dict, width: int, height: int,
                   signer_height: tuple[float, float]) -> dict:
    """Framing at frame 0 (shoulders' centre in px, shoulder width in px) and the drift's end."""
    fraction = rng.uniform(*signer_height)
    top = pose["head"][1] - _HAIR_TOP * look["ry"]
    hips = (pose["joints"]["left_hip"][1] + pose["joints"]["right_hip"][1]) / 2
    scale = fraction * height / (hips - top)
    # Head near the top for a large signer; a small one may stand lower in the frame.
    top_px = height * rng.uniform(0.02, max(0.03, min(0.3, 1.0 - fraction - 0.02)))
    margin = 1.0 * scale  # shoulders and elbows in frame
    x = rng.uniform(margin, width - margin) if width > 2 * margin else width / 2
    return {"centre": np.array([x, top_px - scale * top]), "scale": scale,
            "signer_height": fraction, "pan": rng.uniform(-0.03, 0.03, 2) * [width, height],
            "zoom": 1.0 + rng.uniform(-0.04, 0.04)}


def plan_clip(seed: int, index: int, width: int = 640, height: int = 360, num_frames: int = 50,
              fps: float = 25.0,
              signer_height: tuple[float, float] = DEFAULT_SIGNER_HEIGHT,
              companion: str | None = None) -> dict:
    """Everything random about a clip: signer, motion, camera, background, camera effects and
    the optional second person (`signlang_jax.synth.companion`)."""
    check_clip_args(width, height, num_frames, fps, signer_height, companion)
    # A fourth stream for the companion: the first three, and so a one-person clip, are the same
    # with or without it.
    streams = np.random.SeedSequence([seed, index, _CLIP_SALT]).spawn(4)
    background_rng, signer_rng, camera_rng, companion_rng = (np.random.default_rng(s)
                                                             for s in streams)
    signer = sample_signer(signer_rng)
    look = signer["look"]
    # A signing hand passes in front of the face, never behind the head.
    look["front"], look["back"] = look["back"] + look["front"], []
    duration = num_frames / fps
    motion = sample_motion(signer_rng, signer["pose"], duration)
    camera = _sample_camera(camera_rng, signer["pose"], look, width, height, signer_height)
    side = math.ceil(1.2 * max(width, height))  # room for the pan and zoom-out
    return {"seed": seed, "index": index, "width": width, "height": height,
            "num_frames": num_frames, "fps": fps, "look": look, "motion": motion,
            "camera": camera, "effects": sample_camera_effects(camera_rng),
            "background": background(background_rng, side),
            "companion": None if companion is None else plan_companion(
                companion_rng, companion, camera, width, height, duration)}


def _camera_at(plan: dict, t: float) -> tuple[float, np.ndarray]:
    """Zoom factor about the frame centre and pan (px) at time t: a smooth ramp over the clip."""
    camera = plan["camera"]
    tau = min(t * plan["fps"] / max(plan["num_frames"] - 1, 1), 1.0)
    ease = (1.0 - math.cos(math.pi * tau)) / 2
    return 1.0 + (camera["zoom"] - 1.0) * ease, camera["pan"] * ease


def _background_view(plan: dict, zoom: float, pan: np.ndarray) -> np.ndarray:
    """The fixed background as the drifting camera sees it (frame 0 sees its middle)."""
    bg, width, height = plan["background"], plan["width"], plan["height"]
    mid = np.array([width, height]) / 2
    offset = (np.array(bg.shape[1::-1]) - [width, height]) / 2
    # frame pixel f shows world point mid + (f - mid - pan) / zoom, at background pixel + offset.
    shift = mid - (mid + pan) / zoom + offset
    matrix = np.array([[1 / zoom, 0, shift[0]], [0, 1 / zoom, shift[1]]])
    return cv2.warpAffine(bg, matrix, (width, height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


def render_frame(plan: dict, frame: int) -> tuple[np.ndarray, dict, np.ndarray]:
    """Frame `frame` of a planned clip: RGB uint8 (H, W, 3), its label, the (H, W) owner map.

    With a companion the label also holds "others": [{"keypoints": [[x, y, visible] x 64]}],
    the second person's points (not part of the dataset schema; readers ignore it).
    """
    width, height = plan["width"], plan["height"]
    t = frame / plan["fps"]
    zoom, pan = _camera_at(plan, t)
    mid = np.array([width, height]) / 2

    def to_frame(world: np.ndarray) -> np.ndarray:
        return mid + zoom * (world - mid) + pan

    img = _background_view(plan, zoom, pan)
    companion = plan.get("companion")
    if companion is not None:  # behind the signer: drawn first
        duration = plan["num_frames"] / plan["fps"]
        other_kp, other_visible = draw_companion(
            img, companion, t, to_frame(companion_centre(companion, t, duration)),
            zoom * companion["scale"])
    owner = np.zeros((height, width), np.uint8)
    signer = {"look": plan["look"], "pose": pose_at(plan["motion"], t)}
    kp, hidden = draw_signer(img, owner, signer, to_frame(plan["camera"]["centre"]),
                             zoom * plan["camera"]["scale"])
    noise_rng = np.random.default_rng([plan["seed"], plan["index"], _CLIP_SALT, 1, frame])
    img = apply_camera_effects(img, plan["effects"], noise_rng)
    visible = visibility(kp, hidden, owner)
    label = make_label(f"{frame:06d}.jpg", kp, visible, width, height)
    if companion is not None:
        seen = companion_visible(other_kp, other_visible, owner)
        label["others"] = [{"keypoints": [[round(float(x), 2), round(float(y), 2), int(v)]
                                          for (x, y), v in zip(other_kp, seen, strict=True)]}]
    return img, label, owner


def render_clip_with_owners(seed: int, index: int, width: int = 640, height: int = 360,
                            num_frames: int = 50, fps: float = 25.0,
                            signer_height: tuple[float, float] = DEFAULT_SIGNER_HEIGHT,
                            companion: str | None = None,
                            ) -> tuple[np.ndarray, list[dict], dict, np.ndarray]:
    """`render_clip` plus the (T, H, W) uint8 owner maps that decided visibility."""
    plan = plan_clip(seed, index, width, height, num_frames, fps, signer_height, companion)
    frames, labels, owners = zip(*(render_frame(plan, f) for f in range(num_frames)), strict=True)
    return np.stack(frames), list(labels), clip_info(plan, signer_height), np.stack(owners)


def render_clip(seed: int, index: int, width: int = 640, height: int = 360, num_frames: int = 50,
                fps: float = 25.0, signer_height: tuple[float, float] = DEFAULT_SIGNER_HEIGHT,
                companion: str | None = None) -> tuple[np.ndarray, list[dict], dict]:
    """Clip `index` of `seed`: RGB uint8 frames (T, H, W, 3), T label dicts, the clip.json dict."""
    frames, labels, info, _ = render_clip_with_owners(seed, index, width, height, num_frames, fps,
                                                      signer_height, companion)
    return frames, labels, info


def clip_info(plan: dict, signer_height: tuple[float, float]) -> dict:
    """The clip.json record of a planned clip."""
    camera, motion = plan["camera"], plan["motion"]
    keys = motion["keys"]
    return {
        "seed": plan["seed"], "index": plan["index"], "fps": plan["fps"],
        "width": plan["width"], "height": plan["height"], "num_frames": plan["num_frames"],
        "signer_height": round(float(camera["signer_height"]), 4),
        "signer_height_range": [float(v) for v in signer_height],
        "shoulder_width_px": round(float(camera["scale"]), 2),
        "camera_pan_px": [round(float(v), 2) for v in camera["pan"]],
        "camera_zoom": round(float(camera["zoom"]), 4),
        "dominant_hand": motion["dominant"],
        # Movements between keyframes (seconds) and where each keyframe puts the hands.
        "moves": [[round(a, 3), round(b, 3)] for a, b in motion["moves"]],
        "keyframe_modes": [{side: key[side]["mode"] for side in ("left", "right")} for key in keys],
        "images": "images", "labels": "labels", "video": "video.mp4",
        "keypoint_names": list(KEYPOINT_INDEX),
        "companion": None if plan.get("companion") is None else plan["companion"]["kind"],
    }


def clip_dir(out_dir: str | os.PathLike, index: int) -> Path:
    """The folder of clip `index` under out_dir."""
    return Path(out_dir) / f"clip_{index:04d}"


def write_clip(out_dir: str, seed: int, width: int, height: int, num_frames: int, fps: float,
               signer_height: tuple[float, float], overwrite: bool, companion: str | None,
               index: int) -> bool:
    """Render and write one clip folder; False if a complete one (with clip.json) was there."""
    root = clip_dir(out_dir, index)
    if (root / "clip.json").is_file() and not overwrite:
        return False
    for sub in ("images", "labels"):  # an earlier, unfinished or longer clip must not linger
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    (root / "clip.json").unlink(missing_ok=True)
    plan = plan_clip(seed, index, width, height, num_frames, fps, signer_height, companion)
    tmp_video = temporary_sibling(root / "video.mp4")
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v video to {tmp_video}")
    try:
        for frame in range(num_frames):
            img, label, _ = render_frame(plan, frame)
            bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for clip {index} frame {frame}")
            write_atomic(root / "images" / label["image"], jpeg.tobytes())
            write_atomic(root / "labels" / f"{frame:06d}.json", json.dumps(label).encode())
            writer.write(bgr)
    except BaseException:
        writer.release()
        tmp_video.unlink(missing_ok=True)  # never a stray partial video beside the frames
        raise
    writer.release()
    commit(tmp_video, root / "video.mp4")
    # Last: its presence means the clip is complete.
    write_atomic(root / "clip.json", json.dumps(clip_info(plan, signer_height), indent=1).encode())
    return True


def generate_clips(out_dir: str | os.PathLike, num: int, seed: int, width: int = 640,
                   height: int = 360, num_frames: int = 50, fps: float = 25.0,
                   workers: int | None = None, start_index: int = 0, *,
                   signer_height: tuple[float, float] = DEFAULT_SIGNER_HEIGHT,
                   overwrite: bool = False, progress: bool = False,
                   companion: str | None = None) -> int:
    """Write clips start_index .. start_index+num-1 of `seed` under out_dir; return how many.

    Complete clips (with clip.json) are skipped unless `overwrite`, so an interrupted run resumes.
    """
    if num < 0 or seed < 0 or start_index < 0:
        raise ValueError(f"num={num}, seed={seed}, start_index={start_index}; expected >= 0")
    check_clip_args(width, height, num_frames, fps, signer_height, companion)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, max(num, 1)))
    # Workers find the job by its importable name, also when this file runs as __main__.
    from signlang_jax.synth import clips as this

    job = partial(this.write_clip, str(out_dir), seed, width, height, num_frames, fps,
                  tuple(signer_height), overwrite, companion)
    indices = range(start_index, start_index + num)

    # only needed here; keeps `render_clip` importable without tqdm
    from signlang_jax.progress import progress as progress_bar

    written = 0
    with progress_bar(total=num, unit="clip", disable=not progress, file=sys.stderr) as bar:
        for done in run_jobs(job, indices, workers):
            written += done
            bar.update()
    return written


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of `python -m signlang_jax.synth.clips`."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.synth.clips",
        description="Write synthetic signing clips: DIR/clip_NNNN/{images/*.jpg, labels/*.json, "
        "video.mp4, clip.json}. Each clip folder is a dataset root of the 64-keypoint schema "
        "with one label per frame. Complete clips (with clip.json) are skipped on a re-run.")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--num", required=True, type=int, metavar="N", help="number of clips")
    parser.add_argument("--seed", required=True, type=int, metavar="S",
                        help="seed; clip i depends only on (seed, i) and the other arguments")
    parser.add_argument("--width", type=int, default=640,
                        help=f"frame width in pixels, >= {MIN_SIDE} (default: 640)")
    parser.add_argument("--height", type=int, default=360,
                        help=f"frame height in pixels, >= {MIN_SIDE} (default: 360; "
                        "480x360 is 4:3)")
    parser.add_argument("--frames", type=int, default=50, help="frames per clip (default: 50)")
    parser.add_argument("--fps", type=float, default=25.0,
                        help="frame rate of the motion and the video (default: 25)")
    parser.add_argument("--signer-height", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        default=DEFAULT_SIGNER_HEIGHT,
                        help="range of the signer's height (top of the head to the hips) as a "
                        "fraction of the frame height (default: 0.33 0.9)")
    parser.add_argument("--companion", choices=COMPANIONS, default=None,
                        help="add a second, smaller person behind the signer: 'beside' stands "
                        "and signs on the roomier side, 'behind' walks across the frame "
                        "(labels stay the signer's; each label's 'others' holds theirs)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: the number of CPUs)")
    parser.add_argument("--start-index", type=int, default=0,
                        help="index of the first clip, for writing a set in parts (default: 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="render complete clips again instead of skipping them")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers {args.workers}; expected at least 1", file=sys.stderr)
        return 2
    try:
        written = generate_clips(args.out, args.num, args.seed, args.width, args.height,
                                 args.frames, args.fps, args.workers, args.start_index,
                                 signer_height=tuple(args.signer_height),
                                 overwrite=args.overwrite, progress=True,
                                 companion=args.companion)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{written} clips written, {args.num - written} complete ones skipped in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

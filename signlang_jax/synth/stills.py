"""Still images of the procedural signer: one sample, and a whole dataset written in parallel.

Writes `images/NNNNNN.jpg` + `labels/NNNNNN.json` in the layout `signlang_jax.data.dataset` reads.
Sample `i` of seed `s` depends only on `(s, i)`, which makes the output byte-identical for any
number of worker processes.
"""

from __future__ import annotations

import json
import os
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from signlang_jax.files import write_atomic
from signlang_jax.keypoints import KEYPOINT_NAMES
from signlang_jax.parallel import run_jobs
from signlang_jax.synth.parts import FACE_TO_BODY, keypoint_visibility
from signlang_jax.synth.scene import background, postprocess
from signlang_jax.synth.signer import draw_signer, sample_signer, still_camera

JPEG_QUALITY: int = 92


def make_label(image: str, kp: np.ndarray, visible: np.ndarray, width: int,
               height: int) -> dict:
    """The JSON label: keypoints clamped into the frame and rounded, and the person's box."""
    hi_xy = np.array([width - 1.0, height - 1.0])
    inside = (kp >= 0).all(1) & (kp <= hi_xy).all(1)
    clamped = np.clip(kp, 0.0, hi_xy)
    pts = kp[inside] if inside.any() else clamped
    lo, hi = pts.min(0), pts.max(0)
    pad = (hi - lo) * 0.05  # ~10% larger box in total
    lo = np.clip(lo - pad, 0.0, hi_xy)
    hi = np.clip(hi + pad, 0.0, hi_xy)
    # A degenerate box (a single point in the frame) becomes 1 px wide, still inside the image.
    small = hi - lo < 1.0
    lo = np.where(small, np.clip((lo + hi) / 2 - 0.5, 0.0, hi_xy - 1.0), lo)
    wh = np.where(small, 1.0, hi - lo)
    return {
        "image": image,
        "width": width,
        "height": height,
        "keypoints": [
            {"name": name, "x": round(float(x), 2), "y": round(float(y), 2), "visible": int(v)}
            for name, (x, y), v in zip(KEYPOINT_NAMES, clamped, visible, strict=True)
        ],
        "bbox": [round(float(lo[0]), 2), round(float(lo[1]), 2), round(float(wh[0]), 2),
                 round(float(wh[1]), 2)],
    }


def visibility(kp: np.ndarray, hidden: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Bool (64,): in the frame, on top in the owner map and not hidden by the pose."""
    visible = keypoint_visibility(kp, owner) & ~hidden
    for face, body in FACE_TO_BODY.items():  # identical by construction; keep them so
        visible[face] = visible[body]
    return visible


def draw_other_person(img: np.ndarray, rng: np.random.Generator, centre: np.ndarray,
                      scale: float) -> None:
    """Draw a second, smaller person (0.5-0.9 of the signer's shoulder width) beside or partly
    behind the signer (shoulders `centre`, width `scale`): the signer, drawn next, covers them.

    A top-down model sees neighbours in its crops (an interpreter, someone passing behind); a
    model that never saw two people puts the signer's hidden hand on the other one's.
    """
    person = sample_signer(rng)
    other_scale = scale * rng.uniform(0.5, 0.9)
    offset = rng.uniform(0.6, 2.4) * scale * (1.0 if rng.random() < 0.5 else -1.0)
    other_centre = centre + [offset, rng.uniform(-0.4, 0.3) * scale]
    draw_signer(img, np.zeros(img.shape[:2], np.uint8), person, other_centre, other_scale)


def render_sample_with_owners(seed: int, index: int, size: int = 512, others: float = 0.0
                              ) -> tuple[np.ndarray, dict, np.ndarray]:
    """`render_sample` plus the (size, size) uint8 map of `PART_IDS` that decided occlusion."""
    if size < 16:
        raise ValueError(f"size={size}; expected at least 16 pixels")
    if not 0.0 <= others <= 1.0:
        raise ValueError(f"others={others}; expected a fraction of samples in [0, 1]")
    # Separate streams for background, signer, camera and the second person, all derived from
    # (seed, index) only: the signer's pose then does not depend on `size` (the background's
    # draws do), and a sample without a second person is the same whatever `others` is.
    streams = np.random.SeedSequence([seed, index]).spawn(4)
    background_rng, signer_rng, camera_rng, other_rng = (np.random.default_rng(s)
                                                         for s in streams)
    img = background(background_rng, size)
    owner = np.zeros((size, size), np.uint8)
    signer = sample_signer(signer_rng)
    camera = still_camera(signer["framing"], size)
    if other_rng.random() < others:
        draw_other_person(img, other_rng, *camera)
    kp, hidden = draw_signer(img, owner, signer, *camera)
    img = postprocess(camera_rng, img)
    visible = visibility(kp, hidden, owner)
    return img, make_label(f"{index:06d}.jpg", kp, visible, size, size), owner


def render_sample(seed: int, index: int, size: int = 512, others: float = 0.0
                  ) -> tuple[np.ndarray, dict]:
    """Render sample `index` of `seed`: the RGB uint8 (size, size, 3) image and its label dict;
    a fraction `others` of the samples also show a second person behind the signer."""
    img, label, _ = render_sample_with_owners(seed, index, size, others)
    return img, label


def write_sample(out_dir: str, seed: int, size: int, others: float, index: int) -> int:
    """Render and write one image/label pair; the label goes last so it implies a whole image."""
    img, label = render_sample(seed, index, size, others)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for sample {index}")
    root = Path(out_dir)
    write_atomic(root / "images" / label["image"], jpeg.tobytes())
    write_atomic(root / "labels" / f"{index:06d}.json", json.dumps(label).encode())
    return index


def generate_dataset(out_dir: str | os.PathLike, num: int, seed: int, size: int = 512,
                     workers: int | None = None, start_index: int = 0, *,
                     overwrite: bool = False, progress: bool = False, others: float = 0.0
                     ) -> None:
    """Write samples start_index .. start_index+num-1 of `seed` to out_dir/{images,labels}
    (a fraction `others` of them with a second person behind the signer)."""
    if num < 0 or seed < 0 or start_index < 0:
        raise ValueError(f"num={num}, seed={seed}, start_index={start_index}; expected >= 0")
    if not 0.0 <= others <= 1.0:
        raise ValueError(f"others={others}; expected a fraction of samples in [0, 1]")
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
    job = partial(write_sample, str(root), seed, size, others)

    # only needed here; keeps `render_sample` importable without tqdm
    from signlang_jax.progress import progress as progress_bar

    with progress_bar(total=num, unit="img", disable=not progress, file=sys.stderr) as bar:
        for _ in run_jobs(job, indices, workers, chunksize=max(1, min(16, num // (workers * 8)))):
            bar.update()


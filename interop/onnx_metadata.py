"""What an exported ONNX file says about itself, and the images it is verified on.

The whole-body graph carries the 64-point schema (names, flip permutation, groups, skeleton);
the hand graph (config.task = "hand") carries the 21 hand joints, the hand skeleton and the crop
rule it was trained with (`signlang_jax.crop.HandCropRule`), so that an onnxruntime-only
deployment (`signlang_jax.inference.onnx_runtime`) cuts the same crops as the JAX predictor.
`ExportError` is the export's error (`interop.to_onnx`, `interop.verify_onnx`).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

INPUT_NAME, HEATMAPS_NAME, KEYPOINTS_NAME = "images", "heatmaps", "keypoints"
VERIFY_SEED = 20240601  # rendered verification images: not the training data's seed
VERIFY_COUNT = 3  # images per verification set (the largest verified batch)


class ExportError(RuntimeError):
    """The export cannot be done; the message says what to change."""


def model_metadata(config: object, *, image_size: int, heatmap_size: int, with_keypoints: bool,
                   fp16: bool, step: int) -> dict[str, str]:
    """The metadata_props of the exported model: everything a deployment needs to know."""
    from signlang_jax.keypoints import (
        FLIP_PERMUTATION,
        GROUPS,
        HAND_EDGES,
        HAND_JOINTS,
        KEYPOINT_NAMES,
        SKELETON,
    )
    from signlang_jax.models import IMAGENET_MEAN, IMAGENET_STD

    task = config.get("task", "wholebody")
    udp = bool(config.model.get("udp", False))  # codec.py: the two heatmap conventions
    scale = (f"{image_size - 1} / {heatmap_size - 1}" if udp
             else f"{image_size} / {heatmap_size}")
    outputs = [HEATMAPS_NAME, KEYPOINTS_NAME] if with_keypoints else [HEATMAPS_NAME]
    meta = {
        "producer": "signlang-jax interop.to_onnx",
        "task": task,
        "input": f"{INPUT_NAME}: float32 (N, 3, {image_size}, {image_size}) RGB in [0, 1], "
                 "ImageNet normalisation inside the graph",
        "outputs": json.dumps(outputs),
        "input_size": str(image_size),
        "heatmap_size": str(heatmap_size),
        "num_keypoints": str(config.model.num_keypoints),
        "sigma": str(config.model.sigma),
        "backbone": config.model.name,
        "width": str(config.model.width),
        "precision": "float16" if fp16 else "float32",
        "normalization_mean": json.dumps(list(IMAGENET_MEAN)),
        "normalization_std": json.dumps(list(IMAGENET_STD)),
        "heatmap_coordinates": "udp" if udp else "plain",
        "decoding": "argmax per channel, score = max, 0.25 px shift toward the larger neighbour "
                    f"where both exist, x_input = x_heatmap * {scale}",
        "checkpoint_step": str(step),
    }
    if task == "hand":
        from signlang_jax.crop import MIRRORED_HAND
        from signlang_jax.data.hand_crops import hand_crop_rule

        meta.update({
            "keypoint_names": json.dumps(list(HAND_JOINTS)),
            "skeleton": json.dumps([list(edge) for edge in HAND_EDGES]),
            "hand_crop_rule": json.dumps(dataclasses.asdict(hand_crop_rule(config))),
            "mirrored_hand": MIRRORED_HAND,
            "input_crop": "a square crop of the original frame around one hand "
                          "(signlang_jax.crop.hand_region); right hands mirrored into left",
        })
    else:
        meta.update({
            "keypoint_names": json.dumps(list(KEYPOINT_NAMES)),
            "flip_permutation": json.dumps(list(FLIP_PERMUTATION)),
            "keypoint_groups": json.dumps({g: [r.start, r.stop] for g, r in GROUPS.items()}),
            "skeleton": json.dumps([list(edge) for edge in SKELETON]),
        })
    return meta


def verification_images(image_size: int, config: object) -> dict[str, np.ndarray]:
    """{"random", "real"}: VERIFY_COUNT float32 (S, S, 3) images in [0, 1] each, NHWC.

    "real" are rendered signers resized to S, or for a hand model the hand crops of rendered
    signers cut with the model's own crop rule.
    """
    import cv2

    from signlang_jax.synth import render_sample

    rng = np.random.default_rng(VERIFY_SEED)
    real = []
    index = 0
    while len(real) < VERIFY_COUNT:
        image, label = render_sample(VERIFY_SEED, index, 256)
        if config.get("task", "wholebody") == "hand":
            from signlang_jax.data.hand_crops import crop_hand, hand_crop_rule

            keypoints = np.array([[p["x"], p["y"], p["visible"]] for p in label["keypoints"]],
                                 np.float32)
            hand = ("left_hand", "right_hand")[index % 2]
            real.append(crop_hand(image, keypoints, hand, image_size,
                                  hand_crop_rule(config))["image"])
        else:
            interpolation = cv2.INTER_AREA if image_size < 256 else cv2.INTER_LINEAR
            real.append(cv2.resize(image, (image_size, image_size), interpolation=interpolation))
        index += 1
    return {"random": rng.random((VERIFY_COUNT, image_size, image_size, 3), dtype=np.float32),
            "real": np.stack(real).astype(np.float32) / 255.0}

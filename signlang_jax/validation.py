"""Validation during training: the val split through the jitted eval step, scored on the host.

Metrics (the names `train.best_metric` may choose from are `METRIC_NAMES`):

    val/loss                          heatmap MSE (visible points) per sample
    val/pck@T, val/pck@T/GROUP        PCK with the whole-body box, T in PCK_THRESHOLDS
    val/hand_pck@0.2[/left_hand|/right_hand]
                                      PCK@0.2 normalised by each hand's own box (the hand
                                      benchmarks' convention): responds to errors at hand scale

The hand model (config.task = "hand") is scored on its val crops (`HAND_METRIC_NAMES`):
val/loss, val/hand_pck@0.1 and val/hand_pck@0.2 with the hand's own box. Both ratios are
invariant to the crop's scale, so they equal the same PCK in the original image; they use the
labelled hand region (the two-stage figures with the body model's regions come from evaluate).

With several processes each reads its shard and every process gets the same global metrics.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np

from signlang_jax.data.pipeline import make_dataset
from signlang_jax.distributed import gather_hosts
from signlang_jax.keypoints import GROUPS, embed_hand
from signlang_jax.metrics import mean_pck, part_pck_counts, pck_counts, pck_summary

PCK_THRESHOLDS = (0.05, 0.1)
HAND_PCK_THRESHOLD = 0.2
HANDS = ("left_hand", "right_hand")
METRIC_NAMES: tuple[str, ...] = (
    "val/loss",
    *(f"val/pck@{t}" + suffix for t in PCK_THRESHOLDS
      for suffix in ("", *(f"/{g}" for g in GROUPS))),
    *(f"val/hand_pck@{HAND_PCK_THRESHOLD}" + suffix
      for suffix in ("", *(f"/{h}" for h in HANDS))),
)

HAND_METRIC_NAMES: tuple[str, ...] = (
    "val/loss", "val/hand_pck@0.1", f"val/hand_pck@{HAND_PCK_THRESHOLD}",
)


def metric_names(task: str) -> tuple[str, ...]:
    """The validation metrics of `config.task`: whole-body or hand-model names."""
    return HAND_METRIC_NAMES if task == "hand" else METRIC_NAMES


def metric_mode(name: str) -> str:
    """'min' for losses, 'max' for accuracies: how `name` ranks checkpoints."""
    return "min" if name.endswith("loss") else "max"


def val_batches(config: ml_collections.ConfigDict, samples: Sequence) -> Iterator[dict]:
    """This process's val batches, padded with fully masked batches to the same count everywhere.

    Every process must call the (collective) eval step equally often, but with P processes the
    shards hold ceil(N / P) or floor(N / P) samples and can differ by one batch.
    """
    count = jax.process_count()
    if len(samples) < count:
        raise ValueError(f"the val split has {len(samples)} samples, fewer than the {count} "
                         "processes")
    local_batch = config.train.batch_size // count
    num_batches = math.ceil(math.ceil(len(samples) / count) / local_batch)
    template = None
    for template in make_dataset(config, "val", source=samples, num_workers=0):
        num_batches -= 1
        yield template
    empty = {k: np.zeros_like(v) for k, v in template.items()}
    empty["index"][:] = -1
    for _ in range(num_batches):
        yield empty


def validate(eval_step: object, place: object, state: object, config: ml_collections.ConfigDict,
             samples: Sequence, max_images: int = 0) -> tuple[dict, list]:
    """Val loss and PCK (overall, per group, hands with their own box) over the whole split.

    `eval_step(state, device_batch) -> (keypoints (N, K, 3), per-sample loss (N,))`; `place`
    puts a host batch on the devices. Returns (metrics, images): up to `max_images` (image,
    predicted keypoints) pairs for drawing.
    """
    if config.get("task", "wholebody") == "hand":
        return validate_hands(eval_step, place, state, config, samples, max_images)
    num_keypoints = len(samples[0]["keypoints"])
    zeros = np.zeros(num_keypoints, np.int64)
    counts = {t: (zeros, zeros) for t in PCK_THRESHOLDS}
    hand_counts = {h: (zeros[:len(GROUPS[h])], zeros[:len(GROUPS[h])]) for h in HANDS}
    scored = _Scored()
    for predicted, batch in _scored_batches(eval_step, place, state, config, samples,
                                            max_images, lambda points: points, scored):
        mask = batch["mask"]
        for t in PCK_THRESHOLDS:
            correct, total = pck_counts(predicted, batch["keypoints"], batch["bbox"], t, mask)
            counts[t] = (counts[t][0] + correct, counts[t][1] + total)
        for hand in HANDS:
            correct, total = part_pck_counts(predicted, batch["keypoints"], GROUPS[hand],
                                             HAND_PCK_THRESHOLD, mask)
            hand_counts[hand] = (hand_counts[hand][0] + correct, hand_counts[hand][1] + total)
    metrics = {"val/loss": scored.loss_sum / max(scored.count, 1)}
    for t in PCK_THRESHOLDS:
        summary = pck_summary(*counts[t])
        for group in ("all", *GROUPS):
            metrics[f"val/pck@{t}" if group == "all" else f"val/pck@{t}/{group}"] = summary[group]
    metrics.update(hand_pck(hand_counts))
    return metrics, scored.images


@dataclasses.dataclass
class _Scored:
    """What `_scored_batches` sums up: the val loss over unmasked samples, images to draw."""

    loss_sum: float = 0.0
    count: int = 0
    images: list = dataclasses.field(default_factory=list)


def _scored_batches(eval_step: object, place: object, state: object,
                    config: ml_collections.ConfigDict, samples: Sequence, max_images: int,
                    draw: Callable[[np.ndarray], np.ndarray], scored: _Scored
                    ) -> Iterator[tuple[np.ndarray, dict]]:
    """(predicted keypoints, global labels) per val batch; loss and images go into `scored`.

    `draw(points)` turns one sample's prediction into the (64, 3) points drawn for it.
    """
    for local in val_batches(config, samples):
        predicted, per_sample = eval_step(state, place(local))
        predicted, per_sample = np.asarray(predicted), np.asarray(per_sample)
        # The step's outputs are global (replicated); so must the labels they are scored on be.
        wanted = len(scored.images) < max_images
        keys = ("keypoints", "bbox", "mask") + (("image",) if wanted else ())
        batch = gather_hosts({k: local[k] for k in keys})
        mask = batch["mask"]
        scored.loss_sum += float(per_sample[mask].sum())
        scored.count += int(mask.sum())
        for i in np.flatnonzero(mask)[: max(0, max_images - len(scored.images))]:
            scored.images.append((batch["image"][i], draw(predicted[i])))
        yield predicted, batch


def hand_pck(hand_counts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """val/hand_pck@0.2 (mean over both hands' keypoints) and per hand, from per-point counts.

    As `pck_summary`: accuracy per keypoint, averaged over keypoints with a visible sample; NaN
    where a hand (or both) never had a box.
    """
    name = f"val/hand_pck@{HAND_PCK_THRESHOLD}"
    per_point = {}
    for hand, (correct, total) in hand_counts.items():
        with np.errstate(invalid="ignore", divide="ignore"):
            per_point[hand] = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    out = {}
    for hand, values in per_point.items():
        out[f"{name}/{hand}"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
    both = np.concatenate(list(per_point.values()))
    out[name] = float(np.nanmean(both)) if np.isfinite(both).any() else math.nan
    return out


def validate_hands(eval_step: object, place: object, state: object,
                   config: ml_collections.ConfigDict, samples: Sequence,
                   max_images: int = 0) -> tuple[dict, list]:
    """The hand model's val loss and own-box PCK@0.1/0.2 over the split's hand crops."""
    thresholds = (0.1, HAND_PCK_THRESHOLD)
    counts = {t: (0, 0) for t in thresholds}
    scored = _Scored()
    for predicted, batch in _scored_batches(eval_step, place, state, config, samples,
                                            max_images, embed_hand, scored):
        for t in thresholds:
            correct, total = pck_counts(predicted, batch["keypoints"], batch["bbox"], t,
                                        batch["mask"])
            counts[t] = (counts[t][0] + correct, counts[t][1] + total)
    metrics = {"val/loss": scored.loss_sum / max(scored.count, 1)}
    for t in thresholds:
        metrics[f"val/hand_pck@{t}"] = mean_pck(*counts[t])
    return metrics, scored.images

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

Training on a mixture (config.data.sources) gives every metric per source too, named
val/NAME/... (e.g. val/coco_wb/pck@0.1), next to the overall val/... over all sources' val
samples together.

With several processes each reads its shard and every process gets the same global metrics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import jax
import ml_collections
import numpy as np

from signlang_jax.crop import HANDS
from signlang_jax.data.pipeline import make_dataset
from signlang_jax.errors import ConfigError
from signlang_jax.evaluation.metrics import (
    HAND_PCK_THRESHOLD,
    hand_pck,
    mean_pck,
    part_pck_counts,
    pck_counts,
    pck_summary,
)
from signlang_jax.keypoints import GROUPS, embed_hand
from signlang_jax.training.distributed import gather_hosts

PCK_THRESHOLDS = (0.05, 0.1)
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
    predicted keypoints) pairs for drawing. For a `MixtureSource` (config.data.sources) every
    metric also comes per source, as val/NAME/... (`source_metrics`).
    """
    hands = config.get("task", "wholebody") == "hand"
    tally = _HandTally if hands else _BodyTally
    groups = _source_groups(samples)
    tallies = {name: tally(len(samples[0]["keypoints"])) for name in groups}
    images: list = []
    draw = embed_hand if hands else (lambda points: points)
    for predicted, per_sample, batch in _scored_batches(eval_step, place, state, config, samples,
                                                        max_images, draw, images):
        sources = samples.source_ids(batch["index"]) if len(groups) > 1 else None
        for name, k in groups.items():
            mask = batch["mask"] if k is None else batch["mask"] & (sources == k)
            tallies[name].add(predicted, per_sample, batch, mask)
    metrics = {}
    for name, counts in tallies.items():
        metrics.update(counts.metrics("val/" if name == "" else f"val/{name}/"))
    return metrics, images


def _source_groups(samples: Sequence) -> dict[str, int | None]:
    """{'' (all samples): None, and per source of a mixture its name: its id}."""
    names = getattr(samples, "names", None)
    return {"": None, **({n: k for k, n in enumerate(names)} if names else {})}


def split_source_metric(name: str) -> tuple[str, str]:
    """('NAME', 'val/METRIC') of a per-source metric 'val/NAME/METRIC', else ('', name)."""
    parts = name.split("/")
    overall = "/".join(["val", *parts[2:]])
    if len(parts) >= 3 and parts[0] == "val" and overall in (*METRIC_NAMES, *HAND_METRIC_NAMES):
        return parts[1], overall
    return "", name


def check_metric_source(metric: str, samples: Sequence) -> None:
    """Raise `ConfigError` if `metric` is val/NAME/... for a source that is not validated."""
    source, _ = split_source_metric(metric)
    names = getattr(samples, "names", ())
    if source and source not in names:
        raise ConfigError(f"train.best_metric={metric!r}: source {source!r} is not validated "
                          f"(it has no val samples); validated: {', '.join(names) or 'none'}")


def source_metrics(metrics: dict[str, float], name: str) -> dict[str, float]:
    """The per-source metrics of source `name`, under their overall names (val/pck@0.1, ...)."""
    prefix = f"val/{name}/"
    return {"val/" + k.removeprefix(prefix): v for k, v in metrics.items()
            if k.startswith(prefix)}


class _BodyTally:
    """Per-point PCK counts (whole-body box, hands' own boxes) and loss over masked samples."""

    def __init__(self, num_keypoints: int) -> None:
        zeros = np.zeros(num_keypoints, np.int64)
        self.counts = {t: (zeros, zeros) for t in PCK_THRESHOLDS}
        self.hands = {h: (zeros[:len(GROUPS[h])], zeros[:len(GROUPS[h])]) for h in HANDS}
        self.loss_sum, self.count = 0.0, 0

    def add(self, predicted: np.ndarray, per_sample: np.ndarray, batch: dict,
            mask: np.ndarray) -> None:
        """Count one batch's samples where `mask`."""
        self.loss_sum += float(per_sample[mask].sum())
        self.count += int(mask.sum())
        for t in PCK_THRESHOLDS:
            correct, total = pck_counts(predicted, batch["keypoints"], batch["bbox"], t, mask)
            self.counts[t] = (self.counts[t][0] + correct, self.counts[t][1] + total)
        for hand in HANDS:
            correct, total = part_pck_counts(predicted, batch["keypoints"], GROUPS[hand],
                                             HAND_PCK_THRESHOLD, mask)
            self.hands[hand] = (self.hands[hand][0] + correct, self.hands[hand][1] + total)

    def metrics(self, prefix: str) -> dict[str, float]:
        """The metrics, named `prefix` + loss, pck@T, pck@T/GROUP, hand_pck@0.2[/HAND]."""
        metrics = {"val/loss": self.loss_sum / max(self.count, 1)}
        for t in PCK_THRESHOLDS:
            summary = pck_summary(*self.counts[t])
            for group in ("all", *GROUPS):
                metrics[f"val/pck@{t}" + ("" if group == "all" else f"/{group}")] = summary[group]
        metrics.update(hand_pck(self.hands))
        return {prefix + k.removeprefix("val/"): v for k, v in metrics.items()}


class _HandTally:
    """The hand model's counts: own-box PCK@0.1 and @0.2 and loss over masked crops."""

    thresholds = (0.1, HAND_PCK_THRESHOLD)

    def __init__(self, num_keypoints: int) -> None:
        self.counts = {t: (0, 0) for t in self.thresholds}
        self.loss_sum, self.count = 0.0, 0

    def add(self, predicted: np.ndarray, per_sample: np.ndarray, batch: dict,
            mask: np.ndarray) -> None:
        """Count one batch's crops where `mask`."""
        self.loss_sum += float(per_sample[mask].sum())
        self.count += int(mask.sum())
        for t in self.thresholds:
            correct, total = pck_counts(predicted, batch["keypoints"], batch["bbox"], t, mask)
            self.counts[t] = (self.counts[t][0] + correct, self.counts[t][1] + total)

    def metrics(self, prefix: str) -> dict[str, float]:
        """The metrics, named `prefix` + loss, hand_pck@0.1, hand_pck@0.2."""
        metrics = {prefix + "loss": self.loss_sum / max(self.count, 1)}
        for t in self.thresholds:
            metrics[f"{prefix}hand_pck@{t}"] = mean_pck(*self.counts[t])
        return metrics


def _scored_batches(eval_step: object, place: object, state: object,
                    config: ml_collections.ConfigDict, samples: Sequence, max_images: int,
                    draw: Callable[[np.ndarray], np.ndarray], images: list
                    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict]]:
    """(predicted keypoints, per-sample loss, global labels) per val batch.

    Up to `max_images` (image, drawn points) pairs go into `images`; `draw(points)` turns one
    sample's prediction into the (64, 3) points drawn for it.
    """
    for local in val_batches(config, samples):
        predicted, per_sample = eval_step(state, place(local))
        predicted, per_sample = np.asarray(predicted), np.asarray(per_sample)
        # The step's outputs are global (replicated); so must the labels they are scored on be.
        wanted = len(images) < max_images
        keys = ("keypoints", "bbox", "mask", "index") + (("image",) if wanted else ())
        batch = gather_hosts({k: local[k] for k in keys})
        for i in np.flatnonzero(batch["mask"])[: max(0, max_images - len(images))]:
            images.append((batch["image"][i], draw(predicted[i])))
        yield predicted, per_sample, batch

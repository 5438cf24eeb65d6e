"""The grain input pipeline: records -> shuffled, augmented, compact uint8 batches.

    records (`sources.records_for(config, split)`: a folder, a pack, a mixture; hand records
      for task='hand') -> [process shard]
      -> train: per-epoch shuffle -> repeat (a mixture: each source so, interleaved by weight)
         val:   fixed order, one pass
      -> decode + affine (scale, rotation, shift, flip) + photometric jitter -> batch
      -> worker processes with prefetch

This module never chooses the data: it reads whatever records it is given, so a folder, a pack
and a mixture go through the same code. A batch is a dict of numpy arrays (N = per-process batch
size, S = `config.data.image_size`):

    image:     uint8   (N, S, S, 3)  RGB
    keypoints: float32 (N, 64, 3)    x, y in the augmented image's pixels, weight (0 = ignore)
    bbox:      float32 (N, 4)        person box x, y, w, h in the augmented image's pixels
    affine:    float32 (N, 2, 3)     original image pixel -> augmented image pixel
    index:     int32   (N,)          position of the sample in its split (-1 for padding)
    mask:      bool    (N,)          False for the padding that completes the last val batch

With config.task = "hand" the records are hand records (`HandSource`: left hand, mirrored right
hand) and the map cuts a C x C hand crop from the original image instead of letterboxing
(`signlang_jax.data.hand_crops`): image (N, C, C, 3), keypoints (N, 21, 3), bbox = the hand's
own box, affine = original pixel -> crop pixel.

Heatmaps are not built here: the train step renders them on the device from `keypoints`, so a
sample costs S*S*3 bytes plus 1 KB on the way to the device instead of float heatmaps.

Determinism: output depends on the seed, the data and `config.data.num_workers` (grain
interleaves the workers' outputs), so the worker count is part of the iterator state and a
resume with another count is refused.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence

import cv2
import grain
import ml_collections
import numpy as np
from absl import flags

from signlang_jax.crop import HandCropRule
from signlang_jax.data.augment import AugmentParams, augment_sample
from signlang_jax.data.dataset import Sample
from signlang_jax.data.hand_crops import (
    HandJitter,
    HandSource,
    crop_hand,
    hand_crop_rule,
    hand_jitter,
    training_weights,
)
from signlang_jax.data.mixture import MixtureSource, mixed_train_dataset
from signlang_jax.data.sources import (
    Records,
    SampleSource,
    for_task,
    record_image,
    records_for,
)


def augment_params(config: ml_collections.ConfigDict) -> AugmentParams:
    """The augmentation ranges of `config.augment`."""
    return AugmentParams(**{f: config.augment[f] for f in AugmentParams.__dataclass_fields__})


def load_sample(record: dict, rng: np.random.Generator | None, size: int,
                params: AugmentParams, occluded_weight: float = 0.0) -> dict[str, np.ndarray]:
    """Decode and letterbox one record; augment it when `rng` is given (training).

    In training, hidden points inside the image get loss weight `occluded_weight`
    (`config.data.occluded_weight`, for labels whose hidden points are exact).
    """
    image = record_image(record)
    keypoints = record["keypoints"]
    if rng is not None and occluded_weight > 0:
        keypoints = keypoints.copy()
        keypoints[:, 2] = training_weights(keypoints, image.shape[1], image.shape[0],
                                           occluded_weight)
    out = augment_sample(image, keypoints, record["bbox"], size, rng, params)
    out["index"] = np.int32(record["index"])
    out["mask"] = np.bool_(True)
    return out


def load_hand_sample(record: dict, rng: np.random.Generator | None, size: int,
                     params: AugmentParams, rule: HandCropRule, jitter: HandJitter,
                     occluded_weight: float = 0.0) -> dict[str, np.ndarray]:
    """Decode one hand record (`HandSource`) and crop its hand; jittered when `rng` is given."""
    out = crop_hand(record_image(record), record["keypoints"], record["hand"], size, rule, rng,
                    jitter, params, occluded_weight)
    out["index"] = np.int32(record["index"])
    out["mask"] = np.bool_(True)
    return out


def _train_map(record: dict, rng: np.random.Generator, load: Callable) -> dict[str, np.ndarray]:
    return load(record, rng)


def _eval_map(record: dict, load: Callable) -> dict[str, np.ndarray]:
    return load(record, None)


def sample_loader(config: ml_collections.ConfigDict) -> Callable:
    """`load(record, rng)` for `config.task`: letterboxed images or hand crops."""
    size, params = config.data.image_size, augment_params(config)
    occluded_weight = config.data.get("occluded_weight", 0.0)
    if config.get("task", "wholebody") == "hand":
        return functools.partial(load_hand_sample, size=size, params=params,
                                 rule=hand_crop_rule(config), jitter=hand_jitter(config),
                                 occluded_weight=occluded_weight)
    return functools.partial(load_sample, size=size, params=params,
                             occluded_weight=occluded_weight)


def pad_batch(batch: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """Pad a short last batch to `batch_size` with masked zeros, so shapes never change."""
    n = len(batch["mask"])
    if n == batch_size:
        return batch
    padded = {k: np.concatenate([v, np.zeros((batch_size - n, *v.shape[1:]), v.dtype)])
              for k, v in batch.items()}
    padded["index"][n:] = -1
    return padded


def _init_worker(worker_index: int, worker_count: int) -> None:
    # One OpenCV thread per worker: the workers already use every core.
    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group: the main process shuts the workers down (and
    # unlinks their shared memory); a worker dying on its own would print a traceback and leak.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A trainer killed hard (SIGKILL, OOM killer) cannot stop its workers, and they would run
    # forever, one more pair per crash (benchmarks/chaos.py --kill-mode trainer counted 16
    # after 8 kills). Each worker leaves when its parent is gone; grain's resource tracker
    # then sees its pipes close, unlinks the shared memory and exits too.
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True,
                     name="exit-when-orphaned").start()


def _exit_when_orphaned(parent: int, poll_s: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(0)


def _records(config: ml_collections.ConfigDict, split: str, source: Records | None,
             samples: Sequence[Sample] | None) -> Records:
    """What `make_dataset` reads: `source`, else `samples`, else `records_for(config, split)`."""
    if samples is not None:
        if source is not None:
            raise ValueError("make_dataset takes samples or source, not both")
        return for_task(config, SampleSource(samples))
    if source is None:
        return records_for(config, split)
    if config.get("task", "wholebody") == "hand" and not isinstance(source, HandSource
                                                                     | MixtureSource):
        raise ValueError("config.task='hand' reads hand records: pass the source of "
                         "records_for(config, split), not one dataset's own records")
    return source


def _shard(shard_index: int | None, shard_count: int | None) -> tuple[int, int]:
    """(index, count) of this process's shard: the arguments, else the JAX process's."""
    if shard_index is not None and shard_count is not None:
        return shard_index, shard_count
    # Imported here, not at the top: grain's worker processes import this module to run the
    # map, and JAX costs each of them a second and memory they never use.
    import jax

    return jax.process_index(), jax.process_count()


def train_stream(source: Records, seed: int, shard_index: int, shard_count: int,
                 num_epochs: int | None, local_batch: int) -> grain.MapDataset:
    """This process's training records in order: reshuffled every epoch, repeated.

    A `MixtureSource` is drawn from by its weights (`mixture.mixed_train_dataset`).
    """
    shard = grain.MapDataset.source(source)[shard_index::shard_count]
    if len(shard) < local_batch:
        raise ValueError(f"the train split has {len(shard)} samples for this process, fewer "
                         f"than one batch of {local_batch}")
    if isinstance(source, MixtureSource):
        return mixed_train_dataset(source, seed, shard_index, shard_count, num_epochs)
    return shard.shuffle(seed=seed).repeat(num_epochs)


def _in_workers(batches: grain.IterDataset, num_workers: int, buffer_size: int
                ) -> grain.IterDataset:
    """`batches` made by `num_workers` worker processes (0: in this process)."""
    if num_workers == 0:
        return batches
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags
        flags.FLAGS.mark_as_parsed()
    options = grain.MultiprocessingOptions(num_workers=num_workers,
                                           per_worker_buffer_size=buffer_size)
    return batches.mp_prefetch(options, worker_init_fn=_init_worker)


def make_dataset(config: ml_collections.ConfigDict, split: str, *,
                 source: Records | None = None, samples: Sequence[Sample] | None = None,
                 batch_size: int | None = None, seed: int | None = None,
                 shard_index: int | None = None, shard_count: int | None = None,
                 num_workers: int | None = None, num_epochs: int | None = None
                 ) -> grain.IterDataset:
    """The batched grain dataset of `split` for this process.

    Reads `source` (default `records_for(config, split)`), or the folder `samples` of a test.
    Train: `train_stream` order, augmented, repeated `num_epochs` times (None = forever), last
    partial batch dropped. Val: fixed order, no random augmentation, one pass, last batch padded
    (see `mask`). `batch_size` is the GLOBAL batch (default config.train.batch_size); each of
    the `shard_count` processes (default: JAX processes) gets a disjoint shard and
    batch_size / shard_count samples per batch.
    """
    source = _records(config, split, source, samples)
    shard_index, shard_count = _shard(shard_index, shard_count)
    batch_size = batch_size or config.train.batch_size
    if batch_size % shard_count:
        raise ValueError(f"batch size {batch_size} is not divisible by the {shard_count} "
                         "processes")
    local_batch = batch_size // shard_count
    seed = config.seed if seed is None else seed
    num_workers = config.data.num_workers if num_workers is None else num_workers
    load = sample_loader(config)
    # Each process reads with a few threads (OpenCV releases the GIL); grain's default of 16
    # threads and 500 prefetched samples per worker oversubscribes the cores and the memory.
    read_threads = config.data.read_threads or (1 if num_workers else os.cpu_count() or 1)
    options = grain.ReadOptions(num_threads=read_threads,
                                prefetch_buffer_size=max(2 * local_batch, 16))
    if split == "train":
        records = train_stream(source, seed, shard_index, shard_count, num_epochs, local_batch)
        batches = (records.random_map(functools.partial(_train_map, load=load), seed=seed)
                   .to_iter_dataset(options).batch(local_batch, drop_remainder=True))
    else:
        records = grain.MapDataset.source(source)[shard_index::shard_count]
        batches = (records.map(functools.partial(_eval_map, load=load))
                   .to_iter_dataset(options).batch(local_batch, drop_remainder=False)
                   .map(functools.partial(pad_batch, batch_size=local_batch)))
    return _in_workers(batches, num_workers, config.data.worker_buffer_size)

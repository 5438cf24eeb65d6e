"""The grain input pipeline: validated samples -> shuffled, augmented, compact uint8 batches.

    source (validated split: folder files or a pack, config.data.format) -> [process shard]
      -> per-epoch shuffle -> repeat
         (several sources, config.data.sources: each sharded, shuffled and repeated, then
          interleaved by weight; `signlang_jax.data.mixture`)
      -> decode + affine (scale, rotation, shift, flip) + photometric jitter -> batch
      -> worker processes with prefetch

A batch is a dict of numpy arrays (N = per-process batch size, S = `config.data.image_size`):

    image:     uint8   (N, S, S, 3)  RGB
    keypoints: float32 (N, 64, 3)    x, y in the augmented image's pixels, weight (0 = ignore)
    bbox:      float32 (N, 4)        person box x, y, w, h in the augmented image's pixels
    affine:    float32 (N, 2, 3)     original image pixel -> augmented image pixel
    index:     int32   (N,)          position of the sample in its split (-1 for padding)
    mask:      bool    (N,)          False for the padding that completes the last val batch

With config.task = "hand" every sample gives two records (`HandSource`: left hand, mirrored
right hand) and the map cuts a C x C hand crop from the original image instead of letterboxing
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
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grain
import ml_collections
import numpy as np

from signlang_jax.crop import HandCropRule
from signlang_jax.data.augment import AugmentParams, augment_sample
from signlang_jax.data.dataset import (
    DatasetError,
    Problem,
    Sample,
    decode_image,
    read_image,
    scan_dataset,
    split_samples,
)
from signlang_jax.data.hand_crops import (
    HandJitter,
    HandSource,
    crop_hand,
    hand_crop_rule,
    hand_jitter,
    training_weights,
)
from signlang_jax.data.mixture import (
    MixtureSource,
    mixed_train_dataset,
    mixture_records,
    parse_sources,
)
from signlang_jax.data.report import format_report

FORMATS: tuple[str, ...] = ("folder", "array_record")  # config.data.format


class SampleSource:
    """grain random-access source over validated samples; yields paths and labels, not pixels."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        self._paths = [s.image_path for s in samples]
        self._keypoints = np.stack([s.keypoints for s in samples]) if samples else np.zeros(
            (0, 64, 3), np.float32)
        self._bboxes = np.stack([s.bbox for s in samples]) if samples else np.zeros((0, 4))
        # What the records are: file names and the labels' content (not the image pixels:
        # hashing them would read the dataset; an edited image keeps its name and label).
        digest = hashlib.sha256(json.dumps([os.path.basename(p) for p in self._paths]).encode())
        digest.update(self._keypoints.tobytes())
        digest.update(np.asarray(self._bboxes, np.float32).tobytes())
        self._digest = digest.hexdigest()[:16]

    @property
    def digest(self) -> str:
        """16 hex digits identifying the records (file names, keypoints, boxes)."""
        return self._digest

    def __len__(self) -> int:
        """Number of samples."""
        return len(self._paths)

    def __getitem__(self, index: int) -> dict:
        """The record of sample `index`: its path, keypoints and box."""
        return {"index": index, "path": self._paths[index],
                "keypoints": self._keypoints[index], "bbox": self._bboxes[index]}

    def __repr__(self) -> str:
        # grain compares repr(source) on restore: make it depend on the content only.
        return f"SampleSource(len={len(self)}, digest={self._digest})"


class PackedSource:
    """grain random-access source over one split of a dataset written by `data.pack`.

    Records carry the original encoded image (`image_bytes`) instead of a path; the TFDS reader
    is opened lazily in each process, so the source pickles into grain's worker processes.
    """

    def __init__(self, root: str | os.PathLike, split: str) -> None:
        from signlang_jax.data import pack

        info = pack.open_pack(root)
        if split not in info.num_examples:
            raise DatasetError([Problem(str(info.directory), "", f"has no {split!r} split "
                                        f"(splits: {', '.join(info.num_examples)})",
                                        "missing_split")])
        self._info, self._split = info, split
        self._len = info.num_examples[split]
        self._digest = info.metadata["splits"][split]["digest"]
        self._reader = pack.open_split(info, split)  # fails here, not in a worker, if damaged
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Number of samples."""
        return self._len

    @property
    def digest(self) -> str:
        """The pack's digest of this split (written by `data.pack`)."""
        return self._digest

    def __getitem__(self, index: int) -> dict:
        """The record of sample `index`: its encoded image, file name, keypoints and box."""
        if self._reader is None:
            with self._lock:  # grain reads with several threads
                if self._reader is None:
                    from signlang_jax.data import pack

                    self._reader = pack.open_split(self._info, self._split)
        record = self._reader[index]
        return {"index": index, "image_bytes": record["image_bytes"],
                "file": record["file"].decode(), "keypoints": record["keypoints"],
                "bbox": record["bbox"]}

    def __getstate__(self) -> dict:
        """Pickle without the open reader (grain workers reopen it)."""
        return {**self.__dict__, "_reader": None, "_lock": None}

    def __setstate__(self, state: dict) -> None:
        """Unpickle; the reader is reopened on first access."""
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        # grain compares repr(source) on restore: make it depend on the content only.
        return f"PackedSource(split={self._split}, len={len(self)}, digest={self._digest})"


def augment_params(config: ml_collections.ConfigDict) -> AugmentParams:
    """The augmentation ranges of `config.augment`."""
    return AugmentParams(**{f: config.augment[f] for f in AugmentParams.__dataclass_fields__})


def record_image(record: dict) -> np.ndarray:
    """The RGB uint8 (H, W, 3) image of a record: packed bytes or the folder's file."""
    if "image_bytes" in record:
        return decode_image(record["image_bytes"], record["file"])
    return read_image(record["path"])


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
    import signal

    import cv2

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


def check_format(data: ml_collections.ConfigDict) -> str:
    """`data.format` if it is one of `FORMATS`, else a `ValueError` saying which are."""
    if data.format not in FORMATS:
        raise ValueError(f"data.format={data.format!r} is not one of {', '.join(FORMATS)}")
    return data.format


def load_split(data: ml_collections.ConfigDict, split: str) -> list[Sample]:
    """Validate the folder dataset of `data` (= config.data) and return the samples of `split`.

    Raises `DatasetError` with every problem found if any file is invalid, unless
    `data.skip_invalid`, in which case the report and the skipped files go to stderr.
    """
    if check_format(data) != "folder":
        raise ValueError(f"load_split reads folder datasets, but data.format={data.format!r}: "
                         "use load_records(config.data, split) for any format")
    root = Path(data.root)
    for folder, hint in ((root, "set --config.data.root=DIR to a dataset folder (images/, "
                          "labels/), or render the built-in synthetic data with "
                          "--config.data.synthetic_num=N"),
                         (root / data.images_dir, "check --config.data.images_dir"),
                         (root / data.labels_dir, "check --config.data.labels_dir")):
        if not folder.is_dir():
            raise DatasetError([Problem(str(folder), "", f"is not a directory: {hint}",
                                        "missing_dir")])
    scan = scan_dataset(data.root, data.images_dir, data.labels_dir, decode=data.decode_check)
    if scan.problems:
        if not data.skip_invalid:
            raise DatasetError(scan.problems)
        skipped = sorted({p.file for p in scan.problems})
        print(format_report(scan), file=sys.stderr)
        print(f"skipping {len(skipped)} invalid files (data.skip_invalid=True):\n  "
              + "\n  ".join(skipped), file=sys.stderr)
    samples = split_samples(scan, split, data.val_fraction, strict=not data.skip_invalid)
    if not samples:
        raise DatasetError([Problem(str(scan.root), "", f"the {split!r} split has no valid "
                                    "samples", "empty_split")])
    return samples


def load_records(data: ml_collections.ConfigDict, split: str) -> SampleSource | PackedSource:
    """The grain source of `split` in `data.format`: validated folder samples or a pack.

    Either way `source[i]` is a record dict with `index`, `keypoints` (64, 3) and `bbox` (4,) as
    validated, and the image as `path` (folder) or `image_bytes` + `file` (array_record).
    """
    if check_format(data) == "array_record":
        return PackedSource(data.root, split)
    return SampleSource(load_split(data, split))


def task_records(config: ml_collections.ConfigDict, split: str
                 ) -> SampleSource | PackedSource | HandSource | MixtureSource:
    """The records `config.task` trains on: the split's samples, or two hand records each.

    With `config.data.sources` (`signlang_jax.data.mixture`), a `MixtureSource` over every
    source's split, each read and validated as `data.root` would be. A source without val
    samples (e.g. pseudo-labels whose videos all hashed into train) is trained on but left out
    of validation, with a message; a mixture with no val sample at all is refused.
    """
    hands = config.get("task", "wholebody") == "hand"
    if not parse_sources(config.data.get("sources") or ""):
        records = load_records(config.data, split)
        return HandSource(records) if hands else records
    return mixture_records(config.data, split, load_records, HandSource if hands else None)


def make_dataset(config: ml_collections.ConfigDict, split: str, *,
                 batch_size: int | None = None, seed: int | None = None,
                 shard_index: int | None = None, shard_count: int | None = None,
                 num_workers: int | None = None, num_epochs: int | None = None,
                 samples: Sequence[Sample] | None = None,
                 source: SampleSource | PackedSource | HandSource | MixtureSource | None = None
                 ) -> grain.IterDataset:
    """The batched grain dataset of `split` for this process.

    Train: shuffled every epoch, augmented, repeated `num_epochs` times (None = forever), last
    partial batch dropped; a `MixtureSource` is drawn from by its weights
    (`mixture.mixed_train_dataset`). Val: fixed order, no random augmentation, one pass, last batch
    padded (see `mask`). `batch_size` is the GLOBAL batch (default config.train.batch_size);
    each of the `shard_count` processes (default: JAX processes) gets a disjoint shard and
    batch_size / shard_count samples per batch. The records are `source`, else the folder
    `samples`, else `load_records(config.data, split)` (config.data.format picks the format).
    """
    check_format(config.data)
    if samples is not None and source is not None:
        raise ValueError("make_dataset takes samples or source, not both")
    if shard_index is None or shard_count is None:
        import jax

        shard_index, shard_count = jax.process_index(), jax.process_count()
    batch_size = batch_size or config.train.batch_size
    if batch_size % shard_count:
        raise ValueError(f"batch size {batch_size} is not divisible by the {shard_count} "
                         "processes")
    local_batch = batch_size // shard_count
    seed = config.seed if seed is None else seed
    num_workers = config.data.num_workers if num_workers is None else num_workers
    if source is None:
        source = load_records(config.data, split) if samples is None else SampleSource(samples)
    if config.get("task", "wholebody") == "hand" and not isinstance(source, HandSource
                                                                     | MixtureSource):
        source = HandSource(source)
    load = sample_loader(config)

    # Each process reads with a few threads (OpenCV releases the GIL); grain's default of 16
    # threads and 500 prefetched samples per worker oversubscribes the cores and the memory.
    read_threads = config.data.read_threads or (1 if num_workers else os.cpu_count() or 1)
    read_options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=
                                     max(2 * local_batch, 16))
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    if split == "train":
        if len(ds) < local_batch:
            raise ValueError(f"the train split has {len(ds)} samples for this process, fewer "
                             f"than one batch of {local_batch}")
        if isinstance(source, MixtureSource):
            ds = mixed_train_dataset(source, seed, shard_index, shard_count, num_epochs)
        else:
            ds = ds.shuffle(seed=seed).repeat(num_epochs)
        ds = ds.random_map(functools.partial(_train_map, load=load), seed=seed)
        it_ds = ds.to_iter_dataset(read_options).batch(local_batch, drop_remainder=True)
    else:
        ds = ds.map(functools.partial(_eval_map, load=load))
        it_ds = ds.to_iter_dataset(read_options).batch(local_batch, drop_remainder=False)
        it_ds = it_ds.map(functools.partial(pad_batch, batch_size=local_batch))
    if num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain's workers read absl flags
            flags.FLAGS.mark_as_parsed()
        options = grain.MultiprocessingOptions(
            num_workers=num_workers, per_worker_buffer_size=config.data.worker_buffer_size)
        it_ds = it_ds.mp_prefetch(options, worker_init_fn=_init_worker)
    return it_ds

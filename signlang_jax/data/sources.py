"""Where the training records come from: `records_for(config, split)` decides, from the config.

    config.data.sources set?  -> MixtureSource: each entry's dataset read as below, one after
                                 another (`signlang_jax.data.mixture`); data.root is not read
    else data.root in data.format:
      folder        -> SampleSource: the validated samples of the split (`load_split`)
      array_record  -> PackedSource: one split of a `signlang_jax.data.pack` output
    config.task == "hand"     -> each dataset's records as a HandSource: two hand records per
                                 sample (`signlang_jax.data.hand_crops`)

The input pipeline (`pipeline.make_dataset`) and the checkpointable iterator
(`iterator.make_iterator`) take these records and never look at where they came from. A record
is a dict: `index` (its position in the split), `keypoints` float32 (64, 3), `bbox` float32 (4,)
as validated, and the image as `path` (folder) or `image_bytes` + `file` (pack); `record_image`
decodes either. Hand records add `hand`. Every source has a `digest` of its records (file names
and labels, not pixels), which the iterator's saved position is checked against, and a `repr`
that depends on the content only (grain compares it on restore).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import ml_collections
import numpy as np

from signlang_jax.data import pack
from signlang_jax.data.dataset import Sample, scan_dataset, split_samples
from signlang_jax.data.hand_crops import HandSource
from signlang_jax.data.images import decode_image, read_image
from signlang_jax.data.mixture import MixtureSource, SourceSpec, parse_sources
from signlang_jax.data.problems import DatasetError, Problem
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


Records = SampleSource | PackedSource | HandSource | MixtureSource


def record_image(record: dict) -> np.ndarray:
    """The RGB uint8 (H, W, 3) image of a record: packed bytes or the folder's file."""
    if "image_bytes" in record:
        return decode_image(record["image_bytes"], record["file"])
    return read_image(record["path"])


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
    """The records of `split` of the one dataset `data.root`, in `data.format` (no task, no mix)."""
    if check_format(data) == "array_record":
        return PackedSource(data.root, split)
    return SampleSource(load_split(data, split))


def for_task(config: ml_collections.ConfigDict, records: object) -> object:
    """One dataset's records as `config.task` trains on them: as they are, or two hands each."""
    return HandSource(records) if config.get("task", "wholebody") == "hand" else records


def records_for(config: ml_collections.ConfigDict, split: str) -> Records:
    """The records `config` trains (split='train') or validates ('val') on; see the docstring.

    A mixture source without val samples (e.g. pseudo-labels whose videos all hashed into train)
    is trained on but left out of validation, with a message; no val sample at all is refused.
    """
    specs = parse_sources(config.data.get("sources") or "")
    if not specs:
        return for_task(config, load_records(config.data, split))
    return mixture_records(config.data, split, specs, lambda r: for_task(config, r))


def mixture_records(data: ml_collections.ConfigDict, split: str, specs: Sequence[SourceSpec],
                    wrap: Callable[[object], object]) -> MixtureSource:
    """The `MixtureSource` of `split` over `specs`: each read as `data` with its root, `wrap`ped."""
    parts, kept = [], []
    for spec in specs:
        source_data = data.copy_and_resolve_references()
        with source_data.unlocked():
            source_data.root = spec.root
        try:
            records = load_records(source_data, split)
        except DatasetError as e:
            if split == "val" and {p.kind for p in e.problems} == {"empty_split"}:
                print(f"data.sources: {spec.name!r} ({spec.root}) has no val samples: it is "
                      "trained on, not validated", file=sys.stderr)
                continue
            raise _in_source(e, spec.root) from None
        parts.append(wrap(records))
        kept.append(spec)
    if not parts:
        raise DatasetError([Problem("data.sources", "", f"no source has {split} samples",
                                    "empty_split")])
    return MixtureSource(parts, kept)


def _in_source(error: DatasetError, root: str) -> DatasetError:
    """`error` with its root-relative file names under the source's `root`."""
    problems = []
    for p in error.problems:
        if p.kind == "missing_dir":
            p = dataclasses.replace(p, message="is not a directory (a data.sources folder: "
                                    "check --config.data.sources)")
        elif not (Path(p.file).is_absolute() or Path(p.file) == Path(root)
                  or Path(root) in Path(p.file).parents):
            p = dataclasses.replace(p, file=str(Path(root) / p.file))
        problems.append(p)
    return DatasetError(problems)

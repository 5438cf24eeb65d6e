"""Training on several datasets at once: `config.data.sources`, weights, per-source records.

`data.sources` names the datasets and how often each is drawn, as a string or a list:

    --config.data.sources="runs/demo/data:0.5,coco_wb:0.5"
    config.data.sources = ["synth=runs/demo/data:0.7", "coco=coco_wb:0.3"]   # in a config file

Each entry is `[NAME=]ROOT[:WEIGHT]` (weight 1 when left out; NAME defaults to the folder's
name and labels the per-source validation metrics, `val/NAME/pck@0.1`). Empty = the single
dataset `data.root` (setting both is refused: `config_check`). Every source is read in
`data.format` with the other `data.*` fields, validated as a single dataset is, and keeps its own
train/val split: `signlang_jax.data.sources.records_for` reads them into a `MixtureSource`.

Training draws from the sources in proportion to their weights: grain's `MapDataset.mix`
interleaves each source's own endlessly reshuffled stream, so every stretch of the stream (and
so every batch, up to rounding) holds the weighted share of each source. Validation covers the
val splits of all sources, one after another (`MixtureSource`); the metrics come per source
and over all of them.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import grain
import numpy as np

from signlang_jax.data.problems import DatasetError, Problem

SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # in metric names: no '/', '@', '..'


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One dataset of a mixture: its metric name, folder and sampling weight."""

    name: str
    root: str
    weight: float = 1.0


def _entry(entry: object, where: str) -> SourceSpec:
    """One `[NAME=]ROOT[:WEIGHT]` string (or a (root, weight) pair) as a `SourceSpec`."""
    if isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 2:
        name, rest = "", f"{entry[0]}:{entry[1]}"  # a pair names no source: '=' is the root's
    elif isinstance(entry, str | int | float) and not isinstance(entry, bool):
        text = str(entry).strip()  # config_flags reads a bare number as one
        name, _, rest = text.partition("=") if "=" in text.split(":")[0] else ("", "", text)
    else:
        raise ValueError(f"{where}: {entry!r} is not 'ROOT:WEIGHT' or (ROOT, WEIGHT)")
    root, weight = rest, "1"
    head, colon, tail = rest.rpartition(":")
    # After the last ':' comes the weight, unless a path goes on there (gs://bucket/data) or
    # the whole text is an existing folder whose name holds a ':' (runs/exp:v2).
    if colon and not re.search(r"[/\\]", tail) and not Path(rest.strip()).exists():
        root, weight = head, tail
    root = root.strip()
    if not root:
        raise ValueError(f"{where}: {entry!r} has no dataset folder")
    try:
        value = float(weight)
    except ValueError:
        raise ValueError(f"{where}: {entry!r} has weight {weight.strip()!r}, not a number; "
                         "write ROOT:WEIGHT with a positive number, e.g. data:0.5") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {entry!r} has weight {weight.strip()!r}; weights must be "
                         "positive numbers")
    name = name.strip() or Path(root.rstrip("/\\")).name or "source"
    if not SOURCE_NAME.fullmatch(name):
        raise ValueError(f"{where}: source name {name!r} (of {entry!r}) may only hold letters, "
                         "digits, '_', '-' and '.'; give one with NAME=ROOT:WEIGHT")
    return SourceSpec(name, root, value)


def parse_sources(value: object) -> list[SourceSpec]:
    """The sources of `config.data.sources` ('' or () = none); `ValueError` naming the field."""
    where = f"--config.data.sources={value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        entries = [e for e in value.split(",") if e.strip()]
    elif isinstance(value, Sequence):
        entries = list(value)
    else:
        raise ValueError(f"{where}: must be 'ROOT:WEIGHT,...' or a list of such entries")
    specs = [_entry(entry, where) for entry in entries]
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{where}: two sources are named {', '.join(twice)}; name them with "
                         "NAME=ROOT:WEIGHT")
    return specs


def mixture_weights(specs: Sequence[SourceSpec]) -> list[float]:
    """The sources' weights normalised to sum to 1."""
    total = sum(s.weight for s in specs)
    return [s.weight / total for s in specs]


def mixing_proportions(weights: Sequence[float]) -> list[int]:
    """The integer proportions grain interleaves by: the smallest weight 100, the rest rounded.

    grain scales any weights so the smallest is 100 and truncates the others with int(); given
    integers with the smallest exactly 100 it keeps them, so each share is the weight's to
    within 0.5 / 100 of the smallest weight (2 : 3 -> 100 : 150, not 100 : 149).
    """
    smallest = min(weights)
    return [round(100 * w / smallest) for w in weights]


class _Part:
    """The records of one source, with their index in the whole mixture."""

    def __init__(self, records: object, offset: int) -> None:
        self._records, self._offset = records, offset

    def __len__(self) -> int:
        """Number of records of the source."""
        return len(self._records)

    def __getitem__(self, index: int) -> dict:
        """Record `index` of the source, with `index` rewritten to its place in the mixture."""
        record = dict(self._records[index])
        record["index"] = self._offset + index
        return record

    def __repr__(self) -> str:
        # grain compares repr(source) on restore: make it depend on the content only.
        return f"_Part({self._records!r}, offset={self._offset})"


class MixtureSource:
    """The records of several sources one after another, with their names and weights.

    `mixture[i]` is a record of source `source_ids([i])[0]`, its `index` field = i. `part(k)`
    is source k's records alone (still with mixture indices), which the training pipeline
    shuffles and mixes by `weights`; validation reads the whole concatenation in order.
    """

    def __init__(self, parts: Sequence[object], specs: Sequence[SourceSpec]) -> None:
        if len(parts) != len(specs) or not parts:
            raise ValueError("a mixture needs one record source per spec, at least one")
        self.names = tuple(s.name for s in specs)
        self.weights = tuple(mixture_weights(specs))
        self.offsets = tuple(int(o) for o in np.cumsum([0] + [len(p) for p in parts]))
        self._parts = [_Part(p, o) for p, o in zip(parts, self.offsets, strict=False)]
        self.source_digests = {s.name: getattr(p, "digest", "")
                               for s, p in zip(specs, parts, strict=True)}
        blob = json.dumps([[s.name, w, self.source_digests[s.name]]
                           for s, w in zip(specs, self.weights, strict=True)])
        self.digest = hashlib.sha256(blob.encode()).hexdigest()[:16]

    def __len__(self) -> int:
        """Number of records over all sources."""
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict:
        """Record `index` of the concatenation."""
        k = bisect.bisect_right(self.offsets, index) - 1
        return self._parts[k][index - self.offsets[k]]

    def part(self, k: int) -> _Part:
        """Source k's records (grain source), indexed from 0, records carrying mixture indices."""
        return self._parts[k]

    def source_ids(self, indices: np.ndarray) -> np.ndarray:
        """Which source each mixture index belongs to (-1 for padding, index < 0)."""
        indices = np.asarray(indices)
        ids = np.searchsorted(np.asarray(self.offsets), indices, side="right") - 1
        return np.where(indices < 0, -1, ids)

    def lengths(self) -> dict[str, int]:
        """Records per source."""
        return {n: b - a for n, a, b in zip(self.names, self.offsets, self.offsets[1:],
                                             strict=False)}

    def state_fields(self) -> dict[str, dict]:
        """Per source: digest, weight and position (what a saved data position depends on)."""
        return {n: {"digest": self.source_digests[n], "weight": round(w, 12), "position": k}
                for k, (n, w) in enumerate(zip(self.names, self.weights, strict=True))}

    def __repr__(self) -> str:
        # grain compares repr(source) on restore: make it depend on the content only.
        return f"MixtureSource(names={self.names}, digest={self.digest})"


def mixed_train_dataset(source: MixtureSource, seed: int, shard_index: int = 0,
                        shard_count: int = 1, num_epochs: int | None = None) -> grain.MapDataset:
    """This process's weighted training stream: each source shuffled every epoch, mixed.

    Each source is sharded over the processes, shuffled with its own seed (derived from `seed`
    and its position) and repeated without end; `MapDataset.mix` then interleaves them by
    weight. With `num_epochs`, the stream stops after that many times the sources' total
    length (an "epoch" of a mixture is as many samples as all its sources hold).
    """
    parts, total = [], 0
    for k, name in enumerate(source.names):
        part = grain.MapDataset.source(source.part(k))[shard_index::shard_count]
        if not len(part):
            raise DatasetError([Problem("data.sources", "", f"{name!r} has "
                                        f"{len(source.part(k))} training samples, none for "
                                        f"process {shard_index} of {shard_count}", "empty_split")])
        total += len(part)
        part_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        parts.append(part.shuffle(seed=part_seed).repeat(None))
    mixed = grain.MapDataset.mix(parts, mixing_proportions(source.weights))
    return mixed if num_epochs is None else mixed[: num_epochs * total]


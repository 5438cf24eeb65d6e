"""The training iterator: batches of `make_dataset` with a checkpointable, self-checking state.

orbax's grain handler saves `BatchIterator.get_state()` with every checkpoint. The state says
where in the stream training was AND what stream it was: a digest of the split's records (for
a mixture, of every source's, with its weight), the global batch size and the worker count
(grain's order depends on all of them). On restore `set_state()` compares them, so a resume on
changed data, another batch size or worker count is refused with what changed named, or, with
`train.on_data_change="restart_epoch"`, starts a new data order while step and model continue.
"""

from __future__ import annotations

import gc
import json

import grain
import ml_collections
import numpy as np

from signlang_jax.data.mixture import MixtureSource
from signlang_jax.data.pipeline import make_dataset
from signlang_jax.data.sources import Records, records_for


class DataChangedError(ValueError):
    """A saved data-iterator state does not fit this run's data; the message says what changed."""


ON_DATA_CHANGE = ("refuse", "restart_epoch")  # config.train.on_data_change
# The config fields a saved position depends on: they choose the records (their digest), the
# batch size and the worker count that `set_state` compares.
POSITION_FIELDS = ("data.root", "data.sources", "data.format", "data.images_dir",
                   "data.labels_dir", "data.val_fraction", "data.skip_invalid",
                   "data.num_workers", "train.batch_size")


class BatchIterator:
    """Iterator over a pipeline's batches whose checkpointable state says what it was cut from.

    `get_state()` returns JSON bytes (the form orbax's grain handler stores): grain's position
    plus a digest of the split's records, the global batch size and the worker count. A saved
    position only means something for the same records, batch and workers (grain's order
    depends on all three), so `set_state()` compares them: on a difference it raises
    `DataChangedError` naming what changed, or, with `on_data_change="restart_epoch"`, keeps
    the fresh position (a new data order from the start) and says why in `restarted`.
    """

    def __init__(self, dataset: grain.IterDataset, num_workers: int, data_digest: str = "",
                 batch_size: int = 0, on_data_change: str = "refuse",
                 sources: dict[str, dict] | None = None) -> None:
        if on_data_change not in ON_DATA_CHANGE:
            raise ValueError(f"train.on_data_change={on_data_change!r}: expected one of "
                             f"{ON_DATA_CHANGE}")
        self._iterator = iter(dataset)
        self.num_workers = num_workers
        self.data_digest = data_digest
        self.batch_size = batch_size
        self.on_data_change = on_data_change
        self.sources = sources  # mixtures: per source name, its digest and weight
        self.restarted = ""  # why a saved position was not used ("" = it was)

    def __iter__(self) -> BatchIterator:
        """Itself."""
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        """The next batch."""
        return next(self._iterator)

    def get_state(self) -> bytes:
        """The position in the stream and what it is a position in, as JSON bytes."""
        state = {"num_workers": self.num_workers, "batch_size": self.batch_size,
                 "data_digest": self.data_digest, "grain": self._iterator.get_state()}
        if self.sources is not None:
            state["sources"] = self.sources
        return json.dumps(state).encode()

    def set_state(self, state: bytes | str | dict) -> None:
        """Continue from a state returned by `get_state` (see the class docstring)."""
        if isinstance(state, bytes | str):
            state = json.loads(state)
        changes = self._changes(state)
        if not changes:
            self._iterator.set_state(state["grain"])
            return
        if self.on_data_change == "restart_epoch":
            self.restarted = "; ".join(changes)
            return
        raise DataChangedError(
            "the checkpoint's data position does not fit this run: " + "; ".join(changes)
            + ". Resume with the checkpoint's settings, or pass "
            "--config.train.on_data_change=restart_epoch to keep the step and model and start "
            "a new data order (e.g. after adding data)")

    def _changes(self, saved: dict) -> list[str]:
        changes = []
        if saved.get("num_workers") != self.num_workers:
            changes.append(f"data.num_workers was {saved.get('num_workers')}, now "
                           f"{self.num_workers} (grain's sample order depends on it: "
                           f"--config.data.num_workers={saved.get('num_workers')} restores it)")
        # States saved before these fields existed carry neither: nothing to compare.
        if saved.get("batch_size", self.batch_size) != self.batch_size:
            changes.append(f"train.batch_size was {saved['batch_size']}, now {self.batch_size}")
        if "sources" in saved or self.sources is not None:
            return changes + _source_changes(saved.get("sources"), self.sources)
        if saved.get("data_digest", self.data_digest) != self.data_digest:
            changes.append(f"the training split changed (records digest {saved['data_digest']}, "
                           f"now {self.data_digest}: images or labels added, removed or edited)")
        return changes

    def start_prefetch(self) -> None:
        """Start the worker processes early (called by orbax after a restore)."""
        start = getattr(self._iterator, "start_prefetch", None)
        if start is not None:
            start()

    def close(self) -> None:
        """Stop the worker processes."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        self._iterator = iter(())
        # grain's prefetch thread leaves the last batch (in shared memory) in a frame that its
        # stored StopIteration's traceback keeps alive. Only the garbage collector frees such a
        # cycle, and at interpreter exit it runs too late for grain to unlink the memory: Python
        # would warn of leaked shared_memory objects.
        gc.collect()

    def __enter__(self) -> BatchIterator:
        """Use as a context manager that closes the workers."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the workers."""
        self.close()


def _source_changes(saved: dict | None, now: dict | None) -> list[str]:
    """What differs between two mixtures' per-source digests and weights, one line each."""
    if saved is None or now is None:
        was = "a mixture (data.sources)" if saved is not None else "a single dataset (data.root)"
        return [f"the training data was {was}, now "
                + ("a mixture (data.sources)" if now is not None else "a single dataset")]
    changes = []
    order = [sorted(d, key=lambda n: d[n].get("position", 0)) for d in (saved, now)]
    if set(saved) == set(now) and order[0] != order[1]:  # grain interleaves by position
        changes.append(f"data.sources: the order was {', '.join(order[0])}, now "
                       f"{', '.join(order[1])}")
    for name in sorted(saved.keys() | now.keys()):
        before, after = saved.get(name), now.get(name)
        if before is None or after is None:
            changes.append(f"data.sources: {name!r} was {'added' if before is None else 'removed'}")
        elif before["digest"] != after["digest"]:
            changes.append(f"data.sources: the training split of {name!r} changed (records "
                           f"digest {before['digest']}, now {after['digest']})")
        elif before["weight"] != after["weight"]:
            changes.append(f"data.sources: the weight share of {name!r} was "
                           f"{before['weight']:.4g}, now {after['weight']:.4g}")
    return changes


def make_iterator(config: ml_collections.ConfigDict, split: str, source: Records | None = None,
                  **kwargs: object) -> BatchIterator:
    """`make_dataset(config, split, source=...)` as a checkpointable `BatchIterator`.

    `source` defaults to `records_for(config, split)`; `kwargs` go to `make_dataset`.
    """
    source = records_for(config, split) if source is None else source
    num_workers = kwargs.get("num_workers")
    num_workers = config.data.num_workers if num_workers is None else num_workers
    sources = source.state_fields() if isinstance(source, MixtureSource) else None
    return BatchIterator(make_dataset(config, split, source=source, **kwargs), int(num_workers),
                         source.digest, int(kwargs.get("batch_size") or config.train.batch_size),
                         config.train.get("on_data_change", "refuse"), sources)

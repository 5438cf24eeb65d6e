"""The training iterator: batches of `make_dataset` with a checkpointable, self-checking state.

orbax's grain handler saves `BatchIterator.get_state()` with every checkpoint. The state says
where in the stream training was AND what stream it was: a digest of the split's records, the
global batch size and the worker count (grain's order depends on all three). On restore
`set_state()` compares them, so a resume on changed data, another batch size or worker count
is refused with what changed named, or, with `train.on_data_change="restart_epoch"`, starts a
new data order while step and model continue.
"""

from __future__ import annotations

import gc
import json

import grain
import ml_collections
import numpy as np

from signlang_jax.data.pipeline import make_dataset


class DataChangedError(ValueError):
    """A saved data-iterator state does not fit this run's data; the message says what changed."""


ON_DATA_CHANGE = ("refuse", "restart_epoch")  # config.train.on_data_change


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
                 batch_size: int = 0, on_data_change: str = "refuse") -> None:
        if on_data_change not in ON_DATA_CHANGE:
            raise ValueError(f"train.on_data_change={on_data_change!r}: expected one of "
                             f"{ON_DATA_CHANGE}")
        self._iterator = iter(dataset)
        self.num_workers = num_workers
        self.data_digest = data_digest
        self.batch_size = batch_size
        self.on_data_change = on_data_change
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


def make_iterator(config: ml_collections.ConfigDict, split: str, **kwargs: object
                  ) -> BatchIterator:
    """`make_dataset(config, split, **kwargs)` as a checkpointable `BatchIterator`."""
    num_workers = kwargs.get("num_workers")
    num_workers = config.data.num_workers if num_workers is None else num_workers
    source = kwargs.get("source")
    digest = source.digest if source is not None else ""
    return BatchIterator(make_dataset(config, split, **kwargs), int(num_workers), digest,
                         int(kwargs.get("batch_size") or config.train.batch_size),
                         config.train.get("on_data_change", "refuse"))

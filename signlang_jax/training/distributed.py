"""Several processes (hosts) in one job: joining it, barriers, gathering, the replica check.

Every function is a no-op (or the identity) with one process, so single-machine code calls them
unconditionally. The collectives are `jax.experimental.multihost_utils`'.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from signlang_jax.errors import ConfigError, TrainingError


def initialize_distributed(dist: ml_collections.ConfigDict) -> bool:
    """Join a multi-process job described by `dist` (= config.distributed); False if single.

    Must run before anything touches a JAX device. On CPU the processes talk over gloo (TCP), so
    a job can be tested on one machine; on GPUs XLA uses NCCL.
    """
    if not dist.coordinator and not dist.auto:
        if dist.num_processes != 1 or dist.process_id != 0:
            raise ConfigError("distributed.num_processes/process_id are set but "
                              "distributed.coordinator is empty: pass "
                              "--config.distributed.coordinator=HOST:PORT (or distributed.auto)")
        return False
    kwargs: dict = {"initialization_timeout": int(dist.timeout)}
    if dist.coordinator:
        if not re.fullmatch(r"\S+:\d+", dist.coordinator):
            raise ConfigError(f"distributed.coordinator={dist.coordinator!r}: expected HOST:PORT")
        if dist.num_processes < 1:
            raise ConfigError(f"distributed.num_processes={dist.num_processes}: must be >= 1")
        if not 0 <= dist.process_id < dist.num_processes:
            raise ConfigError(f"distributed.process_id={dist.process_id}: must be in "
                              f"0..{dist.num_processes - 1} (distributed.num_processes="
                              f"{dist.num_processes})")
        kwargs.update(coordinator_address=dist.coordinator, num_processes=dist.num_processes,
                      process_id=dist.process_id)
    # CPU-only jobs (tests, CPU clusters) need a collectives backend; GPUs ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    return True


def sync_processes(name: str) -> None:
    """Barrier across processes (no-op with one): e.g. wait for process 0 to write data."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def gather_hosts(tree: dict) -> dict:
    """Concatenate every process's arrays along axis 0 (identity with one process)."""
    if jax.process_count() == 1:
        return tree
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def check_replicas_agree(state: object) -> None:
    """Raise if the processes' replicas of the state differ (no-op with one process).

    Each process fingerprints its own copy (per-array sums in float64) and only the
    fingerprints travel: `multihost_utils.assert_equal` would gather every parameter from every
    host. A mismatch means the hosts diverged (different code, config or data order) and
    checkpoints would be wrong.
    """
    if jax.process_count() == 1:
        return
    floats = [(jax.tree_util.keystr(path), x)
              for path, x in jax.tree_util.tree_flatten_with_path(state)[0]
              if jnp.issubdtype(x.dtype, jnp.floating)]
    names = [name for name, _ in floats]
    local = np.asarray([np.asarray(x.addressable_data(0), np.float64).sum() for _, x in floats])
    # Sent as int32 pairs: JAX would round float64 to float32 (x64 is off) and hide small drifts.
    everyone = np.asarray(multihost_utils.process_allgather(local.view(np.int32)))
    everyone = everyone.reshape(len(everyone), -1, 2)  # (processes, arrays, 2 words)
    differs = np.flatnonzero((everyone != everyone[0]).any(axis=(0, 2)))
    if len(differs):
        listed = ", ".join(names[i] for i in differs[:5])
        raise TrainingError(f"the {jax.process_count()} processes hold different model states "
                            f"({len(differs)} arrays differ, e.g. {listed}): run the same code, "
                            "config and data on every host")

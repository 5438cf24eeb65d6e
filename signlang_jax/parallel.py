"""A process-pool map for CPU-bound jobs that use OpenCV (rendering, cutting and encoding images).

The synthetic-data generator and the dataset converters share it. Imports nothing of ours: any
stage may use it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import cv2

T = TypeVar("T")


def init_worker() -> None:
    """Pool initializer: one OpenCV thread per process, the processes are the parallelism."""
    cv2.setNumThreads(1)


def run_jobs(job: Callable[[Any], T], indices: Iterable[Any], workers: int, chunksize: int = 1
             ) -> Iterator[T]:
    """job(i) for every index (or item), in this process (workers == 1) or a pool; results as
    they end.

    One OpenCV thread per process: the processes are the parallelism.
    """
    if workers == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            yield from map(job, indices)
        finally:
            cv2.setNumThreads(threads)
        return
    # forkserver: safe even if the caller has threads (JAX, OpenCV) running, unlike fork, and
    # workers fork from one server process, so they start faster than with spawn.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ctx.Pool(workers, initializer=init_worker) as pool:
        yield from pool.imap_unordered(job, indices, chunksize=chunksize)

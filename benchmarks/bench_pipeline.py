"""Input pipeline throughput: decoded + augmented 512x512 images/s, per worker and with all.

    python benchmarks/bench_pipeline.py [--data-root DIR] [--num 400] [--size 512]

Without --data-root it renders a synthetic dataset into a temporary folder first. "Per worker"
runs the exact per-sample work of a grain worker (decode, affine warp, colour jitter, blur;
OpenCV limited to one thread) in this process; "all workers" runs the real grain pipeline with
`--workers` processes and batches, as training does.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np

from configs import default
from signlang_jax.data.iterator import make_iterator
from signlang_jax.data.pipeline import augment_params, load_sample
from signlang_jax.data.sources import load_split


def per_worker_rate(config: object, num: int) -> float:
    """Images/s of one process doing the worker's per-sample work on one core."""
    cv2.setNumThreads(1)
    samples = load_split(config.data, "train")
    params = augment_params(config)
    rng = np.random.default_rng(0)
    records = [{"index": i, "path": s.image_path, "keypoints": s.keypoints, "bbox": s.bbox}
               for i, s in enumerate(samples)]
    for record in records[:20]:  # warm-up
        load_sample(record, rng, config.data.image_size, params)
    start = time.perf_counter()
    for i in range(num):
        load_sample(records[i % len(records)], rng, config.data.image_size, params)
    return num / (time.perf_counter() - start)


def pipeline_rate(config: object, num: int, workers: int) -> float:
    """Images/s of the real grain pipeline with `workers` processes (after the first batches)."""
    config.data.num_workers = workers
    with make_iterator(config, "train") as it:
        for _ in range(4):  # start-up and warm-up
            next(it)
        batches = max(1, num // config.train.batch_size)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        elapsed = time.perf_counter() - start
    return batches * config.train.batch_size / elapsed


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="existing dataset (default: render one)")
    parser.add_argument("--num", type=int, default=400, help="images to time")
    parser.add_argument("--size", type=int, default=512, help="image and input size")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from signlang_jax.synth import generate_dataset

            root = os.path.join(tmp, "data")
            generate_dataset(root, 200, seed=0, size=args.size)
        config = default.get_config()
        config.data.root = root
        config.data.image_size = args.size
        config.data.val_fraction = 0.0
        config.train.batch_size = 16
        one = per_worker_rate(config, args.num)
        print(f"pipeline {args.size}x{args.size}: {one:.0f} images/s per worker (1 core)")
        every = pipeline_rate(config, args.num, args.workers)
        print(f"pipeline {args.size}x{args.size}: {every:.0f} images/s with {args.workers} "
              f"workers ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

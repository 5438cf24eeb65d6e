"""Read throughput of the two dataset formats, folder vs array_record, side by side.

    python benchmarks/bench_formats.py [--data-root DIR] [--num 300] [--size 512] [--reps 5]
        [--workers 0]

Without --data-root it renders a synthetic dataset into a temporary folder, then packs it with
`python -m signlang_jax.data.pack`. For each format, on the train split (medians of --reps runs,
files in the page cache after the first):

- open: build the split's source (`load_records`); folder = validate every label and image
  (the check training does at start-up), array_record = read the TFDS metadata;
- fetch: records/s of `source[i]` plus the encoded bytes (folder: read the image file);
- fetch + decode: records/s of `record_image(source[i])` (one OpenCV thread);
- pipeline: images/s of the real grain pipeline (augmentation, batches of 16,
  `--workers` processes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from configs import default
from signlang_jax.data import pack
from signlang_jax.data.iterator import make_iterator
from signlang_jax.data.sources import load_records, record_image


def fetch_rate(source: object, decode: bool) -> float:
    """Records/s of reading every record of `source` (and decoding its image)."""
    start = time.perf_counter()
    for i in range(len(source)):
        record = source[i]
        if decode:
            record_image(record)
        elif "path" in record:
            Path(record["path"]).read_bytes()
    return len(source) / (time.perf_counter() - start)


def pipeline_rate(config: object, source: object, num: int) -> float:
    """Images/s of the training pipeline over `source` (after a few warm-up batches)."""
    with make_iterator(config, "train", source=source, shard_index=0, shard_count=1) as it:
        for _ in range(3):
            next(it)
        batches = max(1, num // config.train.batch_size)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * config.train.batch_size / (time.perf_counter() - start)


def measure(config: object, reps: int, num: int) -> dict[str, float]:
    """Median figures of one format (see the module docstring)."""
    runs: dict[str, list[float]] = {"open": [], "fetch": [], "decode": [], "pipeline": []}
    for _ in range(reps):
        start = time.perf_counter()
        source = load_records(config.data, "train")
        runs["open"].append(time.perf_counter() - start)
        runs["fetch"].append(fetch_rate(source, decode=False))
        runs["decode"].append(fetch_rate(source, decode=True))
        runs["pipeline"].append(pipeline_rate(config, source, num))
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="existing folder dataset (default: render one)")
    parser.add_argument("--num", type=int, default=300, help="images to render")
    parser.add_argument("--size", type=int, default=512, help="image and input size")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (medians reported)")
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root
        if root is None:
            from signlang_jax.synth import generate_dataset

            root = os.path.join(tmp, "data")
            generate_dataset(root, args.num, seed=0, size=args.size)
        packed = os.path.join(tmp, "packed")
        start = time.perf_counter()
        if pack.main(["--data-root", root, "--out", packed, "--quiet"]) != 0:
            raise SystemExit("packing failed")
        pack_seconds = time.perf_counter() - start

        config = default.get_config()
        config.data.root = root
        config.data.image_size = args.size
        config.data.num_workers = args.workers
        config.train.batch_size = 16
        results = {"folder": measure(config, args.reps, 2 * args.num)}
        config.data.format, config.data.root = "array_record", packed
        results["array_record"] = measure(config, args.reps, 2 * args.num)

        train = len(load_records(config.data, "train"))
        folder_mb = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file()) / 1e6
        packed_mb = sum(f.stat().st_size for f in Path(packed).rglob("*") if f.is_file()) / 1e6
    print(f"\n{train} train images {args.size}x{args.size}; folder {folder_mb:.1f} MB, pack "
          f"{packed_mb:.1f} MB written in {pack_seconds:.1f} s; medians of {args.reps} runs; "
          f"pipeline with {args.workers} workers, {os.cpu_count()} cores")
    print(f"{'format':<13} {'open s':>8} {'fetch rec/s':>12} {'fetch+decode rec/s':>19} "
          f"{'pipeline img/s':>15}")
    for name, r in results.items():
        print(f"{name:<13} {r['open']:>8.2f} {r['fetch']:>12.0f} {r['decode']:>19.0f} "
              f"{r['pipeline']:>15.1f}")


if __name__ == "__main__":
    main()

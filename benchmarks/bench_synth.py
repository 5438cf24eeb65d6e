"""Throughput of the synthetic dataset generator (render + JPEG encode + write), in images/s.

    python benchmarks/bench_synth.py [--num 300] [--size 512] [--workers 1 2]

The timing includes starting the worker processes, as a user of `python -m signlang_jax.synth`
sees it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from signlang_jax.synth import generate_dataset


def bench(num: int, size: int, workers: int, seed: int = 0) -> float:
    """Images per second for writing `num` samples with `workers` processes into a temp dir."""
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as out:
        start = time.perf_counter()
        generate_dataset(out, num, seed, size=size, workers=workers)
        return num / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=300, help="images per run (default: 300)")
    parser.add_argument("--size", type=int, default=512, help="image size (default: 512)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to time (default: 1 2)")
    args = parser.parse_args(argv)
    for workers in args.workers:
        rate = bench(args.num, args.size, workers)
        print(f"synth {args.size}x{args.size}: {rate:.1f} images/s with {workers} "
              f"worker{'s' if workers != 1 else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

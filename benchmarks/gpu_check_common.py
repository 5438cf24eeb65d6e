"""Shared by benchmarks/gpu_check*.py: the Check row, the run sizes (Mode), the first batch."""

from __future__ import annotations

import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Check:
    """One table row: what was checked or measured, the figure, the criterion, the outcome."""

    name: str
    value: str
    criterion: str
    passed: bool


@dataclasses.dataclass(frozen=True)
class Mode:
    """Sizes of a run: the full GPU check or the tiny CPU smoke run."""

    name: str
    image_size: int
    width: int
    deconv_filters: int
    heatmap_size: int
    sigma: float
    synthetic_num: int
    synthetic_size: int
    val_fraction: float
    train_batch: int
    warmup_steps: int
    lr: float
    batch_sizes: tuple[int, ...]
    timed_steps: int
    matmul_size: int
    pipeline_batches: int
    deconv_input: tuple[int, int, int, int]  # (N, H, W, Cin) of the first deconv of the head


GPU_MODE = Mode("gpu", image_size=512, width=64, deconv_filters=256, heatmap_size=128, sigma=2.0,
                synthetic_num=512, synthetic_size=512, val_fraction=0.1, train_batch=32,
                warmup_steps=30, lr=1e-3, batch_sizes=(32, 64), timed_steps=20,
                matmul_size=8192, pipeline_batches=40, deconv_input=(8, 16, 16, 512))
CPU_MODE = Mode("cpu", image_size=32, width=8, deconv_filters=16, heatmap_size=8, sigma=1.0,
                synthetic_num=24, synthetic_size=64, val_fraction=0.25, train_batch=4,
                warmup_steps=2, lr=3e-3, batch_sizes=(4, 8), timed_steps=3,
                matmul_size=256, pipeline_batches=4, deconv_input=(2, 4, 4, 8))


def first_batch(config: object, split: str = "train") -> dict:
    """The first batch of `split` (seeded, so every section sees the same images)."""
    from signlang_jax.data.pipeline import make_dataset

    return next(iter(make_dataset(config, split, num_workers=0)))

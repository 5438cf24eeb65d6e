"""Train-step images/s: our jitted JAX step vs the torch twin trained eagerly, side by side.

    python benchmarks/bench_train_step.py [--reps 3]

The torch side does what the original PyTorch project does per step: build float heatmaps on the
host with numpy, copy them and the float image into tensors, forward, weighted MSE, backward,
Adam. Same architecture (ResNet-18 + 3 deconvs), batch and resolution; JAX and torch repetitions
alternate so machine noise hits both. Prints medians after warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
import torch

from configs import default, demo
from interop.torch_model import TorchHeatmapModel
from signlang_jax.training import train as train_lib


def host_heatmaps(keypoints: np.ndarray, image_size: int, heatmap_size: int,
                  sigma: float) -> np.ndarray:
    """Per-sample, per-keypoint numpy Gaussians (N, K, H, W): the original project's way."""
    n, k, _ = keypoints.shape
    out = np.zeros((n, k, heatmap_size, heatmap_size), np.float32)
    grid = np.arange(heatmap_size, dtype=np.float32)
    ratio = heatmap_size / image_size
    for i in range(n):
        for j in range(k):
            x, y, w = keypoints[i, j]
            if w > 0:
                gx = np.exp(-((grid - x * ratio) ** 2) / (2 * sigma**2))
                gy = np.exp(-((grid - y * ratio) ** 2) / (2 * sigma**2))
                out[i, j] = gy[:, None] * gx[None, :]
    return out


def make_batch(config: object, seed: int = 0) -> dict:
    """A random uint8 batch with random visible keypoints."""
    rng = np.random.default_rng(seed)
    n, s = config.train.batch_size, config.data.image_size
    keypoints = np.concatenate([rng.uniform(0, s - 1, (n, 64, 2)), np.ones((n, 64, 1))], -1)
    return {"image": rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
            "keypoints": keypoints.astype(np.float32)}


def compare(label: str, config: object, reps: int) -> tuple[float, float]:
    """Time both frameworks on one config, alternating; print one line, return (jax, torch)."""
    batch = make_batch(config)
    graphdef, state, schedule = train_lib.create_state(config, 1000)
    trainer = train_lib.make_trainer(config, graphdef, state, schedule)
    # Placed as the step returns it: an uncommitted state would compile a second program.
    state = jax.device_put(state, trainer.state_sharding)

    def jax_step(state: object) -> object:
        state, metrics = trainer.train_step(state, train_lib.device_batch(
            batch, trainer.batch_sharding))
        jax.block_until_ready(metrics)
        return state

    m = config.model
    model = TorchHeatmapModel(m.name, m.width, m.num_keypoints, m.deconv_layers,
                              m.deconv_filters, m.deconv_kernel, m.final_kernel).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def torch_step() -> None:
        heatmaps = host_heatmaps(batch["keypoints"], config.data.image_size, m.heatmap_size,
                                 m.sigma)
        image = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).float() / 255.0
        target = torch.from_numpy(heatmaps)
        weight = torch.from_numpy(batch["keypoints"][..., 2])[:, :, None, None]
        loss = ((model(image) - target) ** 2 * weight).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    state = jax_step(state)  # compile
    torch_step()  # warm-up
    jax_times, torch_times = [], []
    for _ in range(reps):
        start = time.perf_counter()
        state = jax_step(state)
        jax_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        torch_step()
        torch_times.append(time.perf_counter() - start)
    n = config.train.batch_size
    jax_rate, torch_rate = n / np.median(jax_times), n / np.median(torch_times)
    print(f"{label} (batch {n}, {m.name} width {m.width}, head {m.deconv_filters}): "
          f"jax {jax_rate:.2f} img/s, torch eager {torch_rate:.2f} img/s, "
          f"ratio {jax_rate / torch_rate:.2f}", flush=True)
    return float(jax_rate), float(torch_rate)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed steps per framework")
    parser.add_argument("--batch-512", type=int, default=4, help="batch at 512x512")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}")
    full = default.get_config()
    full.train.batch_size = args.batch_512
    compare("demo 128", demo.get_config(), args.reps)
    compare("default 512", full, args.reps)


if __name__ == "__main__":
    main()

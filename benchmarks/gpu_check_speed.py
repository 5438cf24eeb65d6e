"""gpu_check section (d): bf16 matmul peak, train-step images/s and MFU, input-pipeline rate."""

from __future__ import annotations

import time

from gpu_check_common import Check, Mode

H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA's H200 SXM datasheet, bf16 tensor core, no sparsity


# ----------------------------------------------------------------------------- (d) speed


def random_batch(config: object, batch_size: int, seed: int = 0) -> dict:
    """A random uint8 batch with random visible keypoints (throughput does not depend on it)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    s, k = config.data.image_size, config.model.num_keypoints
    keypoints = np.concatenate([rng.uniform(0, s - 1, (batch_size, k, 2)),
                                np.ones((batch_size, k, 1))], -1)
    return {"image": rng.integers(0, 256, (batch_size, s, s, 3), dtype=np.uint8),
            "keypoints": keypoints.astype(np.float32)}


def cost_flops(stage: object) -> float:
    """`flops` of a Lowered or Compiled stage's cost analysis (0.0 when XLA gives none)."""
    cost = stage.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per program
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def matmul_tflops(size: int, reps: int = 20) -> float:
    """Measured bf16 (size x size) @ (size x size) throughput in TFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.bfloat16)
    matmul = jax.jit(lambda a, b: a @ b)
    matmul(a, b).block_until_ready()
    start = time.perf_counter()
    for _ in range(reps):
        out = matmul(a, b)
    out.block_until_ready()
    return 2 * size**3 * reps / (time.perf_counter() - start) / 1e12


def train_step_speed(config: object, batch_size: int, timed_steps: int
                     ) -> tuple[float, float, float, float]:
    """(images/s, seconds/step, compiled FLOPs/step, lowered FLOPs/step) of the real step."""
    import jax

    from signlang_jax.training import train as train_lib

    config = config.copy_and_resolve_references()
    config.train.batch_size = batch_size
    # The training run's total steps: at its batch size this is the program it compiled, so
    # the persistent compilation cache serves it.
    graphdef, state, schedule = train_lib.create_state(config, config.train.num_steps)
    trainer = train_lib.make_trainer(config, graphdef, state, schedule)
    state = jax.device_put(state, trainer.state_sharding)
    batch = train_lib.device_batch(random_batch(config, batch_size), trainer.batch_sharding)
    lowered = trainer.train_step.lower(state, batch)
    compiled = lowered.compile()
    for _ in range(3):  # warm-up: allocator, autotuned kernels
        state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(timed_steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - start) / timed_steps
    return batch_size / seconds, seconds, cost_flops(compiled), cost_flops(lowered)


def check_speed(config: object, mode: Mode, peak_tflops: float) -> tuple[list[Check], float]:
    """Matmul peak and train images/s + MFU per batch size; returns the rows and the first rate."""
    measured_peak = matmul_tflops(mode.matmul_size)
    checks = [Check(f"bf16 matmul {mode.matmul_size}^3, measured", f"{measured_peak:.1f} TFLOP/s",
                    "> 0 (the 'measured peak' of the MFU rows)", measured_peak > 0)]
    first_rate = 0.0
    for batch_size in mode.batch_sizes:
        rate, seconds, flops, lowered_flops = train_step_speed(config, batch_size,
                                                               mode.timed_steps)
        first_rate = first_rate or rate
        # XLA:GPU's cost analysis counts cuDNN/cuBLAS custom calls; if a version reports less
        # than half the pre-optimisation count, the pre-optimisation count is the safer figure.
        source = "compiled"
        if flops < 0.5 * lowered_flops:
            flops, source = lowered_flops, "lowered (compiled gave less)"
        achieved = flops / seconds / 1e12
        mfu, mfu_measured = achieved / peak_tflops, achieved / measured_peak
        checks.append(Check(
            f"train step speed, batch {batch_size}, {config.model.name} "
            f"{config.data.image_size} px",
            f"{rate:.0f} img/s, {seconds * 1e3:.1f} ms/step, {flops / 1e9:.3g} GFLOP/step "
            f"({source}), {achieved:.3g} TFLOP/s, MFU {100 * mfu:.3g}% of {peak_tflops:g} "
            f"({100 * mfu_measured:.3g}% of measured)",
            "0 < MFU <= 1 (a larger value means a wrong FLOP count or peak)",
            flops > 0 and 0 < mfu <= 1))
    return checks, first_rate


def pipeline_rate(config: object, workers: int, batches: int) -> float:
    """Images/s of the real train input pipeline with `workers` processes, after warm-up."""
    from signlang_jax.data.iterator import make_iterator

    config = config.copy_and_resolve_references()
    config.data.num_workers = workers
    with make_iterator(config, "train") as iterator:
        for _ in range(max(2, workers)):  # worker start-up: every worker's first batch
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        elapsed = time.perf_counter() - start
    return batches * config.train.batch_size / elapsed


def check_pipeline(config: object, workers: int, batches: int, train_rate: float) -> list[Check]:
    """Input pipeline images/s with `workers` processes, against the train step's rate."""
    rate = pipeline_rate(config, workers, batches)
    versus = f", {rate / train_rate:.2f}x the train step at batch " \
             f"{config.train.batch_size}" if train_rate else ""
    return [Check(f"input pipeline, {workers} workers, {config.data.image_size} px, augmented",
                  f"{rate:.0f} img/s{versus}", "> 0 (figure; < 1x = input-bound)", rate > 0)]

"""One-command GPU acceptance check: bf16 training, bf16/f32 parity, deconv paths, speed, CLIs.

    PYTHONPATH=. python benchmarks/gpu_check.py --workdir /tmp/gpu      # CUDA machine, < 8 min
    PYTHONPATH=. python benchmarks/gpu_check.py --cpu --workdir /tmp/c  # CPU smoke run, ~1 min

What it does, in order, each section recorded as table rows even when an earlier one failed:

1. renders a synthetic dataset (`signlang_jax.synth`, 512 images at 512 px) into WORKDIR/data_S;
2. (c) the `lax` transposed conv (cuDNN on GPU) against both sub-pixel forms, forward and VJP, f32;
3. (b) one step's loss and per-module gradients of a bfloat16 and a float32 model from the same
   init on the same batch (the f32 reference runs at matmul precision "highest": no TF32);
4. (a) `train.train_and_evaluate` on the default config (ResNet-18, 512 -> 128, model.dtype auto
   = bf16 on GPU) for --steps steps in WORKDIR/train, then checks that the loss falls;
5. (e) `python -m signlang_jax.evaluate` and `python -m interop.to_onnx` on that workdir;
6. (d) train-step images/s and MFU at batch 32 and 64 (FLOPs from XLA's cost analysis of the
   compiled step; peak = --peak-tflops and a measured bf16 matmul), input-pipeline images/s.

It prints one markdown table (check, value, criterion, pass/fail) and writes it to --out
(default WORKDIR/gpu_check.md) after every section, so a run cut short keeps what it measured.
Exit status: 0 all pass, 1 any check failed, 2 no GPU (without --cpu) or a package is missing.
WORKDIR/train is deleted at the start (it is this script's own training run); the rendered data
is reused when present.

On the lent H200 machine (no network; jax[cuda], flax, optax, orbax, torch, onnx, onnxruntime,
onnxscript, etils, cloudpickle preinstalled) six packages must travel as wheels (their other
dependencies are there; see /work/.library/device/README.md). Here, in the repo root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d .whl grain array-record ml-collections tensorboardX \\
        pycocotools portpicker

then on the machine (carry `.whl`):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --workdir /tmp/gpu \\
        --out $OUT/gpu_check.md
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Imported by the training, evaluation and export code; missing ones are named before any work.
REQUIRED_MODULES = ("jax", "flax", "optax", "orbax.checkpoint", "grain", "ml_collections",
                    "tensorboardX", "cv2", "pycocotools", "torch", "onnx", "onnxruntime",
                    "onnxscript")
H200_BF16_DENSE_TFLOPS = 989.0  # NVIDIA's H200 SXM datasheet, bf16 tensor core, no sparsity

# Tolerances (why these values):
# - bf16 keeps 8 significant bits (unit roundoff 2**-8 = 3.9e-3). A mean-reduced loss averages
#   the rounding away, so 1e-2 relative is loose for a correct model and still catches a layer
#   computing in the wrong precision or order.
LOSS_REL_TOL = 1e-2
# - Per-module gradients: relative L2 error |g_bf16 - g_f32| / |g_f32| against a floor, the
#   same error of the f32 gradient after multiplying every weight by (1 + s N(0, 1)), where
#   s = 2**-8 / sqrt(3) is the std of bf16's relative rounding error (what rounding the weights
#   alone does). bf16 also rounds every activation and cotangent, so its error is expected at a
#   small multiple of the floor; 3x flags an error beyond rounding (a wrong cast, a reduction
#   accumulated in bf16), and 0.02 absolute covers modules whose floor is ~0 where bf16's own
#   output rounding (~2e-3 per element) dominates.
BF16_ROUNDING = 2.0**-8 / math.sqrt(3)
GRAD_FLOOR_FACTOR = 3.0
GRAD_ABS_TOL = 0.02
# - Transposed conv, f32 at precision "highest": the paths differ only in summation order over
#   k*k*Cin <= 8192 terms (f32 eps 6e-8), error ~1e-6 relative to the output's max.
DECONV_REL_TOL = 1e-4
# - Loss falls: the mean logged train loss of the last quarter of the run must be below 0.9x
#   that of the first quarter: a fall beyond the batch-to-batch noise of those means (~5 % at
#   batch 4, less at 32). Whether the model beat the all-zero heatmap (learned peaks, not just
#   its output offset) is reported beside it as a figure: 300 steps from scratch may not.
LOSS_FALL_RATIO = 0.9


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


# ----------------------------------------------------------------------------- config and data


def make_config(mode: Mode, data_root: Path, steps: int, workers: int) -> object:
    """configs/default.py shrunk or kept at `mode`'s sizes, training `steps` steps on data_root."""
    from configs import default

    config = default.get_config()
    config.data.root = str(data_root)
    config.data.image_size = mode.image_size
    config.data.val_fraction = mode.val_fraction
    config.data.num_workers = workers
    config.model.width = mode.width
    config.model.deconv_filters = mode.deconv_filters
    config.model.heatmap_size = mode.heatmap_size
    config.model.sigma = mode.sigma
    config.optim.warmup_steps = mode.warmup_steps
    config.optim.lr = mode.lr
    config.train.batch_size = mode.train_batch
    config.train.num_steps = steps
    config.train.log_every_steps = max(1, steps // 30)
    config.train.eval_every_steps = max(1, steps // 2)
    config.train.checkpoint_every_steps = max(1, steps // 2)
    config.train.num_val_images = 1
    return config


def render_data(mode: Mode, root: Path) -> int:
    """Render mode.synthetic_num samples into root unless exactly that many are there already."""
    from signlang_jax.synth import generate_dataset

    labels = root / "labels"
    present = len(list(labels.glob("*.json"))) if labels.is_dir() else 0
    if present != mode.synthetic_num:
        generate_dataset(root, mode.synthetic_num, seed=0, size=mode.synthetic_size,
                         overwrite=True, progress=True)
    return mode.synthetic_num


def first_batch(config: object, split: str = "train") -> dict:
    """The first batch of `split` (seeded, so every section sees the same images)."""
    from signlang_jax.data.pipeline import make_dataset

    return next(iter(make_dataset(config, split, num_workers=0)))


# ----------------------------------------------------------------------------- (c) deconv paths


def relative_error(value: object, reference: object) -> float:
    """max |value - reference| / max |reference| in float64 (inf if the reference is all 0)."""
    import numpy as np

    value, reference = np.asarray(value, np.float64), np.asarray(reference, np.float64)
    scale = np.abs(reference).max()
    return float(np.abs(value - reference).max() / scale) if scale > 0 else math.inf


def deconv_errors(shape: tuple[int, int, int, int], cout: int, kernel_size: int
                  ) -> dict[str, dict[str, float]]:
    """Per sub-pixel impl: relative error vs lax's transposed conv of out, d/dx, d/dkernel (f32)."""
    import jax
    import jax.numpy as jnp

    from signlang_jax.models.layers import DECONV_IMPLS, conv_transpose, deconv_padding

    padding, output_padding = deconv_padding(kernel_size)
    kx, kk, kc = jax.random.split(jax.random.key(kernel_size), 3)
    x = jax.random.normal(kx, shape, jnp.float32)
    kernel = jax.random.normal(kk, (kernel_size, kernel_size, shape[3], cout), jnp.float32)
    cotangent = jax.random.normal(kc, (shape[0], 2 * shape[1], 2 * shape[2], cout), jnp.float32)

    def forward_and_vjp(x: jax.Array, kernel: jax.Array) -> dict[str, tuple]:
        results = {}
        for impl in DECONV_IMPLS:  # one program for all: one compilation per kernel size
            fn = functools.partial(conv_transpose, padding=padding,
                                   output_padding=output_padding, impl=impl)
            out, vjp = jax.vjp(fn, x, kernel)
            results[impl] = (out, *vjp(cotangent))
        return results

    with jax.default_matmul_precision("highest"):
        results = jax.jit(forward_and_vjp)(x, kernel)
    return {impl: {part: relative_error(got, ref) for part, got, ref in zip(
        ("out", "dx", "dw"), results[impl], results["lax"], strict=True)}
        for impl in DECONV_IMPLS if impl != "lax"}


def check_deconv(mode: Mode) -> list[Check]:
    """lax transposed conv vs each sub-pixel impl, every supported kernel size."""
    from signlang_jax.models.layers import DECONV_PADDING

    checks = []
    for k in sorted(DECONV_PADDING, reverse=True):
        for impl, errors in deconv_errors(mode.deconv_input, mode.deconv_filters, k).items():
            value = ", ".join(f"{part} {err:.1e}" for part, err in errors.items())
            checks.append(Check(f"deconv lax vs {impl}, k={k}, input {mode.deconv_input}",
                                value, f"max rel err < {DECONV_REL_TOL:.0e} (f32, highest)",
                                max(errors.values()) < DECONV_REL_TOL))
    return checks


# ----------------------------------------------------------------------------- (b) bf16 vs f32


def loss_and_grads(graphdef: object, config: object, state: object, batch: dict) -> tuple:
    """Training-mode heatmap loss and its parameter gradients for one batch (as train_step)."""
    import jax.numpy as jnp
    from flax import nnx

    from signlang_jax.codec import heatmap_loss, render_heatmaps

    model = nnx.merge(graphdef, state)
    model.train()
    keypoints = batch["keypoints"]
    targets = render_heatmaps(keypoints, config.data.image_size, config.model.heatmap_size,
                              config.model.sigma)
    images = batch["image"].astype(jnp.float32) / 255.0

    def loss_fn(model: nnx.Module) -> object:
        return heatmap_loss(model(images), targets, keypoints[..., 2])

    return nnx.value_and_grad(loss_fn)(model)


def grad_groups(grads: object, depth: int = 2) -> dict[str, object]:
    """Flatten a gradient pytree into {module path of `depth` parts: float64 vector}."""
    import jax
    import numpy as np

    groups: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        groups.setdefault(".".join(parts[:depth]), []).append(
            np.asarray(leaf, np.float64).ravel())
    return {name: np.concatenate(leaves) for name, leaves in groups.items()}


def relative_l2(value: object, reference: object) -> float:
    """|value - reference| / |reference| (inf if the reference is all zeros)."""
    import numpy as np

    norm = np.linalg.norm(reference)
    return float(np.linalg.norm(value - reference) / norm) if norm else math.inf


def perturb(state: object, key: object, scale: float = BF16_ROUNDING) -> object:
    """Every float leaf times (1 + scale * N(0, 1)): bf16-sized rounding of the weights."""
    import jax
    import jax.numpy as jnp

    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [
        x * (1 + scale * jax.random.normal(k, x.shape, x.dtype))
        if jnp.issubdtype(x.dtype, jnp.floating) else x for x, k in zip(leaves, keys, strict=True)])


def grad_check(name: str, low: object, reference: object, perturbed: list) -> Check:
    """Row for one module: bf16 gradient error vs GRAD_FLOOR_FACTOR x the perturbation floor."""
    import numpy as np

    error = relative_l2(low, reference)
    floor = float(np.sqrt(np.mean([relative_l2(p, reference) ** 2 for p in perturbed])))
    allowed = GRAD_FLOOR_FACTOR * floor + GRAD_ABS_TOL
    norms = np.linalg.norm(low) * np.linalg.norm(reference)
    cosine = float(low @ reference / norms) if norms else 0.0
    return Check(f"bf16 vs f32: grad {name}",
                 f"rel L2 err {error:.3f} (floor {floor:.3f}), cos {cosine:.4f}",
                 f"err <= {GRAD_FLOOR_FACTOR:g} x floor + {GRAD_ABS_TOL:g} = {allowed:.3f}",
                 error <= allowed)


def check_bf16_vs_f32(config: object, batch: dict, floor_samples: int = 3) -> list[Check]:
    """Loss and per-module gradients, bf16 vs f32 model, same init and batch.

    The gradient of this model at init is ill-conditioned: rounding only the f32 weights to
    bf16 precision already moves the backbone's gradients by tens of percent (measured, CPU,
    64-128 px). So each module's bf16 error is judged against that floor: the RMS relative error
    of the f32 gradient under `floor_samples` such weight perturbations.
    """
    import jax
    from flax import nnx

    from signlang_jax.models import create_model

    results, state = {}, None
    for dtype in ("bfloat16", "float32"):
        model_cfg = config.model.copy_and_resolve_references()
        model_cfg.dtype = dtype
        model = create_model(model_cfg, nnx.Rngs(jax.random.key(config.seed, impl="rbg")))
        if state is None:
            state = nnx.state(model)
        else:
            nnx.update(model, state)  # same parameters and statistics, bit for bit
        graphdef, model_state = nnx.split(model)
        fn = jax.jit(functools.partial(loss_and_grads, graphdef, config))
        precision = "highest" if dtype == "float32" else None  # f32 reference without TF32
        with jax.default_matmul_precision(precision):
            loss, grads = fn(model_state, batch)
            results[dtype] = (float(loss), grad_groups(grads))
            if dtype == "float32":
                perturbed = jax.jit(perturb)
                floors = [grad_groups(fn(perturbed(model_state, jax.random.key(i)), batch)[1])
                          for i in range(floor_samples)]
    (loss16, grads16), (loss32, grads32) = results["bfloat16"], results["float32"]
    loss_rel = abs(loss16 - loss32) / abs(loss32)
    checks = [Check("bf16 vs f32: loss, one step", f"bf16 {loss16:.6g}, f32 {loss32:.6g}, "
                    f"rel diff {loss_rel:.1e}", f"rel diff < {LOSS_REL_TOL:.0e}",
                    loss_rel < LOSS_REL_TOL)]
    for name, ref in grads32.items():
        checks.append(grad_check(name, grads16[name], ref, [f[name] for f in floors]))
    return checks


# ----------------------------------------------------------------------------- (a) training


def logged_losses(metrics_path: Path) -> list[tuple[int, float]]:
    """(step, train/loss) of every line of a metrics.jsonl that has a train loss."""
    rows = []
    for line in metrics_path.read_text().splitlines():
        record = json.loads(line)
        if "train/loss" in record:
            rows.append((int(record["step"]), float(record["train/loss"])))
    return rows


def zero_heatmap_loss(config: object, batch: dict) -> float:
    """The loss of a model that predicts all-zero heatmaps on `batch` (the no-learning level)."""
    import jax.numpy as jnp

    from signlang_jax.codec import heatmap_loss, render_heatmaps

    keypoints = jnp.asarray(batch["keypoints"])
    targets = render_heatmaps(keypoints, config.data.image_size, config.model.heatmap_size,
                              config.model.sigma)
    return float(heatmap_loss(jnp.zeros_like(targets), targets, keypoints[..., 2]))


def loss_fall(losses: list[tuple[int, float]], ratio: float = LOSS_FALL_RATIO,
              zero_loss: float | None = None) -> Check:
    """Compare the mean loss of the first and last quarter of the logged steps."""
    if len(losses) < 2:
        return Check("train: loss falls", f"{len(losses)} logged losses", "at least 2 logged",
                     False)
    window = max(1, len(losses) // 4)
    first, last = losses[:window], losses[-window:]
    first_mean = sum(v for _, v in first) / window
    last_mean = sum(v for _, v in last) / window
    value = (f"steps {first[0][0]}-{first[-1][0]}: {first_mean:.4g}; steps {last[0][0]}-"
             f"{last[-1][0]}: {last_mean:.4g}; ratio {last_mean / first_mean:.3f}")
    if zero_loss:
        value += (f"; last = {last_mean / zero_loss:.2f}x the all-zero heatmap's loss "
                  f"{zero_loss:.4g}")
    passed = math.isfinite(last_mean) and last_mean < ratio * first_mean
    return Check("train: loss falls", value, f"mean(last quarter) < {ratio} x mean(first "
                 "quarter) of logged train/loss", passed)


def check_training(config: object, workdir: Path) -> list[Check]:
    """Train with the real trainer in workdir; check dtype, completion and the loss curve."""
    import jax.numpy as jnp

    from signlang_jax import train as train_lib
    from signlang_jax.models import resolve_dtype

    expected = "float32" if _backend() == "cpu" else "bfloat16"
    dtype = jnp.dtype(resolve_dtype(config.model.dtype)).name
    checks = [Check("train: compute dtype (model.dtype=auto)", dtype, f"== {expected}",
                    dtype == expected)]
    if workdir.exists():
        shutil.rmtree(workdir)
    start = time.perf_counter()
    final = train_lib.train_and_evaluate(config, workdir)
    elapsed = time.perf_counter() - start
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").glob("*") if p.name.isdigit())
    finite = bool(final) and all(math.isfinite(v) for v in final.values())
    checks.append(Check(
        f"train: train_and_evaluate, {config.train.num_steps} steps, batch "
        f"{config.train.batch_size}",
        f"{elapsed:.0f} s; val/loss {final.get('val/loss', math.nan):.4g}, val/pck@0.1 "
        f"{final.get('val/pck@0.1', math.nan):.3f}; checkpoints {steps}",
        "completes, finite val metrics, a checkpoint saved", finite and bool(steps)))
    checks.append(loss_fall(logged_losses(workdir / "metrics.jsonl"),
                            zero_loss=zero_heatmap_loss(config, first_batch(config))))
    return checks


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

    from signlang_jax import train as train_lib

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


# ----------------------------------------------------------------------------- (e) CLIs


def child_env(cpu: bool) -> dict[str, str]:
    """Environment of the CLI subprocesses: repo on the path, GPU memory taken on demand."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # This process holds a share of the GPU; a child preallocating 75 % more would fail.
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if cpu:
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_cli(args: list[str], env: dict[str, str], log: Path, timeout: float
            ) -> tuple[int, str]:
    """Run `python -m ...args` from the repo root; save its output to log; (exit code, stdout)."""
    try:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log.write_text(f"timed out after {timeout} s\n{e.stdout or ''}\n{e.stderr or ''}")
        return -1, ""
    log.write_text(f"$ python -m {' '.join(args)}\nexit {proc.returncode}\n--- stdout\n"
                   f"{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.returncode, proc.stdout


def check_evaluate(workdir: Path, env: dict[str, str], timeout: float) -> list[Check]:
    """`python -m signlang_jax.evaluate --checkpoint WORKDIR` (best step): exit code, PCK."""
    out = workdir / "eval"
    log = workdir.parent / "evaluate.log"
    code, _ = run_cli(["signlang_jax.evaluate", "--checkpoint", str(workdir), "--out", str(out)],
                      env, log, timeout)
    metrics_path = out / "metrics.json"
    if code != 0 or not metrics_path.exists():
        return [Check("CLI: signlang_jax.evaluate --checkpoint WORKDIR", f"exit {code}, see {log}",
                      "exit 0, metrics.json written", False)]
    metrics = json.loads(metrics_path.read_text())
    value = (f"exit 0, step {metrics['step']}, {metrics['num_images']} images, PCK@0.1 "
             f"{metrics['pck@0.1']['all']:.3f}, heatmap MSE {metrics['heatmap_mse']:.3e}")
    return [Check("CLI: signlang_jax.evaluate --checkpoint WORKDIR", value,
                  "exit 0, metrics.json written", True)]


PARITY_LINE = re.compile(r"max abs heatmap difference (\S+) \(tolerance (\S+)\)")


def check_onnx(workdir: Path, env: dict[str, str], timeout: float) -> list[Check]:
    """`python -m interop.to_onnx --checkpoint WORKDIR:latest`: exit code and printed parity."""
    output = workdir.parent / "model.onnx"
    log = workdir.parent / "to_onnx.log"
    code, stdout = run_cli(["interop.to_onnx", "--checkpoint", f"{workdir}:latest", "--output",
                            str(output)], env, log, timeout)
    match = PARITY_LINE.search(stdout)
    name = "CLI: interop.to_onnx --checkpoint WORKDIR:latest"
    criterion = "exit 0, printed onnxruntime-vs-JAX max abs diff <= its tolerance"
    if code != 0 or match is None:
        return [Check(name, f"exit {code}, see {log}", criterion, False)]
    diff, tolerance = float(match.group(1)), float(match.group(2))
    size = output.stat().st_size / 1e6 if output.exists() else 0.0
    return [Check(name, f"exit 0, {size:.1f} MB, max abs heatmap diff {diff:.2e} (tolerance "
                  f"{tolerance:.0e})", criterion, output.exists() and diff <= tolerance)]


# ----------------------------------------------------------------------------- table and main


def format_table(checks: list[Check], header: list[str]) -> str:
    """The markdown report: header lines, then one row per check."""
    lines = [*header, "", "| # | check | value | criterion | result |",
             "|---|---|---|---|---|"]
    for i, c in enumerate(checks, 1):
        cells = (c.name, c.value, c.criterion, "pass" if c.passed else "**FAIL**")
        lines.append(f"| {i} | " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
    failed = sum(not c.passed for c in checks)
    lines += ["", f"{len(checks) - failed}/{len(checks)} passed" + (
        f", {failed} FAILED" if failed else "")]
    return "\n".join(lines) + "\n"


def run_section(name: str, checks: list[Check], fn: Callable[[], list[Check]]) -> None:
    """Append fn's rows to checks; an exception becomes one failed row (the run goes on)."""
    print(f"== {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        rows = fn()
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
        traceback.print_exc()
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        rows = [Check(name, message, "runs without an error", False)]
    checks.extend(rows)
    print(f"   {time.perf_counter() - start:.1f} s, "
          f"{sum(r.passed for r in rows)}/{len(rows)} passed", file=sys.stderr, flush=True)


def missing_modules(names: tuple[str, ...] = REQUIRED_MODULES) -> list[str]:
    """The modules of `names` that cannot be imported."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def _backend() -> str:
    import jax

    return jax.default_backend()


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for data, training run, exports and the table (default: a "
                             "new temporary folder, kept)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown table file (default WORKDIR/gpu_check.md)")
    parser.add_argument("--cpu", action="store_true",
                        help="smoke mode: the same code paths on CPU at tiny sizes (~1 min)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default 300 on GPU, 16 with --cpu)")
    parser.add_argument("--workers", type=int, default=None,
                        help="input pipeline processes (default: all cores on GPU, 2 with --cpu)")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS,
                        help="peak bf16 dense TFLOP/s for MFU (default: H200, "
                             f"{H200_BF16_DENSE_TFLOPS:g})")
    parser.add_argument("--cli-timeout", type=float, default=600,
                        help="seconds allowed to each CLI subprocess")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every section; print and write the table; 0 if all pass, 1 if not, 2 if no GPU."""
    args = build_parser().parse_args(argv)
    if missing_modules(("jax",)):
        print("ERROR jax is not installed: pip install -e '.[cuda]' (or '.' for --cpu)",
              file=sys.stderr)
        return 2
    import jax

    if args.cpu:
        jax.config.update("jax_platforms", "cpu")
    else:
        # Read when the GPU client starts: the CLI subprocesses need GPU memory too, so take
        # 60 % here instead of the default 75 %.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")
        if jax.default_backend() != "gpu":
            print(f"ERROR no GPU: JAX's backend is {jax.default_backend()!r} (devices "
                  f"{jax.devices()}). Run on a CUDA machine with jax[cuda] installed, or pass "
                  "--cpu for the CPU smoke run.", file=sys.stderr)
            return 2
    missing = missing_modules()
    if missing:
        print(f"ERROR missing Python packages: {', '.join(missing)}. Install them (see the "
              f"top of {Path(__file__).name} for carrying wheels to an offline machine).",
              file=sys.stderr)
        return 2
    mode = CPU_MODE if args.cpu else GPU_MODE
    if not jax.config.jax_compilation_cache_dir:  # a rerun compiles nothing twice
        jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
    steps = args.steps or (16 if args.cpu else 300)
    workers = args.workers if args.workers is not None else (
        min(2, os.cpu_count() or 1) if args.cpu else os.cpu_count() or 1)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="gpu_check_"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or workdir / "gpu_check.md"
    data_root = workdir / f"data_{mode.synthetic_size}"
    train_dir = workdir / "train"
    # Training decodes in the training process in CPU mode: worker start-up would dominate.
    config = make_config(mode, data_root, steps, workers if not args.cpu else 0)
    header = [f"# gpu_check ({mode.name} mode)", "",
              f"- device: {jax.devices()[0].device_kind} x {jax.device_count()} "
              f"({jax.default_backend()}), jax {jax.__version__}, {os.cpu_count()} cores",
              f"- model: {config.model.name} width {config.model.width}, "
              f"{config.data.image_size} px -> {config.model.heatmap_size}, "
              f"dtype {config.model.dtype}; data: {mode.synthetic_num} synthetic images at "
              f"{mode.synthetic_size} px in {data_root}",
              f"- workdir: {workdir}"]
    checks: list[Check] = []
    start = time.perf_counter()

    def save() -> None:
        table = format_table(checks, [*header, f"- elapsed: {time.perf_counter() - start:.0f} s"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)

    def section(name: str, fn: Callable[[], list[Check]]) -> None:
        run_section(name, checks, fn)
        save()

    section("synthetic data", lambda: [Check(
        "synthetic data rendered", f"{render_data(mode, data_root)} images at "
        f"{mode.synthetic_size} px", "written", True)])
    section("deconv: lax vs sub-pixel", lambda: check_deconv(mode))
    section("bf16 vs f32", lambda: check_bf16_vs_f32(config, first_batch(config)))
    section("training", lambda: check_training(config, train_dir))
    env = child_env(args.cpu)
    section("evaluate CLI", lambda: check_evaluate(train_dir, env, args.cli_timeout))
    section("to_onnx CLI", lambda: check_onnx(train_dir, env, args.cli_timeout))
    train_rate = [0.0]

    def speed() -> list[Check]:
        rows, train_rate[0] = check_speed(config, mode, args.peak_tflops)
        return rows

    section("train step speed", speed)
    section("input pipeline", lambda: check_pipeline(config, workers, mode.pipeline_batches,
                                                     train_rate[0]))
    print(format_table(checks, [*header, f"- elapsed: {time.perf_counter() - start:.0f} s"]))
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

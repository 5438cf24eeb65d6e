"""gpu_check section (a): a short run of the real trainer, its compute dtype and loss curve."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

from gpu_check_common import Check, first_batch

# Tolerance: the mean logged train loss of the last quarter of the run must be below 0.9x
#   that of the first quarter: a fall beyond the batch-to-batch noise of those means (~5 % at
#   batch 4, less at 32). Whether the model beat the all-zero heatmap (learned peaks, not just
#   its output offset) is reported beside it as a figure: 300 steps from scratch may not.
LOSS_FALL_RATIO = 0.9


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


def _backend() -> str:
    import jax

    return jax.default_backend()


def check_training(config: object, workdir: Path) -> list[Check]:
    """Train with the real trainer in workdir; check dtype, completion and the loss curve."""
    import jax.numpy as jnp

    from signlang_jax.models import resolve_dtype
    from signlang_jax.training import train as train_lib

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

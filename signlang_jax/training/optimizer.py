"""The optimizer of `config.optim`: lr schedule, clipping, Adam/AdamW/SGD, accumulation."""

from __future__ import annotations

import ml_collections
import optax


def make_schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
    """Learning rate per optimizer update: linear warmup, then cosine, step or constant."""
    warmup = min(optim.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)
    if optim.schedule == "cosine":
        after = optax.cosine_decay_schedule(optim.lr, decay_steps, alpha=optim.final_lr_fraction)
    elif optim.schedule == "step":
        boundaries = {int(b * decay_steps): optim.step_factor for b in optim.step_boundaries}
        after = optax.piecewise_constant_schedule(optim.lr, boundaries)
    else:  # "constant" (validate_config refuses anything else)
        after = optax.constant_schedule(optim.lr)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup), after], [warmup])


def make_optimizer(optim: ml_collections.ConfigDict, total_steps: int
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain of `config.optim` (clipping, Adam/AdamW/SGD, accumulation), schedule."""
    schedule = make_schedule(optim, total_steps // optim.accumulate_steps)
    if optim.name == "adamw":
        base = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, weight_decay=optim.weight_decay)
    elif optim.name == "sgd":
        base = optax.sgd(schedule, momentum=optim.b1, nesterov=True)
    else:  # "adam"
        base = optax.adam(schedule, b1=optim.b1, b2=optim.b2)
    parts = [optax.clip_by_global_norm(optim.grad_clip)] if optim.grad_clip > 0 else []
    tx = optax.chain(*parts, base)
    if optim.accumulate_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=optim.accumulate_steps)
    return tx, schedule

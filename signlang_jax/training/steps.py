"""The jitted step functions and the training state they work on.

The state is `nnx.split((model, optimizer))`, or `(model, optimizer, average)` when the run keeps
an exponential moving average of the weights (`optim.ema`): one pytree, donated to `train_step`
and checkpointed whole. `train_step` renders the targets inside the step from the batch's keypoints
(see `signlang_jax.codec`: heatmaps, or SimCC's 1D labels with `model.head="simcc"`), so only
images and keypoints cross to the device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from signlang_jax.codec import (
    decode_heatmaps,
    heatmap_loss,
    render_heatmaps,
    simcc_heatmaps,
    simcc_labels,
    simcc_loss,
)
from signlang_jax.models import create_model
from signlang_jax.training.optimizer import make_optimizer


def create_state(config: ml_collections.ConfigDict, total_steps: int
                 ) -> tuple[nnx.GraphDef, nnx.State, optax.Schedule]:
    """Fresh model + optimizer, split into (graphdef, state), and the lr schedule."""
    # rbg keys: the default threefry sampler compiles once per parameter shape (~15 s at init).
    model = create_model(config.model, nnx.Rngs(jax.random.key(config.seed, impl="rbg")))
    tx, schedule = make_optimizer(config.optim, total_steps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    # With optim.ema the state is (model, optimizer, average): a third copy of the model.
    average = (nnx.clone(model),) if config.optim.ema else ()
    for copy in average:  # own buffers: the state is donated, and a buffer cannot be twice
        nnx.update(copy, jax.tree.map(jnp.copy, nnx.state(model)))
    graphdef, state = nnx.split((model, optimizer, *average))
    return graphdef, state, schedule


def _images(batch: dict) -> jax.Array:
    # uint8 crosses to the device; the model normalises [0, 1] input itself.
    return batch["image"].astype(jnp.float32) / 255.0


def train_step(graphdef: nnx.GraphDef, schedule: optax.Schedule, config: ml_collections.ConfigDict,
               state: nnx.State, batch: dict) -> tuple[nnx.State, dict]:
    """One optimizer step: render targets, forward, weighted MSE, backward, update.

    A step whose loss or gradients are not finite is skipped: the whole state (parameters,
    optimizer moments, BatchNorm statistics) stays as it was and metrics["skipped"] is 1. The
    guard covers more than `optax.apply_if_finite`, which would still let the forward pass
    write NaN BatchNorm statistics; global-norm clipping would turn an inf gradient into NaN.
    """
    before = jax.tree.map(lambda x: x, state)  # new leaves' containers: merge may mutate state
    model, optimizer, *average = nnx.merge(graphdef, state)
    model.train()
    keypoints = batch["keypoints"]

    def loss_fn(model: nnx.Module) -> jax.Array:
        if _simcc(config):
            return jnp.mean(_simcc_loss(model, config, batch)[0])
        targets = _targets(config, keypoints)
        return heatmap_loss(model(_images(batch)), targets, keypoints[..., 2])

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    grad_norm = optax.tree.norm(grads)
    step = optimizer.step[...]
    optimizer.update(model, grads)
    if average:
        update_average(average[0], model, step, config.optim.ema_decay)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    after = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                         nnx.state((model, optimizer, *average)), before)
    metrics = {"loss": loss, "grad_norm": grad_norm, "skipped": (~finite).astype(jnp.int32),
               "lr": schedule(step // config.optim.accumulate_steps)}
    return after, metrics


def update_average(average: nnx.Module, model: nnx.Module, step: jax.Array,
                   decay: float) -> None:
    """average <- d average + (1 - d) model for every array (weights and BatchNorm statistics),
    d = min(decay, (1 + step) / (10 + step)): early steps, when the weights move most, count."""
    d = jnp.minimum(decay, (1.0 + step) / (10.0 + step)).astype(jnp.float32)
    mixed = jax.tree.map(lambda a, m: (d * a + (1 - d) * m).astype(a.dtype),
                         nnx.state(average), nnx.state(model))
    nnx.update(average, mixed)


def eval_step(graphdef: nnx.GraphDef, config: ml_collections.ConfigDict, state: nnx.State,
              batch: dict) -> tuple[jax.Array, jax.Array]:
    """Predicted keypoints (N, K, 3) in input pixels and per-sample loss (N,), eval-mode BN;
    the weights' moving average when the run keeps one (`optim.ema`)."""
    model, _, *average = nnx.merge(graphdef, state)
    model = average[0] if average else model
    model.eval()
    keypoints = batch["keypoints"]
    if _simcc(config):
        per_sample, logits = _simcc_loss(model, config, batch)
        predicted = simcc_heatmaps(*logits, config.model.sigma)
    else:
        predicted = model(_images(batch))
        weights = keypoints[..., 2][:, None, None, :]
        per_sample = jnp.mean(jnp.square(predicted - _targets(config, keypoints)) * weights,
                              axis=(1, 2, 3))
    udp = config.model.get("udp", False)
    return decode_heatmaps(predicted, config.data.image_size, udp), per_sample


def _simcc(config: ml_collections.ConfigDict) -> bool:
    return config.model.get("head", "heatmap") == "simcc"


def _targets(config: ml_collections.ConfigDict, keypoints: jax.Array) -> jax.Array:
    return render_heatmaps(keypoints, config.data.image_size, config.model.heatmap_size,
                           config.model.sigma, config.model.get("udp", False))


def _simcc_loss(model: nnx.Module, config: ml_collections.ConfigDict, batch: dict
                ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Per-sample SimCC loss (N,) and the (x, y) logits it was computed from."""
    keypoints = batch["keypoints"]
    labels = simcc_labels(keypoints, config.data.image_size, config.model.heatmap_size,
                          config.model.sigma, config.model.get("udp", False))
    logits = model.head.logits(model.features(_images(batch)))
    return simcc_loss(*logits, *labels, keypoints[..., 2]), logits


def is_finite(state: nnx.State) -> jax.Array:
    """True if every floating-point array of `state` is finite (checked before each save)."""
    leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

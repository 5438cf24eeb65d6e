"""gpu_check sections (c) deconv paths and (b) bf16 vs f32: numerical agreement of the paths."""

from __future__ import annotations

import functools
import math

from gpu_check_common import Check, Mode

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

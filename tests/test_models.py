"""Tests for signlang_jax.models: torch equivalence of the transposed conv, names, shapes, dtypes.

Models are tiny (width 8, 16 deconv filters, 32 px inputs) with host-filled random parameters:
on XLA:CPU real initialisation costs seconds of compilation per model. Real-width models are only
built abstractly (nnx.eval_shape) to count parameters, list names and check shapes and dtypes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch
from flax import nnx

from signlang_jax.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    create_model,
    flax_to_torch_name,
)
from signlang_jax.models.head import SimpleBaselineHead
from signlang_jax.models.layers import (
    DECONV_PADDING,
    BatchNorm,
    ConvTranspose,
    conv2d,
    conv_transpose,
    xla_compiler_options,
)
from signlang_jax.models.pooling import max_pool


def model_config(name: str = "resnet18", **overrides) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict(dict(
        name=name, width=64, num_keypoints=64, deconv_layers=3, deconv_filters=256,
        deconv_kernel=4, final_kernel=1, dtype="float32", deconv_impl="auto"))
    config.update(overrides)
    return config


def tiny_config(name: str = "resnet18", **overrides) -> ml_collections.ConfigDict:
    return model_config(name, width=8, deconv_filters=16, num_keypoints=5, **overrides)


def abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
    return nnx.eval_shape(lambda: create_model(config, nnx.Rngs(0)))


def make_tiny(name: str = "resnet18", seed: int = 0, **overrides) -> nnx.Module:
    """A tiny model with random parameters filled in on the host.

    Real initialisation compiles one sampler per parameter (seconds per model on XLA:CPU); the
    forward tests only need well-scaled values. BatchNorm statistics start at mean 0, var 1 as
    after real initialisation (test_initialisation covers the real initialisers).
    """
    model = abstract_model(tiny_config(name, **overrides))
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model)):
        leaf, shape = path[-1], var.shape
        if leaf == "kernel":
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
        elif leaf == "scale":
            value = 1.0 + 0.1 * rng.standard_normal(shape)
        elif leaf == "bias":
            value = 0.1 * rng.standard_normal(shape)
        else:
            value = np.zeros(shape) if leaf == "mean" else np.ones(shape)
        var.set_value(jnp.asarray(value, var.dtype))
    return model


def torch_names(model: nnx.Module, prefix: str = "") -> list[str]:
    names = [flax_to_torch_name(path) for path, _ in nnx.to_flat_state(nnx.state(model))]
    return sorted(n for n in names if n.startswith(prefix))


def num_params(model: nnx.Module, prefix: str) -> int:
    return sum(int(np.prod(v.shape)) for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
               if path[0] == prefix)


@pytest.fixture(scope="module")
def tiny_resnet18():
    """(graphdef, state) of a tiny ResNet-18 model; merge a fresh copy per use."""
    return nnx.split(make_tiny("resnet18"))


# ----------------------------------------------------------------------------------------------
# Transposed convolution: every impl equals torch, sub-pixel gradients equal lax's.

IMPLS = ("lax", "subpixel_conv", "subpixel_matmul")


@pytest.mark.parametrize("kernel_size", sorted(DECONV_PADDING))
def test_conv_transpose_matches_torch(kernel_size):
    padding, output_padding = DECONV_PADDING[kernel_size]
    rng = np.random.default_rng(kernel_size)
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    w_torch = rng.standard_normal((3, 4, kernel_size, kernel_size)).astype(np.float32)
    expected = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w_torch), stride=2,
        padding=padding, output_padding=output_padding).permute(0, 2, 3, 1).numpy()
    assert expected.shape == (2, 10, 12, 4)
    kernel = jnp.asarray(w_torch.transpose(2, 3, 0, 1))  # the documented convention
    for impl in IMPLS:
        got = conv_transpose(jnp.asarray(x), kernel, padding=padding,
                             output_padding=output_padding, impl=impl)
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5, rtol=1e-5, err_msg=impl)
        # The module: the same function of its `kernel` parameter.
        layer = nnx.eval_shape(lambda impl=impl: ConvTranspose(3, 4, kernel_size, impl=impl,
                                                               rngs=nnx.Rngs(0)))
        layer.kernel.set_value(kernel)
        np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x))), expected, atol=1e-5,
                                   rtol=1e-5, err_msg=impl)


@pytest.mark.parametrize("kernel_size", sorted(DECONV_PADDING))
def test_subpixel_gradients_match_lax(kernel_size):
    padding, output_padding = DECONV_PADDING[kernel_size]
    rng = np.random.default_rng(10 + kernel_size)
    x = jnp.asarray(rng.standard_normal((2, 4, 5, 3)).astype(np.float32))
    kernel = jnp.asarray(rng.standard_normal((kernel_size, kernel_size, 3, 4)).astype(np.float32))
    cotangent = jnp.asarray(rng.standard_normal((2, 8, 10, 4)).astype(np.float32))

    def grads(impl):
        loss = lambda x, k: jnp.sum(conv_transpose(
            x, k, padding=padding, output_padding=output_padding, impl=impl) * cotangent)
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, kernel)

    reference = grads("lax")
    for impl in ("subpixel_conv", "subpixel_matmul"):
        for got, want in zip(grads(impl), reference, strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4, rtol=1e-4,
                                       err_msg=impl)


@pytest.mark.parametrize("shape", [(2, 9, 7, 3), (1, 8, 8, 2), (2, 5, 6, 1)])
def test_max_pool_matches_torch_including_tie_gradients(shape):
    """Values and gradients equal torch's MaxPool2d(3, 2, 1), even where a window has ties."""
    rng = np.random.default_rng(0)
    # Rounded ReLU output: many windows hold several equal maxima (zeros and repeated values).
    x = np.maximum(np.round(rng.normal(size=shape), 1), 0).astype(np.float32)
    x[0, :3, :3, 0] = 0.5  # a whole window of equal values
    y, vjp = jax.vjp(max_pool, jnp.asarray(x))
    dy = rng.normal(size=y.shape).astype(np.float32)
    dx = vjp(jnp.asarray(dy))[0]
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    yt = torch.nn.functional.max_pool2d(xt, 3, 2, 1)
    yt.backward(torch.from_numpy(dy).permute(0, 3, 1, 2))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(np.asarray(dx), xt.grad.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    # The tied window sends its whole gradient to its first element, as torch does.
    assert float(dx[0, 1, 1, 0]) == 0.0


def test_matmul_stats_batch_norm_equals_flax_batch_norm():
    """Training mode: same output, running statistics and gradients as nnx.BatchNorm."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(3.0, 2.0, (4, 5, 6, 7)).astype(np.float32))
    cotangent = jnp.asarray(rng.normal(size=x.shape).astype(np.float32))
    results = []
    for cls, extra in ((nnx.BatchNorm, {}), (BatchNorm, {"matmul_stats": True})):
        bn = cls(7, momentum=0.9, epsilon=1e-5, rngs=nnx.Rngs(0), **extra)
        bn.scale[...] = jnp.linspace(0.5, 2.0, 7)
        bn.bias[...] = jnp.linspace(-1.0, 1.0, 7)
        graphdef, state = nnx.split(bn)

        def apply(state, x, graphdef=graphdef):
            module = nnx.merge(graphdef, state)
            return module(x), nnx.state(module)

        (y, new_state), vjp = jax.vjp(apply, state, x)
        grads, dx = vjp((cotangent, jax.tree.map(jnp.zeros_like, new_state)))
        results.append((y, new_state, grads, dx))
    (y0, s0, g0, dx0), (y1, s1, g1, dx1) = results
    np.testing.assert_allclose(y1, y0, atol=2e-5)
    np.testing.assert_allclose(dx1, dx0, atol=2e-5)
    for a, b in zip(jax.tree.leaves(s0), jax.tree.leaves(s1), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5)  # running mean and (biased) var
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)  # d scale, d bias
    assert float(jnp.abs(s1["mean"][...] - 0.1 * jnp.mean(x, axis=(0, 1, 2))).max()) < 1e-5
    # Eval mode uses the running statistics exactly as flax does.
    eval_bn = BatchNorm(7, matmul_stats=True, rngs=nnx.Rngs(0))
    eval_bn.eval()
    np.testing.assert_allclose(eval_bn(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)


def test_cpu_compiler_options_are_accepted():
    """On CPU the YNNPACK-convolution switch is accepted by this jaxlib and changes the program."""
    options = xla_compiler_options()
    assert jax.default_backend() != "cpu" or options, "the CPU compiler option was dropped"
    x = jnp.ones((1, 8, 8, 3))
    w = jnp.ones((3, 3, 3, 4))
    conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    tuned = jax.jit(conv, compiler_options=options).lower(x, w).compile().as_text()
    assert "ynn" not in tuned  # the convolution runs on XLA's own kernels
    np.testing.assert_allclose(jax.jit(conv, compiler_options=options)(x, w), jax.jit(conv)(x, w))


def test_unsupported_deconv_settings_raise():
    with pytest.raises(ValueError, match="deconv_kernel=5"):
        abstract_model(model_config(deconv_kernel=5))
    with pytest.raises(ValueError, match="deconv_impl='cudnn'"):
        abstract_model(model_config(deconv_impl="cudnn"))
    with pytest.raises(ValueError, match="model.name='vgg16'"):
        abstract_model(model_config(name="vgg16"))
    with pytest.raises(ValueError, match="model.dtype='float16'"):
        abstract_model(model_config(dtype="float16"))
    with pytest.raises(ValueError, match="sub-pixel"):
        conv_transpose(jnp.zeros((1, 4, 4, 2)), jnp.zeros((4, 4, 2, 2)), padding=0,
                       output_padding=0, impl="subpixel_matmul")


# ----------------------------------------------------------------------------------------------
# Names and parameter counts: one-to-one with torchvision / the torch twin.


def expected_resnet18_backbone_names() -> list[str]:
    """torchvision resnet18 state_dict keys without fc and num_batches_tracked, under backbone."""
    bn = ("weight", "bias", "running_mean", "running_var")
    names = ["conv1.weight"] + [f"bn1.{leaf}" for leaf in bn]
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            for i in (1, 2):
                names.append(f"{prefix}.conv{i}.weight")
                names += [f"{prefix}.bn{i}.{leaf}" for leaf in bn]
            if stage > 1 and block == 0:
                names.append(f"{prefix}.downsample.0.weight")
                names += [f"{prefix}.downsample.1.{leaf}" for leaf in bn]
    return sorted(f"backbone.{n}" for n in names)


def test_flax_to_torch_name():
    assert flax_to_torch_name(("backbone", "layer1", 0, "conv1", "kernel")) == \
        "backbone.layer1.0.conv1.weight"
    assert flax_to_torch_name(("head", "deconv_layers", 1, "scale")) == \
        "head.deconv_layers.1.weight"
    assert flax_to_torch_name(("head", "deconv_layers", 4, "var")) == \
        "head.deconv_layers.4.running_var"
    with pytest.raises(ValueError, match="no torch name"):
        flax_to_torch_name(("head", "count"))


def test_resnet18_names_and_counts():
    model = abstract_model(model_config("resnet18"))
    assert torch_names(model, "backbone.") == expected_resnet18_backbone_names()
    bn = ("weight", "bias", "running_mean", "running_var")
    expected_head = sorted(
        [f"head.deconv_layers.{3 * i}.weight" for i in range(3)]
        + [f"head.deconv_layers.{3 * i + 1}.{leaf}" for i in range(3) for leaf in bn]
        + ["head.final_layer.weight", "head.final_layer.bias"])
    assert torch_names(model, "head.") == expected_head
    # torchvision resnet18: 11,689,512 parameters, of which fc has 512 * 1000 + 1000.
    assert num_params(model, "backbone") == 11_689_512 - 513_000
    # 512->256 and 2 x 256->256 4x4 deconvs, 3 BN (scale + bias), 1x1 conv to 64 with bias.
    assert num_params(model, "head") == (512 + 256 + 256) * 256 * 16 + 3 * 2 * 256 + 256 * 64 + 64
    state = dict((flax_to_torch_name(p), v) for p, v in nnx.to_flat_state(nnx.state(model)))
    assert state["head.deconv_layers.0.weight"].shape == (4, 4, 512, 256)  # (kh, kw, Cin, Cout)
    assert state["backbone.conv1.weight"].shape == (7, 7, 3, 64)  # HWIO


def test_resnet50_and_resnet34_counts():
    resnet50 = abstract_model(model_config("resnet50"))
    names = torch_names(resnet50, "backbone.")
    # v1.5 bottleneck: conv3/bn3, a projection shortcut in every stage's first block.
    for name in ("backbone.layer1.0.conv3.weight", "backbone.layer1.0.bn3.running_var",
                 "backbone.layer1.0.downsample.0.weight", "backbone.layer4.2.conv3.weight",
                 "backbone.layer4.0.downsample.1.running_mean"):
        assert name in names
    assert "backbone.layer1.1.downsample.0.weight" not in names
    # torchvision resnet50: 25,557,032 parameters, fc 2048 * 1000 + 1000.
    assert num_params(resnet50, "backbone") == 25_557_032 - 2_049_000
    assert resnet50.backbone.layer2[0].conv2.strides == (2, 2)  # stride on the 3x3 (v1.5)
    # torchvision resnet34: 21,797,672 parameters, fc 513,000.
    assert num_params(abstract_model(model_config("resnet34")), "backbone") == 21_797_672 - 513_000


def test_mobilenet_v3_small_names_and_counts():
    model = abstract_model(model_config("mobilenet_v3_small"))
    names = torch_names(model, "backbone.")
    for name in ("backbone.features.0.0.weight", "backbone.features.0.1.running_mean",
                 "backbone.features.1.block.0.0.weight",  # depthwise (no expand: 16 == 16)
                 "backbone.features.1.block.1.fc1.weight", "backbone.features.1.block.1.fc2.bias",
                 "backbone.features.1.block.2.1.weight",  # project BN
                 "backbone.features.2.block.0.0.weight",  # expand 16 -> 72, no SE
                 "backbone.features.2.block.2.1.running_var",
                 "backbone.features.11.block.2.fc1.bias", "backbone.features.12.0.weight"):
        assert name in names
    assert not any(n.startswith("backbone.features.13") for n in names)
    assert not any(".fc" in n for n in names if n.startswith(("backbone.features.2.",
                                                              "backbone.features.3.")))
    state = dict((flax_to_torch_name(p), v) for p, v in nnx.to_flat_state(nnx.state(model)))
    assert state["backbone.features.1.block.0.0.weight"].shape == (3, 3, 1, 16)  # depthwise
    assert state["backbone.features.12.0.weight"].shape == (1, 1, 96, 576)
    assert model.backbone.out_features == 576
    # torchvision mobilenet_v3_small: 2,542,856 parameters; classifier 576*1024 + 1024 +
    # 1024*1000 + 1000 = 1,615,848.
    assert num_params(model, "backbone") == 2_542_856 - 1_615_848 == 927_008


# ----------------------------------------------------------------------------------------------
# Forward pass: shapes, dtypes, normalisation, train/eval, functional jit.


def forward(graphdef, state, images):
    """Functional forward: returns (heatmaps, updated state)."""
    model = nnx.merge(graphdef, state)
    heatmaps = model(images)
    return heatmaps, nnx.state(model)


jit_forward = jax.jit(forward, static_argnums=0)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "mobilenet_v3_small"])
def test_output_shape_and_dtype(name):
    graphdef, state = nnx.split(abstract_model(tiny_config(name)))
    images = jax.ShapeDtypeStruct((2, 32, 64, 3), jnp.float32)
    heatmaps, _ = jax.eval_shape(forward, graphdef, state, images)
    assert heatmaps.shape == (2, 8, 16, 5) and heatmaps.dtype == jnp.float32


def test_mobilenet_v3_small_runs():
    graphdef, state = nnx.split(make_tiny("mobilenet_v3_small"))
    images = jnp.asarray(np.random.default_rng(0).random((2, 32, 64, 3), np.float32))
    heatmaps, _ = jit_forward(graphdef, state, images)
    assert heatmaps.shape == (2, 8, 16, 5) and heatmaps.dtype == jnp.float32
    assert np.isfinite(np.asarray(heatmaps)).all() and float(jnp.std(heatmaps)) > 0


def test_initialisation():
    rngs = nnx.Rngs(jax.random.key(0, impl="rbg"))
    head = SimpleBaselineHead(64, 64, deconv_filters=64, rngs=rngs)
    deconv, bn, final = head.deconv_layers[0], head.deconv_layers[1], head.final_layer
    assert deconv.kernel[...].shape == (4, 4, 64, 64)
    assert abs(float(jnp.std(deconv.kernel[...])) - 0.001) < 5e-5  # Normal(std=0.001)
    assert abs(float(jnp.std(final.kernel[...])) - 0.001) < 1e-4
    assert not jnp.any(final.bias[...])
    assert jnp.all(bn.scale[...] == 1) and not jnp.any(bn.bias[...])
    assert jnp.all(bn.var[...] == 1) and not jnp.any(bn.mean[...])
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)  # torch momentum 0.1, eps 1e-5
    # Backbone convs: kaiming normal, fan_out = out_channels * kh * kw (torchvision).
    conv = conv2d(16, 64, 3, rngs=rngs)
    assert abs(float(jnp.std(conv.kernel[...])) - np.sqrt(2 / (64 * 9))) < 0.003
    # MobileNetV3 keeps torchvision's BatchNorm (eps 1e-3, torch momentum 0.01).
    stem_bn = abstract_model(tiny_config("mobilenet_v3_small")).backbone.features[0][1]
    assert (stem_bn.momentum, stem_bn.epsilon) == (0.99, 1e-3)


def test_resnet18_forward_normalisation_and_jit(tiny_resnet18):
    graphdef, state = tiny_resnet18
    hash(graphdef)  # hashable: usable as a static jit argument
    model = nnx.merge(graphdef, state)
    model.eval()
    eval_graphdef, eval_state = nnx.split(model)
    rng = np.random.default_rng(1)
    normalised = rng.standard_normal((4, 32, 32, 3)).astype(np.float32)
    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    heatmaps, _ = jit_forward(eval_graphdef, eval_state, jnp.asarray(mean + std * normalised))
    assert heatmaps.shape == (4, 8, 8, 5) and heatmaps.dtype == jnp.float32

    # The model normalises inside: backbone + head on the normalised input give the same result.
    @jax.jit
    def without_normalisation(state, x):
        model = nnx.merge(eval_graphdef, state)
        return model.head(model.backbone(x))

    np.testing.assert_allclose(np.asarray(heatmaps),
                               np.asarray(without_normalisation(eval_state, normalised)),
                               atol=1e-5, rtol=1e-4)
    # uint8 images are scaled by 1/255 first.
    pixels = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    from_uint8, _ = jit_forward(eval_graphdef, eval_state, jnp.asarray(pixels))
    from_float, _ = jit_forward(eval_graphdef, eval_state, jnp.asarray(pixels / 255.0, jnp.float32))
    np.testing.assert_allclose(np.asarray(from_uint8), np.asarray(from_float), atol=1e-5)


def test_train_mode_updates_running_stats_eval_uses_them(tiny_resnet18):
    graphdef, state = tiny_resnet18
    model = nnx.merge(graphdef, state)
    model.train()
    train_graphdef, train_state = nnx.split(model)
    images = jnp.asarray(np.random.default_rng(2).random((4, 32, 32, 3), np.float32))
    _, new_state = jit_forward(train_graphdef, train_state, images)

    # backbone.bn1 sees conv1 of the normalised image; momentum 0.9 from mean 0 / var 1.
    @jax.jit
    def conv1_output(state, images):
        model = nnx.merge(train_graphdef, state)
        x = (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        return model.backbone.conv1(x)

    features = np.asarray(conv1_output(train_state, images), np.float64)
    trained = nnx.merge(train_graphdef, new_state)
    bn1 = trained.backbone.bn1
    np.testing.assert_allclose(np.asarray(bn1.mean[...]), 0.1 * features.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn1.var[...]), 0.9 + 0.1 * features.var(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-6)
    assert bn1.mean[...].dtype == jnp.float32

    # Same-shape batches throughout so that each mode compiles once: the first sample alone
    # (repeated) against the first sample among others.
    repeated = jnp.repeat(images[:1], 4, axis=0)
    # Train mode normalises with the batch: the first sample comes out differently.
    train_full, _ = jit_forward(train_graphdef, new_state, images)
    train_repeated, _ = jit_forward(train_graphdef, new_state, repeated)
    assert not np.allclose(np.asarray(train_full[0]), np.asarray(train_repeated[0]), atol=1e-4)
    # Eval uses the running statistics (and does not move them): the batch does not matter.
    trained.eval()
    eval_graphdef, eval_state = nnx.split(trained)
    eval_full, after = jit_forward(eval_graphdef, eval_state, images)
    eval_repeated, _ = jit_forward(eval_graphdef, eval_state, repeated)
    np.testing.assert_allclose(np.asarray(eval_full[0]), np.asarray(eval_repeated[0]),
                               atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(
        np.asarray(nnx.merge(eval_graphdef, after).backbone.bn1.mean[...]),
        np.asarray(bn1.mean[...]))


def _equations(jaxpr):
    """Every equation of a jaxpr, recursing into sub-jaxprs (pjit, custom_jvp, ...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if hasattr(sub, "eqns"):
                    yield from _equations(sub)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    yield from _equations(sub.jaxpr)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_bfloat16_policy(name):
    model = abstract_model(tiny_config(name, dtype="bfloat16"))
    assert model.dtype == jnp.bfloat16
    graphdef, state = nnx.split(model)
    leaves = nnx.to_flat_state(state)
    assert all(v.dtype == jnp.float32 for _, v in leaves)  # params and BatchStats
    images = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    heatmaps, new_state = jax.eval_shape(forward, graphdef, state, images)
    assert heatmaps.dtype == jnp.float32 and heatmaps.shape == (2, 8, 8, 5)
    assert all(v.dtype == jnp.float32 for _, v in nnx.to_flat_state(new_state))
    jaxpr = jax.make_jaxpr(forward, static_argnums=0)(graphdef, state, images).jaxpr
    heavy = [e for e in _equations(jaxpr) if e.primitive.name in ("conv_general_dilated",
                                                                  "dot_general")]
    assert len(heavy) > 10
    # Every heavy op runs in bf16 except the last: the 1x1 heatmap layer stays float32.
    for eqn in heavy[:-1]:
        assert [v.aval.dtype for v in eqn.invars] == [jnp.bfloat16] * 2, eqn
        assert eqn.outvars[0].aval.dtype == jnp.bfloat16, eqn
    assert [v.aval.dtype for v in heavy[-1].invars] == [jnp.float32] * 2, heavy[-1]


def test_bf16_model_predicts_float32_heatmaps_from_a_float32_final_layer():
    """bf16 heatmaps would keep ~3 significant digits; the 1x1 output layer stays float32."""
    model = make_tiny(dtype="bfloat16")
    assert model.head.final_layer.dtype == jnp.float32
    assert model.head.deconv_layers[0].dtype == jnp.bfloat16
    heatmaps = model(jnp.full((1, 64, 64, 3), 0.5))
    # A bf16 result cast to float32 has at most 8 significant bits; these use the full 24.
    mantissa_bits = np.asarray(heatmaps).view(np.uint32) & 0xFFFF
    assert heatmaps.dtype == jnp.float32 and mantissa_bits.any()

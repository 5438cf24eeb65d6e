"""MobileNetV3-Small backbone: torchvision's `mobilenet_v3_small().features`, output stride 32.

State paths equal torchvision's keys under `features.*` (features.0.0 = stem conv,
features.1.block.0.0 = first depthwise conv, features.1.block.1.fc1 = its squeeze-excitation, ...),
so torchvision weights load one-to-one. The inverted-residual table (torchvision's
`_mobilenet_v3_conf("mobilenet_v3_small")`, from "Searching for MobileNetV3", Table 2):

| features | in | kernel | expanded | out | SE  | act | stride |
|----------|----|--------|----------|-----|-----|-----|--------|
| 0 (stem) | 3  | 3      | -        | 16  | -   | HS  | 2      |
| 1        | 16 | 3      | 16       | 16  | yes | RE  | 2      |
| 2        | 16 | 3      | 72       | 24  | no  | RE  | 2      |
| 3        | 24 | 3      | 88       | 24  | no  | RE  | 1      |
| 4        | 24 | 5      | 96       | 40  | yes | HS  | 2      |
| 5        | 40 | 5      | 240      | 40  | yes | HS  | 1      |
| 6        | 40 | 5      | 240      | 40  | yes | HS  | 1      |
| 7        | 40 | 5      | 120      | 48  | yes | HS  | 1      |
| 8        | 48 | 5      | 144      | 48  | yes | HS  | 1      |
| 9        | 48 | 5      | 288      | 96  | yes | HS  | 2      |
| 10       | 96 | 5      | 576      | 96  | yes | HS  | 1      |
| 11       | 96 | 5      | 576      | 96  | yes | HS  | 1      |
| 12 (last)| 96 | 1      | -        | 576 | -   | HS  | 1      |

Each block is `block` = [expand 1x1 ConvBNAct (only if expanded != in), depthwise ConvBNAct,
SqueezeExcitation (fc1, fc2: 1x1 convs with bias; squeeze = make_divisible(expanded // 4)),
project 1x1 ConvBN], plus the input when stride 1 and in == out. A width multiplier scales every
channel count of the table through `make_divisible(c * mult, 8)`, as torchvision's `width_mult`.

BatchNorm here follows torchvision's MobileNetV3 (eps 1e-3, torch momentum 0.01), not the torch
defaults used by the ResNets, so that pretrained weights and a torchvision twin agree exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from signlang_jax.models.layers import Hardswish, ReLU, Sequential, batch_norm, conv2d

# torchvision builds MobileNetV3 with nn.BatchNorm2d(eps=0.001, momentum=0.01).
MOBILENET_BN_EPSILON = 1e-3
MOBILENET_BN_MOMENTUM = 0.99  # flax convention: new = 0.99 * old + 0.01 * batch


class InvertedResidualConfig(NamedTuple):
    """One bneck row at width multiplier 1 (channels are scaled when the network is built)."""

    in_features: int
    kernel: int
    expanded: int
    out_features: int
    use_se: bool
    activation: str  # "RE" (ReLU) or "HS" (hard swish)
    stride: int


MOBILENET_V3_SMALL: tuple[InvertedResidualConfig, ...] = (
    InvertedResidualConfig(16, 3, 16, 16, True, "RE", 2),
    InvertedResidualConfig(16, 3, 72, 24, False, "RE", 2),
    InvertedResidualConfig(24, 3, 88, 24, False, "RE", 1),
    InvertedResidualConfig(24, 5, 96, 40, True, "HS", 2),
    InvertedResidualConfig(40, 5, 240, 40, True, "HS", 1),
    InvertedResidualConfig(40, 5, 240, 40, True, "HS", 1),
    InvertedResidualConfig(40, 5, 120, 48, True, "HS", 1),
    InvertedResidualConfig(48, 5, 144, 48, True, "HS", 1),
    InvertedResidualConfig(48, 5, 288, 96, True, "HS", 2),
    InvertedResidualConfig(96, 5, 576, 96, True, "HS", 1),
    InvertedResidualConfig(96, 5, 576, 96, True, "HS", 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's _make_divisible: nearest multiple of divisor, never below 90% of value."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def conv_bn_act(in_features: int, out_features: int, kernel_size: int, *, rngs: nnx.Rngs,
                stride: int = 1, groups: int = 1, activation: str | None = None,
                dtype: jnp.dtype = jnp.float32) -> Sequential:
    """torchvision's Conv2dNormActivation: [conv (no bias), BN, activation (if any)]."""
    layers = [conv2d(in_features, out_features, kernel_size, stride=stride, groups=groups,
                     dtype=dtype, rngs=rngs),
              batch_norm(out_features, momentum=MOBILENET_BN_MOMENTUM,
                         epsilon=MOBILENET_BN_EPSILON, dtype=dtype, rngs=rngs)]
    if activation is not None:
        layers.append({"RE": ReLU, "HS": Hardswish}[activation]())
    return Sequential(layers)


class SqueezeExcitation(nnx.Module):
    """x * hardsigmoid(fc2(relu(fc1(mean_hw(x))))); fc1/fc2 are 1x1 convs with bias."""

    def __init__(self, features: int, squeeze: int, *, rngs: nnx.Rngs,
                 dtype: jnp.dtype = jnp.float32) -> None:
        self.fc1 = conv2d(features, squeeze, 1, use_bias=True, dtype=dtype, rngs=rngs)
        self.fc2 = conv2d(squeeze, features, 1, use_bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, C) -> (N, H, W, C), channels rescaled."""
        scale = jnp.mean(x, axis=(1, 2), keepdims=True)
        scale = jax.nn.hard_sigmoid(self.fc2(jax.nn.relu(self.fc1(scale))))
        return x * scale


class InvertedResidual(nnx.Module):
    """MobileNetV3 bneck block; attribute `block` (Sequential) and a static `use_residual`."""

    def __init__(self, cfg: InvertedResidualConfig, width_mult: float, *, rngs: nnx.Rngs,
                 dtype: jnp.dtype = jnp.float32) -> None:
        in_features = make_divisible(cfg.in_features * width_mult)
        expanded = make_divisible(cfg.expanded * width_mult)
        out_features = make_divisible(cfg.out_features * width_mult)
        layers = []
        if expanded != in_features:
            layers.append(conv_bn_act(in_features, expanded, 1, activation=cfg.activation,
                                      dtype=dtype, rngs=rngs))
        layers.append(conv_bn_act(expanded, expanded, cfg.kernel, stride=cfg.stride,
                                  groups=expanded, activation=cfg.activation, dtype=dtype,
                                  rngs=rngs))
        if cfg.use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4), dtype=dtype,
                                            rngs=rngs))
        layers.append(conv_bn_act(expanded, out_features, 1, dtype=dtype, rngs=rngs))
        self.block = Sequential(layers)
        self.use_residual = cfg.stride == 1 and in_features == out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, H / stride, W / stride, Cout)."""
        y = self.block(x)
        return y + x if self.use_residual else y


class MobileNetV3Small(nnx.Module):
    """torchvision's MobileNetV3-Small feature extractor; attribute `features` (13 stages).

    `out_features` is the channel count of the output (576 at width_mult 1).
    """

    def __init__(self, *, rngs: nnx.Rngs, width_mult: float = 1.0,
                 dtype: jnp.dtype = jnp.float32) -> None:
        table = MOBILENET_V3_SMALL
        stem = make_divisible(table[0].in_features * width_mult)
        last_in = make_divisible(table[-1].out_features * width_mult)
        # As torchvision: the last conv has 6x the channels of the last block (not re-rounded).
        last_out = 6 * last_in
        self.features = Sequential(
            [conv_bn_act(3, stem, 3, stride=2, activation="HS", dtype=dtype, rngs=rngs)]
            + [InvertedResidual(cfg, width_mult, dtype=dtype, rngs=rngs) for cfg in table]
            + [conv_bn_act(last_in, last_out, 1, activation="HS", dtype=dtype, rngs=rngs)]
        )
        self.out_features = last_out

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalised image (N, H, W, 3) -> features (N, H / 32, W / 32, out_features)."""
        return self.features(x)

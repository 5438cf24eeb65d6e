"""ResNet backbones (torchvision v1.5 layout, without avgpool/fc): stride-32 feature maps.

One generic `ResNet`; the variants are data (`RESNET_VARIANTS`: block type + blocks per stage).
State paths equal torchvision's state_dict keys (conv1, bn1, layer1.0.conv1, layer2.0.downsample.0,
...) after the leaf renaming of `flax_to_torch_name`, so torchvision weights load one-to-one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from signlang_jax.models.layers import Sequential, batch_norm, conv2d
from signlang_jax.models.pooling import max_pool


class BasicBlock(nnx.Module):
    """Two 3x3 convs with a residual (ResNet-18/34); attributes conv1 bn1 conv2 bn2 [downsample]."""

    expansion = 1

    def __init__(self, in_features: int, planes: int, stride: int, *, rngs: nnx.Rngs,
                 dtype: jnp.dtype = jnp.float32) -> None:
        self.conv1 = conv2d(in_features, planes, 3, stride=stride, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv2 = conv2d(planes, planes, 3, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.downsample = _downsample(in_features, planes, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, H / stride, W / stride, planes)."""
        identity = x if self.downsample is None else self.downsample(x)
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return jax.nn.relu(y + identity)


class Bottleneck(nnx.Module):
    """1x1 -> 3x3 (strided, v1.5) -> 1x1 x4 with a residual (ResNet-50); conv1..3, bn1..3."""

    expansion = 4

    def __init__(self, in_features: int, planes: int, stride: int, *, rngs: nnx.Rngs,
                 dtype: jnp.dtype = jnp.float32) -> None:
        out_features = planes * self.expansion
        self.conv1 = conv2d(in_features, planes, 1, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv2 = conv2d(planes, planes, 3, stride=stride, dtype=dtype, rngs=rngs)
        self.bn2 = batch_norm(planes, dtype=dtype, rngs=rngs)
        self.conv3 = conv2d(planes, out_features, 1, dtype=dtype, rngs=rngs)
        self.bn3 = batch_norm(out_features, dtype=dtype, rngs=rngs)
        self.downsample = _downsample(in_features, out_features, stride, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(N, H, W, Cin) -> (N, H / stride, W / stride, 4 * planes)."""
        identity = x if self.downsample is None else self.downsample(x)
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return jax.nn.relu(y + identity)


def _downsample(in_features: int, out_features: int, stride: int, *, rngs: nnx.Rngs,
                dtype: jnp.dtype) -> Sequential | None:
    """torchvision's projection shortcut [1x1 conv (strided), BN], or None for the identity."""
    if stride == 1 and in_features == out_features:
        return None
    return Sequential([conv2d(in_features, out_features, 1, stride=stride, dtype=dtype, rngs=rngs),
                       batch_norm(out_features, dtype=dtype, rngs=rngs)])


# name -> (block type, blocks per stage); widths are width * (1, 2, 4, 8) * block.expansion.
RESNET_VARIANTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nnx.Module):
    """Stem (conv1 7x7/2, bn1, ReLU, maxpool 3x3/2) + layer1..layer4; output stride 32.

    Attributes: conv1, bn1, layer1..layer4 (Sequential of blocks), out_features (channels of the
    output: 8 * width * block.expansion, 512 for ResNet-18 and 2048 for ResNet-50 at width 64).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], stage_sizes: tuple[int, ...], *,
                 rngs: nnx.Rngs, width: int = 64, dtype: jnp.dtype = jnp.float32) -> None:
        self.conv1 = conv2d(3, width, 7, stride=2, dtype=dtype, rngs=rngs)
        self.bn1 = batch_norm(width, dtype=dtype, rngs=rngs)
        in_features = width
        for i, num_blocks in enumerate(stage_sizes):
            planes = width * 2**i
            blocks = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(in_features, planes, stride, dtype=dtype, rngs=rngs))
                in_features = planes * block.expansion
            setattr(self, f"layer{i + 1}", Sequential(blocks))
        self.num_stages = len(stage_sizes)
        self.out_features = in_features

    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalised image (N, H, W, 3) -> features (N, H / 32, W / 32, out_features)."""
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = max_pool(x, 3, 2, 1)  # torch's MaxPool2d(3, 2, 1); the form suits the backend
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def resnet(name: str, *, rngs: nnx.Rngs, width: int = 64, dtype: jnp.dtype = jnp.float32) -> ResNet:
    """Build the named variant of RESNET_VARIANTS."""
    block, stage_sizes = RESNET_VARIANTS[name]
    return ResNet(block, stage_sizes, width=width, dtype=dtype, rngs=rngs)

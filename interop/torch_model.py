"""The PyTorch twin of the Flax model (ResNet or MobileNetV3-Small + SimpleBaseline head).

Parameter and buffer names are torchvision's for the backbone (`backbone.conv1`,
`backbone.layer1.0.bn1`, `backbone.layer2.0.downsample.0`, ...; `backbone.features.1.block.0.0`
for MobileNetV3-Small) and MMPose's for the head (`head.deconv_layers.{3i}` transposed conv,
`{3i+1}` BatchNorm, `{3i+2}` ReLU, `head.final_layer`), so that every Flax state path maps to one
torch key by renaming leaves only (see `signlang_jax.models.flax_to_torch_name`) and a torchvision
backbone state_dict loads with `strict=True`. The input is NCHW RGB in [0, 1]; the ImageNet
normalisation happens inside `forward`, as in the Flax model. `decode_heatmaps` is the torch twin
of `signlang_jax.codec.decode_heatmaps`, so an exported graph can return keypoints.

The architecture tables, the MobileNet BatchNorm epsilon and the normalisation constants are
imported from the Flax model (their one home); weights are moved between the two by
`interop.convert`.
"""

from __future__ import annotations

import ml_collections
import torch
from torch import nn

from signlang_jax.models import IMAGENET_MEAN, IMAGENET_STD
from signlang_jax.models.layers import DECONV_PADDING
from signlang_jax.models.mobilenet import (
    MOBILENET_BN_EPSILON,
    MOBILENET_BN_MOMENTUM,
    MOBILENET_V3_SMALL,
    InvertedResidualConfig,
    make_divisible,
)

_STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}
BACKBONE_NAMES = (*_STAGES, "mobilenet_v3_small")
# Flax momentum m (new = m * old + (1 - m) * batch) is torch momentum 1 - m. The ResNets and the
# head use torch's BatchNorm2d defaults, as the Flax side (interop.convert checks every epsilon).
_MOBILENET_BN = {"eps": MOBILENET_BN_EPSILON, "momentum": round(1.0 - MOBILENET_BN_MOMENTUM, 6)}


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (two 3x3 convs, expansion 1)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck v1.5 (stride in the 3x3 conv, expansion 4)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """torchvision's ResNet without avgpool/fc: stride-32 features."""

    def __init__(self, name: str, width: int = 64) -> None:
        super().__init__()
        kind, stages = _STAGES[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, count in enumerate(stages):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            blocks = []
            for j in range(count):
                downsample = None
                if j == 0 and (stride != 1 or cin != planes * block.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(cin, planes, stride if j == 0 else 1, downsample))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, C, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def deconv_padding(kernel: int) -> tuple[int, int]:
    """(padding, output_padding) giving exact x2 upsampling, as MMPose."""
    return DECONV_PADDING[kernel]


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: str | None = None) -> nn.Sequential:
    """torchvision's Conv2dNormActivation with MobileNetV3's BatchNorm: [conv, BN, act]."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, **_MOBILENET_BN)]
    if activation is not None:
        layers.append({"RE": nn.ReLU, "HS": nn.Hardswish}[activation](inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision's SqueezeExcitation with MobileNetV3's hard sigmoid: fc1, fc2 (1x1 convs)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rescale the channels of x."""
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV3 bneck block: `block` = [expand], depthwise, [SE], project."""

    def __init__(self, cfg: InvertedResidualConfig, width_mult: float) -> None:
        super().__init__()
        cin = make_divisible(cfg.in_features * width_mult)
        expanded = make_divisible(cfg.expanded * width_mult)
        cout = make_divisible(cfg.out_features * width_mult)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(_conv_bn_act(cin, expanded, 1, activation=cfg.activation))
        layers.append(_conv_bn_act(expanded, expanded, cfg.kernel, cfg.stride, groups=expanded,
                                   activation=cfg.activation))
        if cfg.use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(_conv_bn_act(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = cfg.stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block, plus the input when shapes allow."""
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3Small(nn.Module):
    """torchvision's `mobilenet_v3_small(width_mult=...).features`: stride-32 features."""

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        table = MOBILENET_V3_SMALL
        stem = make_divisible(table[0].in_features * width_mult)
        last_in = make_divisible(table[-1].out_features * width_mult)
        self.features = nn.Sequential(
            _conv_bn_act(3, stem, 3, 2, activation="HS"),
            *[InvertedResidual(cfg, width_mult) for cfg in table],
            _conv_bn_act(last_in, 6 * last_in, 1, activation="HS"))
        self.out_channels = 6 * last_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, C, H/32, W/32)."""
        return self.features(x)


class SimpleBaselineHead(nn.Module):
    """deconv_layers x [ConvTranspose2d(stride 2, no bias), BN, ReLU] + final conv."""

    def __init__(self, cin: int, num_keypoints: int, layers: int = 3, filters: int = 256,
                 kernel: int = 4, final_kernel: int = 1) -> None:
        super().__init__()
        padding, output_padding = deconv_padding(kernel)
        modules: list[nn.Module] = []
        for _ in range(layers):
            modules += [nn.ConvTranspose2d(cin, filters, kernel, 2, padding, output_padding,
                                           bias=False),
                        nn.BatchNorm2d(filters), nn.ReLU(inplace=True)]
            cin = filters
        self.deconv_layers = nn.Sequential(*modules)
        self.final_layer = nn.Conv2d(cin, num_keypoints, final_kernel, 1, final_kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heatmaps (N, K, H, W)."""
        return self.final_layer(self.deconv_layers(x))


class TorchHeatmapModel(nn.Module):
    """Backbone + head; [0, 1] NCHW RGB in, (N, K, H/4, W/4) heatmaps out.

    `width` is the Flax config's `model.width`: the ResNet base width, or 64 x MobileNet's
    width multiplier (as in `signlang_jax.models.BACKBONES`).
    """

    def __init__(self, name: str = "resnet18", width: int = 64, num_keypoints: int = 64,
                 deconv_layers: int = 3, deconv_filters: int = 256, deconv_kernel: int = 4,
                 final_kernel: int = 1) -> None:
        super().__init__()
        if name not in BACKBONE_NAMES:
            raise ValueError(f"torch twin supports {sorted(BACKBONE_NAMES)}, got {name!r}")
        if name == "mobilenet_v3_small":
            self.backbone: nn.Module = MobileNetV3Small(width / 64)
        else:
            self.backbone = ResNet(name, width)
        self.head = SimpleBaselineHead(self.backbone.out_channels, num_keypoints, deconv_layers,
                                       deconv_filters, deconv_kernel, final_kernel)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    @classmethod
    def from_config(cls, model_config: ml_collections.ConfigDict) -> TorchHeatmapModel:
        """The twin of `signlang_jax.models.create_model(model_config, ...)`."""
        m = model_config
        return cls(m.name, m.width, m.num_keypoints, m.deconv_layers, m.deconv_filters,
                   m.deconv_kernel, m.final_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise, then backbone and head (computed in the dtype of the parameters)."""
        # Cast first: a half-precision twin (ONNX --fp16) still takes float32 images.
        x = x.to(self.mean.dtype)
        return self.head(self.backbone((x - self.mean) / self.std))


def decode_heatmaps(heatmaps: torch.Tensor, image_size: int, udp: bool = False) -> torch.Tensor:
    """Keypoints (N, K, 3) = x, y in input pixels, score, from heatmaps (N, K, H, W).

    The torch (and ONNX) twin of `signlang_jax.codec.decode_heatmaps`, op for op in float32:
    argmax over H*W (first maximum), score = the maximum, a 0.25 px shift toward the larger
    neighbour where both neighbours exist, then x image_size / W ((S - 1) / (W - 1) with UDP
    coordinates, `model.udp`).
    """
    _, _, h, w = heatmaps.shape
    flat = heatmaps.float().flatten(2)  # (N, K, H*W)
    index = torch.argmax(flat, dim=-1)
    score = torch.amax(flat, dim=-1)
    y, x = index // w, index % w

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        yy, xx = yy.clamp(0, h - 1), xx.clamp(0, w - 1)
        return torch.gather(flat, -1, (yy * w + xx).unsqueeze(-1)).squeeze(-1)

    zero = torch.zeros_like(score)
    dx = torch.where((x > 0) & (x < w - 1), torch.sign(at(y, x + 1) - at(y, x - 1)), zero)
    dy = torch.where((y > 0) & (y < h - 1), torch.sign(at(y + 1, x) - at(y - 1, x)), zero)
    ratio = (image_size - 1) / (w - 1) if udp else image_size / w
    xs = (x.float() + 0.25 * dx) * ratio
    ys = (y.float() + 0.25 * dy) * ratio
    return torch.stack([xs, ys, score], dim=-1)

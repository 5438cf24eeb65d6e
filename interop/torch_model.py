"""The PyTorch twin of the Flax model (ResNet backbones + SimpleBaseline head), for export.

Parameter and buffer names are torchvision's for the backbone (`backbone.conv1`,
`backbone.layer1.0.bn1`, `backbone.layer2.0.downsample.0`, ...) and MMPose's for the head
(`head.deconv_layers.{3i}` transposed conv, `{3i+1}` BatchNorm, `{3i+2}` ReLU,
`head.final_layer`), so that every Flax state path maps to one torch key by renaming leaves only
(see `signlang_jax.models.flax_to_torch_name`). The input is NCHW RGB in [0, 1]; the ImageNet
normalisation happens inside `forward`, as in the Flax model.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
           "resnet50": ("bottleneck", (3, 4, 6, 3))}


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
    return {4: (1, 0), 3: (1, 1), 2: (0, 0)}[kernel]


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
    """Backbone + head; [0, 1] NCHW RGB in, (N, K, H/4, W/4) heatmaps out."""

    def __init__(self, name: str = "resnet18", width: int = 64, num_keypoints: int = 64,
                 deconv_layers: int = 3, deconv_filters: int = 256, deconv_kernel: int = 4,
                 final_kernel: int = 1) -> None:
        super().__init__()
        if name not in _STAGES:
            raise ValueError(f"torch twin supports {sorted(_STAGES)}, got {name!r}")
        self.backbone = ResNet(name, width)
        self.head = SimpleBaselineHead(self.backbone.out_channels, num_keypoints, deconv_layers,
                                       deconv_filters, deconv_kernel, final_kernel)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise, then backbone and head."""
        return self.head(self.backbone((x - self.mean) / self.std))

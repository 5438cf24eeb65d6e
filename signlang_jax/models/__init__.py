"""The network: a backbone (ResNet or MobileNetV3-Small) + a head, built from config.

The head is the SimpleBaseline heatmap head (`model.head="heatmap"`, the default and the exported
contract) or a SimCC coordinate-classification head (`model.head="simcc"`,
`signlang_jax.models.simcc_head`), whose output is read as heatmaps too.

`create_model(config.model, rngs)` is the only entry point the rest of the project needs. The
model takes images (N, H, W, 3) in [0, 1] (uint8 0..255 is also accepted), normalises them with
the ImageNet mean/std inside, and returns float32 heatmaps (N, H / 4, W / 4, num_keypoints) for
the default 3 deconv layers. `model.train()` / `model.eval()` switch BatchNorm between batch
statistics and running averages.

State paths are the torch twin's state_dict keys: `flax_to_torch_name(path)` is the whole
mapping (join with ".", rename the leaf); conv kernels are HWIO (torch OIHW `W.transpose(2, 3,
1, 0)`), transposed-conv kernels as documented in `signlang_jax.models.layers`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from signlang_jax.models.head import SimpleBaselineHead
from signlang_jax.models.layers import ConvTranspose, conv_transpose
from signlang_jax.models.mobilenet import MobileNetV3Small
from signlang_jax.models.resnet import ResNet, resnet
from signlang_jax.models.simcc_head import SimCCHead

__all__ = [
    "BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "ConvTranspose", "HeatmapModel",
    "MobileNetV3Small", "ResNet",
    "SimCCHead", "SimpleBaselineHead", "conv_transpose", "create_model", "flax_to_torch_name",
    "resolve_dtype",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_dtype(name: str) -> jnp.dtype:
    """Compute dtype for config.model.dtype; "auto" = bfloat16 on GPU/TPU, float32 on CPU.

    bf16 is no faster than f32 on XLA:CPU (docs/PERFORMANCE.md), so CPU keeps full precision.
    """
    if name == "auto":
        return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    if name not in DTYPES:
        raise ValueError(f"model.dtype={name!r}: expected 'auto' or one of {sorted(DTYPES)}")
    return DTYPES[name]

# config.model.name -> backbone constructor(width=, dtype=, rngs=). MobileNet scales its
# channels by width / 64 so that tests can shrink every backbone with the same knob.
BACKBONES = {
    "resnet18": functools.partial(resnet, "resnet18"),
    "resnet34": functools.partial(resnet, "resnet34"),
    "resnet50": functools.partial(resnet, "resnet50"),
    "mobilenet_v3_small": lambda *, width, dtype, rngs: MobileNetV3Small(
        width_mult=width / 64, dtype=dtype, rngs=rngs),
}

HEADS = ("heatmap", "simcc")
BACKBONE_STRIDE = 32  # every backbone's output stride

# NNX leaf name -> torch state_dict leaf name.
TORCH_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias",
                    "mean": "running_mean", "var": "running_var"}


class HeatmapModel(nnx.Module):
    """ImageNet normalisation -> backbone -> head -> float32 heatmaps.

    Attributes: backbone (ResNet | MobileNetV3Small), head (SimpleBaselineHead | SimCCHead),
    dtype (compute).
    """

    def __init__(self, backbone: ResNet | MobileNetV3Small, head: SimpleBaselineHead | SimCCHead,
                 dtype: jnp.dtype = jnp.float32) -> None:
        self.backbone = backbone
        self.head = head
        self.dtype = dtype

    def features(self, images: jax.Array) -> jax.Array:
        """images (N, H, W, 3) in [0, 1] (or uint8) -> the backbone's features (compute dtype)."""
        x = images.astype(jnp.float32)
        if images.dtype == jnp.uint8:
            x = x / 255.0
        # Constants, not parameters: the torch twin and exported models normalise the same way.
        x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        return self.backbone(x.astype(self.dtype))

    def __call__(self, images: jax.Array) -> jax.Array:
        """images (N, H, W, 3) in [0, 1] (or uint8) -> heatmaps float32 (N, H/4, W/4, K)."""
        return self.head(self.features(images)).astype(jnp.float32)


def create_model(model_config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> HeatmapModel:
    """Build the model described by config.model (fields: see configs/default.py)."""
    cfg = model_config
    if cfg.name not in BACKBONES:
        raise ValueError(f"model.name={cfg.name!r}: expected one of {sorted(BACKBONES)}")
    dtype = resolve_dtype(cfg.dtype)
    backbone = BACKBONES[cfg.name](width=cfg.width, dtype=dtype, rngs=rngs)
    maps = {"deconv_layers": cfg.deconv_layers, "deconv_filters": cfg.deconv_filters,
            "deconv_kernel": cfg.deconv_kernel, "final_kernel": cfg.final_kernel,
            "deconv_impl": cfg.deconv_impl}
    kind = cfg.get("head", "heatmap")
    if kind not in HEADS:
        raise ValueError(f"model.head={kind!r}: expected one of {HEADS}")
    if kind == "simcc":  # heatmap_size = bins = image side * split
        image_size = cfg.heatmap_size // cfg.simcc_split
        head = SimCCHead(backbone.out_features, cfg.num_keypoints,
                         map_side=image_size // BACKBONE_STRIDE * 2**cfg.deconv_layers,
                         bins=cfg.heatmap_size, hidden=cfg.simcc_hidden, sigma=cfg.sigma,
                         dtype=dtype, rngs=rngs, **maps)
    else:
        head = SimpleBaselineHead(backbone.out_features, cfg.num_keypoints, dtype=dtype,
                                  rngs=rngs, **maps)
    return HeatmapModel(backbone, head, dtype=dtype)


def flax_to_torch_name(path: tuple) -> str:
    """NNX state path -> torch state_dict key, e.g. ('head', 'deconv_layers', 1, 'var') ->
    'head.deconv_layers.1.running_var'."""
    *prefix, leaf = path
    if leaf not in TORCH_LEAF_NAMES:
        raise ValueError(f"state path {path}: leaf {leaf!r} has no torch name "
                         f"(known: {sorted(TORCH_LEAF_NAMES)})")
    return ".".join([str(p) for p in prefix] + [TORCH_LEAF_NAMES[leaf]])

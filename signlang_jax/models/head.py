"""SimpleBaseline heatmap head (Xiao et al. 2018, MMPose HeatmapHead): upsample, then 1x1 conv.

`deconv_layers` x [transposed conv (stride 2, no bias), BN, ReLU] followed by a
`final_kernel` x `final_kernel` conv with bias to one channel per keypoint. State paths match a
torch `nn.Sequential` twin: `deconv_layers.{3i}` is the i-th transposed conv, `{3i+1}` its BN,
`{3i+2}` its (parameter-free) ReLU, then `final_layer`. The transposed-conv kernel layout and its
exact torch equivalence are documented once, in `signlang_jax.models.layers`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from signlang_jax.models.layers import ConvTranspose, ReLU, Sequential, batch_norm, conv2d

# SimpleBaseline/MMPose init: small weights so the initial heatmaps are near zero.
HEAD_INIT = jax.nn.initializers.normal(0.001)


class SimpleBaselineHead(nnx.Module):
    """Features (N, h, w, Cin) -> heatmaps (N, h * 2**deconv_layers, w * 2**deconv_layers, K).

    Attributes: deconv_layers (Sequential [ConvTranspose, BatchNorm, ReLU] * n), final_layer
    (nnx.Conv with bias).
    """

    def __init__(self, in_features: int, num_keypoints: int, *, rngs: nnx.Rngs,
                 deconv_layers: int = 3, deconv_filters: int = 256, deconv_kernel: int = 4,
                 final_kernel: int = 1, deconv_impl: str = "auto",
                 dtype: jnp.dtype = jnp.float32) -> None:
        layers = []
        for _ in range(deconv_layers):
            layers += [ConvTranspose(in_features, deconv_filters, deconv_kernel, impl=deconv_impl,
                                     dtype=dtype, rngs=rngs),
                       batch_norm(deconv_filters, dtype=dtype, rngs=rngs),
                       ReLU()]
            in_features = deconv_filters
        self.deconv_layers = Sequential(layers)
        if final_kernel not in (1, 3):
            raise ValueError(f"model.final_kernel={final_kernel}: expected 1 or 3")
        # Always float32, even in a bf16 model: bf16 heatmaps keep ~3 significant digits (too
        # coarse for sub-pixel decoding of hand points) and the bias gradient, a sum over every
        # heatmap pixel, lost 14% in bf16 at 128 px (benchmarks/gpu_check.py). The layer is
        # <1% of the model's FLOPs.
        self.final_layer = conv2d(in_features, num_keypoints, final_kernel, use_bias=True,
                                  kernel_init=HEAD_INIT, dtype=jnp.float32, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Upsample the features (compute dtype) and predict one float32 heatmap per keypoint."""
        return self.final_layer(self.deconv_layers(x))

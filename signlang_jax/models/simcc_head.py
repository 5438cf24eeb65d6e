"""SimCC head (Li et al. 2022, as in RTMPose): keypoints as 1D classifications over x and y bins.

The SimpleBaseline head's per-keypoint maps (N, h, w, K) are flattened per keypoint (h * w
values) and mapped by a small MLP shared over keypoints (Linear -> GELU) to `hidden` features,
then by two linear classifiers to `bins` x logits and `bins` y logits, bins = image side *
`model.simcc_split`. `logits` feeds the loss (`codec.simcc_loss`); calling the head returns the
heatmaps every decoder reads (`codec.simcc_heatmaps`). The classifiers' resolution is not tied to
the maps' stride, which is where SimCC gains at low input resolution (RTMPose).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from signlang_jax.codec import simcc_heatmaps
from signlang_jax.models.head import SimpleBaselineHead


class SimCCHead(nnx.Module):
    """Features (N, h, w, Cin) -> x and y logits (N, K, bins), or heatmaps (N, bins, bins, K).

    Attributes: maps (SimpleBaselineHead), hidden (nnx.Linear h*w -> hidden), cls_x, cls_y
    (nnx.Linear hidden -> bins), sigma (the labels' sigma in bins).
    """

    def __init__(self, in_features: int, num_keypoints: int, *, map_side: int, bins: int,
                 hidden: int, sigma: float, rngs: nnx.Rngs, dtype: jnp.dtype = jnp.float32,
                 **maps: object) -> None:
        self.maps = SimpleBaselineHead(in_features, num_keypoints, rngs=rngs, dtype=dtype, **maps)
        # float32 like the heatmap head's last layer: these layers set the sub-pixel position.
        self.hidden = nnx.Linear(map_side * map_side, hidden, param_dtype=jnp.float32, rngs=rngs)
        self.cls_x = nnx.Linear(hidden, bins, param_dtype=jnp.float32, rngs=rngs)
        self.cls_y = nnx.Linear(hidden, bins, param_dtype=jnp.float32, rngs=rngs)
        self.sigma = sigma

    def logits(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x and y logits (N, K, bins), float32."""
        maps = self.maps(x).astype(jnp.float32)  # (N, h, w, K)
        n, h, w, k = maps.shape
        flat = jnp.moveaxis(maps, 3, 1).reshape(n, k, h * w)
        features = jax.nn.gelu(self.hidden(flat))
        return self.cls_x(features), self.cls_y(features)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Heatmaps (N, bins, bins, K): the outer product of the two distributions."""
        return simcc_heatmaps(*self.logits(x), self.sigma)

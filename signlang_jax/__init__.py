"""signlang-jax: a JAX/Flax 64-keypoint detector for sign language (body, hands, face anchors)."""

__version__ = "0.1.0"

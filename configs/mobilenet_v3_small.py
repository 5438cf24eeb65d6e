"""MobileNetV3-Small backbone with the same SimpleBaseline head: for fast inference on devices.

python -m signlang_jax.main --config configs/mobilenet_v3_small.py --workdir runs/mbv3
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """The default config with a MobileNetV3-Small backbone and a lighter head."""
    config = default.get_config()
    config.model.name = "mobilenet_v3_small"
    config.model.deconv_filters = 128
    config.optim.name = "adamw"
    config.optim.lr = 2e-3
    return config

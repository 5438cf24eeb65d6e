"""A tiny, fast configuration for tests: 32 px input, narrow ResNet-18, a few steps.

python -m signlang_jax.main --config tests/tiny_config.py --workdir /tmp/x \
    --config.data.root=DATA
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """Default config shrunk to run in seconds on a 2-core CPU."""
    config = default.get_config()
    config.data.image_size = 32
    config.data.num_workers = 0
    config.data.val_fraction = 0.25
    config.model.width = 8
    config.model.deconv_filters = 16
    config.model.heatmap_size = 8
    config.model.sigma = 1.0
    config.optim.warmup_steps = 2
    config.optim.lr = 3e-3
    config.train.batch_size = 4
    config.train.num_steps = 8
    config.train.log_every_steps = 2
    config.train.eval_every_steps = 4
    config.train.checkpoint_every_steps = 2
    config.train.keep_checkpoints = 2
    config.train.num_val_images = 1
    return config

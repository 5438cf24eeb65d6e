"""Demo: trains on this 2-core CPU in about 7 minutes on built-in synthetic data.

python -m signlang_jax.main --config configs/demo.py --workdir runs/demo

Renders 2000 synthetic 256x256 images into WORKDIR/data on the first run, then trains a
half-width ResNet-18 at 128x128 input (32x32 heatmaps). Same code path as the full model; only
sizes change.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """Small, fast configuration for a CPU demo."""
    config = default.get_config()
    config.data.root = ""  # -> WORKDIR/data
    config.data.synthetic_num = 2000
    config.data.synthetic_size = 256
    config.data.image_size = 128
    config.data.num_workers = 1  # the train step uses the other core
    config.model.width = 32
    config.model.deconv_filters = 64
    config.model.heatmap_size = 32
    config.model.sigma = 1.5  # wider than 2 px / 4: the tiny model learns faster (0.81 vs 0.77)
    config.optim.lr = 3e-3
    config.optim.warmup_steps = 100
    config.train.batch_size = 16
    # 2000 steps: 1500 (to make room for the hand model) cost 0.06 of held-out PCK@0.1; the
    # whole `make demo` with both models still fits 15 minutes on 2 cores (docs/HANDS.md).
    config.train.num_steps = 2000
    config.train.log_every_steps = 20
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
    return config

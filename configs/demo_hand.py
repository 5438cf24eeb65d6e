"""Demo hand model: trains on this 2-core CPU beside configs/demo.py (make demo).

python -m signlang_jax.main --config configs/demo_hand.py --workdir runs/demo_hand \
    --config.data.root=runs/demo/data

Crops of 96 x 96 from the demo's 256 x 256 synthetic images (a hand there spans 30-70 px, its
crop 40-100 px), 24 x 24 heatmaps, a half-width ResNet-18. At 64 x 64 the backbone's last map is
2 x 2 and the model learnt half as well in the same time (docs/HANDS.md).
"""

import ml_collections

from configs import hand


def get_config() -> ml_collections.ConfigDict:
    """Small, fast hand-model configuration for the CPU demo."""
    config = hand.get_config()
    config.data.root = ""  # -> WORKDIR/data, rendered like the body demo's if missing
    config.data.synthetic_num = 2000
    config.data.synthetic_size = 256
    config.data.num_workers = 1  # the train step uses the other core
    config.data.image_size = 96
    # The synthetic generator's hidden fingers have exact positions: train them at half weight.
    config.data.occluded_weight = 0.5
    config.model.width = 32
    config.model.deconv_filters = 64
    config.model.heatmap_size = 24
    config.model.sigma = 1.5
    config.optim.lr = 3e-3
    config.optim.warmup_steps = 100
    config.train.batch_size = 16
    config.train.num_steps = 1500
    config.train.log_every_steps = 20
    config.train.eval_every_steps = 500
    config.train.checkpoint_every_steps = 500
    return config

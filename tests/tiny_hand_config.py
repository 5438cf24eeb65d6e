"""A tiny, fast hand-model configuration for tests: 32 px hand crops, 21 points, a few steps.

python -m signlang_jax.main --config tests/tiny_hand_config.py --workdir /tmp/x \
    --config.data.root=DATA
"""

import ml_collections

from tests import tiny_config


def get_config() -> ml_collections.ConfigDict:
    """tests/tiny_config.py as a hand model (configs/hand.py's task, points and flip)."""
    config = tiny_config.get_config()
    config.task = "hand"
    config.model.num_keypoints = 21
    config.augment.flip_prob = 0.0
    config.train.num_steps = 4
    return config

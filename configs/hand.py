"""The second-stage hand model for the default 512 body model: 128 x 128 hand crops -> 21 points.

python -m signlang_jax.main --config configs/hand.py --workdir runs/hand --config.data.root=DIR

Trains on the same dataset layout as the body model: every image gives two crops, its left hand
and its mirrored right hand, cut from the original-resolution image around the labelled hand
(config.hand_crop, docs/HANDS.md). Same loop, checkpoints, resume and logging as the body model.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """Hand model: ResNet-18 on 128 x 128 hand crops, 32 x 32 heatmaps, 21 keypoints."""
    config = default.get_config()
    config.task = "hand"
    config.data.image_size = 128  # crop side C; a 50-pixel hand in a 512 frame gets ~2x zoom
    config.model.num_keypoints = 21
    config.model.heatmap_size = 32
    config.model.deconv_filters = 128
    config.model.sigma = 1.5
    # UDP heatmap coordinates: hand PCK@0.05 +0.005 (argmax) and +0.006 (DARK), means of 4 seeds
    # at equal time, better on every seed (docs/HANDS.md, ablations); exports say so in their
    # metadata (heatmap_coordinates).
    config.model.udp = True
    # The hand crop's own augmentation replaces the body's geometry (config.hand_crop: shift,
    # scale 0.7-1.3, rotation +-180); no flip: right hands are mirrored into left ones already.
    config.augment.flip_prob = 0.0
    config.train.batch_size = 32  # crops are a sixteenth of a 512 image
    return config

"""Recipe: the hand stage for configs/wholebody.py, on hand crops of the same real photographs.

    python -m signlang_jax.main --config configs/wholebody_hand.py --workdir runs/wholebody_hand

The same sources and ImageNet weights as configs/wholebody.py, the hand model of
configs/hand.py (128 px crops, UDP coordinates), the same schedule at batch 128 (crops are a
sixteenth of a 512 px image). Time on one H100, an estimate: the model costs 3.75 GFLOP per
training crop, so the input pipeline sets the pace (each crop decodes its whole photograph):
at ~4,000 crops/s, 210 epochs of ~200,000 valid hand crops take about 3 hours. Fewer epochs
(100) lose little in MMPose's hand recipes; --config.train.epochs=100 halves it.
"""

import ml_collections

from configs import hand, wholebody


def get_config() -> ml_collections.ConfigDict:
    """The 128 px hand model on the hands of COCO-WholeBody (and friends)."""
    config = hand.get_config()
    body = wholebody.get_config()
    config.data.sources = body.data.sources
    config.data.num_workers = body.data.num_workers
    config.data.occluded_weight = 0.0
    config.model.pretrained_backbone = body.model.pretrained_backbone
    config.optim = body.optim
    config.train.batch_size = 128
    config.train.epochs = body.train.epochs
    config.train.num_steps = 0
    config.train.eval_every_steps = body.train.eval_every_steps
    config.train.checkpoint_every_steps = body.train.checkpoint_every_steps
    return config

"""Recipe: the body model that reads real recordings, trained on photographs of real people.

The demo models (and anything trained on the built-in synthetic data) have only seen our
rendered signers: on a real photo they put the face anchors on the hair and the arms on the
background. This config trains the 64-point body model on COCO-WholeBody (+ Halpe-FullBody, +
pseudo-labels of your own recordings) from ImageNet weights; configs/wholebody_hand.py trains its
hand stage on the same data. The steps (docs/REAL_DATA.md):

    python -m signlang_jax.data.convert coco-wholebody --ann coco_wholebody_train_v1.0.json \
        --images train2017/ --out data/coco_wholebody
    # torchvision's ImageNet ResNet-18, saved with torch.save(model.state_dict(), PATH):
    #   weights/resnet18-f37072fd.pth (ResNet18_Weights.IMAGENET1K_V1)
    python -m signlang_jax.main --config configs/wholebody.py --workdir runs/wholebody
    python -m signlang_jax.main --config configs/wholebody_hand.py --workdir runs/wholebody_hand

More data (weights are sampling shares; each source keeps its own val split):
    --config.data.sources="coco=data/coco_wholebody:0.6,halpe=data/halpe:0.2,mine=data/mine:0.2"
with data/halpe from `convert halpe` and data/mine from `convert pose` (your recordings'
.pose files and videos).

Schedule: SimpleBaseline/MMPose's for COCO-WholeBody (Adam 5e-4, 210 epochs, x0.1 at epochs 170
and 200, 500 warmup steps), batch 64 on one GPU in bf16. Time on one H100, an estimate (no GPU
run here): ~92 GFLOP per training image (3x the 30.8 GFLOP forward pass at 512 px, XLA's cost
analysis) at an assumed 35% of the H100's 989 TFLOP/s bf16 peak is ~3,800 images/s of compute;
the input pipeline (decode + augment at 512 px: 360 images/s per core measured on this CPU) gives
~4,000-5,000 images/s on 16 cores, so ~3,500 images/s: 210 epochs of ~130,000 person crops
(27 M images) take about 2-2.5 hours.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
    """The 512 px body model on COCO-WholeBody from ImageNet weights."""
    config = default.get_config()
    config.data.sources = "coco=data/coco_wholebody:1.0"
    config.data.num_workers = 14  # leave two cores to the trainer
    config.data.occluded_weight = 0.0  # real labels: hidden points are not known
    config.model.pretrained_backbone = "weights/resnet18-f37072fd.pth"
    config.model.dtype = "auto"  # bf16 on a GPU
    config.optim.name = "adam"
    config.optim.lr = 5e-4
    config.optim.schedule = "step"
    config.optim.step_boundaries = (170 / 210, 200 / 210)
    config.optim.step_factor = 0.1
    config.optim.warmup_steps = 500
    config.train.batch_size = 64
    config.train.epochs = 210
    config.train.num_steps = 0  # epochs decide
    config.train.eval_every_steps = 5000
    config.train.checkpoint_every_steps = 5000
    return config

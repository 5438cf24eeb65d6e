"""Default configuration: the original project's defaults (ResNet-18, 512 -> 128, sigma 2).

Run: python -m signlang_jax.main --config configs/default.py --workdir runs/default
Override any field on the command line, e.g. --config.train.batch_size=8 --config.data.root=DIR.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Return the default training configuration."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # model init, shuffling and augmentation all derive from it

    config.data = data = ml_collections.ConfigDict()
    data.root = "dataset"  # folder with images/ and labels/ (the original project's layout)
    data.images_dir = "images"  # name of the image folder under data.root
    data.labels_dir = "labels"  # name of the label folder under data.root
    data.image_size = 512  # network input side S; images are letterboxed into S x S
    data.val_fraction = 0.1  # hash split when there is no splits/{train,val}.txt
    data.num_workers = 2  # grain worker processes (0 = decode in the training process)
    data.worker_buffer_size = 2  # batches prefetched per worker
    data.read_threads = 0  # decode threads per process (0 = 1 with workers, else all cores)
    data.skip_invalid = False  # True: train on the valid files and list the skipped ones
    data.decode_check = True  # decode every image while validating (catches corrupt files)

    config.augment = aug = ml_collections.ConfigDict()
    aug.flip_prob = 0.5  # horizontal flip, with the left/right keypoint permutation
    aug.scale_min = 0.75  # random zoom range
    aug.scale_max = 1.25
    aug.rotation_prob = 0.6  # probability of an in-plane rotation
    aug.rotation_deg = 30.0  # rotation range +-deg
    aug.shift_frac = 0.1  # translation range as a fraction of S
    aug.color_prob = 0.8  # probability of brightness/contrast/saturation/hue jitter
    aug.brightness = 0.125  # +- fraction of 255
    aug.contrast = 0.3  # factor in [1 - c, 1 + c]
    aug.saturation = 0.3  # factor in [1 - s, 1 + s]
    aug.hue_deg = 10.0  # hue rotation +-deg
    aug.blur_prob = 0.1  # probability of a Gaussian blur
    aug.blur_sigma_max = 1.5  # blur sigma range (0.1, max) in pixels

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 16  # global batch size (split over processes and devices)
    return config

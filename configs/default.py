"""Default configuration: the original project's defaults (ResNet-18, 512 -> 128, sigma 2).

Run: python -m signlang_jax.main --config configs/default.py --workdir runs/default
Override any field on the command line, e.g. --config.train.batch_size=8 --config.data.root=DIR.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Return the default training configuration."""
    config = ml_collections.ConfigDict()
    config.seed = 0  # model init, shuffling and augmentation all derive from it
    # wholebody: the 64-point detector on letterboxed images; hand: the second-stage hand model
    # on hand crops of the same dataset (configs/hand.py, docs/HANDS.md).
    config.task = "wholebody"  # wholebody | hand

    config.data = data = ml_collections.ConfigDict()
    data.root = "dataset"  # folder with images/ and labels/ (the original project's layout)
    # Several datasets instead of data.root, each with a sampling weight and its own val split:
    # "ROOT:WEIGHT,..." or a list of "[NAME=]ROOT[:WEIGHT]" (signlang_jax/data/mixture.py).
    # "" = data.root alone. Typed `object` so a config file may assign a list.
    data.sources = ml_collections.FieldReference("", object)  # "[NAME=]ROOT:WEIGHT,...": mix
    data.format = "folder"  # folder | array_record (data.root = a signlang_jax.data.pack output)
    data.images_dir = "images"  # name of the image folder under data.root
    data.labels_dir = "labels"  # name of the label folder under data.root
    data.image_size = 512  # network input side S; images are letterboxed into S x S
    data.val_fraction = 0.1  # hash split when there is no splits/{train,val}.txt
    data.num_workers = 2  # grain worker processes (0 = decode in the training process)
    data.worker_buffer_size = 2  # batches prefetched per worker
    data.read_threads = 0  # decode threads per process (0 = 1 with workers, else all cores)
    data.skip_invalid = False  # True: train on the valid files and list the skipped ones
    data.decode_check = True  # decode every image while validating (catches corrupt files)
    # Built-in data: if > 0 and data.root has no labels/, render this many synthetic samples into
    # data.root (or WORKDIR/data when data.root is empty) before training.
    data.synthetic_num = 0  # synthetic samples to render if data.root has no labels (0 = off)
    data.synthetic_size = 512  # side of the rendered images
    data.synthetic_seed = 0  # seed of the rendered dataset
    # fraction of rendered samples with a second, smaller person behind the signer (a top-down
    # model must learn to leave neighbours in its crop alone; docs/VIDEO.md measures it)
    data.synthetic_others = 0.0
    # Loss weight of points labelled visible: 0 that lie inside the image. Only for labels whose
    # hidden points are exact (the synthetic generator's); user data's hidden points are
    # guesses, so 0 = no training signal. Validation scores visible points only either way.
    data.occluded_weight = 0.0  # 0 = ignore hidden points (user data)

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

    # Where hand crops go (task = hand, and the hand stage at inference; docs/HANDS.md). Sizes
    # are fractions of the body scale (shoulder width) or of the hand points' extent.
    config.hand_crop = hand = ml_collections.ConfigDict()
    hand.margin = 0.25  # crop side = (1 + 2 margin) x the larger extent of the hand points
    hand.min_side = 0.6  # smallest crop side, x shoulder width (foreshortened hands)
    hand.fallback_side = 0.8  # crop side from wrist + elbow alone, x shoulder width
    hand.score_threshold = 0.3  # body-model points at or above this score are trusted
    hand.min_points = 3  # fewer trusted hand points: place the crop from wrist and elbow
    hand.reach = 0.2  # wrist + elbow rule: centre this far past the wrist, x shoulder width
    hand.align = True  # rotate crops so the hand points up (wrist -> middle knuckle)
    # Training jitter of the crop region, sized to the demo body model's measured region errors
    # on val (docs/HANDS.md): centre off by 0.11 / 0.33 of the side (median / 90th percentile),
    # side 0.57-1.27x, angle off by 17 / 55 degrees. Set rotation_deg = 180 with align = False
    # for crops at any angle.
    hand.shift = 0.25  # centre moved up to +- this x crop side, each axis
    hand.scale_min = 0.6  # crop side scaled by a factor in [scale_min, scale_max]
    hand.scale_max = 1.3
    hand.rotation_deg = 60.0  # rotation up to +- this many degrees around the aligned angle

    config.model = model = ml_collections.ConfigDict()
    model.name = "resnet18"  # resnet18 | resnet34 | resnet50 | mobilenet_v3_small
    model.width = 64  # base channel width (64 = torchvision); smaller for tests
    model.num_keypoints = 64
    model.deconv_layers = 3  # SimpleBaseline head: transposed convs, each x2 upsampling
    model.deconv_filters = 256
    model.deconv_kernel = 4  # 4 (padding 1), 3 or 2
    model.final_kernel = 1
    model.heatmap_size = 128  # must equal the model's output size: image_size / 4 by default
    model.sigma = 2.0  # Gaussian target sigma in heatmap pixels
    # Heatmap coordinates: False = x * heatmap_size / image_size; True = UDP's (size - 1) ratio
    # (signlang_jax/codec.py). configs/hand.py uses True: it won the hand ablation (docs/HANDS.md).
    model.udp = False
    # heatmap (SimpleBaseline, the exported contract) | simcc: x and y classification over
    # image_size * simcc_split bins each (RTMPose), with heatmap_size = image_size * simcc_split
    # and sigma in bins; read as heatmaps by every decoder (signlang_jax/models/simcc_head.py).
    # SimCC lost the hand ablation at equal time (docs/HANDS.md) and does not export to ONNX.
    model.head = "heatmap"
    model.simcc_split = 2
    model.simcc_hidden = 256
    model.dtype = "auto"  # compute dtype: auto (bf16 on GPU/TPU, f32 on CPU) | float32 | bfloat16
    model.deconv_impl = "auto"  # auto | subpixel_matmul | subpixel_conv | lax (see models/head.py)
    # .pth to initialise the backbone from (fresh runs only): a torchvision resnet18/34/50 or
    # mobilenet_v3_small state_dict (ImageNet weights need width 64) or a torch-twin state_dict.
    model.pretrained_backbone = ""  # "" = random init

    config.optim = optim = ml_collections.ConfigDict()
    optim.name = "adam"  # adam | adamw | sgd (Nesterov, momentum b1)
    optim.lr = 1e-3  # peak learning rate
    optim.b1 = 0.9
    optim.b2 = 0.999
    optim.weight_decay = 1e-4  # adamw only
    optim.schedule = "cosine"  # cosine | step | constant, after the warmup
    optim.warmup_steps = 500  # linear warmup from 0 (in optimizer updates)
    optim.final_lr_fraction = 0.01  # cosine ends at lr * this
    optim.step_boundaries = (0.7, 0.9)  # step schedule: fractions of training where lr drops
    optim.step_factor = 0.1  # step schedule: lr multiplier at each boundary
    optim.grad_clip = 1.0  # global-norm clipping (0 = off)
    # Exponential moving average of the weights (and BatchNorm statistics), updated every step
    # with decay min(ema_decay, (1 + step) / (10 + step)); validation, the best checkpoint,
    # evaluation and export then use the average. Changes the checkpoint's layout: a run cannot
    # switch it on or off when resumed.
    optim.ema = False
    optim.ema_decay = 0.998
    optim.accumulate_steps = 1  # gradient accumulation (optax.MultiSteps) for small GPUs
    # A step whose loss or gradients are not finite is skipped (state unchanged); this many
    # skipped steps in a row stop training.
    optim.max_skipped_steps = 5  # non-finite steps skipped in a row before training stops

    config.train = train = ml_collections.ConfigDict()
    train.batch_size = 16  # global batch size (split over processes and devices)
    train.epochs = 50
    train.num_steps = 0  # if > 0, overrides epochs
    train.log_every_steps = 50
    train.eval_every_steps = 1000  # validation on the val split (and at the last step)
    train.checkpoint_every_steps = 1000  # also after every validation
    train.keep_checkpoints = 3  # latest kept, plus the best by train.best_metric
    # Validation metric that picks the "best" checkpoint (docs/ARCHITECTURE.md): hand PCK with
    # each hand's own box responds to hand precision; val/pck@0.1 is whole-body PCK.
    train.best_metric = "val/hand_pck@0.2"  # any val/ metric; val/pck@0.1 = whole body
    # Resuming on a dataset, batch size or worker count other than the checkpoint's: "refuse",
    # or "restart_epoch" (keep step and model, start a new data order).
    train.on_data_change = "refuse"  # refuse | restart_epoch (after adding data)
    train.num_val_images = 4  # val predictions drawn into TensorBoard

    # Multi-host data parallelism on jax.distributed (docs/SCALING.md). One process per host (or
    # per GPU); every process runs the same command with its own process_id.
    config.distributed = dist = ml_collections.ConfigDict()
    dist.coordinator = ""  # HOST:PORT of process 0 ("" = single process unless auto)
    dist.num_processes = 1  # number of processes in the job (with coordinator)
    dist.process_id = 0  # this process's rank, 0 .. num_processes - 1 (with coordinator)
    dist.auto = False  # True: let jax.distributed detect the cluster (SLURM, Cloud TPU, MPI)
    dist.timeout = 300  # seconds to wait for every process to join
    return config

"""`python -m signlang_jax.evaluate`: score a checkpoint on a dataset in the seed layout.

Reports PCK@0.05/0.1 (overall, per group, per keypoint), end-point error in original-image
pixels, heatmap MSE per keypoint, mean OKS and COCO OKS AP/AR (pycocotools, our sigmas) for the
whole body, each part at whole-body scale, and each hand with its own box (OKS AP and
PCK@0.2, the hand benchmarks' convention). Writes metrics.json, a per-keypoint PCK bar chart and
a grid of the worst predictions (ground truth white, prediction coloured) to --out, by default
WORKDIR/eval/step_<N>_<split>[_<data folder>] of the checkpoint's training workdir.

With --hand-checkpoint (a hand model, docs/HANDS.md) the hands are refined on crops of the
original images, and the hands of the body model alone and of body + hand stage are reported side
by side (metrics.json "hands").
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import math
import sys
import traceback
from pathlib import Path

import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from signlang_jax.codec import per_keypoint_mse, render_heatmaps
from signlang_jax.crop import HANDS, part_boxes
from signlang_jax.data.dataset import ALL_SPLIT, SPLITS, DatasetError
from signlang_jax.data.iterator import make_iterator
from signlang_jax.data.mixture import parse_sources
from signlang_jax.data.pipeline import (
    FORMATS,
    PackedSource,
    SampleSource,
    check_format,
    load_records,
    record_image,
)
from signlang_jax.errors import ConfigError, TrainingError
from signlang_jax.evaluation.metrics import (
    HAND_PCK_THRESHOLD,
    coco_keypoint_ap,
    hand_metrics,
    hand_pck,
    oks,
    part_pck_counts,
    pck_counts,
    pck_summary,
)
from signlang_jax.evaluation.report import (
    GROUP_NAMES,
    HAND_PCK_NAME,
    format_hand_table,
    format_table,
    write_report,
)
from signlang_jax.inference.cli_args import (
    add_checkpoint_arguments,
    add_dtype_argument,
    add_hand_arguments,
)
from signlang_jax.inference.predictor import (
    DECODERS,
    Predictor,
    load_for_inference,
    load_hand_stage,
    to_original,
)
from signlang_jax.keypoints import GROUPS, KEYPOINT_NAMES
from signlang_jax.training.compile_cache import enable_compilation_cache

# Problems of the user's files, flags or checkpoint: one ERROR line, no traceback.
USER_ERRORS = (DatasetError, ConfigError, TrainingError, ValueError, OSError)


def load_config_file(path: str | Path) -> ml_collections.ConfigDict:
    """`get_config()` of a Python config file, as `signlang_jax.main --config FILE` loads it.

    Raises `ConfigError` starting with the file's name for a missing file, an error inside it
    (with its line), no `get_config()`, or one that does not return a ConfigDict.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{file}: no such config file (expected a Python file with "
                          "get_config(), e.g. configs/default.py)")
    name = f"signlang_jax_evaluate_config_{file.stem}"
    loader = importlib.machinery.SourceFileLoader(name, str(file))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    try:
        loader.exec_module(module)
    except Exception as e:  # the user's code: whatever it raises is theirs to fix, not a bug here
        raise _error_in(file, e) from None
    if not callable(getattr(module, "get_config", None)):
        raise ConfigError(f"{file}: defines no get_config() function")
    try:
        config = module.get_config()
    except Exception as e:  # as above
        raise _error_in(file, e) from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{file}: get_config() returned {type(config).__name__}, expected an "
                          "ml_collections.ConfigDict")
    for section in ("data", "augment"):
        if not isinstance(config.get(section), ml_collections.ConfigDict):
            raise ConfigError(f"{file}: the config has no '{section}' section (evaluate takes "
                              "data and augment fields from it)")
    return config


def _error_in(file: Path, error: Exception) -> ConfigError:
    """`FILE (line N): Type: message` for an exception raised by the code of a config file."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve() == file.resolve()]
    where = f" (line {frames[-1].lineno})" if frames else ""
    return ConfigError(f"{file}{where}: {type(error).__name__}: {error}")


def override_config(config: ml_collections.ConfigDict, override: ml_collections.ConfigDict,
                    file: str | Path) -> None:
    """Replace `config`'s data and augment fields with `override`'s, except data.image_size.

    The input size stays the checkpoint's: it is part of what the model was trained on, and a
    config file's default would otherwise silently evaluate at another resolution.
    """
    data = override.data.to_dict()
    data.pop("image_size", None)
    try:
        config.data.update(data)
        config.augment.update(override.augment.to_dict())
    except TypeError as e:
        raise ConfigError(f"{file}: a data/augment field does not fit the checkpoint's config "
                          f"({e})") from None


def load_eval_records(data: ml_collections.ConfigDict, split: str
                      ) -> SampleSource | PackedSource:
    """`load_records(data, split)`, with 'all' (every valid image) for folder datasets only."""
    if split == ALL_SPLIT and check_format(data) != "folder":
        raise ConfigError(f"--split {ALL_SPLIT}: {data.root} is a data.format={data.format} pack "
                          f"with only the splits it was packed with; use --split train or val, "
                          "or point --data-root at the image folder with --data-format folder")
    return load_records(data, split)


def default_out_dir(workdir: Path, step: int, split: str, data_root: str | Path,
                    trained_root: str | Path | dict[str, str]) -> Path:
    """WORKDIR/eval/step_<N>_<split>, plus _<data folder> when not the training dataset.

    For a model trained on a mixture (`trained_root` = {source name: root}) the suffix is the
    source's name (sources may share a folder name, e.g. two .../data), else the folder's.

    Outside checkpoints/ (orbax deletes step folders the keep policy drops) and one folder per
    (step, split, dataset), so evaluating a held-out folder does not overwrite the val report.
    """
    name = f"step_{step}_{split}"
    root = Path(data_root).resolve()
    if isinstance(trained_root, dict):  # a mixture: {source name: root}
        names = [n for n, r in trained_root.items() if Path(r).resolve() == root]
        return workdir / "eval" / f"{name}_{names[0] if names else root.name}"
    if root != Path(trained_root).resolve():
        name += f"_{root.name}"
    return workdir / "eval" / name


def predict_split(predictor: Predictor, records: SampleSource | PackedSource, batch_size: int,
                  progress: bool = True) -> dict[str, np.ndarray]:
    """Predictions for every record of a split (`load_records`), in original-image pixels.

    Returns pred (M, K, 3), gt (M, K, 3), bbox (M, 4), mse (M, K) heatmap MSE; with a hand
    stage, pred is the two-stage result and pred_body the body model's own prediction.
    """
    config = predictor.config
    out = {"pred": [], "gt": [], "bbox": [], "mse": []}
    hand_stage = getattr(predictor, "hand_stage", None)  # predictor-like objects may lack one
    if hand_stage is not None:
        out["pred_body"] = []
    # Closing (the `with`) stops grain's worker processes and frees their shared memory on every
    # exit, errors and Ctrl-C included (see BatchIterator.close).
    with (make_iterator(config, "val", source=records, batch_size=batch_size, shard_index=0,
                        shard_count=1) as batches,
          tqdm(total=len(records), unit="img", disable=not progress, file=sys.stderr) as bar):
        for batch in batches:
            keypoints, heatmaps = predictor.predict_batch(batch["image"])
            targets = render_heatmaps(jnp.asarray(batch["keypoints"]), config.data.image_size,
                                      heatmaps.shape[1], config.model.sigma)
            mse = np.asarray(per_keypoint_mse(jnp.asarray(heatmaps), targets))
            kept = np.flatnonzero(batch["mask"])
            body = [to_original(keypoints[i], batch["affine"][i]) for i in kept]
            batch_records = [records[int(batch["index"][i])] for i in kept]
            out["pred"] += body
            if hand_stage is not None:
                out["pred_body"] += body
                frames = [record_image(r) for r in batch_records]  # original resolution
                out["pred"][-len(body):] = list(hand_stage.refine(frames, np.stack(body)))
            for i, record in zip(kept, batch_records, strict=True):
                out["gt"].append(record["keypoints"])
                out["bbox"].append(record["bbox"])
                out["mse"].append(mse[i])
            bar.update(int(batch["mask"].sum()))
    return {k: np.stack(v) for k, v in out.items()}


def compute_metrics(pred: np.ndarray, gt: np.ndarray, bbox: np.ndarray,
                    mse: np.ndarray) -> dict:
    """Every reported metric from predictions and ground truth in the same pixels."""
    metrics: dict = {"num_images": len(gt)}
    for t in (0.05, 0.1):
        summary = pck_summary(*pck_counts(pred, gt, bbox, t))
        metrics[f"pck@{t}"] = {g: summary[g] for g in GROUP_NAMES}
        metrics[f"pck@{t}_per_keypoint"] = {n: summary[n] for n in KEYPOINT_NAMES}
    visible = gt[..., 2] > 0
    dist = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    groups = {"all": range(gt.shape[1]), **GROUPS}
    metrics["epe_px"] = {g: float(dist[:, list(i)][visible[:, list(i)]].mean())
                         if visible[:, list(i)].any() else math.nan for g, i in groups.items()}
    metrics["heatmap_mse"] = float((mse * visible).sum() / max(visible.sum(), 1))
    metrics["heatmap_mse_per_keypoint"] = {
        n: float(mse[visible[:, k], k].mean()) if visible[:, k].any() else math.nan
        for k, n in enumerate(KEYPOINT_NAMES)}
    area = bbox[:, 2] * bbox[:, 3]
    metrics["oks_mean"] = float(np.nanmean(oks(pred, gt, area)))
    metrics["oks_ap"] = {"all": coco_keypoint_ap(pred, gt, bbox)}
    for group, indices in GROUPS.items():
        metrics["oks_ap"][group] = coco_keypoint_ap(pred, gt, bbox, indices)
    for hand in HANDS:
        metrics["oks_ap"][f"{hand}_own_box"] = coco_keypoint_ap(
            pred, gt, part_boxes(gt, GROUPS[hand]), GROUPS[hand])
    # The same numbers as training's val/hand_pck@0.2 metrics (signlang_jax.training.validation).
    summary = hand_pck({hand: part_pck_counts(pred, gt, GROUPS[hand], HAND_PCK_THRESHOLD)
                        for hand in HANDS})
    name = f"val/{HAND_PCK_NAME}"
    metrics[HAND_PCK_NAME] = {**{hand: summary[f"{name}/{hand}"] for hand in HANDS},
                              "hands": summary[name]}
    return metrics


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m signlang_jax.evaluate",
                                     description=__doc__.splitlines()[0])
    add_checkpoint_arguments(parser)
    add_dtype_argument(parser)
    add_hand_arguments(parser)
    parser.add_argument("--config", default=None,
                        help="optional Python config file (get_config(), e.g. configs/default.py) "
                        "whose data/augment fields replace the checkpoint's, e.g. "
                        "data.num_workers; the architecture and data.image_size always come "
                        "from the checkpoint")
    parser.add_argument("--data-root", default=None,
                        help="dataset folder (default: the one the model was trained on; "
                        "required for a model trained on a mixture, data.sources)")
    parser.add_argument("--data-format", choices=FORMATS, default=None,
                        help="format of --data-root (default: the training config's data.format)")
    parser.add_argument("--images-dir", default=None, help="image folder under the root")
    parser.add_argument("--labels-dir", default=None, help="label folder under the root")
    parser.add_argument("--split", choices=(*SPLITS, ALL_SPLIT), default="val",
                        help="val (default) or train: the split of the training run (split "
                        "files or hash); all: every valid image of the folder, e.g. a separate "
                        "held-out set (folder datasets only)")
    parser.add_argument("--flip-test", action="store_true",
                        help="average with the prediction on the mirrored image")
    parser.add_argument("--decoder", choices=DECODERS, default="argmax",
                        help="argmax + quarter-pixel shift (default) or DARK refinement")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument("--out", default=None,
                        help="report folder (default: WORKDIR/eval/step_<N>_<split> of the "
                        "checkpoint's training workdir, with _<data folder name> added when "
                        "--data-root is not the training dataset)")
    parser.add_argument("--worst", type=int, default=8,
                        help="images in the worst-cases grid (0: no grid)")
    return parser


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate as the parsed flags say; print the table; write the report; return the exit code."""
    try:
        loaded = load_for_inference(args.checkpoint, args.step, args.dtype)
        config, step = loaded.config, loaded.step
        trained_root = config.data.root
        sources = parse_sources(config.data.get("sources") or "")
        if sources:
            trained_root = {s.name: s.root for s in sources}
        if args.config:
            override_config(config, load_config_file(args.config), args.config)
        for field, value in (("root", args.data_root), ("format", args.data_format),
                             ("images_dir", args.images_dir), ("labels_dir", args.labels_dir)):
            if value is not None:
                config.data[field] = value
        config.data.synthetic_num = 0
        if sources and args.data_root is None:
            raise ConfigError(f"{args.checkpoint} was trained on a mixture (data.sources): "
                              "evaluate one source at a time with --data-root, one of "
                              + ", ".join(s.root for s in sources))
        records = load_eval_records(config.data, args.split)
        if config.get("task", "wholebody") == "hand":
            raise ConfigError(f"--checkpoint {args.checkpoint} is a hand model: evaluate the "
                              "pair with --checkpoint BODY_RUN --hand-checkpoint HAND_RUN")
        hand_stage = (None if args.hand_checkpoint is None else load_hand_stage(
            args.hand_checkpoint, None, args.dtype, args.hand_min_score, args.decoder))
        predictor = Predictor(loaded.model, config, args.decoder, args.flip_test, hand_stage)
        print(f"evaluating step {step} of {args.checkpoint} on {len(records)} {args.split} "
              f"images of {config.data.root} (decoder {args.decoder}, flip test "
              f"{'on' if args.flip_test else 'off'})", file=sys.stderr)
        result = predict_split(predictor, records, args.batch_size)
    except USER_ERRORS as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    metrics = compute_metrics(result["pred"], result["gt"], result["bbox"], result["mse"])
    metrics.update({"checkpoint": str(args.checkpoint), "step": step, "split": args.split,
                    "data_root": str(config.data.root), "decoder": args.decoder,
                    "flip_test": args.flip_test})
    if "pred_body" in result:
        metrics["hands"] = {
            "body_model": hand_metrics(result["pred_body"], result["gt"], result["bbox"]),
            "body_plus_hand_stage": hand_metrics(result["pred"], result["gt"], result["bbox"]),
            "hand_checkpoint": str(args.hand_checkpoint),
            "hand_min_score": args.hand_min_score}
    else:
        metrics["hands"] = {"body_model": hand_metrics(result["pred"], result["gt"],
                                                       result["bbox"])}
    print(format_table(metrics))
    print(format_hand_table(metrics["hands"]))
    out = Path(args.out) if args.out else default_out_dir(
        loaded.directory.parent, step, args.split, config.data.root, trained_root)
    try:
        write_report(out, metrics, records, result, args.worst)
    except OSError as e:
        print(f"ERROR cannot write the report to {out}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}/metrics.json, pck_per_keypoint.png"
          + (", worst.jpg" if args.worst > 0 else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; exit code 0, 1 for a user error, 130 when interrupted (Ctrl-C)."""
    args = build_parser().parse_args(argv)
    enable_compilation_cache()
    try:
        return evaluate(args)
    except KeyboardInterrupt:
        print("interrupted: evaluation stopped before its report was complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""Scoring a model on one split: the data to evaluate, its predictions, every reported metric.

`python -m signlang_jax.evaluate` wires these together: `prepare_eval_data` applies the user's
data choices to the checkpoint's config and loads the split, `predict_split` runs a predictor
over it (original-image pixels), `split_metrics` computes the metrics.json content and
`default_out_dir` names the report folder. Nothing here loads a model: the predictor (an
`inference.Predictor` or anything with its `config` and `predict_batch`) is an argument, so
evaluation stays below inference in the package's layers.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import jax.numpy as jnp
import ml_collections
import numpy as np

from signlang_jax.codec import per_keypoint_mse, render_heatmaps
from signlang_jax.crop import HANDS, part_boxes, to_original
from signlang_jax.data.dataset import ALL_SPLIT
from signlang_jax.data.iterator import make_iterator
from signlang_jax.data.mixture import parse_sources
from signlang_jax.data.sources import (
    PackedSource,
    SampleSource,
    check_format,
    load_records,
    record_image,
)
from signlang_jax.errors import ConfigError
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
from signlang_jax.evaluation.report import GROUP_NAMES, HAND_PCK_NAME
from signlang_jax.keypoints import GROUPS, KEYPOINT_NAMES
from signlang_jax.progress import progress as progress_bar

if TYPE_CHECKING:
    from signlang_jax.inference.predictor import Predictor

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


def prepare_eval_data(config: ml_collections.ConfigDict, config_file: str | Path | None,
                      fields: dict[str, str | None], split: str, checkpoint: str | Path
                      ) -> tuple[SampleSource | PackedSource, str | dict[str, str]]:
    """Point the checkpoint's `config` (in place) at the data to evaluate and load its split.

    config_file: a config whose data/augment fields replace the checkpoint's (`override_config`);
    fields: {data field such as "root": value, or None to keep it}, applied after it. Returns
    (the split's records, the root the model was trained on: a folder, or {source name: root}
    for a mixture, as `default_out_dir` takes it). A mixture-trained model needs "root".
    """
    trained_root: str | dict[str, str] = config.data.root
    sources = parse_sources(config.data.get("sources") or "")
    if sources:
        trained_root = {s.name: s.root for s in sources}
    if config_file:
        override_config(config, load_config_file(config_file), config_file)
    for field, value in fields.items():
        if value is not None:
            config.data[field] = value
    config.data.synthetic_num = 0
    if sources and fields.get("root") is None:
        raise ConfigError(f"{checkpoint} was trained on a mixture (data.sources): "
                          "evaluate one source at a time with --data-root, one of "
                          + ", ".join(s.root for s in sources))
    return load_eval_records(config.data, split), trained_root


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
          progress_bar(total=len(records), unit="img", disable=not progress) as bar):
        for batch in batches:
            keypoints, heatmaps = predictor.predict_batch(batch["image"])
            targets = render_heatmaps(jnp.asarray(batch["keypoints"]), config.data.image_size,
                                      heatmaps.shape[1], config.model.sigma,
                                      config.model.get("udp", False))
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


def split_metrics(result: dict[str, np.ndarray], run: dict,
                  hand_stage: dict | None = None) -> dict:
    """The metrics.json content for a `predict_split` result.

    `compute_metrics`, then `run` (what was evaluated: checkpoint, step, split, ...), then
    "hands": the body model's hand accuracy and, when the result has a hand stage's prediction
    (pred_body), body + hand stage's beside it plus the `hand_stage` fields (its checkpoint...).
    """
    pred, gt, bbox = result["pred"], result["gt"], result["bbox"]
    metrics = compute_metrics(pred, gt, bbox, result["mse"])
    metrics.update(run)
    if "pred_body" in result:
        metrics["hands"] = {"body_model": hand_metrics(result["pred_body"], gt, bbox),
                            "body_plus_hand_stage": hand_metrics(pred, gt, bbox),
                            **(hand_stage or {})}
    else:
        metrics["hands"] = {"body_model": hand_metrics(pred, gt, bbox)}
    return metrics

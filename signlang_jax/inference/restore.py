"""Load a trained Flax model and its config from a training workdir (evaluation, inference, export).

Which checkpoint: the syntax shared by every checkpoint flag (`training.checkpoint_specs`):
RUN, RUN:best, RUN:latest, RUN:STEP or a step folder. "best" is the kept step with the best
`train.best_metric` of the run (the latest if no checkpoint has validation metrics). The config
is WORKDIR/config.json, written by training; fields added to `configs/default.py` since that
run take their default values.

Only the model's variables are read (a partial restore), not the optimizer's moments, which
are about twice the model's size for Adam.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import jax
import ml_collections
from flax import nnx

from configs import default
from signlang_jax.errors import CheckpointError
from signlang_jax.models import create_model
from signlang_jax.training import checkpoints as ckpt
from signlang_jax.training.checkpoint_specs import locate, parse_spec

__all__ = ["CheckpointError", "LoadedCheckpoint", "load_checkpoint", "load_config", "split_spec"]

split_spec = parse_spec  # the one parser of "PATH[:best|:latest|:STEP]"


@dataclasses.dataclass
class LoadedCheckpoint:
    """A restored model (eval mode) with its config and provenance."""

    model: nnx.Module
    config: ml_collections.ConfigDict
    step: int
    directory: Path  # the checkpoints/ folder; its parent is the run's workdir


def _merge(defaults: dict, saved: dict) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(config_path: Path) -> ml_collections.ConfigDict:
    """WORKDIR/config.json over the defaults of configs/default.py (for fields added later)."""
    if not config_path.is_file():
        raise CheckpointError(f"{config_path} does not exist: the checkpoint's config is needed to "
                              "rebuild its model (training writes WORKDIR/config.json)")
    try:
        saved = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_path}: not valid JSON ({e})") from None
    return ml_collections.ConfigDict(_merge(default.get_config().to_dict(), saved))


def load_checkpoint(spec: str | Path, step: str | int | None = None,
                    dtype: str = "float32") -> LoadedCheckpoint:
    """Restore the model of a training checkpoint (see the module docstring for `spec`).

    dtype: the compute dtype to build the model with: "float32" (export and parity checks
    compare float32 graphs; the default), "bfloat16", or "trained" (the run's own
    model.dtype, e.g. bf16 on a GPU). The weights are float32 either way.
    """
    path, chosen = parse_spec(spec, step)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a workdir such as "
                              "runs/x, its checkpoints/ folder or a step folder such as "
                              "runs/x/checkpoints/1000)")
    directory, chosen = locate(path, chosen)
    config = load_config(directory.parent / "config.json")
    with config.unlocked():
        if dtype != "trained":
            config.model.dtype = dtype
        if "pretrained_backbone" in config.model:
            config.model.pretrained_backbone = ""  # the checkpoint's weights replace them
    manager = ckpt.make_checkpoint_manager(directory, config, read_only=True)
    try:
        chosen = ckpt.select_step(manager, chosen, config.train.best_metric)
        model = nnx.eval_shape(lambda: create_model(config.model, nnx.Rngs(0)))
        graphdef, abstract = nnx.split(model)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # inference: one device
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                                abstract)
        restored = ckpt.restore_model_variables(manager, chosen, abstract,
                                                averaged=bool(config.optim.ema))
    finally:
        manager.close()
    model = nnx.merge(graphdef, restored)
    model.eval()
    return LoadedCheckpoint(model, config, int(chosen), directory)

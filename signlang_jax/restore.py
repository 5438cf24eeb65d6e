"""Load a trained Flax model and its config from a training workdir (evaluation, inference, export).

Which checkpoint, in one syntax shared by every `--checkpoint` flag of the project:

    runs/x                     a workdir: its latest checkpoint
    runs/x/checkpoints         the same
    runs/x/checkpoints/1200    that step
    runs/x:best                the kept step with the best val PCK@0.1 (`train.best_step`; the
                               latest if no checkpoint has validation metrics)
    runs/x:latest, runs/x:1200 the latest step, step 1200

`step=` ("best", "latest" or a number; the CLI's `--step`) does the same as the suffix. The config
is WORKDIR/config.json, written by training; fields added to `configs/default.py` since that run
take their default values.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from configs import default
from signlang_jax import train

STEP_WORDS = ("best", "latest")


class CheckpointError(ValueError):
    """The checkpoint cannot be found or loaded; the message says which path and why."""


@dataclasses.dataclass
class LoadedCheckpoint:
    """A restored model (eval mode, float32 compute) with its config and provenance."""

    model: nnx.Module
    config: ml_collections.ConfigDict
    step: int
    directory: Path  # the checkpoints/ folder


def split_spec(spec: str | Path, step: str | int | None = None) -> tuple[Path, str | int | None]:
    """(path, step) from "PATH", "PATH:best|latest|N" and an optional separate step."""
    text = str(spec)
    suffix = None
    head, sep, tail = text.rpartition(":")
    if sep and head and not Path(text).exists() and (tail in STEP_WORDS or tail.isdigit()):
        text, suffix = head, tail
    if text in STEP_WORDS:
        raise CheckpointError(f"--checkpoint {text}: name the run too, e.g. --checkpoint "
                              f"runs/x:{text} or --checkpoint runs/x --step {text}")
    if suffix is not None and step is not None and str(step) != suffix:
        raise CheckpointError(f"--checkpoint {spec} and --step {step} disagree; give one of them")
    chosen = step if step is not None else suffix
    if isinstance(chosen, str) and chosen.isdigit():
        chosen = int(chosen)
    if chosen is not None and not isinstance(chosen, int) and chosen not in STEP_WORDS:
        raise CheckpointError(f"step {chosen!r}: expected best, latest or a step number")
    return Path(text), chosen


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


def load_checkpoint(spec: str | Path, step: str | int | None = None) -> LoadedCheckpoint:
    """Restore the model of a training checkpoint (see the module docstring for `spec`)."""
    path, chosen = split_spec(spec, step)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a workdir such as "
                              "runs/x, its checkpoints/ folder or a step folder such as "
                              "runs/x/checkpoints/1000)")
    directory, folder_step = train.resolve_checkpoint(path)
    if folder_step is not None:
        if chosen is not None and chosen != folder_step:
            raise CheckpointError(f"{path} is step {folder_step} but step {chosen} was asked for")
        chosen = folder_step
    config = load_config(directory.parent / "config.json")
    with config.unlocked():
        # Export and parity checks compare float32 graphs; the weights are float32 anyway.
        config.model.dtype = "float32"
        if "pretrained_backbone" in config.model:
            config.model.pretrained_backbone = ""  # the checkpoint's weights replace them
    manager = train.make_checkpoint_manager(directory, config, read_only=True)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise CheckpointError(f"no checkpoint in {directory} (training saves them every "
                                  "train.checkpoint_every_steps)")
        if chosen in (None, "latest"):
            chosen = steps[-1]
        elif chosen == "best":
            best = train.best_step(manager)
            chosen = steps[-1] if best is None else best
        elif chosen not in steps:
            raise CheckpointError(f"step {chosen} is not in {directory}; available: {steps}")
        graphdef, state, _ = train.create_state(config, 1)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        try:
            restored = train.restore_checkpoint(manager, chosen, abstract, None)
        except train.TrainingError as e:
            raise CheckpointError(str(e)) from None
    finally:
        manager.close()
    model, _ = nnx.merge(graphdef, restored)
    model.eval()
    return LoadedCheckpoint(model, config, int(chosen), directory)

"""The config history of a workdir, and how a resumed run's config compares with it.

Each start of a run records its config (`record_config`): `WORKDIR/config.json` is the current
one (inference reads it) and `WORKDIR/config_history/NNN-stepS.json` keeps every start's, never
overwritten. On a resume `config_differences` splits the changes since the checkpoint's config
into architecture changes (the checkpoint cannot be loaded) and others (a warning; those the saved
data position depends on are checked next by the data iterator, which may still refuse).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import ml_collections

from signlang_jax.data.iterator import POSITION_FIELDS
from signlang_jax.errors import ConfigError
from signlang_jax.files import write_atomic

# Config fields that change parameter shapes or the meaning of the outputs: a workdir trained with
# other values cannot be resumed.
ARCHITECTURE_FIELDS = (
    "task", "model.name", "model.width", "model.num_keypoints", "model.deconv_layers",
    "model.deconv_filters", "model.deconv_kernel", "model.final_kernel", "model.heatmap_size",
    "data.image_size", "optim.ema", "model.udp", "model.head", "model.simcc_split",
    "model.simcc_hidden",
)  # fmt: skip
# Architecture fields added after runs existed, and the value every run before them had: a
# checkpoint's config without the field is compared as if it held this value (so resuming an old
# plain-coordinate hand run with today's UDP configs/hand.py is refused, not silently switched).
ARCHITECTURE_BEFORE_FIELD = {"optim.ema": False, "model.udp": False, "model.head": "heatmap",
                             "model.simcc_split": 2, "model.simcc_hidden": 256}
# Fields that differ between the processes of one job or between restarts of it without changing
# what the run computes: never reported as differences.
IGNORED_DIFFERENCES = ("distributed.coordinator", "distributed.process_id", "distributed.timeout")

CONFIG_FILE = "config.json"
HISTORY_DIR = "config_history"
_HISTORY_NAME = re.compile(r"(\d+)-step(\d+)\.json")


# ----------------------------------------------------------------------------- differences


def _leaves(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {dotted field: value}; lists become tuples (JSON has no tuples)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_leaves(value, name + "."))
        else:
            out[name] = _freeze(value)
    return out


def _freeze(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _as_dict(config: Mapping | ml_collections.ConfigDict) -> Mapping:
    return config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config


def config_differences(saved: dict, current: dict) -> tuple[list[str], list[str]]:
    """(architecture differences, other differences) from a checkpoint's config to this one.

    Both are nested dicts (config.to_dict() or config.json); every leaf is compared, lists equal
    tuples. Lines read `model.name: checkpoint 'resnet18', this config 'resnet34'`, sorted by
    field; a field on one side only is an other difference (older versions lacked new fields),
    except the architecture fields added later, compared with their value before they existed
    (`ARCHITECTURE_BEFORE_FIELD`).
    """
    old, new = _leaves(_as_dict(saved)), _leaves(_as_dict(current))
    # A run from before a later architecture field had that field's old value.
    old = {**{f: v for f, v in ARCHITECTURE_BEFORE_FIELD.items() if f in new}, **old}
    architecture, other = [], []
    for field in sorted(old.keys() | new.keys()):
        if field in IGNORED_DIFFERENCES:
            continue
        before = repr(old[field]) if field in old else "(absent)"
        after = repr(new[field]) if field in new else "(absent)"
        if field in old and field in new and old[field] == new[field]:
            continue
        line = f"{field}: checkpoint {before}, this config {after}"
        if field in ARCHITECTURE_FIELDS and field in old and field in new:
            architecture.append(line)
        else:
            other.append(line)
    return architecture, other


def format_config_warnings(other: list[str], source: str) -> str:
    """The warning printed on a resume with changed non-architecture fields ('' if none).

    It promises no outcome: it is printed before the data iterator compares its saved position,
    which a changed `POSITION_FIELDS` field (or changed data) may make it refuse.
    """
    if not other:
        return ""
    noun = "field" if len(other) == 1 else "fields"
    text = (f"WARNING {source}: this config differs from the checkpoint's in {len(other)} "
            f"{noun}; this config's values apply:\n  " + "\n  ".join(other))
    position = [f for f in (line.split(":", 1)[0] for line in other) if f in POSITION_FIELDS]
    if position:
        text += (f"\n{', '.join(position)}: the checkpoint's data position depends on "
                 f"{'it' if len(position) == 1 else 'them'}; it is checked next, and a resume "
                 "on other data, another batch size or worker count stops there unless "
                 "--config.train.on_data_change=restart_epoch")
    return text


# ----------------------------------------------------------------------------- history


def history_files(workdir: Path) -> list[Path]:
    """WORKDIR/config_history/NNN-stepS.json files, oldest start first ([] if none)."""
    history = Path(workdir) / HISTORY_DIR
    if not history.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in history.iterdir()
             if (m := _HISTORY_NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def _next_start(workdir: Path) -> int:
    """The number of this start: one past the highest NNN in the history (0 for the first)."""
    files = history_files(workdir)
    return int(_HISTORY_NAME.fullmatch(files[-1].name).group(1)) + 1 if files else 0


def record_config(workdir: Path, config: ml_collections.ConfigDict, step: int) -> Path:
    """Write this start's config to WORKDIR/config.json and a new config_history/NNN-stepS.json.

    History files are never overwritten (exclusive create); returns the history file's path. Call
    it from one process only.
    """
    workdir = Path(workdir)
    history = workdir / HISTORY_DIR
    history.mkdir(parents=True, exist_ok=True)
    text = config.to_json_best_effort(indent=2) + "\n"
    start = _next_start(workdir)
    while True:
        path = history / f"{start:03d}-step{step}.json"
        try:
            with path.open("x") as f:  # "x": a file another start just wrote is kept
                f.write(text)
            break
        except FileExistsError:
            start += 1
    write_atomic(workdir / CONFIG_FILE, text.encode())
    return path


def load_previous_config(workdir: Path) -> dict | None:
    """WORKDIR/config.json as a dict, None if there is none; `ConfigError` if it is corrupt."""
    path = Path(workdir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        saved, reason = None, f"is not valid JSON ({e})"
    else:
        reason = f"holds a {type(saved).__name__}, not a config object"
    if isinstance(saved, dict):
        return saved
    kept = history_files(workdir)
    fix = (f"copy the last start's config over it: cp {kept[-1]} {path}" if kept
           else "restore it from a copy of the config this run was started with")
    raise ConfigError(f"{path} {reason}; {fix}")

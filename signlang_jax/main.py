"""`python -m signlang_jax.main --config configs/default.py [--workdir runs/x]`: train a model.

The workdir defaults to runs/<config file stem> (runs/default here). Running the same command
again resumes from the workdir's latest checkpoint; --resume RUN[:best|:latest|:STEP] seeds a
workdir that has none yet. Any config field can be overridden: --config.train.batch_size=8
--config.data.root=DIR.

Multi-host: run the same command in every process with --config.distributed.coordinator=HOST:PORT
--config.distributed.num_processes=P --config.distributed.process_id=I (see docs/SCALING.md).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.py"


def config_help(path: Path = DEFAULT_CONFIG) -> str:
    """The overridable fields of configs/default.py with their defaults and comments."""
    if not path.exists():
        return ""
    alias = {}
    lines = ["Config fields (override with --config.SECTION.FIELD=VALUE; defaults of "
             "configs/default.py):"]
    for line in path.read_text().splitlines():
        section = re.match(r"\s+config\.(\w+) = (\w+) = ml_collections\.ConfigDict\(\)", line)
        if section:
            alias[section.group(2)] = section.group(1)
            continue
        field = re.match(r"\s+(\w+)\.(\w+) = (.+?)(?:\s+# (.*))?$", line)
        if field and field.group(1) in alias | {"config": ""}:
            name = ".".join(p for p in (alias.get(field.group(1), ""), field.group(2)) if p)
            comment = f"  {field.group(4)}" if field.group(4) else ""
            # A field typed by a FieldReference (data.sources) shows its default value.
            value = re.sub(r"^ml_collections\.FieldReference\((.*), \w+\)$", r"\1", field.group(3))
            lines.append(f"  --config.{name}={value}{comment}")
    return "\n".join(lines)


__doc__ = f"{__doc__}\n{config_help()}\n"

_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, logs and config (default: runs/<config stem>).")
_RESUME = flags.DEFINE_string(
    "resume", None, "Start a NEW workdir from another run's checkpoint: RUN, RUN:best, "
    "RUN:latest, RUN:STEP or a step folder (RUN/checkpoints/1000). Ignored (with a message) "
    "when the workdir already has checkpoints: it then continues from its own latest.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training configuration file (e.g. configs/default.py).", lock_config=True)
flags.mark_flags_as_required(["config"])


def default_workdir(config_file: str) -> str:
    """runs/<config file stem>: where a run goes when --workdir is not given."""
    return str(Path("runs") / Path(config_file.split(":")[0]).stem)


def main(argv: list[str]) -> None:
    """Train and evaluate."""
    del argv
    logging.set_verbosity(logging.WARNING)  # keep JAX's and orbax's INFO lines off the console

    from signlang_jax.data.iterator import DataChangedError
    from signlang_jax.data.problems import DatasetError
    from signlang_jax.errors import CheckpointError, ConfigError, TrainingError
    from signlang_jax.training.compile_cache import enable_compilation_cache
    from signlang_jax.training.distributed import initialize_distributed
    from signlang_jax.training.train import train_and_evaluate

    workdir = _WORKDIR.value
    if workdir is None:
        workdir = default_workdir(flags.FLAGS["config"].config_filename)
        print(f"workdir: {workdir} (set --workdir to choose another)", file=sys.stderr)
    enable_compilation_cache()
    try:
        initialize_distributed(_CONFIG.value.distributed)  # before anything touches a device
        metrics = train_and_evaluate(_CONFIG.value, workdir, _RESUME.value)
    except (DatasetError, DataChangedError, TrainingError, ConfigError, CheckpointError) as e:
        # The project's own errors carry a message for the user; anything else is a bug and
        # keeps its traceback.
        print(f"ERROR {e}", file=sys.stderr)
        raise SystemExit(1) from None
    if metrics:
        print("final " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    app.run(main)

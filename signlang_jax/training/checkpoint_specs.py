"""Which checkpoint a flag names: one syntax for every flag (`main --resume`,
`evaluate/infer_image/to_onnx --checkpoint`, `--hand-checkpoint`), parsed by `parse_spec`:

    runs/x                     a workdir (or runs/x/checkpoints): its latest step
    runs/x/checkpoints/1200    that step folder
    runs/x:best                the kept step with the best `train.best_metric`
    runs/x:latest, runs/x:1200 the latest step, step 1200
"""

from __future__ import annotations

from pathlib import Path

from signlang_jax.errors import CheckpointError

STEP_WORDS = ("best", "latest")


def parse_spec(spec: str | Path, step: str | int | None = None) -> tuple[Path, str | int | None]:
    """(path, step) from "PATH", "PATH:best|latest|N" and an optional separate step."""
    text = str(spec)
    suffix = None
    head, sep, tail = text.rpartition(":")
    if sep and head and not Path(text).exists() and (tail in STEP_WORDS or tail.isdigit()):
        text, suffix = head, tail
    if text in STEP_WORDS:
        raise CheckpointError(f"checkpoint {text!r}: name the run too, e.g. runs/x:{text}")
    if suffix is not None and step is not None and str(step) != suffix:
        raise CheckpointError(f"checkpoint {spec} and step {step} disagree; give one of them")
    chosen = step if step is not None else suffix
    if isinstance(chosen, str) and chosen.isdigit():
        chosen = int(chosen)
    if chosen is not None and not isinstance(chosen, int) and chosen not in STEP_WORDS:
        raise CheckpointError(f"step {chosen!r}: expected best, latest or a step number")
    return Path(text), chosen


def resolve_checkpoint(path: str | Path) -> tuple[Path, int | None]:
    """(checkpoints directory, step of a step folder or None) from any accepted path."""
    path = Path(path)
    if path.name.isdigit() and path.is_dir() and not (path / "checkpoints").is_dir():
        return path.parent, int(path.name)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    if path.is_dir():
        return path, None
    raise CheckpointError(f"checkpoint {path} does not exist (expected a workdir such as runs/x, "
                          "its checkpoints/ folder or a step folder such as "
                          "runs/x/checkpoints/1000)")


def locate(spec: str | Path, step: str | int | None = None) -> tuple[Path, str | int | None]:
    """(checkpoints directory, step or "best"/"latest"/None) of a checkpoint spec."""
    path, chosen = parse_spec(spec, step)
    directory, folder_step = resolve_checkpoint(path)
    if folder_step is not None:
        if chosen is not None and chosen != folder_step:
            raise CheckpointError(f"{path} is step {folder_step} but step {chosen} was asked for")
        chosen = folder_step
    return directory, chosen

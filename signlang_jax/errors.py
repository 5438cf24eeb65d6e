"""The project's own error types: each carries a message that tells the user what to do.

The CLIs catch these (and `signlang_jax.data.problems.DatasetError`) and print one `ERROR ...`
line; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """One or more config fields are invalid; the message lists every bad field."""


class TrainingError(RuntimeError):
    """Training cannot go on (diverged, incompatible checkpoint...); the message says why."""


class CheckpointError(ValueError):
    """A checkpoint cannot be found or loaded; the message says which path and why."""


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint of another model or optimizer than the config describes."""


class CheckpointUnavailableError(CheckpointError):
    """A checkpoint could not be read for a reason that is not its files (out of memory...)."""

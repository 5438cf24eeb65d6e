"""Progress bars that read well in a terminal and in a log file.

On a terminal a tqdm bar redraws itself in place with carriage returns. Written to a file
(`make demo > log`, a SLURM log) every redraw would pile onto one enormous line, so there the
bar prints a plain line instead, at most every `LOG_INTERVAL` seconds, and the final state when
it closes. Every bar of the project comes from `progress`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL = 10.0  # seconds between lines when the output is not a terminal
_CURSOR = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the cursor moves of stacked bars


class LineWriter:
    """A file for tqdm that turns each redraw into one line (no carriage return, no cursor
    moves); blank redraws are dropped."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file

    def write(self, text: str) -> int:
        """Write each non-blank redraw in `text` as a line of its own."""
        for part in _CURSOR.sub("", text).replace("\r", "\n").split("\n"):
            if part.strip():
                self.file.write(part.rstrip() + "\n")
        return len(text)

    def flush(self) -> None:
        """Flush the underlying file."""
        self.file.flush()


def is_terminal(file: IO[str]) -> bool:
    """Whether `file` is an interactive terminal."""
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed file
        return False


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr (or `file=`): redrawn in place on a terminal, a line every
    `LOG_INTERVAL` seconds elsewhere. Takes tqdm's arguments."""
    file = kwargs.pop("file", None) or sys.stderr
    if not is_terminal(file):
        file = LineWriter(file)
        kwargs["mininterval"] = max(kwargs.get("mininterval", 0.0), LOG_INTERVAL)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0.0), LOG_INTERVAL)
        kwargs["dynamic_ncols"] = False
        kwargs["ncols"] = kwargs.get("ncols") or 100
        kwargs["position"] = None  # stacked bars move the cursor; lines need not
        kwargs.setdefault("leave", True)
    return tqdm(iterable, file=file, **kwargs)

"""Atomic file writes: a file is either its old content or the complete new one, never half.

Every writer of dataset files, labels, split lists and keypoint sequences goes through
`write_atomic`, so an interrupted run (an error, Ctrl-C, a full disk) never leaves a truncated
file under a name a reader trusts, nor a stray temporary file. The content goes to a hidden
temporary file in the target's folder (a rename is atomic only within one file system), is
flushed and fsynced, renamed over the target, and the folder is fsynced so the rename survives
a crash. Imports nothing of ours: any stage may use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

Content = bytes | Callable[[IO[bytes]], object]


def write_atomic(path: str | os.PathLike, content: Content) -> None:
    """Write `content` (bytes, or a function writing into a binary file) to `path` atomically.

    On any failure, KeyboardInterrupt included, the temporary file is removed, `path` keeps its
    old content (or stays absent) and the error is re-raised. OSError if the folder is missing
    or not writable.
    """
    path = Path(path)
    # Hidden and ending in .tmp: no glob of labels (*.json) or images (*.jpg) ever matches it.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    # O_EXCL: never write through someone else's file; 0o666 lets the umask decide, as open() does.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; where a file system cannot fsync a folder, skip it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

"""Atomic file writes: a file is either its old content or the complete new one, never half.

Every file the project writes for others to read (dataset images and labels, split lists,
keypoint sequences, overlay and clip videos, ONNX exports, configs, reports) goes through
`atomic_path`, so an interrupted run (an error, Ctrl-C, a full disk) never leaves a truncated
file under a name a reader trusts, nor a stray temporary file. The content goes to a hidden
temporary file in the target's folder (a rename is atomic only within one file system), is
fsynced, renamed over the target, and the folder is fsynced so the rename survives a crash.
`write_atomic` is the common case of bytes already in memory; `atomic_path` serves writers that
need a file name of their own (torch's ONNX export), and `temporary_sibling` + `commit` one that
writes over many calls (OpenCV's video writer). A folder written
whole and renamed into place (`data/pack.py`) uses `fsync_folder` for the same durability.
Imports nothing of ours: any stage may use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

Content = bytes | Callable[[IO[bytes]], object]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; on success it replaces `path` durably.

    On any failure, KeyboardInterrupt included, the temporary file is removed, `path` keeps its
    old content (or stays absent) and the error is re-raised.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name next to `path` with its suffix (OpenCV picks a container by it)."""
    # Hidden: no glob of labels (*.json), images (*.jpg) or videos (*.mp4) ever matches it.
    return path.parent / f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}"


def commit(tmp: Path, path: Path) -> None:
    """Move a finished temporary file onto `path`: fsync it, rename, fsync the folder."""
    _fsync_file(tmp)
    os.replace(tmp, path)
    fsync_folder(path.parent)


def write_atomic(path: str | os.PathLike, content: Content) -> None:
    """Write `content` (bytes, or a function writing into a binary file) to `path` atomically.

    OSError if the folder is missing or not writable; see `atomic_path` for failures.
    """
    with atomic_path(path) as tmp:
        # O_EXCL: never write through someone else's file; 0o666 lets the umask decide, as
        # open() does.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder below `folder` (before renaming a finished folder in)."""
    for item in sorted(Path(folder).rglob("*")):
        if item.is_file():
            _fsync_file(item)
    for item in [Path(folder), *(p for p in Path(folder).rglob("*") if p.is_dir())]:
        fsync_folder(item)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; where a file system cannot fsync a folder, skip it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

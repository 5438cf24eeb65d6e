"""Tests for the one atomic file writer (signlang_jax/files.py)."""

from __future__ import annotations

import os

import pytest

from signlang_jax.files import atomic_path, write_atomic


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_bytes_and_callable_forms_write_the_content(tmp_path):
    write_atomic(tmp_path / "a.bin", b"\x00bytes\xff")
    write_atomic(str(tmp_path / "b.bin"), lambda f: f.write(b"from a writer"))
    assert (tmp_path / "a.bin").read_bytes() == b"\x00bytes\xff"
    assert (tmp_path / "b.bin").read_bytes() == b"from a writer"
    write_atomic(tmp_path / "a.bin", b"replaced")  # over an existing file
    assert (tmp_path / "a.bin").read_bytes() == b"replaced"
    assert _names(tmp_path) == ["a.bin", "b.bin"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, error):
    path = tmp_path / "label.json"
    path.write_bytes(b"old")

    def half_then_fail(f) -> None:
        f.write(b"half of the new")
        raise error

    with pytest.raises(type(error)):
        write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old" and _names(tmp_path) == ["label.json"]
    with pytest.raises(type(error)):  # nothing there before: nothing there after
        write_atomic(tmp_path / "new.json", half_then_fail)
    assert _names(tmp_path) == ["label.json"]


def test_a_failing_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def refuse(src, dst) -> None:
        raise PermissionError(13, "read-only", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        write_atomic(tmp_path / "x.jpg", b"jpeg")
    assert _names(tmp_path) == []


def test_a_missing_folder_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "x.json", b"{}")
    assert _names(tmp_path) == []


def test_the_content_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"),
                                                     real_replace(a, b))[1])
    write_atomic(tmp_path / "x.json", b"{}")
    assert events == ["fsync", "replace", "fsync"]  # the file, then the folder


def test_atomic_path_gives_a_hidden_name_with_the_suffix_and_moves_it_into_place(tmp_path):
    target = tmp_path / "clip.overlay.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".mp4"
        tmp.write_bytes(b"video")  # any writer that wants a file name (OpenCV, torch.onnx)
        assert not target.exists()
    assert target.read_bytes() == b"video" and _names(tmp_path) == ["clip.overlay.mp4"]


def test_atomic_path_removes_a_partial_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a model")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old model" and _names(tmp_path) == ["model.onnx"]
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "x.mp4"):
        pass  # the writer wrote nothing: an error, never an empty file
    assert _names(tmp_path) == ["model.onnx"]

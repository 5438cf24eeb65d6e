"""The README's Python examples run as written (import paths, names, shapes), and the package's
layering holds: no import circle, no import from a lower floor to a higher one
(`benchmarks/layout.py`, which prints the whole plan)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_python_blocks_are_found():
    blocks = python_blocks("x\n```python\na = 1\n```\n```bash\nb\n```\n```python\nc = 2\n```\n")
    assert blocks == ["a = 1\n", "c = 2\n"]


@pytest.fixture(scope="module")
def readme_folder(synth_root, tiny_run, tmp_path_factory) -> Path:
    """A folder with `dataset/`, `runs/demo`, `runs/demo_hand` and `out/clip.npz`."""
    from signlang_jax.data.sequence_files import KeypointSequence, write_npz
    from tests.test_hand_stage import train_hand_run

    folder = tmp_path_factory.mktemp("readme")
    (folder / "runs").mkdir()
    (folder / "dataset").symlink_to(synth_root)
    (folder / "runs" / "demo").symlink_to(tiny_run)
    (folder / "runs" / "demo_hand").symlink_to(train_hand_run(synth_root, tmp_path_factory))
    (folder / "out").mkdir()
    frames = 5
    write_npz(folder / "out" / "clip.npz", KeypointSequence(
        np.zeros((frames, 64, 3), np.float32), 25.0, 64, 48, np.ones(frames, bool),
        np.zeros((frames, 3), np.float32)))
    return folder


@pytest.mark.parametrize("index", range(len(python_blocks(README.read_text()))))
def test_readme_python_example_runs(index, readme_folder, monkeypatch, capsys):
    code = python_blocks(README.read_text())[index]
    monkeypatch.chdir(readme_folder)
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    assert printed.strip(), "each example prints what it made"
    if "make_iterator" in code:
        assert "(16, 512, 512, 3) (16, 64, 3)" in printed
    if "read_npz" in code:
        assert printed.split() == ["5", "25.0", "(5,", "64,", "3)"]


def test_layers_hold():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "layout.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "## Import circles: 0" in result.stdout, result.stdout
    assert "## Arrows back up (to a higher floor): 0" in result.stdout, result.stdout
    assert result.returncode == 0


def test_layout_finds_circles_and_upward_arrows(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import layout
    finally:
        sys.path.pop(0)
    graph = {"signlang_jax.keypoints": {"signlang_jax.training.train"},
             "signlang_jax.training.train": {"signlang_jax.keypoints"},
             "signlang_jax.data.a": {"signlang_jax.codec"}}
    assert layout.circles(graph) == [["signlang_jax.keypoints", "signlang_jax.training.train"]]
    assert layout.upward_arrows(graph) == [("signlang_jax.keypoints",
                                            "signlang_jax.training.train")]
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\nfrom .b import thing\n"
                                  "def f():\n    import pkg.c\n"
                                  "from typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    import pkg.d\n")
    for name in "bcd":
        (package / f"{name}.py").write_text("thing = 1\n")
    monkeypatch.setattr(layout, "ROOT", tmp_path)
    monkeypatch.setattr(layout, "PACKAGES", ("pkg",))
    files = layout.module_files()
    assert layout.import_graph(files)["pkg.a"] == {"pkg.b", "pkg.c"}

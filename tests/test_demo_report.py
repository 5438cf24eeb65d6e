"""The demo's last lines and the README's generated figure blocks."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from signlang_jax import demo_report, evaluate
from signlang_jax.demo_report import (
    DETERMINISTIC_BLOCKS,
    TIMING_BLOCKS,
    blocks,
    load_run,
    read_block,
    replace_block,
    summary,
)

README = Path(__file__).resolve().parent.parent / "README.md"
NUMBER = r"\d+\.\d+"


def test_readme_figure_blocks_exist_and_parse():
    text = README.read_text()
    table = read_block(text, "demo-eval")
    assert table.startswith("```\n") and table.endswith("\n```")
    for group in ("all", "body", "left_hand", "right_hand", "face"):
        assert re.search(rf"^{group}( +{NUMBER}){{4}}", table, re.M), group
    for run in ("body_model", "body_plus_hand_stage"):
        assert re.search(rf"^{run} +hands( +{NUMBER}){{5}}$", table, re.M), run
    headline = read_block(text, "demo-headline")
    assert re.search(rf"PCK@0\.1 {NUMBER} \(body {NUMBER}", headline)
    assert re.search(rf"hand stage: PCK@0\.05 {NUMBER} \(body model alone {NUMBER}\)", headline)
    # The headline repeats the table's own figures (rounded), so the two cannot drift apart.
    overall = float(re.search(rf"^all +{NUMBER} +({NUMBER})", table, re.M).group(1))
    assert f"PCK@0.1 {overall:.3f}" in headline
    for name in TIMING_BLOCKS:
        assert re.search(r"\d+ images/s.*\(on .+, \d+ CPUs\)", read_block(text, name))
    assert set(DETERMINISTIC_BLOCKS) | set(TIMING_BLOCKS) == {"demo-eval", "demo-headline",
                                                              "demo-timing"}


def test_blocks_are_replaced_in_place_and_missing_ones_named():
    text = "a\n<!-- figures:x -->\nold\n<!-- /figures:x -->\nb\n"
    new = replace_block(text, "x", "new\nlines")
    assert new == "a\n<!-- figures:x -->\nnew\nlines\n<!-- /figures:x -->\nb\n"
    assert read_block(new, "x") == "new\nlines"
    with pytest.raises(ValueError, match="figure block 'y'"):
        read_block(text, "y")
    with pytest.raises(ValueError, match="figure block 'x'"):
        read_block(text + text, "x")


def test_the_summary_and_blocks_of_a_run_are_what_its_commands_printed(tiny_run, synth_root,
                                                                        tmp_path, capsys):
    demo, hand = tmp_path / "demo", tmp_path / "hand"
    assert evaluate.main(["--checkpoint", str(tiny_run), "--data-root", str(synth_root),
                          "--out", str(demo / "eval"), "--worst", "0"]) == 0
    printed = capsys.readouterr().out
    shutil.copy(tiny_run / "metrics.jsonl", demo / "metrics.jsonl")
    parity = {"max_abs_diff": 4.25e-07, "keypoints_equal": 191, "keypoints_total": 192}
    (demo / "model.onnx.json").write_text(json.dumps(parity))
    (demo / ".demo_start").write_text("1000.0\n")
    run = load_run(demo, hand)
    assert run.hand_parity is None and run.hand_training is None  # not run: left out
    generated = blocks(run, finished=1100.0)
    # Exactly the tables `evaluate` printed, fenced.
    table = generated["demo-eval"]
    assert table.startswith("```\n") and table.endswith("\n```")
    assert table[4:-4] in printed and table[4:-4].startswith(" " * 12 + "PCK@0.05")
    metrics = json.loads((demo / "eval" / "metrics.json").read_text())
    assert f"PCK@0.1 {metrics['pck@0.1']['all']:.3f}" in generated["demo-headline"]
    assert "body 4.25e-07 (keypoints identical 191/192)" in generated["demo-headline"]
    steps = max(json.loads(line)["step"] for line in (demo / "metrics.jsonl").open())
    assert f"body model {steps} steps at" in generated["demo-timing"]
    assert "`make demo` after its setup 1 min 40 s" in generated["demo-timing"]
    text = summary(run, finished=1100.0)
    for made in (demo / "overlay.jpg", demo / "eval", demo / "model.onnx", hand / "checkpoints"):
        assert str(made) in text
    assert "tensorboard --logdir" in text and "python -m signlang_jax.video" in text
    assert "python -m signlang_jax.synth.clips" in text


def test_the_command_says_when_there_is_no_evaluation(tmp_path, capsys):
    assert demo_report.main(["--demo", str(tmp_path / "d"), "--hand", str(tmp_path / "h")]) == 1
    captured = capsys.readouterr()
    assert "no evaluation yet" in captured.err and "== make demo: done ==" in captured.out

"""Corpora past one machine: shards, the manifest, resuming, the summary, --device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from signlang_jax.data.sequence_files import read_npz
from signlang_jax.data.videos import find_inputs
from signlang_jax.keypoints import NUM_KEYPOINTS
from signlang_jax.video import cli, corpus
from signlang_jax.video import manifest as manifest_lib
from signlang_jax.video.manifest import (
    append_record,
    make_record,
    parse_shard,
    read_manifest,
    shard_of,
    summary,
)
from tests.video_helpers import blob_frame, constant_onnx

# A nested corpus whose leaves share names, as PHOENIX-2014 and many others are laid out.
LEAVES = ("a/1.mp4", "b/1.mp4", "c/d/1.mp4", "c/e/1.mp4", "f/take.mp4", "g/1.mp4", "h/2.mp4",
          "h/3.mp4")
PINNED = [2, 1, 3, 2, 1]  # shard_of(name, 4), computed once: must never change
FAST = ["--no-tracking", "--no-smoothing", "--format", "npz"]


def write_clip(path: Path, index: int, frames: int = 4) -> Path:
    """A small mp4 whose content (and so the model's output) differs with `index`."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for t in range(frames):
        writer.write(blob_frame(64, 48, 4 + 5 * index + t, 8, 10 + index))
    writer.release()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A 32 px ONNX body model whose points move with the image's mean brightness."""
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    kp[:, 0] = 8 + np.arange(NUM_KEYPOINTS) / 4
    kp[:, 1], kp[:, 2] = 12, 0.9
    return constant_onnx(tmp_path_factory.mktemp("onnx") / "body.onnx", kp, 32, gain=0.01)


@pytest.fixture
def nested(tmp_path) -> Path:
    root = tmp_path / "corpus"
    for i, leaf in enumerate(LEAVES):
        write_clip(root / leaf, i)
    return root


def names_in(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out).with_suffix("")) for p in out.rglob("*.npz"))


def expected_names() -> list[str]:
    return sorted(str(Path(leaf).with_suffix("")) for leaf in LEAVES)


def test_shard_assignment_is_pinned_and_covers_every_input_once():
    # Pinned values: changing the hash would move inputs between shards mid-corpus.
    assert [shard_of(n, 4) for n in ("a/1", "b/1", "c/d/1", "c/e/1", "f/take")] == PINNED
    names = [f"signer{i}/take{j}/1" for i in range(20) for j in range(10)]
    for count in (1, 2, 3, 7):
        parts = [[n for n in names if shard_of(n, count) == k] for k in range(count)]
        assert sorted(sum(parts, [])) == sorted(names)  # each exactly once
        assert all(len(p) > 0.5 * len(names) / count for p in parts)  # and spread out


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "0/0", "1/2/3"])
def test_bad_shard_is_refused_naming_the_flag(text, nested, model, tmp_path, capsys):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(nested), "--out", str(tmp_path / "out"), "--onnx", str(model),
                  "--shard", text])
    assert exit_info.value.code == 2
    assert "--shard" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_two_shards_cover_the_corpus_once_and_equal_one_run(nested, model, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert cli.main([str(nested), "--out", str(whole), "--onnx", str(model), *FAST]) == 0
    for k in (0, 1):
        assert cli.main([str(nested), "--out", str(split), "--onnx", str(model), *FAST,
                         "--shard", f"{k}/2"]) == 0
    assert names_in(split) == names_in(whole) == expected_names()
    for name in expected_names():  # bitwise the same outputs
        a, b = read_npz(whole / f"{name}.npz"), read_npz(split / f"{name}.npz")
        assert np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.timestamps,
                                                                           b.timestamps)
    # The clips differ, so equal outputs are not a constant model's.
    assert not np.array_equal(read_npz(whole / "a/1.npz").keypoints,
                              read_npz(whole / "b/1.npz").keypoints)
    files = sorted(p.name for p in (split / "manifest").iterdir())
    assert files == ["shard-0-of-2.jsonl", "shard-1-of-2.jsonl"]
    records = read_manifest(split)
    assert sorted(records) == expected_names()
    for name, record in records.items():
        assert record["status"] == "done" and record["frames"] == 4
        assert record["shard"] == f"{shard_of(name, 2)}/2"
        assert record["outputs"] == [f"{name}.npz"]
        assert record["video_seconds"] == pytest.approx(0.4)
        assert record["model"]["onnx_sha256"] == manifest_lib.file_digest(model)


def test_a_killed_run_resumes_from_the_manifest(nested, model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real = corpus.process_video
    calls: list[str] = []

    def killed_on_the_fourth(item, *args, **kwargs):
        calls.append(item.name)
        if len(calls) == 4:
            raise KeyboardInterrupt  # what SIGINT does; no line is written for it
        return real(item, *args, **kwargs)

    monkeypatch.setattr(corpus, "process_video", killed_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        cli.main([str(nested), "--out", str(out), "--onnx", str(model), *FAST])
    first = calls[:3]
    assert sorted(read_manifest(out)) == sorted(first)
    done_before = {n: (out / f"{n}.npz").stat().st_mtime_ns for n in first}
    # A kill mid-write leaves a torn last line: it is skipped with a warning, not a crash.
    with open(out / "manifest" / "shard-0-of-1.jsonl", "a") as f:
        f.write('{"input": "h/3", "status": "do')
    monkeypatch.setattr(corpus, "process_video", real)
    capsys.readouterr()
    assert cli.main([str(nested), "--out", str(out), "--onnx", str(model), *FAST]) == 0
    err = capsys.readouterr().err
    assert "shard-0-of-1.jsonl:4: not a manifest record" in err
    assert all(f"skip {n}:" in err for n in first)
    assert names_in(out) == expected_names()
    assert {n: (out / f"{n}.npz").stat().st_mtime_ns for n in first} == done_before
    records = read_manifest(out, warn=False)
    assert sorted(records) == expected_names()
    assert all(r["status"] == "done" for r in records.values())


def test_a_failing_input_is_recorded_and_summarised(nested, model, tmp_path, capsys):
    bad = nested / "z" / "1.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x01garbage" * 50)
    out = tmp_path / "out"
    assert cli.main([str(nested), "--out", str(out), "--onnx", str(model), *FAST]) == 1
    record = read_manifest(out)["z/1"]
    assert record["status"] == "failed" and str(bad) in record["error"]
    assert record["outputs"] == [] and record["frames"] == 0
    capsys.readouterr()
    assert manifest_lib.main([str(out)]) == 1  # failures: exit 1
    text = capsys.readouterr().out
    assert f"{len(LEAVES)} done, 1 failed" in text and "FAILED z/1: " in text
    assert manifest_lib.main([str(out), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["all"]["frames"] == 4 * len(LEAVES)
    assert data["failures"]["z/1"] == record["error"]


def test_summary_totals_by_hand(tmp_path):
    path = tmp_path / "manifest" / "shard-0-of-2.jsonl"
    rows = [make_record("a", "a.mp4", "done", frames=100, video_seconds=4.0, seconds=2.0,
                        shard=(0, 2)),
            make_record("b", "b.mp4", "done", frames=50, video_seconds=2.0, seconds=3.0,
                        shard=(1, 2)),
            make_record("c", "c.mp4", "failed", error="ValueError: c.mp4: broken",
                        seconds=1.0, shard=(0, 2))]
    for row in rows:
        append_record(path, row)
    # A later run redoes "c": its latest line counts (and its time, not the failed try's).
    append_record(tmp_path / "manifest" / "shard-1-of-2.jsonl",
                  make_record("c", "c.mp4", "done", frames=10, video_seconds=1.0, seconds=1.0,
                              shard=(1, 2)))
    result = summary(read_manifest(tmp_path))
    assert result["all"] == {"done": 3, "failed": 0, "frames": 160,
                             "video_hours": pytest.approx(7.0 / 3600),
                             "processing_hours": pytest.approx(6.0 / 3600),
                             "frames_per_second": pytest.approx(160 / 6.0)}
    assert result["shards"]["0/2"]["frames"] == 100 and result["shards"]["1/2"]["frames"] == 60
    assert result["failures"] == {}
    assert rows[0]["frames_per_second"] == 50.0


def test_summary_of_a_folder_without_manifest_says_so(tmp_path, capsys):
    assert manifest_lib.main([str(tmp_path)]) == 2
    assert "no manifest records" in capsys.readouterr().err


def test_skipped_outputs_from_another_model_are_named(nested, model, tmp_path, capsys):
    out = tmp_path / "out"
    args = [str(nested / "a"), "--out", str(out), "--onnx", str(model), *FAST]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 0
    assert "from another model" not in capsys.readouterr().err
    assert cli.main([*args, "--min-score", "0.2"]) == 0  # other settings
    assert "skip 1: 1.npz exist from another model or other settings" in capsys.readouterr().err


def test_device_cuda_without_a_cuda_onnxruntime_is_a_clear_error(nested, model, tmp_path,
                                                                 capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    out = tmp_path / "out"
    assert cli.main([str(nested), "--out", str(out), "--onnx", str(model), "--device",
                     "cuda"]) == 1
    err = capsys.readouterr().err
    assert "--device cuda" in err and "onnxruntime-gpu" in err
    assert names_in(out) == []


def test_inputs_found_are_the_leaves(nested):
    found, problems = find_inputs([str(nested)])
    assert not problems and sorted(i.name for i in found) == expected_names()


@pytest.mark.parametrize("extra, message", [
    (["--workers", "2"], "--workers goes with --ray"),
    (["--ray", "local", "--workers", "0"], "--workers 0: expected a value in [1, 100000]"),
])
def test_worker_flags_are_checked_before_any_work(extra, message, nested, model, tmp_path,
                                                  capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(nested), "--out", str(tmp_path / "out"), "--onnx", str(model), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

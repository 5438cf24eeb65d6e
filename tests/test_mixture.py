"""Training on mixtures (data/mixture.py, data/sources.py): parsing, weighted sampling, resume,
the iterator state's per-source check and per-source validation metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from signlang_jax.data.iterator import DataChangedError, make_iterator
from signlang_jax.data.mixture import (
    MixtureSource,
    SourceSpec,
    mixed_train_dataset,
    mixing_proportions,
    parse_sources,
)
from signlang_jax.data.pipeline import make_dataset
from signlang_jax.data.problems import DatasetError
from signlang_jax.data.sources import records_for
from signlang_jax.errors import ConfigError
from signlang_jax.training.validation import (
    METRIC_NAMES,
    check_metric_source,
    source_metrics,
    validate,
)
from tests.conftest import ROOT, write_dataset


class _Records:
    """A fake record source: `n` records whose `tag` says where they came from."""

    def __init__(self, tag: str, n: int) -> None:
        self.tag, self.n, self.digest = tag, n, f"digest-{tag}-{n}"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "tag": self.tag, "local": index}


def test_parse_sources_forms():
    assert parse_sources("") == [] and parse_sources(()) == []
    assert parse_sources("runs/demo/data:0.5, coco_wb:0.25") == [
        SourceSpec("data", "runs/demo/data", 0.5), SourceSpec("coco_wb", "coco_wb", 0.25)]
    assert parse_sources(["synth=a/b:3", ("c/", 1), "plain"]) == [
        SourceSpec("synth", "a/b", 3.0), SourceSpec("c", "c/", 1.0),
        SourceSpec("plain", "plain", 1.0)]
    assert parse_sources(2024) == [SourceSpec("2024", "2024", 1.0)]  # config_flags: an int
    assert parse_sources([("a=b/x", 2)]) == [SourceSpec("x", "a=b/x", 2.0)]  # pairs name none
    for bad, message in (("a:-1", "weight '-1'"), ("..:1", "source name '..'"),
                         ("a:inf", "weight 'inf'"), ("x/a,y/a", "two sources are named a"),
                         (":2", "no dataset folder"), ("my set=a:1", "source name 'my set'"),
                         (None, "must be 'ROOT:WEIGHT")):
        with pytest.raises(ValueError, match=message):
            parse_sources(bad)



def test_a_weight_that_is_not_a_number_is_named_as_the_weight():
    """Defect 8a: 'syn:abc' was blamed on the source name 'syn:abc'; the weight is wrong."""
    for bad, weight in (("syn:abc", "'abc'"), ("a=runs/x:0.5x", "'0.5x'")):
        with pytest.raises(ValueError) as error:
            parse_sources(bad)
        assert f"has weight {weight}, not a number" in str(error.value)
        assert "source name" not in str(error.value)
    # A colon followed by a path is part of the folder (a URL), not a weight.
    assert parse_sources("gs://bucket/data:2") == [SourceSpec("data", "gs://bucket/data", 2.0)]
    assert parse_sources("gs://bucket/data") == [SourceSpec("data", "gs://bucket/data", 1.0)]


def test_an_existing_folder_with_a_colon_in_its_name_is_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "exp:v2").mkdir(parents=True)
    assert parse_sources("e=runs/exp:v2") == [SourceSpec("e", "runs/exp:v2", 1.0)]
    assert parse_sources("e=runs/exp:v2:3") == [SourceSpec("e", "runs/exp:v2", 3.0)]
    with pytest.raises(ValueError, match="has weight 'v3', not a number"):
        parse_sources("e=runs/exp:v3")  # no such folder: the text after ':' is a weight


def test_mixture_indices_and_source_ids():
    mixture = MixtureSource([_Records("a", 3), _Records("b", 5)],
                            [SourceSpec("a", "a", 1), SourceSpec("b", "b", 3)])
    assert len(mixture) == 8 and mixture.weights == (0.25, 0.75)
    assert mixture.lengths() == {"a": 3, "b": 5}
    assert [mixture[i]["tag"] for i in range(8)] == ["a"] * 3 + ["b"] * 5
    assert [mixture[i]["index"] for i in range(8)] == list(range(8))
    assert mixture[4]["local"] == 1 and mixture.part(1)[1]["index"] == 4
    np.testing.assert_array_equal(mixture.source_ids(np.array([0, 2, 3, 7, -1])),
                                  [0, 0, 1, 1, -1])
    # The digest covers every source's digest and weight.
    other = MixtureSource([_Records("a", 3), _Records("b", 5)],
                          [SourceSpec("a", "a", 1), SourceSpec("b", "b", 2)])
    assert other.digest != mixture.digest and len(mixture.digest) == 16


def test_sampling_fractions_match_the_weights_over_10000_samples():
    weights = {"synth": 0.5, "coco": 0.3, "videos": 0.2}
    # Hundreds of samples, not a handful: grain's index shuffle takes ~3 ms per draw from a
    # source of 7 (its cycle walk), 0.07 ms from one of 700.
    sizes = {"synth": 700, "coco": 5000, "videos": 1300}
    mixture = MixtureSource([_Records(n, size) for n, size in sizes.items()],
                            [SourceSpec(n, n, w) for n, w in weights.items()])
    stream = mixed_train_dataset(mixture, seed=3)
    tags = [stream[i]["tag"] for i in range(10_000)]
    for name, weight in weights.items():
        assert abs(tags.count(name) / 10_000 - weight) < 0.01, name
    # Each source is reshuffled every epoch: its first 1300 draws of 'videos' are a permutation,
    # and the second epoch starts in another order.
    videos = [stream[i]["local"] for i in range(10_000) if tags[i] == "videos"]
    assert sorted(videos[:1300]) == list(range(1300)) and len(set(videos[1300:])) == 700
    assert videos[1300:2000] != videos[:700]
    # Deterministic per seed, different across seeds.
    again = mixed_train_dataset(mixture, seed=3)
    assert [again[i]["index"] for i in range(200)] == [stream[i]["index"] for i in range(200)]
    other = mixed_train_dataset(mixture, seed=4)
    assert [other[i]["index"] for i in range(200)] != [stream[i]["index"] for i in range(200)]
    # Finite epochs: as many draws as all sources hold, times the epochs.
    assert len(mixed_train_dataset(mixture, seed=3, num_epochs=2)) == 2 * 7000


def test_mixing_proportions_keep_the_weights():
    assert mixing_proportions([2, 3]) == [100, 150]  # grain's own scaling would give 100 : 149
    assert mixing_proportions([0.3, 0.7]) == [100, 233]
    assert mixing_proportions([0.001, 1]) == [100, 100000]
    mixture = MixtureSource([_Records("a", 500), _Records("b", 900)],
                            [SourceSpec("a", "a", 2), SourceSpec("b", "b", 3)])
    stream = mixed_train_dataset(mixture, seed=0)
    assert [stream[i]["tag"] for i in range(250)].count("a") == 100  # 2/5 exactly


def test_processes_draw_disjoint_shards_of_each_source():
    mixture = MixtureSource([_Records("a", 60), _Records("b", 100)],
                            [SourceSpec("a", "a", 1), SourceSpec("b", "b", 1)])
    seen = [{mixed_train_dataset(mixture, 0, shard, 2)[i]["index"] for i in range(400)}
            for shard in range(2)]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(160))


@pytest.fixture
def mixture_config(tiny_config, tmp_path):
    """Two folder datasets of different image sizes, weighted 3:1."""
    write_dataset(tmp_path / "big", 24, seed=1, size=(64, 48))
    write_dataset(tmp_path / "small", 16, seed=2, size=(30, 40))
    tiny_config.data.val_fraction = 0.25
    tiny_config.data.sources = f"{tmp_path / 'big'}:0.75,{tmp_path / 'small'}:0.25"
    return tiny_config


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_training_batches_follow_the_weights_and_resume_mid_mixture(mixture_config):
    records = records_for(mixture_config, "train")
    assert isinstance(records, MixtureSource) and records.names == ("big", "small")
    with make_iterator(mixture_config, "train", source=records) as it:
        first = _take(it, 5)
        state = it.get_state()
        expected = _take(it, 6)
    indices = np.concatenate([b["index"] for b in first + expected])
    ids = records.source_ids(indices)
    assert abs((ids == 0).mean() - 0.75) < 0.01  # 44 draws: exact up to rounding
    assert {b["image"].shape for b in first} == {(4, 32, 32, 3)}  # both sizes letterboxed
    saved = json.loads(state)
    assert set(saved["sources"]) == {"big", "small"}
    assert saved["sources"]["small"]["weight"] == 0.25
    with make_iterator(mixture_config, "train", source=records) as resumed:
        resumed.set_state(state)
        for got, want in zip(_take(resumed, 6), expected, strict=True):
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_resume_names_the_source_that_changed(mixture_config, tmp_path):
    records = records_for(mixture_config, "train")
    with make_iterator(mixture_config, "train", source=records) as it:
        next(it)
        state = it.get_state()
    reweighted = mixture_config.copy_and_resolve_references()
    reweighted.data.sources = f"{tmp_path / 'big'}:0.5,{tmp_path / 'small'}:0.5"
    other = records_for(reweighted, "train")
    with (make_iterator(reweighted, "train", source=other) as it,
          pytest.raises(DataChangedError, match="the weight share of 'big' was 0.75, now 0.5")):
        it.set_state(state)
    write_dataset(tmp_path / "small", 20, seed=3, size=(30, 40))  # edits and adds samples
    edited = records_for(mixture_config, "train")
    with (make_iterator(mixture_config, "train", source=edited) as it,
          pytest.raises(DataChangedError, match="the training split of 'small' changed")):
        it.set_state(state)
    reordered = mixture_config.copy_and_resolve_references()
    reordered.data.sources = f"{tmp_path / 'small'}:0.25,{tmp_path / 'big'}:0.75"
    with (make_iterator(reordered, "train", source=records_for(reordered, "train")) as it,
          pytest.raises(DataChangedError, match="the order was big, small, now small, big")):
        it.set_state(state)
    single = mixture_config.copy_and_resolve_references()
    single.data.sources, single.data.root = "", str(tmp_path / "big")
    with (make_iterator(single, "train", source=records_for(single, "train")) as it,
          pytest.raises(DataChangedError, match="was a mixture .* now a single dataset")):
        it.set_state(state)
    restart = mixture_config.copy_and_resolve_references()
    restart.train.on_data_change = "restart_epoch"
    with make_iterator(restart, "train", source=edited) as it:
        it.set_state(state)
        assert "'small' changed" in it.restarted


def test_a_broken_source_is_named(mixture_config, tmp_path, monkeypatch):
    (tmp_path / "small" / "labels" / "000002.json").write_text("{}")
    with pytest.raises(DatasetError, match="small/labels/000002.json"):
        records_for(mixture_config, "train")
    monkeypatch.chdir(tmp_path)  # relative roots, as on a command line
    mixture_config.data.sources = "big:1,nowhere:1"
    with pytest.raises(DatasetError) as error:
        records_for(mixture_config, "val")
    assert str(error.value) == ("nowhere: is not a directory (a data.sources folder: check "
                                "--config.data.sources)")
    mixture_config.data.sources = "big:1,small:1"
    with pytest.raises(DatasetError, match="^small/labels/000002.json: width: missing"):
        records_for(mixture_config, "train")


def test_a_source_without_val_samples_is_trained_not_validated(mixture_config, tmp_path,
                                                                capsys):
    (tmp_path / "small" / "splits").mkdir()
    (tmp_path / "small" / "splits" / "val.txt").write_text("# no video hashed into val\n")
    train, val = records_for(mixture_config, "train"), records_for(mixture_config, "val")
    assert train.names == ("big", "small") and train.lengths()["small"] == 16
    assert val.names == ("big",)
    assert "'small' (" in capsys.readouterr().err
    check_metric_source("val/big/pck@0.1", val)
    check_metric_source("val/pck@0.1/left_hand", val)  # a group metric, not a source
    with pytest.raises(ConfigError, match="source 'small' is not validated"):
        check_metric_source("val/small/pck@0.1", val)
    (tmp_path / "big" / "splits").mkdir()
    (tmp_path / "big" / "splits" / "val.txt").write_text("")
    with pytest.raises(DatasetError, match="data.sources: no source has val samples"):
        records_for(mixture_config, "val")


def test_validation_reports_each_source_and_all(mixture_config):
    val = records_for(mixture_config, "val")
    counts = val.lengths()
    assert all(counts.values())

    def eval_step(state, batch):
        # Perfect on 'big', 1000 px off on 'small'; the loss is the source id.
        ids = val.source_ids(batch["index"])
        predicted = batch["keypoints"].copy()
        predicted[ids == 1, :, :2] += 1000.0
        return predicted, np.where(ids == 1, 1.0, 0.0)

    metrics, _ = validate(eval_step, lambda b: b, None, mixture_config, val)
    assert metrics["val/big/pck@0.1"] == 1.0 and metrics["val/small/pck@0.1"] == 0.0
    assert metrics["val/big/loss"] == 0.0 and metrics["val/small/loss"] == 1.0
    assert metrics["val/loss"] == pytest.approx(counts["small"] / sum(counts.values()))
    assert 0.0 < metrics["val/pck@0.1"] < 1.0
    overall = {k for k in metrics if k.split("/")[1] not in ("big", "small")}
    assert set(source_metrics(metrics, "big")) == overall == set(METRIC_NAMES)


def test_single_dataset_is_unchanged(tiny_config):
    write_dataset(Path(tiny_config.data.root), 12, size=(40, 30))
    records = records_for(tiny_config, "train")
    assert not isinstance(records, MixtureSource)
    batch = next(iter(make_dataset(tiny_config, "train", source=records)))
    assert batch["image"].shape == (4, 32, 32, 3)


def test_train_and_evaluate_a_mixture_end_to_end(tmp_path):
    """The CLI trains on two sources and logs val metrics per source; evaluate asks which."""
    write_dataset(tmp_path / "big", 24, seed=1, size=(64, 48))
    write_dataset(tmp_path / "small", 16, seed=2, size=(30, 40))
    workdir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sources = f"{tmp_path / 'big'}:0.75,{tmp_path / 'small'}:0.25"
    run = subprocess.run(
        [sys.executable, "-m", "signlang_jax.main", "--config", "tests/tiny_config.py",
         "--workdir", str(workdir), f"--config.data.sources={sources}",
         "--config.train.num_steps=4", "--config.train.best_metric=val/small/pck@0.1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    val = [line for line in lines if "val/loss" in line][-1]
    for name in ("big", "small"):
        assert {f"val/{name}/pck@0.1", f"val/{name}/hand_pck@0.2", f"val/{name}/loss"} <= set(val)
    assert val["step"] == 4
    evaluate = [sys.executable, "-m", "signlang_jax.evaluate", "--checkpoint", str(workdir),
                "--worst", "0", "--out", str(tmp_path / "eval")]
    refused = subprocess.run(evaluate, cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 1
    assert "trained on a mixture (data.sources): evaluate one source at a time" in refused.stderr
    done = subprocess.run([*evaluate[:-2], "--data-root", str(tmp_path / "small")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # Reports are named by source (sources may share a folder name).
    assert (workdir / "eval" / "step_4_val_small" / "metrics.json").is_file()


def test_hand_task_mixes_hand_records_of_each_source(mixture_config):
    from tests import tiny_hand_config

    config = tiny_hand_config.get_config()
    config.data.sources = mixture_config.data.sources
    config.data.val_fraction = 0.25
    records = records_for(config, "train")
    assert records.lengths() == {n: 2 * len(records_for(mixture_config, "train").part(k))
                                 for k, n in enumerate(records.names)}  # two hands each
    batch = next(iter(make_dataset(config, "train", source=records)))
    assert batch["image"].shape == (4, 32, 32, 3) and batch["keypoints"].shape == (4, 21, 3)
    val = records_for(config, "val")

    def eval_step(state, batch):
        return batch["keypoints"], np.zeros(len(batch["mask"]))

    metrics, _ = validate(eval_step, lambda b: b, None, config, val)
    assert metrics["val/big/hand_pck@0.2"] == metrics["val/small/hand_pck@0.1"] == 1.0
    assert set(source_metrics(metrics, "small")) == {"val/loss", "val/hand_pck@0.1",
                                                     "val/hand_pck@0.2"}


def test_training_resumed_mid_mixture_equals_an_uninterrupted_run(tmp_path, capsys):
    """Continue a mixture run from its step-2 checkpoint: the same weights at step 4; with
    other weights the resume is refused, and nothing printed before says it continues."""
    import shutil

    from signlang_jax.training.train import train_and_evaluate
    from tests import tiny_config
    from tests.conftest import checkpoint_arrays

    write_dataset(tmp_path / "big", 24, seed=1, size=(64, 48))
    write_dataset(tmp_path / "small", 16, seed=2, size=(30, 40))
    config = tiny_config.get_config()
    config.data.sources = f"{tmp_path / 'big'}:0.75,{tmp_path / 'small'}:0.25"
    config.train.num_steps = 4  # checkpoints at 2 and 4
    train_and_evaluate(config, tmp_path / "straight")
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "4")  # as if stopped after step 2
    train_and_evaluate(config, tmp_path / "resumed")
    straight = checkpoint_arrays(tmp_path / "straight", config, 4)
    resumed = checkpoint_arrays(tmp_path / "resumed", config, 4)
    assert straight.keys() == resumed.keys()
    for key in straight:
        np.testing.assert_array_equal(straight[key], resumed[key], err_msg=key)

    shutil.copytree(tmp_path / "straight", tmp_path / "reweighted")
    shutil.rmtree(tmp_path / "reweighted" / "checkpoints" / "4")
    config.data.sources = f"{tmp_path / 'big'}:0.5,{tmp_path / 'small'}:0.5"
    capsys.readouterr()
    with pytest.raises(DataChangedError, match="the weight share of 'big' was 0.75, now 0.5"):
        train_and_evaluate(config, tmp_path / "reweighted")
    printed = capsys.readouterr()
    assert "data.sources" in printed.err and "continues" not in printed.err + printed.out
    assert sorted(p.name for p in (tmp_path / "reweighted" / "checkpoints").iterdir()) == ["2"]


def test_printed_val_line_keeps_sources_short():
    from signlang_jax.training.metric_log import val_summary

    values = {"val/loss": 0.1, "val/pck@0.1": 0.5, "val/pck@0.1/left_hand": 0.4,
              "val/big/loss": 0.2, "val/big/pck@0.1": 0.6, "val/big/pck@0.1/left_hand": 0.3,
              "val/small/pck@0.1": 0.125, "train/loss": 1.0}
    assert val_summary(4, values) == (
        "step 4: loss=0.1000, pck@0.1=0.5000, pck@0.1/left_hand=0.4000\n"
        "  big: loss=0.2000, pck@0.1=0.6000\n"
        "  small: pck@0.1=0.1250")

"""Packed ArrayRecord (TFDS) format: same batches as the folder format, safe packing CLI."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from signlang_jax.data import pack
from signlang_jax.data.iterator import make_iterator
from signlang_jax.data.pipeline import make_dataset
from signlang_jax.data.problems import DatasetError
from signlang_jax.data.sources import PackedSource, load_records, load_split
from tests.conftest import ROOT, checkpoint_arrays, write_dataset, write_sample

KEYS = ("image", "keypoints", "bbox", "affine", "index", "mask")


def _dataset(root: Path) -> Path:
    """22 PNGs of two sizes + 2 JPEGs, so both decoders and the letterbox are exercised."""
    write_dataset(root, 20)
    rng = np.random.default_rng(1)
    write_sample(root, "000020", rng, (40, 56))
    write_sample(root, "000021", rng, (48, 40))
    write_sample(root, "000022", rng, (64, 48), ext=".jpg")
    write_sample(root, "000023", rng, (40, 40), ext=".jpg")
    return root


def _packed_config(config, out: Path):
    packed = config.copy_and_resolve_references()
    packed.data.format = "array_record"
    packed.data.root = str(out)
    return packed


@pytest.fixture
def folder_and_pack(tiny_config, tmp_path):
    """(folder config, array_record config) of the same 24-sample dataset."""
    tiny_config.data.val_fraction = 0.25
    _dataset(Path(tiny_config.data.root))
    out = tmp_path / "packed"
    assert pack.main(["--data-root", tiny_config.data.root, "--out", str(out),
                      "--val-fraction", "0.25", "--quiet"]) == 0
    return tiny_config, _packed_config(tiny_config, out)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_batches_equal(expected, actual):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual, strict=True):
        assert set(a) == set(b) == set(KEYS)
        for key in KEYS:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_pack_stores_the_validated_split_in_order(folder_and_pack):
    folder, packed = folder_and_pack
    import tensorflow_datasets as tfds

    out = Path(packed.data.root)
    for split in ("train", "val"):
        samples = load_split(folder.data, split)
        by_name = tfds.data_source(pack.BUILDER_NAME, split=split, data_dir=out,
                                   download=False)
        by_dir = tfds.builder_from_directory(out / pack.BUILDER_NAME / pack.DATASET_VERSION
                                             ).as_data_source(split)
        assert len(by_name) == len(by_dir) == len(samples) > 0
        for i, sample in enumerate(samples):
            record = by_name[i]
            assert record["stem"].decode() == sample.stem
            assert record["file"].decode() == Path(sample.image_path).relative_to(
                folder.data.root).as_posix()
            assert record["image_bytes"] == Path(sample.image_path).read_bytes()
            np.testing.assert_array_equal(record["keypoints"], sample.keypoints)
            np.testing.assert_array_equal(record["bbox"], sample.bbox)
            assert (record["width"], record["height"]) == (sample.width, sample.height)
            assert by_dir[i]["stem"] == record["stem"]
    assert "tensorflow" not in sys.modules


def test_split_files_order_is_kept(tiny_config, tmp_path):
    root = write_dataset(Path(tiny_config.data.root), 10)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("000007\n000002.png\n000005\n")
    out = tmp_path / "packed"
    assert pack.main(["--data-root", str(root), "--out", str(out), "--quiet"]) == 0
    packed = _packed_config(tiny_config, out)
    source = load_records(packed.data, "val")
    assert [source[i]["file"] for i in range(len(source))] == [
        "images/000007.png", "images/000002.png", "images/000005.png"]
    assert pack.open_pack(out).metadata["split_files"] == ["val.txt"]
    _assert_batches_equal(list(make_dataset(tiny_config, "val")), list(make_dataset(packed, "val")))
    _assert_batches_equal(_take(iter(make_dataset(tiny_config, "train")), 2),
                          _take(iter(make_dataset(packed, "train")), 2))


def test_packed_batches_equal_folder_batches(folder_and_pack):
    folder, packed = folder_and_pack
    # 18 train samples, batch 4: 7 batches cross the epoch boundary (reshuffle).
    _assert_batches_equal(_take(iter(make_dataset(folder, "train")), 7),
                          _take(iter(make_dataset(packed, "train")), 7))
    _assert_batches_equal(list(make_dataset(folder, "val")), list(make_dataset(packed, "val")))
    # Another seed gives other batches in both formats, still equal to each other.
    _assert_batches_equal(_take(iter(make_dataset(folder, "train", seed=3)), 2),
                          _take(iter(make_dataset(packed, "train", seed=3)), 2))


def test_packed_batches_equal_folder_batches_with_a_worker_process(folder_and_pack):
    folder, packed = folder_and_pack
    with (make_iterator(folder, "train", num_workers=1) as a,
          make_iterator(packed, "train", num_workers=1) as b):
        _assert_batches_equal(_take(a, 3), _take(b, 3))


def test_packed_iterator_state_restores(folder_and_pack, tmp_path):
    _, packed = folder_and_pack
    with make_iterator(packed, "train") as it:
        _take(it, 3)
        state = it.get_state()
        expected = _take(it, 3)
    # A copy of the pack elsewhere is the same source (grain compares repr on restore).
    moved = tmp_path / "moved"
    shutil.copytree(packed.data.root, moved)
    packed.data.root = str(moved)
    with make_iterator(packed, "train") as resumed:
        resumed.set_state(state)
        _assert_batches_equal(expected, _take(resumed, 3))


def test_packed_source_pickles_and_has_a_content_repr(folder_and_pack):
    folder, packed = folder_and_pack
    source = load_records(packed.data, "val")
    assert isinstance(source, PackedSource)
    clone = pickle.loads(pickle.dumps(source))
    assert repr(clone) == repr(source) == repr(PackedSource(packed.data.root, "val"))
    assert repr(source) != repr(load_records(packed.data, "train"))
    for key in ("image_bytes", "file", "keypoints", "bbox", "index"):
        assert np.array_equal(clone[1][key], source[1][key])
    assert len(source) == len(load_split(folder.data, "val"))


def test_evaluation_reads_packed_records(folder_and_pack):
    folder, packed = folder_and_pack
    from signlang_jax.evaluate import predict_split
    from signlang_jax.evaluation.report import worst_grid

    class ZeroPredictor:  # stands in for inference.Predictor: a fixed prediction
        def __init__(self, config):
            self.config = config

        def predict_batch(self, images):
            n = len(images)
            return np.zeros((n, 64, 3), np.float32), np.zeros((n, 8, 8, 64), np.float32)

    results = []
    for config in (folder, packed):
        records = load_records(config.data, "val")
        result = predict_split(ZeroPredictor(config), records, 4, progress=False)
        result["grid"] = worst_grid(records, result["pred"], result["gt"], result["bbox"], 3,
                                    tile=32)
        results.append(result)
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        np.testing.assert_array_equal(results[0][key], results[1][key], err_msg=key)


def test_load_split_refuses_a_pack_config(folder_and_pack):
    _, packed = folder_and_pack
    with pytest.raises(ValueError, match="load_records"):
        load_split(packed.data, "train")


def test_reading_a_folder_dataset_as_a_pack_is_a_clear_error(tiny_config, tmp_path):
    write_dataset(Path(tiny_config.data.root), 8)
    config = _packed_config(tiny_config, Path(tiny_config.data.root))
    with pytest.raises(DatasetError, match="not a dataset written by signlang_jax.data.pack "
                       r"\(no signlang_pack/1.0.0/dataset_info.json; it looks like a folder "
                       "dataset: set data.format=folder"):
        make_dataset(config, "train")
    config.data.root = str(tmp_path / "missing")
    with pytest.raises(DatasetError, match="missing: is not a directory"):
        make_dataset(config, "train")


def test_damaged_pack_is_a_clear_error(folder_and_pack):
    _, packed = folder_and_pack
    directory = Path(packed.data.root) / pack.BUILDER_NAME / pack.DATASET_VERSION
    (directory / "dataset_info.json").write_text("{not json")
    with pytest.raises(DatasetError, match=f"{directory}: unreadable TFDS dataset info"):
        make_dataset(packed, "val")


def test_pack_without_our_metadata_is_refused(folder_and_pack):
    _, packed = folder_and_pack
    directory = Path(packed.data.root) / pack.BUILDER_NAME / pack.DATASET_VERSION
    (directory / "metadata.json").unlink()
    with pytest.raises(DatasetError, match="a TFDS dataset without format="):
        make_dataset(packed, "val")


def test_unknown_format_is_a_clear_error(tiny_config):
    tiny_config.data.format = "tfrecord"
    with pytest.raises(ValueError, match="data.format='tfrecord' is not one of folder, "
                       "array_record"):
        make_dataset(tiny_config, "train")
    with pytest.raises(ValueError, match="data.format"):
        load_records(tiny_config.data, "train")


def _corrupt(root: Path) -> None:
    label_path = root / "labels" / "000003.json"
    label = json.loads(label_path.read_text())
    label["keypoints"][21]["x"] = 530.2
    label_path.write_text(json.dumps(label))
    image = root / "images" / "000005.png"
    image.write_bytes(image.read_bytes()[:-20])


def test_invalid_dataset_is_refused_and_nothing_is_written(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", 12)
    _corrupt(root)
    out = tmp_path / "out"
    assert pack.main(["--data-root", str(root), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert ("ERROR labels/000003.json: keypoints[21] 'left_hand_thumb_tip': x=530.2 is outside "
            "the image width 64") in captured.out
    assert "ERROR images/000005.png: truncated PNG" in captured.out
    assert "nothing written" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_skip_invalid_packs_the_valid_samples(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", 12)
    _corrupt(root)
    out = tmp_path / "out"
    assert pack.main(["--data-root", str(root), "--out", str(out), "--skip-invalid",
                      "--val-fraction", "0.3", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "skipping 2 invalid files (--skip-invalid):\n  images/000005.png\n  " \
           "labels/000003.json" in printed
    info = pack.open_pack(out)
    assert sum(info.num_examples.values()) == 10
    assert info.metadata["skipped_files"] == 2
    stems = {PackedSource(out, s)[i]["file"] for s in ("train", "val")
             for i in range(info.num_examples[s])}
    assert "images/000003.png" not in stems and "images/000005.png" not in stems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]


def test_existing_non_empty_out_is_refused_and_untouched(tmp_path, capsys):
    root = write_dataset(tmp_path / "data", 8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert pack.main(["--data-root", str(root), "--out", str(out), "--quiet"]) == 1
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, capsys):
    root = write_dataset(tmp_path / "data", 12)
    out = tmp_path / "out"
    out.mkdir()  # an empty --out is allowed, and must stay as it was
    calls = []

    def failing_example(sample, source_root):
        calls.append(sample.stem)
        if len(calls) == 5:
            raise OSError(f"disk full while reading {sample.stem}")
        return real_example(sample, source_root)

    real_example = pack._example
    monkeypatch.setattr(pack, "_example", failing_example)
    assert pack.main(["--data-root", str(root), "--out", str(out), "--val-fraction", "0.3",
                      "--quiet"]) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]
    assert list(out.iterdir()) == []


def test_help_describes_the_cli(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pack.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data-root", "--out", "--val-fraction", "--skip-invalid"):
        assert flag in text
    assert "--config.data.format=array_record" in text


def test_folder_format_never_imports_tfds(tiny_config):
    write_dataset(Path(tiny_config.data.root), 8)
    script = ("import sys; from configs import default; "
              "from signlang_jax.data.pipeline import make_dataset; "
              "c = default.get_config(); c.data.root = sys.argv[1]; c.data.image_size = 32; "
              "c.data.val_fraction = 0.3; c.data.num_workers = 0; c.train.batch_size = 2; "
              "next(iter(make_dataset(c, 'train', shard_index=0, shard_count=1))); "
              "assert 'tensorflow_datasets' not in sys.modules, 'tfds imported'")
    subprocess.run([sys.executable, "-c", script, tiny_config.data.root], check=True, cwd=ROOT)


def test_training_on_a_pack_equals_training_on_the_folder(train_config, tmp_path):
    """train_and_evaluate with data.format=array_record: same parameters and val metrics."""
    from signlang_jax.training import train as train_lib

    out = tmp_path / "packed"
    assert pack.main(["--data-root", train_config.data.root, "--out", str(out),
                      "--val-fraction", str(train_config.data.val_fraction), "--quiet"]) == 0
    train_config.train.num_steps = 2
    train_config.train.eval_every_steps = 2
    results = []
    for name, config in (("folder", train_config), ("packed", _packed_config(train_config, out))):
        metrics = train_lib.train_and_evaluate(config, tmp_path / name)
        arrays = checkpoint_arrays(tmp_path / name, config, 2)
        results.append((metrics, [arrays[k] for k in sorted(arrays)]))
    (folder_metrics, folder_params), (packed_metrics, packed_params) = results
    assert folder_metrics == packed_metrics
    for a, b in zip(folder_params, packed_params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_mixture_of_packs_gives_the_batches_of_the_same_folders(folder_and_pack, tmp_path):
    folder, packed = folder_and_pack
    other = write_dataset(tmp_path / "other", 20, seed=5, size=(30, 40))
    assert pack.main(["--data-root", str(other), "--out", str(tmp_path / "other_packed"),
                      "--val-fraction", "0.25", "--quiet"]) == 0
    folder.data.sources = f"a={folder.data.root}:1,b={other}:3"
    packed.data.sources = f"a={packed.data.root}:1,b={tmp_path / 'other_packed'}:3"
    expected = _take(iter(make_dataset(folder, "train")), 6)
    _assert_batches_equal(expected, _take(iter(make_dataset(packed, "train")), 6))
    expected = list(make_dataset(folder, "val"))
    assert len(expected) >= 2
    _assert_batches_equal(expected, list(make_dataset(packed, "val")))

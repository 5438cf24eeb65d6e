"""evaluate, infer_image and live_demo on a tiny trained checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import ml_collections
import numpy as np
import pytest

from signlang_jax import evaluate, infer_image, live_demo
from signlang_jax.crop import to_original
from signlang_jax.data.dataset import read_label, scan_dataset, split_samples
from signlang_jax.data.sources import SampleSource, load_split
from signlang_jax.errors import ConfigError
from signlang_jax.evaluation import scoring
from signlang_jax.evaluation.report import format_table
from signlang_jax.inference.predictor import Predictor, load_model
from signlang_jax.keypoints import GROUPS
from tests.conftest import ROOT, write_dataset

# A config file for `evaluate --config`: the test's tiny config with some data fields changed.
CONFIG_FILE = """from tests import tiny_config


def get_config():
    config = tiny_config.get_config()
    {changes}
    return config
"""


def test_load_model_steps_and_errors(tiny_run, tmp_path):
    _, config, step = load_model(tiny_run, "latest")
    assert step == 4 and config.data.image_size == 32
    assert load_model(tiny_run / "checkpoints" / "2")[2] == 2
    assert load_model(tiny_run, "best")[2] == 4  # the only checkpoint with val metrics
    assert load_model(f"{tiny_run}:2")[2] == 2
    with pytest.raises(Exception, match=r"step 3 is not in .*available: \[2, 4\]"):
        load_model(tiny_run, 3)
    with pytest.raises(Exception, match="does not exist"):
        load_model(tmp_path / "nope")


def test_predict_image_maps_back_to_original_pixels(tiny_run, synth_root):
    model, config, _ = load_model(tiny_run)
    predictor = Predictor(model, config)
    image = np.zeros((100, 50, 3), np.uint8)  # portrait: letterboxed into 32 x 32
    keypoints = predictor.predict_image(image)
    assert keypoints.shape == (64, 3)
    # The mapping is the inverse letterbox: input pixel (15.5, 15.5) is the image centre.
    affine = np.array([[0.32, 0, 15.5 - 0.32 * 24.5], [0, 0.32, 15.5 - 0.32 * 49.5]])
    centre = to_original(np.array([[15.5, 15.5, 1.0]]), affine)
    np.testing.assert_allclose(centre[0, :2], [24.5, 49.5], atol=1e-4)
    flip = Predictor(model, config, decoder="dark", flip_test=True)
    assert flip.predict_image(image).shape == (64, 3)


def test_evaluate_cli_writes_report(tiny_run, synth_root, tmp_path, capsys):
    out = tmp_path / "report"
    code = evaluate.main(["--checkpoint", str(tiny_run), "--data-root", str(synth_root),
                          "--out", str(out), "--flip-test", "--decoder", "dark", "--worst", "4"])
    assert code == 0
    table = capsys.readouterr().out
    assert "PCK@0.05" in table and "left_hand" in table and "mean OKS" in table
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["flip_test"] is True and metrics["decoder"] == "dark"
    assert set(metrics["pck@0.1"]) == {"all", "body", "left_hand", "right_hand", "face"}
    assert len(metrics["pck@0.1_per_keypoint"]) == 64
    assert "left_hand_own_box" in metrics["oks_ap"]
    assert cv2.imread(str(out / "pck_per_keypoint.png")) is not None
    # 4 tiles of 256 px and 2 px padding, one row, and the legend strip below (32 px).
    assert cv2.imread(str(out / "worst.jpg")).shape[:2] == (258 + 2 + 32, 4 * 258 + 2)


def test_compute_metrics_ground_truth_is_perfect():
    rng = np.random.default_rng(0)
    gt = np.zeros((5, 64, 3))
    gt[..., :2] = rng.uniform(0, 100, (5, 64, 2))
    gt[..., 2] = 1
    bbox = np.tile([[0.0, 0.0, 100.0, 100.0]], (5, 1))
    pred = np.concatenate([gt[..., :2], np.ones((5, 64, 1))], -1)
    m = scoring.compute_metrics(pred, gt, bbox, np.zeros((5, 64)))
    assert m["pck@0.05"]["all"] == 1.0 and m["epe_px"]["all"] == 0.0 and m["oks_mean"] == 1.0
    assert m["oks_ap"]["all"]["AP"] == 1.0 and m["oks_ap"]["right_hand_own_box"]["AP"] == 1.0
    assert m["hand_pck@0.2"] == {"left_hand": 1.0, "right_hand": 1.0, "hands": 1.0}
    pred[..., 0] += 6.0  # 0.06 of the box: fails PCK@0.05, passes PCK@0.1
    m = scoring.compute_metrics(pred, gt, bbox, np.zeros((5, 64)))
    assert m["pck@0.05"]["all"] == 0.0 and m["pck@0.1"]["all"] == 1.0
    assert abs(m["epe_px"]["face"] - 6.0) < 1e-9


def test_compute_metrics_hand_pck_with_each_hands_own_box():
    gt = np.zeros((2, 64, 3))
    gt[..., :2], gt[..., 2] = 50.0, 1
    for hand, (x0, y0) in (("left_hand", (20.0, 30.0)), ("right_hand", (10.0, 60.0))):
        # Each hand's points span a 40 x 20 box (corners at points 0 and 1): PCK@0.2 = 8 px,
        # whereas the 100 px person box would allow 20 px.
        idx = list(GROUPS[hand])
        gt[:, idx, 0] = x0 + np.linspace(0, 40, len(idx))
        gt[:, idx, 1] = y0 + np.linspace(0, 20, len(idx))
    bbox = np.tile([[0.0, 0.0, 100.0, 100.0]], (2, 1))
    pred = gt.copy()
    pred[:, list(GROUPS["left_hand"]), 0] += 7.9    # 0.1975 of the hand box: correct
    pred[:, list(GROUPS["right_hand"]), 1] += 8.1   # 0.2025: wrong
    m = scoring.compute_metrics(pred, gt, bbox, np.zeros((2, 64)))
    assert m["hand_pck@0.2"] == {"left_hand": 1.0, "right_hand": 0.0, "hands": 0.5}
    assert m["pck@0.1"]["right_hand"] == 1.0  # at person scale the same error is fine
    table = format_table(m)
    assert "hands PCK@0.2 with their own box 0.5000" in table
    assert table.splitlines()[3].endswith("1.0000") and table.splitlines()[4].endswith("0.0000")


def test_evaluate_cli_errors(tmp_path, capsys):
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_config_file(tiny_run, synth_root, tmp_path, capsys):
    config_file = tmp_path / "eval_config.py"
    # val_fraction 1.0 puts all 24 images in the val split: proof the file's data fields apply.
    config_file.write_text(CONFIG_FILE.format(changes="config.data.val_fraction = 1.0"))
    out = tmp_path / "report"
    assert evaluate.main(["--checkpoint", str(tiny_run), "--config", str(config_file),
                          "--data-root", str(synth_root), "--out", str(out), "--worst", "0"]) == 0
    assert json.loads((out / "metrics.json").read_text())["num_images"] == 24
    capsys.readouterr()

    broken = tmp_path / "broken.py"
    broken.write_text(CONFIG_FILE.format(changes="config.data.root = undefined_name"))
    assert evaluate.main(["--checkpoint", str(tiny_run), "--config", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"ERROR {broken} (line 6): NameError: name 'undefined_name' is not defined\n" in err
    assert "Traceback" not in err
    missing = tmp_path / "missing.py"
    assert evaluate.main(["--checkpoint", str(tiny_run), "--config", str(missing)]) == 1
    err = capsys.readouterr().err
    assert (f"ERROR {missing}: no such config file (expected a Python file with get_config(), "
            "e.g. configs/default.py)\n") in err
    assert "Traceback" not in err


def test_load_config_file_errors(tmp_path):
    file = tmp_path / "c.py"
    file.write_text("def get_config(:\n")
    with pytest.raises(ConfigError, match=rf"^{file}: SyntaxError: "):
        scoring.load_config_file(file)
    file.write_text("x = 1\n")
    with pytest.raises(ConfigError, match=rf"^{file}: defines no get_config\(\) function$"):
        scoring.load_config_file(file)
    file.write_text("def get_config():\n    return {'data': {}}\n")
    with pytest.raises(ConfigError, match=rf"^{file}: get_config\(\) returned dict, expected an "
                       "ml_collections.ConfigDict$"):
        scoring.load_config_file(file)
    file.write_text("import ml_collections\n\n\ndef get_config():\n"
                    "    return ml_collections.ConfigDict({'data': {}})\n")
    with pytest.raises(ConfigError, match=rf"^{file}: the config has no 'augment' section"):
        scoring.load_config_file(file)


def test_override_config_keeps_the_checkpoints_input_size(tiny_config):
    override = tiny_config.copy_and_resolve_references()
    override.data.image_size, override.data.num_workers = 512, 3
    override.augment.flip_prob = 0.0 if tiny_config.augment.flip_prob else 0.5
    config = tiny_config.copy_and_resolve_references()
    scoring.override_config(config, override, "f.py")
    assert config.data.image_size == 32 and config.data.num_workers == 3
    assert config.augment.flip_prob == override.augment.flip_prob
    override = ml_collections.ConfigDict({"data": {"num_workers": "two"}, "augment": {}})
    with pytest.raises(ConfigError, match=r"^f.py: a data/augment field does not fit the "
                       r"checkpoint's config \(Could not override field 'num_workers'"):
        scoring.override_config(config, override, "f.py")


def test_default_out_dir_is_in_the_workdir():
    workdir = Path("runs/x")
    assert scoring.default_out_dir(workdir, 1600, "val", "data/a", "data/a") == Path(
        "runs/x/eval/step_1600_val")
    assert scoring.default_out_dir(workdir, 1600, "all", "/d/held_out/", "data/a") == Path(
        "runs/x/eval/step_1600_all_held_out")
    # Trained on a mixture: named by source, as two sources may share a folder name.
    sources = {"synth": "runs/demo/data", "mine": "runs/videos/data"}
    assert scoring.default_out_dir(workdir, 9, "val", "runs/videos/data", sources) == Path(
        "runs/x/eval/step_9_val_mine")
    assert scoring.default_out_dir(workdir, 9, "val", "/d/other", sources) == Path(
        "runs/x/eval/step_9_val_other")


def test_evaluate_writes_to_the_runs_eval_folder(tiny_run, synth_root, capsys):
    # Neither a ":best" spec nor a step folder (which orbax deletes) may hold the report.
    try:
        for spec, step in ((f"{tiny_run}:best", 4), (str(tiny_run / "checkpoints" / "2"), 2)):
            assert evaluate.main(["--checkpoint", spec, "--data-root", str(synth_root),
                                  "--worst", "0"]) == 0
            out = tiny_run / "eval" / f"step_{step}_val"
            assert json.loads((out / "metrics.json").read_text())["step"] == step
            assert f"wrote {out}/metrics.json, pck_per_keypoint.png\n" in capsys.readouterr().out
        assert not Path(f"{tiny_run}:best").exists()
        assert sorted(p.name for p in (tiny_run / "checkpoints" / "2").iterdir()
                      if "eval" in p.name) == []
    finally:
        shutil.rmtree(tiny_run / "eval", ignore_errors=True)


def test_split_all_is_every_valid_sample(tmp_path):
    root = write_dataset(tmp_path / "ds", 5)
    (root / "splits").mkdir()
    (root / "splits" / "val.txt").write_text("000001\nno_such_sample\n")
    scan = scan_dataset(root)
    assert [s.stem for s in split_samples(scan, "all")] == [f"{i:06d}" for i in range(5)]
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val', 'all'\), "
                       r"got 'test'"):
        split_samples(scan, "test")
    data = ml_collections.ConfigDict({"root": "packs/x", "format": "array_record"})
    with pytest.raises(ConfigError, match=r"^--split all: packs/x is a data.format=array_record "
                       r"pack with only the splits it was packed with; use --split train or "
                       r"val, or point --data-root at the image folder with --data-format "
                       r"folder$"):
        scoring.load_eval_records(data, "all")


def test_evaluate_split_all_scores_every_image(tiny_run, synth_root, tmp_path):
    out = tmp_path / "report"
    assert evaluate.main(["--checkpoint", str(tiny_run), "--data-root", str(synth_root),
                          "--split", "all", "--out", str(out), "--worst", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 24 and metrics["split"] == "all"


def test_predict_split_closes_its_iterator_on_errors(train_config, monkeypatch):
    closed = []

    class Iterator:
        def __init__(self, *args, **kwargs):
            self.batches = iter([{"image": np.zeros((4, 32, 32, 3), np.uint8)}])

        def __enter__(self):
            return self.batches

        def __exit__(self, *exc):
            closed.append(exc[0])

    class FailingPredictor:
        config = train_config

        def predict_batch(self, images):
            raise ValueError("model failed")

    monkeypatch.setattr(scoring, "make_iterator", Iterator)
    records = SampleSource(load_split(train_config.data, "val"))
    with pytest.raises(ValueError, match="model failed"):
        scoring.predict_split(FailingPredictor(), records, 4, progress=False)
    assert closed == [ValueError]


def test_evaluate_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "load_for_inference", interrupted)
    assert evaluate.main(["--checkpoint", "runs/x"]) == 130
    assert capsys.readouterr().err == (
        "interrupted: evaluation stopped before its report was complete\n")


def test_evaluate_with_workers_leaves_no_shared_memory(tiny_run, synth_root, tmp_path):
    config_file = tmp_path / "workers.py"
    config_file.write_text(CONFIG_FILE.format(changes="config.data.num_workers = 1"))
    result = subprocess.run(
        [sys.executable, "-m", "signlang_jax.evaluate", "--checkpoint", str(tiny_run),
         "--data-root", str(synth_root), "--config", str(config_file), "--batch-size", "4",
         "--out", str(tmp_path / "report"), "--worst", "0"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "leaked shared_memory" not in result.stderr
    assert "resource_tracker" not in result.stderr


def test_infer_image_file_and_folder(tiny_run, synth_root, tmp_path, capsys):
    image = synth_root / "images" / "000000.jpg"
    out = tmp_path / "one" / "overlay.jpg"
    assert infer_image.main(["--checkpoint", str(tiny_run), "--image", str(image),
                             "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (64 + 18, 64, 3)  # the image and its legend strip
    label = json.loads(out.with_suffix(".json").read_text())
    assert len(label["keypoints"]) == 64 and "score" in label["keypoints"][0]
    # The JSON is a valid label of the dataset schema: put it in a dataset and validate it.
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "images" / "000000.jpg").write_bytes(image.read_bytes())
    (root / "labels" / "000000.json").write_text(json.dumps(label))
    read_label(root / "labels" / "000000.json", root)

    folder_out = tmp_path / "many"
    assert infer_image.main(["--checkpoint", str(tiny_run), "--image",
                             str(synth_root / "images"), "--out", str(folder_out)]) == 0
    assert len(list(folder_out.glob("*.json"))) == 24
    assert infer_image.main(["--checkpoint", str(tiny_run), "--image",
                             str(tmp_path / "nope.jpg"), "--out", str(out)]) == 1
    assert "nope.jpg: no such image or folder" in capsys.readouterr().err
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\x00garbage")
    assert infer_image.main(["--checkpoint", str(tiny_run), "--image",
                             str(tmp_path / "broken.jpg"), "--out", str(out)]) == 1
    assert "broken.jpg: truncated JPEG" in capsys.readouterr().err


def test_live_demo_headless_on_a_video(tiny_run, synth_root, tmp_path, capsys):
    video = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(5):
        writer.write(cv2.imread(str(synth_root / "images" / f"{i:06d}.jpg")))
    writer.release()
    out = tmp_path / "out.mp4"
    assert live_demo.main(["--checkpoint", str(tiny_run), "--source", str(video),
                           "--no-display", "--out", str(out), "--device", "cpu"]) == 0
    assert "5 frames" in capsys.readouterr().err
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    assert live_demo.main(["--checkpoint", str(tiny_run), "--source", str(tmp_path / "x.mp4"),
                           "--no-display", "--out", str(out)]) == 1
    assert "video file" in capsys.readouterr().err
    assert live_demo.main(["--checkpoint", str(tiny_run), "--source", str(video)]) == 1
    assert "no display available" in capsys.readouterr().err
    assert live_demo.main(["--checkpoint", str(tiny_run), "--source", "7", "--no-display",
                           "--out", str(out)]) == 1
    assert "cannot open camera 7" in capsys.readouterr().err


def test_cli_help_exits_zero():
    for module in (evaluate, infer_image, live_demo):
        with pytest.raises(SystemExit) as info:
            module.main(["--help"])
        assert info.value.code == 0
    assert Path(evaluate.__file__).exists()


def test_restoring_for_inference_is_quiet(tiny_run, caplog):
    # orbax warns about every read-only manager it opens; ours says what it means up front and
    # keeps its one unconditional notice out of evaluate / infer_image / export logs.
    import logging

    with caplog.at_level(logging.INFO, logger="absl"):
        load_model(tiny_run, "latest")
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []

"""evaluate, infer_image and live_demo on a tiny trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from signlang_jax import evaluate, infer_image, live_demo
from signlang_jax.data.dataset import read_label
from signlang_jax.inference import Predictor, load_model, to_original


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
    assert cv2.imread(str(out / "worst.jpg")).shape[1] == 4 * 258 + 2


def test_compute_metrics_ground_truth_is_perfect():
    rng = np.random.default_rng(0)
    gt = np.zeros((5, 64, 3))
    gt[..., :2] = rng.uniform(0, 100, (5, 64, 2))
    gt[..., 2] = 1
    bbox = np.tile([[0.0, 0.0, 100.0, 100.0]], (5, 1))
    pred = np.concatenate([gt[..., :2], np.ones((5, 64, 1))], -1)
    m = evaluate.compute_metrics(pred, gt, bbox, np.zeros((5, 64)))
    assert m["pck@0.05"]["all"] == 1.0 and m["epe_px"]["all"] == 0.0 and m["oks_mean"] == 1.0
    assert m["oks_ap"]["all"]["AP"] == 1.0 and m["oks_ap"]["right_hand_own_box"]["AP"] == 1.0
    pred[..., 0] += 6.0  # 0.06 of the box: fails PCK@0.05, passes PCK@0.1
    m = evaluate.compute_metrics(pred, gt, bbox, np.zeros((5, 64)))
    assert m["pck@0.05"]["all"] == 0.0 and m["pck@0.1"]["all"] == 1.0
    assert abs(m["epe_px"]["face"] - 6.0) < 1e-9


def test_evaluate_cli_errors(tmp_path, capsys):
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_infer_image_file_and_folder(tiny_run, synth_root, tmp_path, capsys):
    image = synth_root / "images" / "000000.jpg"
    out = tmp_path / "one" / "overlay.jpg"
    assert infer_image.main(["--checkpoint", str(tiny_run), "--image", str(image),
                             "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (64, 64, 3)
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

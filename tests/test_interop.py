"""Tests for interop/: the torch twin, Flax <-> torch conversion, pretrained backbones, ONNX export.

Models are tiny (width 8, 16 deconv filters, 32-64 px) with random parameters filled in on the
host; BatchNorm statistics are calibrated on the test batch so that every layer stays O(1) and an
absolute tolerance of 1e-4 means something. The ONNX tests export one checkpoint trained for two
steps on the session's synthetic data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from flax import nnx

from interop import convert, to_onnx
from interop.torch_model import TorchHeatmapModel
from signlang_jax.codec import decode_heatmaps
from signlang_jax.inference.restore import CheckpointError, load_checkpoint, split_spec
from signlang_jax.keypoints import FLIP_PERMUTATION, KEYPOINT_NAMES
from signlang_jax.models import create_model
from signlang_jax.training import checkpoints
from tests.test_models import expected_resnet18_backbone_names

BACKBONES = ("resnet18", "resnet50", "mobilenet_v3_small")


def tiny_model_config(name: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name=name, width=8, num_keypoints=64, deconv_layers=3, deconv_filters=16,
        deconv_kernel=4, final_kernel=1, dtype="float32", deconv_impl="auto"))


def abstract_model(config: ml_collections.ConfigDict) -> nnx.Module:
    return nnx.eval_shape(lambda: create_model(config, nnx.Rngs(0)))


def randomise(model: nnx.Module, images: np.ndarray, seed: int = 0) -> nnx.Module:
    """Fill a (possibly abstract) model in place with He-scaled random weights and BatchNorm
    statistics calibrated on `images`, so that every layer stays O(1); returns it in eval mode."""
    rng = np.random.default_rng(seed)
    for entry in convert.entries(model):
        leaf, shape = entry.path[-1], entry.variable.shape
        if leaf == "kernel":
            fan_in = np.prod(shape[:-1]) / (4 if entry.kind == "conv_transpose" else 1)
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif leaf == "scale":
            value = rng.uniform(0.2, 0.6, shape)
        elif leaf == "bias":
            value = 0.1 * rng.standard_normal(shape)
        else:
            value = np.zeros(shape) if leaf == "mean" else np.ones(shape)
        entry.variable.set_value(jnp.asarray(value, jnp.float32))
    # One train-mode pass with momentum 0 sets the running statistics to the batch's.
    norms = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    model.train()
    model(jnp.asarray(images))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
        # Channels whose spread on this tiny batch is small next to their mean would amplify
        # float rounding (x - mean cancels); a floor keeps every layer well conditioned.
        m.var.set_value(jnp.maximum(m.var.get_value(), jnp.square(m.mean.get_value()) + 0.05))
    model.eval()
    return model


def random_model(config: ml_collections.ConfigDict, images: np.ndarray,
                 seed: int = 0) -> nnx.Module:
    """A model with random, well-conditioned weights (see `randomise`)."""
    return randomise(abstract_model(config), images, seed)


def randomise_twin(twin: torch.nn.Module, seed: int = 0) -> None:
    """Random values in every float parameter and buffer (num_batches_tracked stays 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(twin.parameters()) + list(twin.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)


# ----------------------------------------------------------------------------------------------
# The twin: torchvision names.


def test_twin_backbone_names_are_torchvision():
    twin = TorchHeatmapModel("resnet18", 64)
    names = sorted(k for k in twin.state_dict() if k.startswith("backbone.")
                   and not k.endswith("num_batches_tracked"))
    assert names == expected_resnet18_backbone_names()
    mobilenet = TorchHeatmapModel("mobilenet_v3_small", 64)
    # torchvision mobilenet_v3_small: 2,542,856 parameters, of which the classifier 1,615,848.
    assert sum(p.numel() for p in mobilenet.backbone.parameters()) == 927_008
    bn = mobilenet.backbone.features[1].block[0][1]
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)
    for name in BACKBONES:  # every Flax variable has a twin tensor of the same name
        config = tiny_model_config(name)
        flax_names = {e.torch_name for e in convert.entries(abstract_model(config))}
        twin_names = {k for k in TorchHeatmapModel.from_config(config).state_dict()
                      if not k.endswith("num_batches_tracked")}
        assert flax_names == twin_names, name


# ----------------------------------------------------------------------------------------------
# Conversion: parity and round trips.


@pytest.mark.parametrize("name", BACKBONES)
def test_flax_to_torch_outputs_match(name):
    config = tiny_model_config(name)
    images = np.random.default_rng(1).random((2, 64, 64, 3), dtype=np.float32)
    model = random_model(config, images)
    expected = np.asarray(model(jnp.asarray(images)))
    assert expected.shape == (2, 16, 16, 64) and 0.1 < np.abs(expected).max() < 100
    twin = convert.to_torch(model, config)
    with torch.no_grad():
        got = twin(torch.from_numpy(convert.nhwc_to_nchw(images))).numpy()
    np.testing.assert_allclose(convert.nchw_to_nhwc(got), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_torch_flax_torch_round_trip_is_exact(name):
    config = tiny_model_config(name)
    twin = TorchHeatmapModel.from_config(config)
    randomise_twin(twin)
    model = abstract_model(config)
    convert.from_torch(model, twin)
    original, back = twin.state_dict(), convert.flax_to_torch_state_dict(model)
    assert original.keys() == back.keys()
    for key, tensor in original.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor), key


def test_layout_rules():
    conv = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # HWIO
    assert convert.to_torch_layout(conv, "conv").shape == (5, 4, 2, 3)  # OIHW
    assert convert.to_torch_layout(conv, "conv_transpose").shape == (4, 5, 2, 3)  # (I, O, H, W)
    for kind in ("conv", "conv_transpose", "plain"):
        back = convert.to_flax_layout(convert.to_torch_layout(conv, kind), kind)
        np.testing.assert_array_equal(back, conv)


# ----------------------------------------------------------------------------------------------
# Pretrained backbones from .pth files.


def torchvision_style_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A resnet18 (width 8) state_dict as torchvision writes it: no prefix, fc, counters."""
    twin = TorchHeatmapModel.from_config(tiny_model_config("resnet18"))
    randomise_twin(twin, seed)
    state = {k[len("backbone."):]: v.clone() for k, v in twin.state_dict().items()
             if k.startswith("backbone.")}
    assert any(k.endswith("num_batches_tracked") for k in state)
    state["fc.weight"] = torch.zeros(1000, 64)
    state["fc.bias"] = torch.zeros(1000)
    return state


def test_load_pretrained_backbone_from_torchvision_state_dict(tmp_path):
    state = torchvision_style_state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = abstract_model(tiny_model_config("resnet18"))
    before = TorchHeatmapModel.from_config(tiny_model_config("resnet18"))
    randomise_twin(before, seed=1)
    convert.from_torch(model, before)
    convert.load_pretrained_backbone(model, path)
    loaded = convert.flax_to_torch_state_dict(model)
    for key, tensor in state.items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded[f"backbone.{key}"], tensor), key
    for key, tensor in before.state_dict().items():  # the head is left alone
        if key.startswith("head."):
            assert torch.equal(loaded[key], tensor), key
    # A full twin state_dict works too (its backbone part is used), as does an nnx.State.
    twin = TorchHeatmapModel.from_config(tiny_model_config("resnet18"))
    randomise_twin(twin, seed=3)
    torch.save(twin.state_dict(), tmp_path / "twin.pth")
    state_only = nnx.state(abstract_model(tiny_model_config("resnet18")))
    convert.load_pretrained_backbone(state_only, tmp_path / "twin.pth")
    kernel = state_only["backbone"]["conv1"]["kernel"].get_value()
    np.testing.assert_array_equal(np.asarray(kernel),
                                  twin.backbone.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))


def test_load_pretrained_backbone_lists_missing_and_misshaped(tmp_path):
    state = torchvision_style_state_dict()
    del state["layer2.0.downsample.1.running_var"]
    state["layer3.1.conv2.weight"] = torch.zeros(32, 32, 1, 1)
    state["layer5.0.conv1.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    model = abstract_model(tiny_model_config("resnet18"))
    with pytest.raises(ValueError) as info:
        convert.load_pretrained_backbone(model, tmp_path / "bad.pth")
    message = str(info.value)
    assert "bad.pth" in message
    assert "missing tensors (1):\n    layer2.0.downsample.1.running_var (16,)" in message
    assert ("layer3.1.conv2.weight: (32, 32, 1, 1) given, the model expects (32, 32, 3, 3)"
            in message)
    assert "unexpected tensors (1):\n    layer5.0.conv1.weight (3,)" in message
    with pytest.raises(ValueError, match="nope.pth: no such file"):
        convert.load_pretrained_backbone(model, tmp_path / "nope.pth")


# ----------------------------------------------------------------------------------------------
# Checkpoints and the ONNX export.


@pytest.fixture(scope="module")
def trained_workdir(synth_root, tmp_path_factory) -> Path:
    """A tiny ResNet-18 run: trained for two steps (checkpoints 1, 2), then checkpoint 3.

    Two steps leave the heatmaps near zero, where any parity figure is trivially small; step 3
    holds random, well-conditioned weights (O(1) heatmaps), saved the way training saves.
    """
    import orbax.checkpoint as ocp

    from signlang_jax.training import train
    from tests import tiny_config

    config = tiny_config.get_config()
    config.data.root = str(synth_root)
    config.train.num_steps = 2
    config.train.checkpoint_every_steps = 1
    config.train.keep_checkpoints = 5
    workdir = tmp_path_factory.mktemp("trained")
    train.train_and_evaluate(config, workdir)

    graphdef, state, _ = train.create_state(config, 1)
    model, optimizer = nnx.merge(graphdef, state)
    randomise(model, np.random.default_rng(2).random((8, 32, 32, 3), dtype=np.float32))
    manager = checkpoints.make_checkpoint_manager(workdir / "checkpoints", config)
    manager.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(
        nnx.state((model, optimizer)))), force=True)
    manager.wait_until_finished()
    manager.close()
    return workdir


@pytest.fixture(scope="module")
def exported(trained_workdir, tmp_path_factory) -> tuple[Path, str]:
    """The CLI's export of the trained checkpoint with keypoints: (path, stdout)."""
    output = tmp_path_factory.mktemp("onnx") / "sub" / "model.onnx"
    capture = pytest.MonkeyPatch()
    import io

    stdout = io.StringIO()
    capture.setattr(sys, "stdout", stdout)
    try:
        status = to_onnx.main(["--checkpoint", str(trained_workdir), "--output", str(output),
                               "--with-keypoints"])
    finally:
        capture.undo()
    assert status == 0
    return output, stdout.getvalue()


def test_checkpoint_spec_and_errors(trained_workdir, monkeypatch):
    assert split_spec("runs/x:best") == (Path("runs/x"), "best")
    assert split_spec("runs/x", "12") == (Path("runs/x"), 12)
    assert split_spec(f"{trained_workdir}/checkpoints/2") == (
        trained_workdir / "checkpoints" / "2", None)
    with pytest.raises(CheckpointError, match="name the run too"):
        split_spec("best")
    with pytest.raises(CheckpointError, match="step 7 is not in"):
        load_checkpoint(trained_workdir, "7")
    loaded = load_checkpoint(f"{trained_workdir}/checkpoints/2")
    assert loaded.step == 2 and loaded.config.model.width == 8
    assert load_checkpoint(f"{trained_workdir}:latest").step == 3

    # As if step 1 won, then as if no step had metrics.
    monkeypatch.setattr(checkpoints, "best_step", lambda manager, metric, exclude=(): 1)
    assert load_checkpoint(trained_workdir, "best").step == 1
    monkeypatch.setattr(checkpoints, "best_step", lambda manager, metric, exclude=(): None)
    assert load_checkpoint(f"{trained_workdir}:best").step == 3  # falls back to the latest


def test_export_parity_metadata_and_keypoints(exported):
    path, stdout = exported
    assert "parity onnxruntime vs JAX: max abs heatmap difference" in stdout
    assert "step 3" in stdout
    assert not list(path.parent.glob(".*.tmp"))
    # The same figures, kept beside the file for the demo summary and the README figures.
    record = json.loads(path.with_name("model.onnx.json").read_text())
    assert record["step"] == 3 and record["output"] == str(path)
    assert f"max abs heatmap difference {record['max_abs_diff']:.2e}" in stdout
    assert record["max_abs_diff"] == max(r["max_abs_diff"] for r in record["rows"])
    assert record["keypoints_total"] == sum(r["keypoints_total"] for r in record["rows"]) > 0
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["keypoint_names"]) == list(KEYPOINT_NAMES)
    assert json.loads(meta["flip_permutation"]) == list(FLIP_PERMUTATION)
    assert (meta["input_size"], meta["heatmap_size"], meta["backbone"]) == ("32", "8", "resnet18")
    assert float(meta["sigma"]) == 1.0 and meta["heatmap_coordinates"] == "plain"
    names = [o.name for o in model.graph.output]
    assert [i.name for i in model.graph.input] == ["images"] and names == ["heatmaps", "keypoints"]


def test_onnx_dynamic_batch_matches_jax(exported, trained_workdir):
    path, _ = exported
    graphdef, state = nnx.split(load_checkpoint(trained_workdir).model)
    images = np.random.default_rng(0).random((5, 32, 32, 3), dtype=np.float32)
    # Eval-mode BatchNorm: each image's heatmaps do not depend on the rest of the batch.
    expected = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, images))
    expected_keypoints = np.asarray(decode_heatmaps(jnp.asarray(expected), 32))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2, 5):
        heatmaps, keypoints = session.run(None, {"images": convert.nhwc_to_nchw(images[:batch])})
        assert heatmaps.shape == (batch, 64, 8, 8) and keypoints.shape == (batch, 64, 3)
        assert np.abs(convert.nchw_to_nhwc(heatmaps) - expected[:batch]).max() <= 1e-4
        np.testing.assert_array_equal(keypoints[..., :2], expected_keypoints[:batch, :, :2])
        np.testing.assert_allclose(keypoints[..., 2], expected_keypoints[:batch, :, 2], atol=1e-4)
        # In-graph decoding == decode_heatmaps of the graph's own heatmaps, exactly.
        decoded = np.asarray(decode_heatmaps(jnp.asarray(convert.nchw_to_nhwc(heatmaps)), 32))
        np.testing.assert_array_equal(keypoints[..., :2], decoded[..., :2])
        np.testing.assert_allclose(keypoints[..., 2], decoded[..., 2], rtol=1e-6, atol=1e-7)


def test_in_graph_decoder_matches_codec_on_peaked_heatmaps():
    # Hand-made heatmaps: borders, interior, ties to the left and right neighbours.
    from interop.torch_model import decode_heatmaps as torch_decode

    rng = np.random.default_rng(0)
    heatmaps = rng.random((3, 8, 8, 5)).astype(np.float32)
    heatmaps[0, 0, 7, 0] = 5.0  # corner: no shift
    heatmaps[1, 3, 4, 1] = 5.0
    heatmaps[1, 3, 3, 1] = heatmaps[1, 3, 5, 1] = 2.0  # equal neighbours: no x shift
    expected = np.asarray(decode_heatmaps(jnp.asarray(heatmaps), 32))
    got = torch_decode(torch.from_numpy(convert.nhwc_to_nchw(heatmaps)), 32).numpy()
    np.testing.assert_array_equal(got, expected)
    assert tuple(expected[0, 0, :2]) == (28.0, 0.0)


def test_failed_verification_leaves_no_file(trained_workdir, tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise to_onnx.VerificationError("injected failure")

    monkeypatch.setattr(to_onnx, "verify_onnx", fail)
    output = tmp_path / "model.onnx"
    assert to_onnx.main(["--checkpoint", str(trained_workdir), "--output", str(output)]) == 1
    assert "injected failure" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the output nor the temporary file


def test_cli_errors(trained_workdir, tmp_path, monkeypatch, capsys):
    missing = tmp_path / "no_such_run"
    assert to_onnx.main(["--checkpoint", str(missing), "--output", str(tmp_path / "m.onnx")]) == 1
    assert f"checkpoint {missing} does not exist" in capsys.readouterr().err

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint must not be loaded before the output is checked")

    monkeypatch.setattr("signlang_jax.inference.restore.load_checkpoint", never)
    assert to_onnx.main(["--checkpoint", str(trained_workdir), "--output", "/proc/x.onnx"]) == 1
    assert "cannot write --output /proc/x.onnx" in capsys.readouterr().err
    assert to_onnx.main(["--checkpoint", str(trained_workdir), "--output", str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    assert to_onnx.main(["--checkpoint", str(trained_workdir), "--output", "x.onnx"]) == 1
    err = capsys.readouterr().err
    assert "onnxruntime" in err and "pip install -e '.[export]'" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        to_onnx.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--checkpoint", "--step", "--output", "--opset", "--img-size", "--with-keypoints",
                 "--fp16", ":best"):
        assert flag in out


def test_fp16_export(trained_workdir, tmp_path):
    output = tmp_path / "model16.onnx"
    report = to_onnx.export_onnx(trained_workdir, output, fp16=True)
    assert report.fp16 and report.tolerance >= to_onnx.FP16_TOLERANCE
    assert [row.batch for row in report.rows] == [1, 3, 1, 3]
    assert report.max_abs_diff <= report.tolerance
    model = onnx.load(str(output))
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "float16"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    print(report.summary())


def test_deployment_guide_decoder_matches_codec():
    """docs/DEPLOYMENT.md's numpy decoder (for exports without --with-keypoints) is exact."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "DEPLOYMENT.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                 if "def decode_heatmaps" in b)
    namespace: dict = {}
    exec(block.split("\nkeypoints = ")[0], namespace)  # the definition, not the usage line
    heatmaps = np.random.default_rng(0).random((2, 64, 16, 16)).astype(np.float32)
    expected = np.asarray(decode_heatmaps(jnp.asarray(convert.nchw_to_nhwc(heatmaps)), 64))
    np.testing.assert_array_equal(namespace["decode_heatmaps"](heatmaps, 64), expected)


def test_int8_export_is_calibrated_checked_and_runs(trained_workdir, tmp_path, capsys):
    """--int8: a QDQ graph calibrated on the run's own val images, its keypoints checked against
    the float graph's, marked int8 in its metadata, and usable by the onnxruntime runtime."""
    from signlang_jax.inference.onnx_runtime import OnnxModel

    output = tmp_path / "int8.onnx"
    assert to_onnx.main(["--checkpoint", str(trained_workdir), "--output", str(output),
                         "--with-keypoints", "--int8", "4"]) == 0
    printed = capsys.readouterr().out
    assert "int8 weights" in printed and "calibrated on 4 val images" in printed
    model = onnx.load(str(output))
    assert {p.key: p.value for p in model.metadata_props}["precision"].startswith("int8")
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert OnnxModel(output).predict_batch(images).shape == (2, 64, 3)
    # Refused, nothing written: with --fp16, a negative count, or the run's data gone.
    import shutil

    moved = tmp_path / "moved_run"
    shutil.copytree(trained_workdir, moved)
    config = json.loads((moved / "config.json").read_text())
    config["data"]["root"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    for run, extra, message in (
            (trained_workdir, ["--int8", "--fp16"], "either --int8 or --fp16"),
            (trained_workdir, ["--int8", "-2"], "--int8 -2: give a positive number"),
            (trained_workdir, ["--int8", "0"], "--int8 0: give a positive number"),
            (moved, ["--int8", "4"], "--int8 calibrates on the checkpoint's own data "
                                      f"(data.root='{tmp_path / 'gone'}'")):
        bad = tmp_path / "bad.onnx"
        assert to_onnx.main(["--checkpoint", str(run), "--output", str(bad), *extra]) == 1
        assert message in capsys.readouterr().err
        assert not bad.exists()

"""Config validation at start, config differences on resume, and the workdir's config history."""

from __future__ import annotations

import json

import ml_collections
import pytest

from configs import default, demo
from signlang_jax.errors import ConfigError
from signlang_jax.training.config_check import validate_config
from signlang_jax.training.config_history import (
    ARCHITECTURE_FIELDS,
    config_differences,
    format_config_warnings,
    load_previous_config,
    record_config,
)
from signlang_jax.training.validation import HAND_METRIC_NAMES, METRIC_NAMES
from tests import tiny_config

HEADER_1 = "the config has 1 problem; fix them on the command line or in the config file:\n  "


def config_with(**fields: object) -> ml_collections.ConfigDict:
    """The default config with SECTION__FIELD=value set, past ml_collections' type checks."""
    tree = default.get_config().to_dict()
    for dotted, value in fields.items():
        *sections, leaf = dotted.split("__")
        node = tree
        for section in sections:
            node = node[section]
        node[leaf] = value
    return ml_collections.ConfigDict(tree)


def problems(config: ml_collections.ConfigDict, devices: int = 1, processes: int = 1) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, devices, processes)
    return str(info.value)


# ----------------------------------------------------------------------------- validate_config


@pytest.mark.parametrize("module", [default, demo, tiny_config])
def test_shipped_configs_pass(module):
    validate_config(module.get_config(), 1)
    validate_config(module.get_config(), 4, 2)  # batch 16 and 4 split over 4 devices


def test_unknown_fields_are_not_errors():
    config = default.get_config()
    config.train.note = "ablation 3"
    config.extra = ml_collections.ConfigDict({"anything": -1})
    validate_config(config, 1)


@pytest.mark.parametrize("fields, line", [
    # sizes, counts and steps
    ({"train__batch_size": 0}, "--config.train.batch_size=0: must be a positive integer"),
    ({"model__width": -8}, "--config.model.width=-8: must be a positive integer"),
    ({"model__deconv_filters": 0}, "--config.model.deconv_filters=0: must be a positive integer"),
    ({"train__eval_every_steps": 0},
     "--config.train.eval_every_steps=0: must be a positive integer"),
    ({"train__keep_checkpoints": 0},
     "--config.train.keep_checkpoints=0: must be a positive integer"),
    ({"optim__accumulate_steps": 0},
     "--config.optim.accumulate_steps=0: must be a positive integer"),
    ({"data__worker_buffer_size": 0},
     "--config.data.worker_buffer_size=0: must be a positive integer"),
    ({"data__synthetic_size": 0}, "--config.data.synthetic_size=0: must be a positive integer"),
    ({"data__num_workers": -1}, "--config.data.num_workers=-1: must be an integer >= 0"),
    ({"train__num_steps": -5}, "--config.train.num_steps=-5: must be an integer >= 0"),
    ({"optim__max_skipped_steps": -1},
     "--config.optim.max_skipped_steps=-1: must be an integer >= 0"),
    ({"optim__warmup_steps": -1}, "--config.optim.warmup_steps=-1: must be an integer >= 0"),
    ({"model__deconv_layers": 6}, "--config.model.deconv_layers=6: must be an integer in 1..5"),
    ({"model__deconv_layers": 0}, "--config.model.deconv_layers=0: must be an integer in 1..5"),
    ({"model__num_keypoints": 63},
     "--config.model.num_keypoints=63: must be 64 (the keypoint schema's size, keypoints.py) or "
     "21 for the hand model"),
    # positive / non-negative numbers
    ({"optim__lr": 0.0}, "--config.optim.lr=0.0: must be a number > 0"),
    ({"model__sigma": -1.0}, "--config.model.sigma=-1.0: must be a number > 0"),
    ({"augment__scale_min": 0.0}, "--config.augment.scale_min=0.0: must be a number > 0"),
    ({"optim__grad_clip": -1.0}, "--config.optim.grad_clip=-1.0: must be a number >= 0"),
    ({"optim__weight_decay": -0.1}, "--config.optim.weight_decay=-0.1: must be a number >= 0"),
    ({"augment__rotation_deg": -30.0},
     "--config.augment.rotation_deg=-30.0: must be a number >= 0"),
    ({"augment__blur_sigma_max": -1},
     "--config.augment.blur_sigma_max=-1: must be a number >= 0"),
    ({"optim__lr": float("nan")}, "--config.optim.lr=nan: must be a number > 0 (not inf or nan)"),
    ({"optim__grad_clip": float("inf")},
     "--config.optim.grad_clip=inf: must be a number >= 0 (not inf or nan)"),
    # fractions
    ({"augment__flip_prob": 1.5}, "--config.augment.flip_prob=1.5: must be a number in [0, 1]"),
    ({"augment__brightness": -0.1},
     "--config.augment.brightness=-0.1: must be a number in [0, 1]"),
    ({"optim__final_lr_fraction": 2},
     "--config.optim.final_lr_fraction=2: must be a number in [0, 1]"),
    ({"data__val_fraction": 1.0}, "--config.data.val_fraction=1.0: must be a number in [0, 1)"),
    ({"data__synthetic_others": 1.5},
     "--config.data.synthetic_others=1.5: must be a number in [0, 1]"),
    ({"optim__b2": 1.0}, "--config.optim.b2=1.0: must be a number in [0, 1)"),
    ({"optim__step_boundaries": (0.9, 0.7)}, "--config.optim.step_boundaries=(0.9, 0.7): must be "
     "increasing fractions in (0, 1), e.g. (0.7, 0.9)"),
    ({"optim__step_boundaries": (0.5, 1.0)}, "--config.optim.step_boundaries=(0.5, 1.0): must be "
     "increasing fractions in (0, 1), e.g. (0.7, 0.9)"),
    ({"optim__step_boundaries": (0.5, 0.5)}, "--config.optim.step_boundaries=(0.5, 0.5): must be "
     "increasing fractions in (0, 1), e.g. (0.7, 0.9)"),
    ({"optim__step_boundaries": "0.7"}, "--config.optim.step_boundaries='0.7': must be "
     "increasing fractions in (0, 1), e.g. (0.7, 0.9) (got str)"),
    # enums
    ({"model__name": "resnet19"}, "--config.model.name='resnet19': must be one of 'resnet18', "
     "'resnet34', 'resnet50', 'mobilenet_v3_small'"),
    ({"model__dtype": "float16"},
     "--config.model.dtype='float16': must be one of 'auto', 'float32', 'bfloat16'"),
    ({"model__deconv_impl": "cudnn"}, "--config.model.deconv_impl='cudnn': must be one of "
     "'auto', 'subpixel_matmul', 'subpixel_conv', 'lax'"),
    ({"model__deconv_kernel": 5}, "--config.model.deconv_kernel=5: must be one of 2, 3, 4"),
    ({"model__final_kernel": True}, "--config.model.final_kernel=True: must be one of 1, 3"),
    ({"optim__name": "lamb"}, "--config.optim.name='lamb': must be one of 'adam', 'adamw', 'sgd'"),
    ({"optim__schedule": "linear"},
     "--config.optim.schedule='linear': must be one of 'cosine', 'step', 'constant'"),
    ({"data__format": "tfrecord"},
     "--config.data.format='tfrecord': must be one of 'folder', 'array_record'"),
    ({"train__on_data_change": "restart"},
     "--config.train.on_data_change='restart': must be one of 'refuse', 'restart_epoch'"),
    # types ml_collections lets through (None, bool for int) or a config built from scratch
    ({"train__batch_size": "16"}, "--config.train.batch_size='16': must be a positive integer "
     "(got str)"),
    ({"train__batch_size": 16.0}, "--config.train.batch_size=16.0: must be a positive integer"),
    ({"train__keep_checkpoints": True},
     "--config.train.keep_checkpoints=True: must be a positive integer (got bool)"),
    ({"seed": None}, "--config.seed=None: must be an integer (got NoneType)"),
    ({"model__sigma": "2"}, "--config.model.sigma='2': must be a number > 0 (got str)"),
    ({"augment__flip_prob": False},
     "--config.augment.flip_prob=False: must be a number in [0, 1] (got bool)"),
    ({"data__root": None}, "--config.data.root=None: must be a string (got NoneType)"),
    ({"data__skip_invalid": 1}, "--config.data.skip_invalid=1: must be True or False (got int)"),
    # distributed
    ({"distributed__coordinator": "localhost"},
     "--config.distributed.coordinator='localhost': must be HOST:PORT or empty"),
    ({"distributed__timeout": 0}, "--config.distributed.timeout=0: must be a positive integer"),
    ({"distributed__coordinator": "h:1234", "distributed__num_processes": 2,
      "distributed__process_id": 2},
     "--config.distributed.process_id=2: must be in 0..1 (distributed.num_processes=2)"),
    ({"distributed__num_processes": 2}, "--config.distributed.coordinator='': must be HOST:PORT "
     "of process 0 when distributed.num_processes=2 and distributed.process_id=0 (or set "
     "--config.distributed.auto=True)"),
    # across fields
    ({"train__epochs": 0},
     "--config.train.epochs=0: must be a positive integer when train.num_steps=0"),
    ({"augment__scale_min": 1.5},
     "--config.augment.scale_min=1.5: must be <= augment.scale_max=1.25"),
    ({"data__image_size": 500},
     "--config.data.image_size=500: must be divisible by 32 (the backbone's output stride)"),
    ({"model__heatmap_size": 64}, "--config.model.heatmap_size=64: must be 128, the model's "
     "output size for data.image_size=512 and model.deconv_layers=3 (image_size / 32 * 2 ** "
     "deconv_layers)"),
    ({"model__deconv_layers": 2}, "--config.model.heatmap_size=128: must be 64, the model's "
     "output size for data.image_size=512 and model.deconv_layers=2 (image_size / 32 * 2 ** "
     "deconv_layers)"),
])
def test_each_rule_names_the_flag_and_the_rule(fields, line):
    assert problems(config_with(**fields)) == HEADER_1 + line


def test_best_metric_must_be_a_validation_metric():
    assert "val/hand_pck@0.2" in METRIC_NAMES and "val/pck@0.2" not in METRIC_NAMES
    # The names of both tasks; the task's own are checked against config.task (test_hand_stage).
    names = dict.fromkeys(METRIC_NAMES + HAND_METRIC_NAMES)
    choices = ", ".join(repr(name) for name in names)
    assert problems(config_with(train__best_metric="val/pck@0.2")) == (
        HEADER_1 + f"--config.train.best_metric='val/pck@0.2': must be one of {choices}, or "
        "'val/SOURCE/...' with a data.sources name")


def test_sources_are_checked_with_the_field_named():
    validate_config(config_with(data__sources="a:0.5,b/c:0.5"), 1)
    validate_config(config_with(data__sources=["synth=a:2", ("b", 1)]), 1)
    assert problems(config_with(data__sources="a:0,b:1")) == (
        HEADER_1 + "--config.data.sources='a:0,b:1': 'a:0' has weight '0'; weights must be "
        "positive numbers")
    assert problems(config_with(data__sources="x/a:1,y/a:1")) == (
        HEADER_1 + "--config.data.sources='x/a:1,y/a:1': two sources are named a; name them "
        "with NAME=ROOT:WEIGHT")
    assert problems(config_with(data__sources="a:1", data__synthetic_num=5)) == (
        HEADER_1 + "--config.data.synthetic_num=5: must be 0 with data.sources (render the "
        "synthetic data first, e.g. python -m signlang_jax.synth, and list its folder as a "
        "source)")



def test_sources_and_root_set_together_are_refused():
    """Defect 8b: data.root was silently ignored next to data.sources."""
    assert problems(config_with(data__sources="a:1,b:1", data__root="mine")) == (
        HEADER_1 + "--config.data.root='mine': is not read when --config.data.sources='a:1,b:1' "
        "is set (each source names its own folder): drop --config.data.root, or drop "
        "--config.data.sources to train on mine alone")
    # The default data.root of configs/default.py and the empty one of configs/demo.py are no
    # choice of the user's: data.sources alone is accepted with either.
    validate_config(config_with(data__sources="a:1,b:1"), 1)
    validate_config(config_with(data__sources="a:1,b:1", data__root=""), 1)

def test_best_metric_may_name_a_source():
    validate_config(config_with(data__sources="synth=a:1,coco=b:1",
                                train__best_metric="val/coco/hand_pck@0.2"), 1)
    assert problems(config_with(data__sources="synth=a:1",
                                train__best_metric="val/coco/pck@0.1")) == (
        HEADER_1 + "--config.train.best_metric='val/coco/pck@0.1': 'coco' is not a "
        "data.sources name (synth)")


def test_batch_must_split_over_devices_and_processes():
    config = config_with(train__batch_size=6)
    assert problems(config, devices=4) == (
        HEADER_1 + "--config.train.batch_size=6: must be divisible by the 4 devices")
    assert problems(config, devices=1, processes=4) == (
        HEADER_1 + "--config.train.batch_size=6: must be divisible by the 4 processes")
    validate_config(config, 3, 3)
    validate_config(config_with(train__epochs=0, train__num_steps=10), 1)  # steps replace epochs


def test_missing_fields_are_reported_once_per_missing_part():
    tree = default.get_config().to_dict()
    del tree["train"]["best_metric"], tree["distributed"]
    assert problems(ml_collections.ConfigDict(tree)) == (
        "the config has 2 problems; fix them on the command line or in the config file:\n"
        "  --config.train.best_metric: missing (configs/default.py lists every field; start your "
        "config from it)\n"
        "  --config.distributed: missing (configs/default.py lists every field; start your config "
        "from it)")


def test_every_problem_is_reported_in_one_error():
    config = config_with(train__batch_size=6, model__name="resnet", optim__lr=-1.0,
                         data__image_size="512")
    # The bad image size hides the heatmap-size rule that depends on it: one line per cause.
    assert problems(config, devices=4) == (
        "the config has 4 problems; fix them on the command line or in the config file:\n"
        "  --config.data.image_size='512': must be a positive integer (got str)\n"
        "  --config.model.name='resnet': must be one of 'resnet18', 'resnet34', 'resnet50', "
        "'mobilenet_v3_small'\n"
        "  --config.optim.lr=-1.0: must be a number > 0\n"
        "  --config.train.batch_size=6: must be divisible by the 4 devices")


# ----------------------------------------------------------------------------- differences


def test_architecture_fields_are_the_shape_changing_ones():
    assert ARCHITECTURE_FIELDS == (
        "task", "model.name", "model.width", "model.num_keypoints", "model.deconv_layers",
        "model.deconv_filters", "model.deconv_kernel", "model.final_kernel",
        "model.heatmap_size", "data.image_size", "optim.ema",  # ema: the state's layout
        "model.udp", "model.head", "model.simcc_split", "model.simcc_hidden")


def test_differences_split_architecture_from_other_fields():
    saved = default.get_config().to_dict()
    current = config_with(model__name="resnet34", data__image_size=256, optim__lr=0.002,
                          train__batch_size=8).to_dict()
    architecture, other = config_differences(saved, current)
    assert architecture == ["data.image_size: checkpoint 512, this config 256",
                            "model.name: checkpoint 'resnet18', this config 'resnet34'"]
    assert other == ["optim.lr: checkpoint 0.001, this config 0.002",
                     "train.batch_size: checkpoint 16, this config 8"]


def test_json_lists_equal_tuples_and_process_fields_are_ignored():
    config = default.get_config()
    saved = json.loads(config.to_json_best_effort())  # step_boundaries comes back as a list
    config.distributed.process_id = 3
    config.distributed.coordinator = "host:1234"
    config.distributed.timeout = 60
    assert config_differences(saved, config.to_dict()) == ([], [])
    config.optim.step_boundaries = (0.5, 0.9)
    assert config_differences(saved, config.to_dict()) == (
        [], ["optim.step_boundaries: checkpoint (0.7, 0.9), this config (0.5, 0.9)"])


def test_fields_on_one_side_are_other_differences():
    saved = default.get_config().to_dict()
    del saved["train"]["best_metric"], saved["model"]["deconv_layers"]
    saved["train"]["old_knob"] = 1
    architecture, other = config_differences(saved, default.get_config().to_dict())
    assert architecture == []
    assert other == [
        "model.deconv_layers: checkpoint (absent), this config 3",
        "train.best_metric: checkpoint (absent), this config 'val/hand_pck@0.2'",
        "train.old_knob: checkpoint 1, this config (absent)",
    ]


def test_a_run_from_before_a_later_architecture_field_had_its_old_value():
    """A hand run saved before model.udp existed trained plain coordinates: resuming it with
    today's configs/hand.py (UDP) is an architecture change, not a warning."""
    from configs import hand

    saved = hand.get_config().to_dict()
    for field in ("udp", "head", "simcc_split", "simcc_hidden"):
        del saved["model"][field]
    architecture, other = config_differences(saved, hand.get_config().to_dict())
    assert architecture == ["model.udp: checkpoint False, this config True"]
    assert other == []
    plain = hand.get_config()
    plain.model.udp = False  # the old run's own convention: resumes
    assert config_differences(saved, plain.to_dict()) == ([], [])


def test_format_config_warnings():
    assert format_config_warnings([], "runs/a/config.json") == ""
    lines = ["optim.lr: checkpoint 0.001, this config 0.002",
             "train.batch_size: checkpoint 16, this config 8"]
    assert format_config_warnings(lines, "runs/a/config.json") == (
        "WARNING runs/a/config.json: this config differs from the checkpoint's in 2 fields; "
        "this config's values apply:\n"
        "  optim.lr: checkpoint 0.001, this config 0.002\n"
        "  train.batch_size: checkpoint 16, this config 8\n"
        "train.batch_size: the checkpoint's data position depends on it; it is checked next, "
        "and a resume on other data, another batch size or worker count stops there unless "
        "--config.train.on_data_change=restart_epoch")
    assert format_config_warnings(lines[:1], "c.json").startswith(
        "WARNING c.json: this config differs from the checkpoint's in 1 field; ")



def test_a_changed_data_position_is_not_announced_as_continuing():
    """Defect 8c: reweighted sources printed "the run continues" just before the refusal."""
    saved = config_with(data__sources="a:0.75,b:0.25").to_dict()
    _, other = config_differences(saved, config_with(data__sources="a:0.5,b:0.5").to_dict())
    text = format_config_warnings(other, "runs/a/config.json")
    assert "continues" not in text
    assert text.endswith(
        "data.sources: the checkpoint's data position depends on it; it is checked next, and a "
        "resume on other data, another batch size or worker count stops there unless "
        "--config.train.on_data_change=restart_epoch")

# ----------------------------------------------------------------------------- history


def test_record_config_keeps_every_start(tmp_path):
    assert load_previous_config(tmp_path) is None
    paths = []
    for step, lr in ((0, 0.001), (100, 0.002), (250, 0.003)):
        config = default.get_config()
        config.optim.lr = lr
        paths.append(record_config(tmp_path, config, step))
    history = tmp_path / "config_history"
    assert paths == [history / "000-step0.json", history / "001-step100.json",
                     history / "002-step250.json"]
    assert sorted(p.name for p in history.iterdir()) == [p.name for p in paths]
    assert [json.loads(p.read_text())["optim"]["lr"] for p in paths] == [0.001, 0.002, 0.003]
    previous = load_previous_config(tmp_path)
    assert previous["optim"]["lr"] == 0.003
    assert previous["optim"]["step_boundaries"] == [0.7, 0.9]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "config_history"]


def test_record_config_never_overwrites(tmp_path):
    history = tmp_path / "config_history"
    history.mkdir()
    (history / "004-step70.json").write_text("kept")
    (history / "notes.txt").write_text("not a start")
    path = record_config(tmp_path, default.get_config(), 90)
    assert path == history / "005-step90.json"
    assert (history / "004-step70.json").read_text() == "kept"


def test_corrupt_config_json_names_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{\"model\": ")
    with pytest.raises(ConfigError) as info:
        load_previous_config(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}/config.json is not valid JSON (Expecting value: line 1 column 11 (char 10)); "
        "restore it from a copy of the config this run was started with")
    record_config(tmp_path, default.get_config(), 0)
    record_config(tmp_path, default.get_config(), 10)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError) as info:
        load_previous_config(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}/config.json holds a list, not a config object; copy the last start's config "
        f"over it: cp {tmp_path}/config_history/001-step10.json {tmp_path}/config.json")

"""Weights between the Flax model and its torch twin: the one home of the layout rules.

Names: a Flax state path maps to the torch state_dict key `flax_to_torch_name(path)`
(`signlang_jax.models`: join with ".", rename the leaf). Layouts, written once:

- conv kernel: Flax HWIO (kh, kw, Cin / groups, Cout) <-> torch OIHW (Cout, Cin / groups, kh,
  kw): `w.transpose(3, 2, 0, 1)`, back `w.transpose(2, 3, 1, 0)`.
- transposed-conv kernel: Flax (kh, kw, Cin, Cout) <-> torch ConvTranspose2d (Cin, Cout, kh,
  kw): `w.transpose(2, 3, 0, 1)` both ways (the convention of `signlang_jax.models.layers`).
- BatchNorm: scale, bias, mean, var <-> weight, bias, running_mean, running_var, same arrays;
  torch's `num_batches_tracked` has no Flax counterpart (written as 0, ignored when read).
- conv bias: the same (C,) array.
- images and heatmaps: Flax NHWC <-> torch/ONNX NCHW (`nhwc_to_nchw`, `nchw_to_nhwc`); the
  ImageNet normalisation of [0, 1] RGB input is inside both models (`IMAGENET_MEAN/STD`).

Whether a 4-D kernel is a convolution or a transposed convolution is read from the Flax module
that owns it. BatchNorm epsilon and momentum are part of the architecture, not of the weights:
`to_torch` checks that every BatchNorm of the twin uses the Flax layer's values (1e-5 / 0.1 for
the ResNets and the head, 1e-3 / 0.01 for MobileNetV3).

`load_pretrained_backbone(model, path)` initialises a Flax model's backbone from a torchvision
ImageNet `.pth` (or a twin's state_dict), for `model.pretrained_backbone`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np
import torch
from flax import nnx

from interop.torch_model import TorchHeatmapModel
from signlang_jax.models import ConvTranspose, flax_to_torch_name

# Keys of a torchvision classification state_dict that a keypoint backbone does not use.
CLASSIFIER_PREFIXES = ("fc.", "classifier.")
BN_COUNTER = "num_batches_tracked"
MAX_LISTED = 20  # longest list of problem keys printed in full


class Entry(NamedTuple):
    """One Flax variable with its torch name and layout kind ("conv", "conv_transpose", "plain")."""

    path: tuple
    torch_name: str
    variable: nnx.Variable
    kind: str


# ----------------------------------------------------------------------------- layout rules


# Flax -> torch axis permutations: conv HWIO -> OIHW; transposed conv (kh, kw, Cin, Cout) ->
# (Cin, Cout, kh, kw). Other leaves (biases, BatchNorm vectors) keep their layout.
_TO_TORCH_AXES = {"conv": (3, 2, 0, 1), "conv_transpose": (2, 3, 0, 1)}


def to_torch_layout(array: np.ndarray, kind: str) -> np.ndarray:
    """A Flax array in torch layout (see the module docstring's table)."""
    axes = _TO_TORCH_AXES.get(kind)
    return array if axes is None else array.transpose(axes)


def to_flax_layout(array: np.ndarray, kind: str) -> np.ndarray:
    """A torch array in Flax layout: the inverse of `to_torch_layout`."""
    axes = _TO_TORCH_AXES.get(kind)
    return array if axes is None else array.transpose(np.argsort(axes))


def torch_shape(shape: tuple[int, ...], kind: str) -> tuple[int, ...]:
    """The torch shape of a Flax variable of `shape`."""
    return tuple(to_torch_layout(np.empty(shape, np.uint8), kind).shape)


def nhwc_to_nchw(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W), contiguous: Flax images or heatmaps to torch/ONNX layout."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(images), -1, 1))


def nchw_to_nhwc(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> (N, H, W, C), contiguous: torch/ONNX images or heatmaps to Flax layout."""
    return np.ascontiguousarray(np.moveaxis(np.asarray(images), 1, -1))


def _kind(path: tuple, shape: tuple[int, ...], transposed: set[tuple]) -> str:
    if path[-1] == "kernel" and len(shape) == 4:
        return "conv_transpose" if path[:-1] in transposed else "conv"
    return "plain"


def entries(target: nnx.Module | nnx.State) -> list[Entry]:
    """Every variable of a Flax model (or its `nnx.state`) with its torch name and layout kind.

    Given a bare State, transposed convolutions cannot be told from convolutions: every 4-D
    kernel counts as a convolution, which is right for the backbones (they have none).
    """
    if isinstance(target, nnx.State):
        state, transposed = target, set()
    else:
        state = nnx.state(target)
        transposed = {path for path, module in nnx.iter_modules(target)
                      if isinstance(module, ConvTranspose)}
    return [Entry(path, flax_to_torch_name(path), var, _kind(path, var.shape, transposed))
            for path, var in nnx.to_flat_state(state)]


# ----------------------------------------------------------------------------- Flax -> torch


def flax_to_torch_state_dict(model: nnx.Module) -> dict[str, torch.Tensor]:
    """The torch twin's full state_dict (float32, torch layouts) from a Flax model's state."""
    state_dict: dict[str, torch.Tensor] = {}
    for entry in entries(model):
        array = np.asarray(entry.variable.get_value())
        # A copy: jax arrays are read-only, torch tensors are writable.
        state_dict[entry.torch_name] = torch.from_numpy(
            np.array(to_torch_layout(array, entry.kind), order="C", copy=True))
        if entry.torch_name.endswith(".running_mean"):
            prefix = entry.torch_name[: -len("running_mean")]
            state_dict[prefix + BN_COUNTER] = torch.tensor(0, dtype=torch.long)
    return state_dict


def check_batchnorm_match(model: nnx.Module, twin: torch.nn.Module) -> None:
    """Raise ValueError unless every Flax BatchNorm's epsilon/momentum equal its twin's."""
    problems = []
    for path, module in nnx.iter_modules(model):
        if not isinstance(module, nnx.BatchNorm):
            continue
        name = ".".join(str(p) for p in path)
        layer = twin.get_submodule(name)
        if not (np.isclose(layer.eps, module.epsilon, rtol=1e-6, atol=0)
                and np.isclose(layer.momentum, 1.0 - module.momentum, rtol=1e-6, atol=1e-9)):
            problems.append(f"{name}: Flax epsilon {module.epsilon} momentum {module.momentum}, "
                            f"torch eps {layer.eps} momentum {layer.momentum} (expected "
                            f"{1.0 - module.momentum})")
    if problems:
        raise ValueError("BatchNorm settings differ between the Flax model and the torch twin:\n  "
                         + "\n  ".join(problems))


def to_torch(model: nnx.Module, model_config: ml_collections.ConfigDict) -> TorchHeatmapModel:
    """The torch twin of `model` (built from the same config.model), weights copied, eval mode."""
    twin = TorchHeatmapModel.from_config(model_config)
    twin.load_state_dict(flax_to_torch_state_dict(model), strict=True)
    check_batchnorm_match(model, twin)
    return twin.eval()


# ----------------------------------------------------------------------------- torch -> Flax


def _shape_text(shape: Iterable[int]) -> str:
    return str(tuple(int(s) for s in shape))


def _listing(title: str, lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    more = [f"... and {len(lines) - MAX_LISTED} more"] if len(lines) > MAX_LISTED else []
    return f"  {title} ({len(lines)}):\n" + "".join(f"    {line}\n" for line in shown + more)


def load_torch_state_dict(target: nnx.Module | nnx.State, state_dict: Mapping[str, torch.Tensor],
                          *, prefix: str = "", source: str = "the state_dict",
                          destination: str = "the model", hint: str = "") -> None:
    """Copy a torch state_dict into the Flax variables whose torch names start with `prefix`.

    `state_dict` keys are the torch names without `prefix` (e.g. torchvision's `conv1.weight`
    for the Flax `backbone.conv1.kernel` with prefix "backbone."); `num_batches_tracked` is
    ignored. Every other key must match one variable in name and shape, and every variable must be
    provided: otherwise a ValueError lists the missing, unexpected and mis-shaped tensors (in
    torch names and shapes), and nothing is modified.
    """
    expected = {e.torch_name[len(prefix):]: e for e in entries(target)
                if e.torch_name.startswith(prefix)}
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    provided = {k: v for k, v in state_dict.items()
                if isinstance(v, torch.Tensor) and not k.endswith(BN_COUNTER)}
    missing = [f"{k} {_shape_text(torch_shape(e.variable.shape, e.kind))}"
               for k, e in expected.items() if k not in provided]
    unexpected = [f"{k} {_shape_text(v.shape)}" for k, v in provided.items() if k not in expected]
    misshaped = []
    for key, entry in expected.items():
        want = torch_shape(entry.variable.shape, entry.kind)
        if key in provided and tuple(provided[key].shape) != want:
            misshaped.append(f"{key}: {_shape_text(provided[key].shape)} given, the model "
                             f"expects {_shape_text(want)}")
    if missing or unexpected or misshaped or not_tensors:
        message = f"{source} does not fit {destination}:\n"
        message += _listing("missing tensors", missing) if missing else ""
        message += _listing("unexpected tensors", unexpected) if unexpected else ""
        message += _listing("mis-shaped tensors", misshaped) if misshaped else ""
        message += _listing("entries that are not tensors", not_tensors) if not_tensors else ""
        raise ValueError(message + hint)
    for key, entry in expected.items():
        array = provided[key].detach().to("cpu", torch.float32).numpy()
        value = to_flax_layout(array, entry.kind)
        entry.variable.set_value(jnp.asarray(value, dtype=entry.variable.get_value().dtype))


def from_torch(model: nnx.Module, twin: torch.nn.Module) -> None:
    """Copy every weight of the torch twin into the Flax model (in place), strictly."""
    load_torch_state_dict(model, twin.state_dict(), source="the torch twin's state_dict")


# ----------------------------------------------------------------------------- .pth files


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state_dict from a `.pth` file, read with `weights_only=True` (no arbitrary code).

    Accepts a bare state_dict, or a training checkpoint dict holding one under `state_dict` or
    `model`; strips the `module.` prefix of (Distributed)DataParallel.
    """
    if not os.path.isfile(path):
        # A ValueError like every other bad-input error here (the training CLI reports those).
        raise ValueError(f"pretrained weights {path}: no such file")
    try:
        loaded = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # pickle errors, a non-torch file, a full pickled nn.Module...
        raise ValueError(f"{path}: cannot be read as a torch state_dict with weights_only=True "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
                         "Save the weights with torch.save(model.state_dict(), PATH).") from None
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, not a state_dict (a dict of "
                         "tensors); save it with torch.save(model.state_dict(), PATH)")
    keys = list(loaded)
    if keys and all(k.startswith("module.") for k in keys):
        loaded = {k[len("module."):]: v for k, v in loaded.items()}
    return dict(loaded)


def load_pretrained_backbone(target: nnx.Module | nnx.State, path: str | os.PathLike) -> None:
    """Initialise the backbone of a Flax model (or its nnx.State) in place from a `.pth` file.

    The file is either a torchvision classifier's state_dict (`resnet18/34/50` or
    `mobilenet_v3_small`, e.g. ImageNet weights: `conv1.weight`, `layer1.0.bn1.running_mean`, ...
    or `features.*`; the classifier `fc.*` / `classifier.*` and every `num_batches_tracked` are
    ignored) or a full torch-twin state_dict (`backbone.*` is used, `head.*` ignored). The
    backbone must match exactly: a ValueError lists missing, unexpected and mis-shaped tensors.
    """
    state_dict = read_state_dict(path)
    if any(k.startswith("backbone.") for k in state_dict):
        source = {k[len("backbone."):]: v for k, v in state_dict.items()
                  if k.startswith("backbone.")}
        kind = "torch-twin state_dict"
    else:
        source = {k: v for k, v in state_dict.items() if not k.startswith(CLASSIFIER_PREFIXES)}
        kind = "torchvision-style state_dict"
    backbone = getattr(target, "backbone", None)
    described = (f" ({type(backbone).__name__})" if isinstance(backbone, nnx.Module) else "")
    hint = ("A torchvision resnet18/resnet34/resnet50/mobilenet_v3_small state_dict fits the "
            "backbone of the same model.name with model.width=64.")
    load_torch_state_dict(target, source, prefix="backbone.", source=f"{path} ({kind})",
                          destination=f"the model's backbone{described}", hint=hint)

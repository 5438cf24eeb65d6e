"""`python -m interop.to_onnx`: export a trained checkpoint to ONNX, then verify it against JAX.

The graph contract (docs/DEPLOYMENT.md has the details and a runnable onnxruntime snippet):

- input `images`: float32 (N, 3, S, S), RGB in [0, 1]; the ImageNet normalisation is inside the
  graph. N is dynamic; S is the training `data.image_size` unless `--img-size` says otherwise.
- output `heatmaps`: float32 (N, K, S/4, S/4), one channel per keypoint of
  `signlang_jax.keypoints`.
- with `--with-keypoints`, a second output `keypoints`: float32 (N, K, 3) = x, y in input pixels
  and score, decoded inside the graph exactly as `signlang_jax.codec.decode_heatmaps`.
- metadata (`metadata_props`): keypoint names, flip permutation, skeleton, groups, input and
  heatmap size, sigma, backbone, precision, normalisation, checkpoint step.

The weights go Flax -> torch twin (`interop.convert`) -> `torch.onnx.export` (the dynamo exporter,
dynamic batch). The file is written under a temporary name next to the output, checked with
`onnx.checker`, run with onnxruntime on random and rendered images at batch sizes 1 and 3 and
compared with the JAX model in eval mode (`interop.verify_onnx`); only a file that passes is
moved onto the output path.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from interop.onnx_metadata import (
    HEATMAPS_NAME,
    INPUT_NAME,
    KEYPOINTS_NAME,
    ExportError,
    model_metadata,
)
from interop.quantize import Int8Check, quantize_int8
from interop.verify_onnx import (
    FLOAT32_TOLERANCE,
    FP16_TOLERANCE,
    ParityRow,
    VerificationError,
    verify_onnx,
)
from signlang_jax.files import atomic_path, write_atomic

EXPORT_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxscript")
INSTALL_HINT = "install the export extra: pip install -e '.[export]'"
DEFAULT_OPSET = 18
MIN_OPSET = 17


@dataclasses.dataclass
class ExportReport:
    """What `export_onnx` wrote and how well it matched the JAX model."""

    output: Path
    step: int
    image_size: int
    heatmap_size: int
    num_keypoints: int
    with_keypoints: bool
    fp16: bool
    opset: int
    size_bytes: int
    tolerance: float
    rows: list[ParityRow]
    int8: Int8Check | None = None  # with --int8: the int8 graph against the float one

    @property
    def max_abs_diff(self) -> float:
        """The largest heatmap difference over all verification runs."""
        return max(row.max_abs_diff for row in self.rows)

    def summary(self) -> str:
        """Human-readable lines: the file, then one line per verification run."""
        outputs = f"{HEATMAPS_NAME} (N, {self.num_keypoints}, {self.heatmap_size}, " \
                  f"{self.heatmap_size})"
        if self.with_keypoints:
            outputs += f" + {KEYPOINTS_NAME} (N, {self.num_keypoints}, 3)"
        precision = "int8" if self.int8 else "float16" if self.fp16 else "float32"
        lines = [f"wrote {self.output} ({self.size_bytes / 1e6:.1f} MB, opset {self.opset}, "
                 f"{precision} weights, step {self.step}): "
                 f"{INPUT_NAME} (N, 3, {self.image_size}, {self.image_size}) -> {outputs}"]
        for row in self.rows:
            tied = f", {row.keypoints_tied} at near-ties" if row.keypoints_tied else ""
            lines.append(f"  {row.images:6s} images, batch {row.batch}: max |heatmap diff| "
                         f"{row.max_abs_diff:.2e}, keypoints identical {row.keypoints_equal}/"
                         f"{row.keypoints_total}{tied}")
        lines.append(f"parity onnxruntime vs JAX: max abs heatmap difference "
                     f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e})"
                     + (" for the float graph" if self.int8 else ""))
        if self.int8:
            lines.append(self.int8.summary())
        return "\n".join(lines)


# ----------------------------------------------------------------------------- preconditions


def require_export_packages() -> None:
    """Raise ExportError naming the first missing package of the `export` extra."""
    for package in EXPORT_PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError:
            raise ExportError(f"the ONNX export needs {package}, which is not installed: "
                              f"{INSTALL_HINT}") from None


def reserve_output(output: Path, temporary: Path) -> None:
    """Create (empty) the temporary file the export is written to, next to `output`.

    Fails early, before the slow export, if the location is not writable. Missing parent folders
    are created.
    """
    if output.is_dir():
        raise ExportError(f"--output {output} is a directory; give a file name such as "
                          f"{output / 'model.onnx'}")
    parent = output.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        temporary.touch(exist_ok=False)
    except OSError as e:
        raise ExportError(f"cannot write --output {output}: {e.strerror or e} "
                          f"({e.filename or parent})") from None


# ----------------------------------------------------------------------------- the torch graph


def build_export_module(twin: object, image_size: int, with_keypoints: bool,
                        fp16: bool, udp: bool = False) -> object:
    """The torch module that becomes the graph: float32 images -> float32 heatmaps [, keypoints].

    With fp16 the module holds a half-precision copy of `twin` (which is left unchanged).
    """
    import copy

    import torch

    from interop.torch_model import decode_heatmaps

    class ExportModule(torch.nn.Module):
        """The twin, in half precision for --fp16, and the in-graph keypoint decoder."""

        def __init__(self) -> None:
            super().__init__()
            self.model = copy.deepcopy(twin).half() if fp16 else twin

        def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
            """images (N, 3, S, S) float32 in [0, 1] -> heatmaps [, keypoints], float32."""
            heatmaps = self.model(images).float()
            if not with_keypoints:
                return heatmaps
            return heatmaps, decode_heatmaps(heatmaps, image_size, udp)

    return ExportModule().eval()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress and deprecation chatter (errors still propagate)."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(sys.stderr):
                yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_graph(module: object, image_size: int, opset: int, with_keypoints: bool) -> object:
    """`torch.onnx.export` with a dynamic batch dimension; returns the onnx ModelProto."""
    import torch

    example = torch.rand(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    outputs = [HEATMAPS_NAME, KEYPOINTS_NAME] if with_keypoints else [HEATMAPS_NAME]
    with _quiet_exporter(), torch.no_grad():
        program = torch.onnx.export(
            module, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
            output_names=outputs, dynamic_shapes={"images": {0: batch}}, optimize=True,
            verbose=False)
    return program.model_proto


# ----------------------------------------------------------------------------- the export


def export_onnx(checkpoint: str | Path, output: str | Path, *, step: str | int | None = None,
                opset: int = DEFAULT_OPSET, image_size: int | None = None,
                with_keypoints: bool = False, fp16: bool = False, int8: int | None = None,
                log: Callable[[str], None] = lambda message: None) -> ExportReport:
    """Export a training checkpoint to a verified ONNX file at `output` (see the module doc).

    Nothing is left at `output` unless the file passed `verify_onnx`; an existing file there is
    replaced only then. int8: quantize the verified float graph to int8, calibrated on that many
    images of the checkpoint's data, and check it against the float graph (quantize.py).
    """
    require_export_packages()
    from signlang_jax.inference.restore import split_spec

    if int8 is not None and (int8 < 1 or fp16):
        raise ExportError(f"--int8 {int8}{' with --fp16' if fp16 else ''}: give a positive "
                          "number of calibration images, and either --int8 or --fp16")
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: the exporter needs opset {MIN_OPSET} or newer")
    if image_size is not None and (image_size <= 0 or image_size % 32):
        raise ExportError(f"--img-size {image_size}: must be a positive multiple of 32 (the "
                          "backbone's stride)")
    path, _ = split_spec(checkpoint, step)  # cheap checks first: the path, then the output
    if not path.exists():
        raise ExportError(f"checkpoint {path} does not exist (expected a workdir such as "
                          "runs/x, its checkpoints/ folder or a step folder)")
    output = Path(output)
    with atomic_path(output) as temporary:  # the file appears only once verified
        reserve_output(output, temporary)
        return _export(checkpoint, step, output, temporary, opset, image_size, with_keypoints,
                       fp16, int8, log)


def _export(checkpoint: str | Path, step: str | int | None, output: Path, temporary: Path,
            opset: int, image_size: int | None, with_keypoints: bool, fp16: bool,
            int8: int | None,
            log: Callable[[str], None]) -> ExportReport:
    import onnx
    import torch

    from interop.convert import to_torch
    from signlang_jax.inference.restore import load_checkpoint

    started = time.perf_counter()
    loaded = load_checkpoint(checkpoint, step)
    config = loaded.config
    size = image_size or config.data.image_size
    if size % 32:
        raise ExportError(f"data.image_size={size} of the checkpoint is not a multiple of 32; "
                          "pass --img-size")
    log(f"restored step {loaded.step} from {loaded.directory} ({config.model.name}, width "
        f"{config.model.width}) in {time.perf_counter() - started:.1f} s")
    # The ONNX contract is heatmaps (docs/DEPLOYMENT.md); the SimCC head, an ablation that lost
    # (docs/HANDS.md), has no torch twin.
    if config.model.get("head", "heatmap") != "heatmap":
        raise ExportError(f"{loaded.directory.parent}: model.head={config.model.head!r}; only "
                          "model.head='heatmap' models export (the ONNX contract is heatmaps)")
    udp = bool(config.model.get("udp", False))
    twin = to_torch(loaded.model, config.model)
    with torch.no_grad():
        heatmap_size = int(twin(torch.zeros(1, 3, size, size)).shape[-1])
    module = build_export_module(twin, size, with_keypoints, fp16, udp)
    started = time.perf_counter()
    proto = export_graph(module, size, opset, with_keypoints)
    onnx.helper.set_model_props(proto, model_metadata(
        config, image_size=size, heatmap_size=heatmap_size, with_keypoints=with_keypoints,
        fp16=fp16, step=loaded.step))
    proto.doc_string = (f"signlang-jax {config.model.name} keypoint heatmaps; see the "
                        "metadata_props and docs/DEPLOYMENT.md")
    onnx.save(proto, str(temporary))
    log(f"exported with torch {torch.__version__} in {time.perf_counter() - started:.1f} s; "
        "verifying with onnxruntime against JAX")
    rows, tolerance = verify_onnx(temporary, loaded.model, config, size, with_keypoints,
                                  fp16)
    check = None
    if int8 is not None:
        log(f"quantizing to int8, calibrated on {int8} images of the checkpoint's data")
        quantized = temporary.with_name(temporary.name + ".int8")
        try:
            check = quantize_int8(temporary, quantized, config, size, int8)
            quantized.replace(temporary)
        finally:
            quantized.unlink(missing_ok=True)
    return ExportReport(output, loaded.step, size, heatmap_size, config.model.num_keypoints,
                        with_keypoints, fp16, opset, temporary.stat().st_size, tolerance, rows,
                        check)


# ----------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (`python -m interop.to_onnx --help`)."""
    parser = argparse.ArgumentParser(
        prog="python -m interop.to_onnx", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Export a trained signlang-jax checkpoint to ONNX and verify it: "
                    "onnx.checker,\nthen onnxruntime on random and rendered images at batch "
                    "sizes 1 and 3 against\n"
                    "the JAX model (max abs heatmap difference <= "
                    f"{FLOAT32_TOLERANCE:.0e} in float32, identical decoded\n"
                    "keypoints). The output path is written only if verification passes; the exit\n"
                    "status is 1 on any error.",
        epilog="graph: input 'images' float32 (N, 3, S, S), RGB in [0, 1], normalisation inside,\n"
               "N dynamic -> 'heatmaps' float32 (N, K, S/4, S/4) [+ 'keypoints' (N, K, 3)];\n"
               "metadata: keypoint names, flip permutation (hand models: crop rule), sizes.\n"
               "examples:\n"
               "  python -m interop.to_onnx --checkpoint runs/demo --output runs/demo/model.onnx\n"
               "  python -m interop.to_onnx --checkpoint runs/x:best --output x.onnx "
               "--with-keypoints\n"
               "  python -m interop.to_onnx --checkpoint runs/x --step 12000 --output x16.onnx "
               "--fp16\n"
               "See docs/DEPLOYMENT.md for running the file with onnxruntime.")
    parser.add_argument(
        "--checkpoint", required=True, metavar="DIR[:best|:latest|:STEP]",
        help="a training workdir (runs/x), its checkpoints/ folder or a step folder "
             "(runs/x/checkpoints/1200); append :best (the best train.best_metric), :latest "
             "(default) or :STEP to choose the step. The config is read from WORKDIR/config.json.")
    parser.add_argument("--step", default=None, metavar="best|latest|STEP",
                        help="the step, as an alternative to the :suffix of --checkpoint")
    parser.add_argument("--output", required=True, type=Path, metavar="PATH",
                        help="the .onnx file to write (missing parent folders are created)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}, at least {MIN_OPSET})")
    parser.add_argument("--img-size", type=int, default=None, metavar="S",
                        help="input side S of the graph, a multiple of 32 (default: the "
                             "checkpoint's data.image_size, e.g. 512; heatmaps are S/4)")
    parser.add_argument("--with-keypoints", action="store_true",
                        help="add the output 'keypoints' (N, K, 3): x, y in input pixels and "
                             "score, decoded inside the graph (argmax + quarter-pixel shift)")
    parser.add_argument("--int8", type=int, nargs="?", const=64, default=None, metavar="N",
                        help="then quantize to int8 for CPU deployment (onnxruntime static "
                             "quantization, QDQ), calibrated on N images of the checkpoint's "
                             "own val data (default 64; needs that data and the train extra), "
                             "and check its keypoints against the float graph's")
    parser.add_argument("--fp16", action="store_true",
                        help="half-precision weights and compute; input and outputs stay float32. "
                             f"Verified with the looser tolerance {FP16_TOLERANCE:.0e} x "
                             "max(1, peak heatmap)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the export; print the parity figures; return the exit status."""
    args = build_parser().parse_args(argv)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices
    try:
        from signlang_jax.inference.restore import CheckpointError
    except ImportError as e:
        print(f"ERROR {e}", file=sys.stderr)
        return 1
    try:
        report = export_onnx(args.checkpoint, args.output, step=args.step, opset=args.opset,
                             image_size=args.img_size, with_keypoints=args.with_keypoints,
                             fp16=args.fp16, int8=args.int8,
                             log=lambda m: print(m, file=sys.stderr))
    except (ExportError, CheckpointError) as e:
        print(f"ERROR {e}", file=sys.stderr)
        if isinstance(e, VerificationError):
            print(f"ERROR nothing was written to {args.output}", file=sys.stderr)
        return 1
    print(report.summary())
    record = parity_record(report)
    write_atomic(record_path(Path(args.output)), (json.dumps(record, indent=1) + "\n").encode())
    return 0


def record_path(output: Path) -> Path:
    """Where the export's verification record goes: OUTPUT.json beside the ONNX file."""
    return output.with_name(output.name + ".json")


def parity_record(report: ExportReport) -> dict:
    """The verification figures of an export as JSON (read by the demo summary and
    benchmarks/readme_figures.py)."""
    return {"output": str(report.output), "step": report.step,
            "max_abs_diff": report.max_abs_diff, "tolerance": report.tolerance,
            "keypoints_equal": sum(r.keypoints_equal for r in report.rows),
            "keypoints_total": sum(r.keypoints_total for r in report.rows),
            "rows": [dataclasses.asdict(r) for r in report.rows]}


if __name__ == "__main__":
    sys.exit(main())

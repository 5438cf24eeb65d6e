"""One-command GPU acceptance check: bf16 training, bf16/f32 parity, deconv paths, speed, CLIs.

    PYTHONPATH=. python benchmarks/gpu_check.py --workdir /tmp/gpu      # CUDA machine, < 8 min
    PYTHONPATH=. python benchmarks/gpu_check.py --cpu --workdir /tmp/c  # CPU smoke run, ~1 min

What it does, in order, each section recorded as table rows even when an earlier one failed:

1. renders a synthetic dataset (`signlang_jax.synth`, 512 images at 512 px) into WORKDIR/data_S;
2. (c) the `lax` transposed conv (cuDNN on GPU) against both sub-pixel forms, forward and VJP, f32;
3. (b) one step's loss and per-module gradients of a bfloat16 and a float32 model from the same
   init on the same batch (the f32 reference runs at matmul precision "highest": no TF32);
4. (a) `train.train_and_evaluate` on the default config (ResNet-18, 512 -> 128, model.dtype auto
   = bf16 on GPU) for --steps steps in WORKDIR/train, then checks that the loss falls;
5. (e) `python -m signlang_jax.evaluate` and `python -m interop.to_onnx` on that workdir;
6. (d) train-step images/s and MFU at batch 32 and 64 (FLOPs from XLA's cost analysis of the
   compiled step; peak = --peak-tflops and a measured bf16 matmul), input-pipeline images/s.

It prints one markdown table (check, value, criterion, pass/fail) and writes it to --out
(default WORKDIR/gpu_check.md) after every section, so a run cut short keeps what it measured.
Exit status: 0 all pass, 1 any check failed, 2 no GPU (without --cpu) or a package is missing.
WORKDIR/train is deleted at the start (it is this script's own training run); the rendered data
is reused when present.

On the lent H200 machine (no network; jax[cuda], flax, optax, orbax, torch, onnx, onnxruntime,
onnxscript, etils, cloudpickle preinstalled) six packages must travel as wheels (their other
dependencies are there; see /work/.library/device/README.md). Here, in the repo root:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d .whl grain array-record ml-collections tensorboardX \\
        pycocotools portpicker

then on the machine (carry `.whl`):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
    PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --workdir /tmp/gpu \\
        --out $OUT/gpu_check.md
"""

# The sections live in sibling modules (benchmarks/ is not a package; run as a script, this
# file's folder is on sys.path): gpu_check_common (Check, Mode, run sizes), gpu_check_numerics
# ((c), (b)), gpu_check_train ((a)), gpu_check_cli ((e)), gpu_check_speed ((d)).

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from gpu_check_cli import check_evaluate, check_onnx, child_env
from gpu_check_common import CPU_MODE, GPU_MODE, ROOT, Check, Mode, first_batch
from gpu_check_numerics import check_bf16_vs_f32, check_deconv
from gpu_check_speed import H200_BF16_DENSE_TFLOPS, check_pipeline, check_speed
from gpu_check_train import check_training

# Imported by the training, evaluation and export code; missing ones are named before any work.
REQUIRED_MODULES = ("jax", "flax", "optax", "orbax.checkpoint", "grain", "ml_collections",
                    "tensorboardX", "cv2", "pycocotools", "torch", "onnx", "onnxruntime",
                    "onnxscript")


# ----------------------------------------------------------------------------- config and data


def make_config(mode: Mode, data_root: Path, steps: int, workers: int) -> object:
    """configs/default.py shrunk or kept at `mode`'s sizes, training `steps` steps on data_root."""
    from configs import default

    config = default.get_config()
    config.data.root = str(data_root)
    config.data.image_size = mode.image_size
    config.data.val_fraction = mode.val_fraction
    config.data.num_workers = workers
    config.model.width = mode.width
    config.model.deconv_filters = mode.deconv_filters
    config.model.heatmap_size = mode.heatmap_size
    config.model.sigma = mode.sigma
    config.optim.warmup_steps = mode.warmup_steps
    config.optim.lr = mode.lr
    config.train.batch_size = mode.train_batch
    config.train.num_steps = steps
    config.train.log_every_steps = max(1, steps // 30)
    config.train.eval_every_steps = max(1, steps // 2)
    config.train.checkpoint_every_steps = max(1, steps // 2)
    config.train.num_val_images = 1
    return config


def render_data(mode: Mode, root: Path) -> int:
    """Render mode.synthetic_num samples into root unless exactly that many are there already."""
    from signlang_jax.synth import generate_dataset

    labels = root / "labels"
    present = len(list(labels.glob("*.json"))) if labels.is_dir() else 0
    if present != mode.synthetic_num:
        generate_dataset(root, mode.synthetic_num, seed=0, size=mode.synthetic_size,
                         overwrite=True, progress=True)
    return mode.synthetic_num



# ----------------------------------------------------------------------------- table and main


def format_table(checks: list[Check], header: list[str]) -> str:
    """The markdown report: header lines, then one row per check."""
    lines = [*header, "", "| # | check | value | criterion | result |",
             "|---|---|---|---|---|"]
    for i, c in enumerate(checks, 1):
        cells = (c.name, c.value, c.criterion, "pass" if c.passed else "**FAIL**")
        lines.append(f"| {i} | " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
    failed = sum(not c.passed for c in checks)
    lines += ["", f"{len(checks) - failed}/{len(checks)} passed" + (
        f", {failed} FAILED" if failed else "")]
    return "\n".join(lines) + "\n"


def run_section(name: str, checks: list[Check], fn: Callable[[], list[Check]]) -> None:
    """Append fn's rows to checks; an exception becomes one failed row (the run goes on)."""
    print(f"== {name}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        rows = fn()
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
        traceback.print_exc()
        message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        rows = [Check(name, message, "runs without an error", False)]
    checks.extend(rows)
    print(f"   {time.perf_counter() - start:.1f} s, "
          f"{sum(r.passed for r in rows)}/{len(rows)} passed", file=sys.stderr, flush=True)


def missing_modules(names: tuple[str, ...] = REQUIRED_MODULES) -> list[str]:
    """The modules of `names` that cannot be imported."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing



def build_parser() -> argparse.ArgumentParser:
    """Command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for data, training run, exports and the table (default: a "
                             "new temporary folder, kept)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown table file (default WORKDIR/gpu_check.md)")
    parser.add_argument("--cpu", action="store_true",
                        help="smoke mode: the same code paths on CPU at tiny sizes (~1 min)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default 300 on GPU, 16 with --cpu)")
    parser.add_argument("--workers", type=int, default=None,
                        help="input pipeline processes (default: all cores on GPU, 2 with --cpu)")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_DENSE_TFLOPS,
                        help="peak bf16 dense TFLOP/s for MFU (default: H200, "
                             f"{H200_BF16_DENSE_TFLOPS:g})")
    parser.add_argument("--cli-timeout", type=float, default=600,
                        help="seconds allowed to each CLI subprocess")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run every section; print and write the table; 0 if all pass, 1 if not, 2 if no GPU."""
    args = build_parser().parse_args(argv)
    if missing_modules(("jax",)):
        print("ERROR jax is not installed: pip install -e '.[cuda]' (or '.[train]' for --cpu)",
              file=sys.stderr)
        return 2
    import jax

    if args.cpu:
        jax.config.update("jax_platforms", "cpu")
    else:
        # Read when the GPU client starts: the CLI subprocesses need GPU memory too, so take
        # 60 % here instead of the default 75 %.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.6")
        if jax.default_backend() != "gpu":
            print(f"ERROR no GPU: JAX's backend is {jax.default_backend()!r} (devices "
                  f"{jax.devices()}). Run on a CUDA machine with jax[cuda] installed, or pass "
                  "--cpu for the CPU smoke run.", file=sys.stderr)
            return 2
    missing = missing_modules()
    if missing:
        print(f"ERROR missing Python packages: {', '.join(missing)}. Install them (see the "
              f"top of {Path(__file__).name} for carrying wheels to an offline machine).",
              file=sys.stderr)
        return 2
    mode = CPU_MODE if args.cpu else GPU_MODE
    if not jax.config.jax_compilation_cache_dir:  # a rerun compiles nothing twice
        jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
    steps = args.steps or (16 if args.cpu else 300)
    workers = args.workers if args.workers is not None else (
        min(2, os.cpu_count() or 1) if args.cpu else os.cpu_count() or 1)
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="gpu_check_"))).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or workdir / "gpu_check.md"
    data_root = workdir / f"data_{mode.synthetic_size}"
    train_dir = workdir / "train"
    # Training decodes in the training process in CPU mode: worker start-up would dominate.
    config = make_config(mode, data_root, steps, workers if not args.cpu else 0)
    header = [f"# gpu_check ({mode.name} mode)", "",
              f"- device: {jax.devices()[0].device_kind} x {jax.device_count()} "
              f"({jax.default_backend()}), jax {jax.__version__}, {os.cpu_count()} cores",
              f"- model: {config.model.name} width {config.model.width}, "
              f"{config.data.image_size} px -> {config.model.heatmap_size}, "
              f"dtype {config.model.dtype}; data: {mode.synthetic_num} synthetic images at "
              f"{mode.synthetic_size} px in {data_root}",
              f"- workdir: {workdir}"]
    checks: list[Check] = []
    start = time.perf_counter()

    def save() -> None:
        table = format_table(checks, [*header, f"- elapsed: {time.perf_counter() - start:.0f} s"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)

    def section(name: str, fn: Callable[[], list[Check]]) -> None:
        run_section(name, checks, fn)
        save()

    section("synthetic data", lambda: [Check(
        "synthetic data rendered", f"{render_data(mode, data_root)} images at "
        f"{mode.synthetic_size} px", "written", True)])
    section("deconv: lax vs sub-pixel", lambda: check_deconv(mode))
    section("bf16 vs f32", lambda: check_bf16_vs_f32(config, first_batch(config)))
    section("training", lambda: check_training(config, train_dir))
    env = child_env(args.cpu)
    section("evaluate CLI", lambda: check_evaluate(train_dir, env, args.cli_timeout))
    section("to_onnx CLI", lambda: check_onnx(train_dir, env, args.cli_timeout))
    train_rate = [0.0]

    def speed() -> list[Check]:
        rows, train_rate[0] = check_speed(config, mode, args.peak_tflops)
        return rows

    section("train step speed", speed)
    section("input pipeline", lambda: check_pipeline(config, workers, mode.pipeline_batches,
                                                     train_rate[0]))
    print(format_table(checks, [*header, f"- elapsed: {time.perf_counter() - start:.0f} s"]))
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

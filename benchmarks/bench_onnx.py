"""Inference latency for one 512x512 image: onnxruntime vs JAX (jit, XLA:CPU) vs torch eager.

    python benchmarks/bench_onnx.py [--reps 10] [--checkpoint runs/x] [--img-size 512] [--fp16]

Builds the default model (ResNet-18 + 3 x 256 deconvs; random weights unless --checkpoint), its
torch twin and the ONNX graph exactly as `python -m interop.to_onnx` writes it (float32, dynamic
batch), then times batch-1 forward passes of the three runtimes, alternating so that machine noise
hits all of them alike, and prints medians after warm-up, the heatmap difference of each runtime
to JAX, and the machine load.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import torch
from flax import nnx

from configs import default
from interop import to_onnx
from interop.convert import nchw_to_nhwc, nhwc_to_nchw, to_torch
from signlang_jax.inference.restore import load_checkpoint
from signlang_jax.models import create_model
from signlang_jax.models.layers import xla_compiler_options


def load_model(checkpoint: str | None) -> tuple[nnx.Module, object]:
    """(eval-mode Flax model, config): a checkpoint's, or the default config's random one."""
    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        return loaded.model, loaded.config
    config = default.get_config()
    config.model.dtype = "float32"
    model = create_model(config.model, nnx.Rngs(jax.random.key(0, impl="rbg")))
    model.eval()
    return model, config


def onnx_session(twin: torch.nn.Module, size: int, fp16: bool, directory: Path,
                 ) -> ort.InferenceSession:
    """Export the twin as interop.to_onnx does and open it with onnxruntime's CPU provider."""
    module = to_onnx.build_export_module(twin, size, with_keypoints=False, fp16=fp16)
    proto = to_onnx.export_graph(module, size, to_onnx.DEFAULT_OPSET, with_keypoints=False)
    path = directory / f"model{'16' if fp16 else ''}.onnx"
    onnx.save(proto, str(path))
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def main() -> None:
    """Time the runtimes side by side and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=10, help="timed forward passes per runtime")
    parser.add_argument("--checkpoint", default=None, help="a workdir (default: random weights)")
    parser.add_argument("--img-size", type=int, default=512, help="input side (default 512)")
    parser.add_argument("--fp16", action="store_true", help="also time the --fp16 ONNX graph")
    args = parser.parse_args()
    size = args.img_size

    model, config = load_model(args.checkpoint)
    twin = to_torch(model, config.model)
    image = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
    image_nchw = nhwc_to_nchw(image)

    graphdef, state = nnx.split(model)
    jax_forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x),
                          compiler_options=xla_compiler_options())
    image_jax = jnp.asarray(image)

    def run_jax() -> np.ndarray:
        return np.asarray(jax_forward(state, image_jax).block_until_ready())

    def run_torch() -> np.ndarray:
        with torch.inference_mode():
            return nchw_to_nhwc(twin(torch.from_numpy(image_nchw)).numpy())

    with tempfile.TemporaryDirectory() as directory:
        sessions = {"onnxruntime": onnx_session(twin, size, False, Path(directory))}
        if args.fp16:
            sessions["onnxruntime fp16"] = onnx_session(twin, size, True, Path(directory))
        runners = {"JAX jit (XLA:CPU)": run_jax, "torch eager": run_torch}
        for name, session in sessions.items():
            runners[name] = (lambda s=session: nchw_to_nhwc(s.run(None, {"images": image_nchw})[0]))
        reference = run_jax()
        outputs = {name: run() for name, run in runners.items()}  # warm-up (and compile)
        times: dict[str, list[float]] = {name: [] for name in runners}
        load_before = os.getloadavg()
        for _ in range(args.reps):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        load_after = os.getloadavg()

    m = config.model
    print(f"one {size}x{size} image, batch 1: {m.name} width {m.width}, {m.deconv_layers} x "
          f"{m.deconv_filters} deconvs, {'checkpoint' if args.checkpoint else 'random weights'}")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.2f} before / {load_after[0]:.2f} after; jax {jax.__version__}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
          f"{ort.__version__}")
    print(f"  (heatmap peak |JAX| {float(np.abs(reference).max()):.2e}; parity is checked by "
          "interop.to_onnx, the differences here only show that the runtimes agree)")
    order = ["onnxruntime", "onnxruntime fp16", "JAX jit (XLA:CPU)", "torch eager"]
    for name in [n for n in order if n in times]:
        median = statistics.median(times[name]) * 1e3
        diff = float(np.abs(outputs[name] - reference).max())
        print(f"  {name:20s} median {median:7.1f} ms  (min {min(times[name]) * 1e3:7.1f}, "
              f"{args.reps} reps)  max |heatmaps - JAX| {diff:.1e}")


if __name__ == "__main__":
    main()

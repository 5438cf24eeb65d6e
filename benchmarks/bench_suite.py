"""The performance suite: every figure of docs/PERFORMANCE.md, measured side by side in one run.

    python benchmarks/bench_suite.py [--reps 5] [--quick] [--no-write]

Prints a table and rewrites the measured block of docs/PERFORMANCE.md (between the
`<!-- measured -->` markers; the analysis around it is kept). Sections:

- machine: CPU, cores, memory, library versions, load average before and after;
- matmul peak: f32 2048x2048 matmul GFLOP/s of XLA:CPU (and torch), the ceiling for the step;
- train step: our jitted step vs the torch twin trained eagerly the way the original project
  does (host-built float heatmaps, Adam), demo size and 512/128, alternating repetitions; model
  FLOPs counted once on the twin (2 x multiply-adds of every conv, deconv and linear layer,
  train step = 3 x forward) and the achieved fraction of the matmul peak;
- input pipeline: decoded + augmented 512x512 images/s on one core and with every worker;
- training runs: the fraction of wall time the loop waits in next(iterator) (logged by the
  trainer as train/data_wait_fraction) and the peak resident memory of the process tree;
- inference at 512x512: batch-1 latency and batch-8 throughput, JAX jit vs torch eager vs
  onnxruntime on the exported graph;
- bytes per sample crossing host -> device, ours (uint8 image + keypoints) vs the original's
  (float image + float heatmaps + weights).

--quick shrinks everything (tiny images, few reps) to check that the script runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_onnx
import bench_pipeline
import bench_train_step
import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime as ort
import psutil
import torch
from flax import nnx

from configs import default, demo
from interop.convert import nhwc_to_nchw, to_torch
from interop.torch_model import TorchHeatmapModel
from signlang_jax.models.layers import xla_compiler_options

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- measured -->", "<!-- /measured -->"


def median_time(fn: object, reps: int) -> float:
    """Median seconds of `reps` calls of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> dict:
    """CPU model, cores, memory and versions."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return {"cpu": model, "cores": os.cpu_count(),
            "memory_gib": psutil.virtual_memory().total / 2**30,
            "python": platform.python_version(), "jax": jax.__version__,
            "backend": jax.default_backend(), "torch": torch.__version__,
            "onnxruntime": ort.__version__, "load_before": os.getloadavg()[0]}


def matmul_peak(n: int, reps: int) -> dict:
    """f32 n x n matmul GFLOP/s of XLA:CPU and of torch."""
    a = jnp.asarray(np.random.default_rng(0).random((n, n), dtype=np.float32))
    matmul = jax.jit(jnp.matmul)
    jax_s = median_time(lambda: matmul(a, a).block_until_ready(), reps)
    t = torch.from_numpy(np.asarray(a))
    torch_s = median_time(lambda: torch.mm(t, t), reps)
    flops = 2 * n**3
    return {"jax_gflops": flops / jax_s / 1e9, "torch_gflops": flops / torch_s / 1e9}


def forward_flops(config: object) -> float:
    """Model FLOPs of one forward pass for one image: 2 x multiply-adds of conv/deconv/linear."""
    m = config.model
    twin = TorchHeatmapModel(m.name, m.width, m.num_keypoints, m.deconv_layers,
                             m.deconv_filters, m.deconv_kernel, m.final_kernel).eval()
    macs = []

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.ConvTranspose2d):  # every input pixel scatters k*k*Cout
            macs.append(inputs[0].numel() * module.out_channels * np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Conv2d):
            macs.append(output.numel() * module.in_channels // module.groups
                        * np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            macs.append(output.numel() * module.in_features)

    hooks = [mod.register_forward_hook(count) for mod in twin.modules()
             if isinstance(mod, torch.nn.Conv2d | torch.nn.ConvTranspose2d | torch.nn.Linear)]
    size = config.data.image_size
    with torch.inference_mode():
        twin(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return 2.0 * float(sum(macs))


def train_steps(configs: dict, reps: int, peak_gflops: float) -> list[dict]:
    """Train-step images/s of both frameworks per config, and achieved FLOP/s."""
    rows = []
    for label, config in configs.items():
        jax_rate, torch_rate = bench_train_step.compare(label, config, reps)
        flops = 3 * forward_flops(config)  # forward + backward (2x forward)
        rows.append({"config": label, "batch": config.train.batch_size,
                     "jax_img_s": jax_rate, "torch_img_s": torch_rate,
                     "ratio": jax_rate / torch_rate, "train_gflop_per_img": flops / 1e9,
                     "jax_gflops": flops * jax_rate / 1e9,
                     "torch_gflops": flops * torch_rate / 1e9,
                     "jax_peak_fraction": flops * jax_rate / 1e9 / peak_gflops})
    return rows


def pipeline(root: str, size: int, num: int) -> dict:
    """Images/s of the worker's per-sample work on one core, and of the real pipeline."""
    config = default.get_config()
    config.data.root = root
    config.data.image_size = size
    config.data.val_fraction = 0.0
    config.train.batch_size = 16
    workers = os.cpu_count() or 1
    one = bench_pipeline.per_worker_rate(config, num)
    every = bench_pipeline.pipeline_rate(config, num, workers)
    return {"size": size, "per_worker": one, "all_workers": every, "workers": workers}


def training_run(label: str, config_file: str, data_root: str, overrides: list[str],
                 workdir: Path) -> dict:
    """Run `signlang_jax.main` in a subprocess; data-wait fraction and peak tree RSS."""
    cmd = [sys.executable, "-m", "signlang_jax.main", "--config", config_file, "--workdir",
           str(workdir), f"--config.data.root={data_root}", *overrides]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    parent = psutil.Process(proc.pid)
    peak_tree = peak_main = 0
    start = time.perf_counter()
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            rss = [p.memory_info().rss for p in tree if p.is_running()]
            peak_tree = max(peak_tree, sum(rss))
            peak_main = max(peak_main, rss[0])
        except psutil.Error:
            pass
        time.sleep(0.1)
    output = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"training run {label} failed:\n{output[-3000:]}")
    wall = time.perf_counter() - start
    logs = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in logs if "train/data_wait_fraction" in r]
    steady = windows[1:] or windows  # the first window includes compilation
    return {"run": label, "steps": windows[-1]["step"], "wall_s": wall,
            "data_wait_fraction": statistics.mean(r["train/data_wait_fraction"] for r in steady),
            "max_window_wait": max(r["train/data_wait_fraction"] for r in steady),
            "img_s": statistics.mean(r["train/images_per_sec"] for r in steady),
            "peak_rss_tree_gib": peak_tree / 2**30, "peak_rss_main_gib": peak_main / 2**30}


def inference(size: int, reps: int, batch: int) -> list[dict]:
    """Batch-1 latency and batch-`batch` throughput of JAX, torch eager and onnxruntime."""
    model, config = bench_onnx.load_model(None)
    twin = to_torch(model, config.model)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x),
                      compiler_options=xla_compiler_options())
    rows = {name: {"runtime": name} for name in ("JAX jit", "torch eager", "onnxruntime")}
    with tempfile.TemporaryDirectory() as directory:
        session = bench_onnx.onnx_session(twin, size, False, Path(directory))
        for n, key in ((1, "latency_ms"), (batch, "throughput_img_s")):
            image = np.random.default_rng(0).random((n, size, size, 3), dtype=np.float32)
            image_jax, image_nchw = jnp.asarray(image), nhwc_to_nchw(image)
            torch_image = torch.from_numpy(image_nchw)

            def run_torch(x: torch.Tensor = torch_image) -> None:
                with torch.inference_mode():
                    twin(x)

            runners = {
                "JAX jit": lambda x=image_jax: forward(state, x).block_until_ready(),
                "torch eager": run_torch,
                "onnxruntime": lambda x=image_nchw: session.run(None, {"images": x}),
            }
            for run in runners.values():
                run()  # warm-up / compile
            times: dict[str, list[float]] = {name: [] for name in runners}
            for _ in range(reps):  # alternate so that noise hits every runtime alike
                for name, run in runners.items():
                    start = time.perf_counter()
                    run()
                    times[name].append(time.perf_counter() - start)
            for name, values in times.items():
                seconds = statistics.median(values)
                rows[name][key] = seconds * 1e3 if n == 1 else n / seconds
    return list(rows.values())


def transfer_bytes(size: int, heatmap_size: int, keypoints: int) -> dict:
    """Bytes per sample host -> device: ours vs host-built float image + heatmaps + weights."""
    ours = size * size * 3 + keypoints * 3 * 4  # uint8 image + float32 (x, y, weight)
    original = size * size * 3 * 4 + keypoints * heatmap_size * heatmap_size * 4 + keypoints * 4
    return {"size": size, "ours": ours, "original": original, "ratio": original / ours}


def render(results: dict) -> str:
    """The measured block of docs/PERFORMANCE.md as Markdown."""
    m = results["machine"]
    peak = results["matmul"]
    lines = [
        f"Measured {results['date']} by `python benchmarks/bench_suite.py` "
        f"({'quick' if results['quick'] else 'full'} run, {results['reps']} repetitions, "
        "medians after warm-up).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB; Python "
        f"{m['python']}, jax {m['jax']} ({m['backend']}), torch {m['torch']}, onnxruntime "
        f"{m['onnxruntime']}; load average {m['load_before']:.2f} before, "
        f"{m['load_after']:.2f} after.",
        f"- Matmul peak (f32 2048x2048): XLA:CPU {peak['jax_gflops']:.0f} GFLOP/s, torch "
        f"{peak['torch_gflops']:.0f} GFLOP/s.",
        "",
        "### Train step (ours jitted vs the torch twin trained eagerly, same batch and size)",
        "",
        "| config | batch | JAX img/s | torch img/s | ratio | GFLOP/img (train) | "
        "JAX GFLOP/s | fraction of matmul peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["train_step"]:
        lines.append(f"| {r['config']} | {r['batch']} | {r['jax_img_s']:.2f} | "
                     f"{r['torch_img_s']:.2f} | **{r['ratio']:.2f}** | "
                     f"{r['train_gflop_per_img']:.2f} | {r['jax_gflops']:.0f} | "
                     f"{r['jax_peak_fraction']:.0%} |")
    p = results["pipeline"]
    lines += [
        "",
        "### Input pipeline",
        "",
        f"- Decode + augment at {p['size']}x{p['size']}: {p['per_worker']:.0f} images/s on one "
        f"core, {p['all_workers']:.0f} images/s through grain with {p['workers']} workers.",
        "",
        "| training run | steps | img/s | data wait (mean of windows) | worst window | "
        "peak RSS, all processes | peak RSS, trainer |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["training_runs"]:
        lines.append(f"| {r['run']} | {r['steps']} | {r['img_s']:.1f} | "
                     f"**{r['data_wait_fraction']:.1%}** | {r['max_window_wait']:.1%} | "
                     f"{r['peak_rss_tree_gib']:.2f} GiB | {r['peak_rss_main_gib']:.2f} GiB |")
    size = results["inference_size"]
    lines += [
        "",
        f"### Inference, {size}x{size}, default model (ResNet-18 + 3 x 256 deconvs)",
        "",
        f"| runtime | batch 1 latency | batch {results['inference_batch']} throughput |",
        "|---|---|---|",
    ]
    for r in results["inference"]:
        lines.append(f"| {r['runtime']} | {r['latency_ms']:.0f} ms | "
                     f"{r['throughput_img_s']:.2f} img/s |")
    b = results["transfer"]
    lines += [
        "",
        f"### Host -> device bytes per sample ({b['size']}x{b['size']})",
        "",
        f"- Ours (uint8 image + keypoints; heatmaps rendered on the device): {b['ours']:,} B.",
        f"- Original (float32 image + float32 heatmaps + weights): {b['original']:,} B "
        f"({b['ratio']:.1f}x more).",
    ]
    return "\n".join(lines)


def write_doc(block: str, path: Path = DOC) -> None:
    """Replace the measured block of docs/PERFORMANCE.md (create the file if missing)."""
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def main() -> None:
    """Run every section, print the table, write docs/PERFORMANCE.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    reps = 2 if args.quick else args.reps
    results: dict = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "reps": reps,
                     "machine": machine()}
    results["matmul"] = matmul_peak(512 if args.quick else 2048, reps * 2)
    print(f"matmul peak: {results['matmul']}", flush=True)

    full = default.get_config()
    full.train.batch_size = 4
    small = demo.get_config()
    if args.quick:
        for config in (full, small):
            config.data.image_size, config.model.heatmap_size = 64, 16
            config.model.width, config.model.deconv_filters = 8, 16
            config.train.batch_size = 4
    configs = {"demo (128 px, R18 width 32)": small, "default (512 px, R18 width 64)": full}
    results["train_step"] = train_steps(configs, reps, results["matmul"]["jax_gflops"])

    size = 64 if args.quick else 512
    with tempfile.TemporaryDirectory() as tmp:
        from signlang_jax.synth import generate_dataset

        data512 = os.path.join(tmp, "data512")
        generate_dataset(data512, 40 if args.quick else 200, seed=0, size=size)
        results["pipeline"] = pipeline(data512, size, 40 if args.quick else 400)
        print(f"pipeline: {results['pipeline']}", flush=True)

        data256 = os.path.join(tmp, "data256")
        generate_dataset(data256, 64 if args.quick else 400, seed=0, size=256)
        steps = 6 if args.quick else 100
        demo_run = [f"--config.train.num_steps={steps}",
                    f"--config.train.log_every_steps={2 if args.quick else 10}",
                    f"--config.train.eval_every_steps={steps}",
                    f"--config.train.checkpoint_every_steps={steps}"]
        if args.quick:
            demo_run += ["--config.data.image_size=64", "--config.model.heatmap_size=16",
                         "--config.model.width=8"]
        steps512 = 4 if args.quick else 12
        run512 = ["--config.train.batch_size=4", f"--config.train.num_steps={steps512}",
                  "--config.train.log_every_steps=2",
                  f"--config.train.eval_every_steps={steps512}",
                  f"--config.train.checkpoint_every_steps={steps512}",
                  "--config.data.val_fraction=0.02"]
        if args.quick:
            run512 += ["--config.data.image_size=64", "--config.model.heatmap_size=16",
                       "--config.model.width=8"]
        results["training_runs"] = [
            training_run("configs/demo.py (1 worker)", "configs/demo.py", data256, demo_run,
                         Path(tmp) / "run_demo"),
            training_run(f"configs/default.py at {size}, batch 4 (2 workers)",
                         "configs/default.py", data512, run512, Path(tmp) / "run_512"),
        ]
        print(f"training runs: {results['training_runs']}", flush=True)

    results["inference_size"], results["inference_batch"] = (64 if args.quick else 512), 8
    results["inference"] = inference(results["inference_size"], reps, 8)
    print(f"inference: {results['inference']}", flush=True)
    results["transfer"] = transfer_bytes(512, 128, 64)
    results["machine"]["load_after"] = os.getloadavg()[0]
    block = render(results)
    print("\n" + block)
    if not args.no_write:
        write_doc(block)
        print(f"\nwrote {DOC}")


if __name__ == "__main__":
    main()

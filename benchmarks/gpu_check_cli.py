"""gpu_check section (e): the evaluate and to_onnx command lines on the training run's workdir."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from gpu_check_common import ROOT, Check

# ----------------------------------------------------------------------------- (e) CLIs


def child_env(cpu: bool) -> dict[str, str]:
    """Environment of the CLI subprocesses: repo on the path, GPU memory taken on demand."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    # This process holds a share of the GPU; a child preallocating 75 % more would fail.
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    if cpu:
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_cli(args: list[str], env: dict[str, str], log: Path, timeout: float
            ) -> tuple[int, str]:
    """Run `python -m ...args` from the repo root; save its output to log; (exit code, stdout)."""
    try:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log.write_text(f"timed out after {timeout} s\n{e.stdout or ''}\n{e.stderr or ''}")
        return -1, ""
    log.write_text(f"$ python -m {' '.join(args)}\nexit {proc.returncode}\n--- stdout\n"
                   f"{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc.returncode, proc.stdout


def check_evaluate(workdir: Path, env: dict[str, str], timeout: float) -> list[Check]:
    """`python -m signlang_jax.evaluate --checkpoint WORKDIR` (best step): exit code, PCK."""
    out = workdir / "eval"
    log = workdir.parent / "evaluate.log"
    code, _ = run_cli(["signlang_jax.evaluate", "--checkpoint", str(workdir), "--out", str(out)],
                      env, log, timeout)
    metrics_path = out / "metrics.json"
    if code != 0 or not metrics_path.exists():
        return [Check("CLI: signlang_jax.evaluate --checkpoint WORKDIR", f"exit {code}, see {log}",
                      "exit 0, metrics.json written", False)]
    metrics = json.loads(metrics_path.read_text())
    value = (f"exit 0, step {metrics['step']}, {metrics['num_images']} images, PCK@0.1 "
             f"{metrics['pck@0.1']['all']:.3f}, heatmap MSE {metrics['heatmap_mse']:.3e}")
    return [Check("CLI: signlang_jax.evaluate --checkpoint WORKDIR", value,
                  "exit 0, metrics.json written", True)]


PARITY_LINE = re.compile(r"max abs heatmap difference (\S+) \(tolerance (\S+)\)")


def check_onnx(workdir: Path, env: dict[str, str], timeout: float) -> list[Check]:
    """`python -m interop.to_onnx --checkpoint WORKDIR:latest`: exit code and printed parity."""
    output = workdir.parent / "model.onnx"
    log = workdir.parent / "to_onnx.log"
    code, stdout = run_cli(["interop.to_onnx", "--checkpoint", f"{workdir}:latest", "--output",
                            str(output)], env, log, timeout)
    match = PARITY_LINE.search(stdout)
    name = "CLI: interop.to_onnx --checkpoint WORKDIR:latest"
    criterion = "exit 0, printed onnxruntime-vs-JAX max abs diff <= its tolerance"
    if code != 0 or match is None:
        return [Check(name, f"exit {code}, see {log}", criterion, False)]
    diff, tolerance = float(match.group(1)), float(match.group(2))
    size = output.stat().st_size / 1e6 if output.exists() else 0.0
    return [Check(name, f"exit 0, {size:.1f} MB, max abs heatmap diff {diff:.2e} (tolerance "
                  f"{tolerance:.0e})", criterion, output.exists() and diff <= tolerance)]

"""benchmarks/gpu_check.py: the CPU smoke run passes every check; no GPU without --cpu exits 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import gpu_check  # noqa: E402  (benchmarks/ is not a package)
import gpu_check_numerics  # noqa: E402
import gpu_check_train  # noqa: E402

# One row prefix per check the script must report (the grad rows: one per module group).
EXPECTED_ROWS = (
    "synthetic data rendered",
    "deconv lax vs subpixel_matmul, k=4", "deconv lax vs subpixel_matmul, k=3",
    "deconv lax vs subpixel_matmul, k=2", "deconv lax vs subpixel_conv, k=4",
    "deconv lax vs subpixel_conv, k=3", "deconv lax vs subpixel_conv, k=2",
    "bf16 vs f32: loss, one step",
    "bf16 vs f32: grad backbone.conv1", "bf16 vs f32: grad backbone.bn1",
    "bf16 vs f32: grad backbone.layer1", "bf16 vs f32: grad backbone.layer2",
    "bf16 vs f32: grad backbone.layer3", "bf16 vs f32: grad backbone.layer4",
    "bf16 vs f32: grad head.deconv_layers", "bf16 vs f32: grad head.final_layer",
    "train: compute dtype (model.dtype=auto)", "train: train_and_evaluate, 16 steps, batch 4",
    "train: loss falls", "CLI: signlang_jax.evaluate --checkpoint WORKDIR",
    "CLI: interop.to_onnx --checkpoint WORKDIR:latest", "bf16 matmul 256^3, measured",
    "train step speed, batch 4,", "train step speed, batch 8,",
    "input pipeline, 2 workers,",
)  # fmt: skip


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    env.update(extra)
    return env


def _table_rows(text: str) -> dict[str, str]:
    """{check name: result} from the markdown table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if len(cells) == 5 and cells[0].isdigit():
            rows[cells[1]] = cells[4]
    return rows


@pytest.mark.timeout(400)
def test_cpu_smoke_run_passes_every_check(tmp_path):
    out = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--workdir", str(tmp_path / "w"),
                           "--out", str(out)], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=380)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = _table_rows(out.read_text())
    assert len(rows) == len(EXPECTED_ROWS), sorted(rows)
    for prefix in EXPECTED_ROWS:
        matching = [name for name in rows if name.startswith(prefix)]
        assert len(matching) == 1, (prefix, sorted(rows))
        assert rows[matching[0]] == "pass", (matching[0], out.read_text())
    assert f"{len(EXPECTED_ROWS)}/{len(EXPECTED_ROWS)} passed" in proc.stdout
    assert (tmp_path / "w" / "model.onnx").is_file()


def test_without_gpu_or_cpu_flag_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--workdir", str(tmp_path)], cwd=ROOT,
                          env=_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no GPU" in proc.stderr and "--cpu" in proc.stderr
    assert not (tmp_path / "gpu_check.md").exists()


def test_loss_fall_compares_quarter_means():
    falling = [(s, 1.0) for s in range(1, 5)] + [(s, 0.5) for s in range(5, 13)] + [
        (s, 0.85) for s in range(13, 17)]
    check = gpu_check_train.loss_fall(falling, ratio=0.9)
    assert check.passed and "ratio 0.850" in check.value and "steps 1-4" in check.value
    flat = [(s, 1.0) for s in range(1, 5)] + [(s, 0.95) for s in range(5, 17)]
    assert not gpu_check_train.loss_fall(flat, ratio=0.9).passed  # 0.95 > 0.9
    assert not gpu_check_train.loss_fall([(1, 1.0)]).passed  # one point cannot show a fall
    nan = [(1, 1.0), (2, 1.0), (3, float("nan")), (4, float("nan"))]
    assert not gpu_check_train.loss_fall(nan).passed


def test_table_marks_failures_and_counts():
    checks = [gpu_check.Check("a", "1 | 2", "x", True), gpu_check.Check("b", "3", "y", False)]
    table = gpu_check.format_table(checks, ["# title"])
    assert "| 1 | a | 1 \\| 2 | x | pass |" in table  # escaped: a bare '|' would split the cell
    assert _table_rows(table) == {"a": "pass", "b": "**FAIL**"}
    assert "| 2 | b | 3 | y | **FAIL** |" in table
    assert table.rstrip().endswith("1/2 passed, 1 FAILED")


def test_grad_error_is_relative_l2():
    import numpy as np

    ref = np.array([3.0, 4.0])
    assert gpu_check_numerics.relative_l2(ref, ref) == 0.0
    assert gpu_check_numerics.relative_l2(np.array([3.0, 5.0]), ref) == pytest.approx(0.2)
    assert gpu_check_numerics.relative_l2(ref, np.zeros(2)) == float("inf")


def test_grad_check_passes_at_the_floor_and_fails_far_above_it():
    import numpy as np

    ref = np.ones(100)
    floor_noise = [ref + 0.1 * np.sign(np.arange(100) % 2 - 0.5) for _ in range(3)]  # err 0.1
    # err 0.2 <= 3 x 0.1 + 0.02
    near = gpu_check_numerics.grad_check("m", ref * 1.2, ref, floor_noise)
    assert near.passed and "rel L2 err 0.200 (floor 0.100)" in near.value
    assert "= 0.320" in near.criterion
    far = gpu_check_numerics.grad_check("m", ref * 1.4, ref, floor_noise)  # err 0.4 > 0.32
    assert not far.passed
    # A well-conditioned module (floor 0) still allows bf16's own rounding, not more.
    assert gpu_check_numerics.grad_check("m", ref * 1.01, ref, [ref]).passed
    assert not gpu_check_numerics.grad_check("m", ref * 1.05, ref, [ref]).passed

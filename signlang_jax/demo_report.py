"""What `make demo` made, where it is, and its headline figures.

`python -m signlang_jax.demo_report` prints the demo's last lines: the files (overlay, the
evaluation report and its pictures, the two ONNX files, the TensorBoard logs), the figures of
the run, and the next command to try. `benchmarks/readme_figures.py` writes the README's
generated figure blocks from the same functions, so the README and a fresh demo agree: the
evaluation table is exactly what `python -m signlang_jax.evaluate` printed, the parity figures
are what `python -m interop.to_onnx` recorded beside each ONNX file (`MODEL.onnx.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
from pathlib import Path

from signlang_jax.evaluation.report import format_hand_table, format_table

START_FILE = ".demo_start"  # `make demo` writes the time it started here (seconds since 1970)


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """The figures one `make demo` left in its folders (None where a step has not run)."""

    demo: Path
    hand: Path
    metrics: dict | None  # DEMO/eval/metrics.json
    body_parity: dict | None  # DEMO/model.onnx.json
    hand_parity: dict | None  # DEMO/hand.onnx.json
    body_training: dict | None  # from DEMO/metrics.jsonl
    hand_training: dict | None
    started: float | None  # seconds since 1970, from DEMO/.demo_start


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def training_stats(workdir: Path) -> dict | None:
    """Steps trained and the median train images/s of a run's metrics.jsonl (None: no run)."""
    try:
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    rows = [json.loads(line) for line in lines if line.strip()]
    speeds = sorted(r["train/images_per_sec"] for r in rows if "train/images_per_sec" in r)
    steps = max((r.get("step", 0) for r in rows), default=0)
    return {"steps": steps, "images_per_sec": speeds[len(speeds) // 2] if speeds else None}


def load_run(demo: Path, hand: Path) -> DemoRun:
    """Everything a demo run left in `demo` and `hand` (missing parts are None)."""
    start = demo / START_FILE
    try:
        started: float | None = float(start.read_text().strip())
    except (OSError, ValueError):
        started = None
    return DemoRun(demo, hand, _json(demo / "eval" / "metrics.json"),
                   _json(demo / "model.onnx.json"), _json(demo / "hand.onnx.json"),
                   training_stats(demo), training_stats(hand), started)


def eval_block(metrics: dict) -> str:
    """The evaluation tables exactly as `python -m signlang_jax.evaluate` prints them."""
    return format_table(metrics) + "\n" + format_hand_table(metrics["hands"])


def headline(metrics: dict) -> str:
    """One sentence of the figures that matter most: PCK overall and per part, hands with and
    without the hand stage."""
    pck = metrics["pck@0.1"]
    text = (f"val PCK@0.1 {pck['all']:.3f} (body {pck['body']:.3f}, left hand "
            f"{pck['left_hand']:.3f}, right hand {pck['right_hand']:.3f}, face "
            f"{pck['face']:.3f}) on {metrics['num_images']} images, step {metrics['step']}")
    hands = metrics.get("hands", {})
    if "body_plus_hand_stage" in hands and "body_model" in hands:
        both, alone = hands["body_plus_hand_stage"]["hands"], hands["body_model"]["hands"]
        text += (f"; hands with the hand stage: PCK@0.05 {both['pck@0.05']:.3f} (body model "
                 f"alone {alone['pck@0.05']:.3f}), own-box PCK@0.2 "
                 f"{both['pck@0.2_own_box']:.3f} ({alone['pck@0.2_own_box']:.3f})")
    return text


def parity_text(body: dict | None, hand: dict | None) -> str:
    """onnxruntime against JAX, as the exports recorded it."""
    parts = []
    for name, record in (("body", body), ("hand", hand)):
        if record is not None:
            parts.append(f"{name} {record['max_abs_diff']:.2e} (keypoints identical "
                         f"{record['keypoints_equal']}/{record['keypoints_total']})")
    return "onnxruntime vs JAX, max abs heatmap difference: " + ", ".join(parts)


def machine() -> str:
    """This machine, in the words timings are labelled with."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs"


def timing_text(run: DemoRun, finished: float | None = None) -> str:
    """Training speeds and (when `make demo` recorded its start) the whole demo's time."""
    parts = []
    for name, stats in (("body", run.body_training), ("hand", run.hand_training)):
        if stats and stats["images_per_sec"]:
            parts.append(f"{name} model {stats['steps']} steps at "
                         f"{stats['images_per_sec']:.0f} images/s")
    if run.started is not None and finished is not None:
        minutes, seconds = divmod(round(finished - run.started), 60)
        parts.append(f"`make demo` after its setup {minutes} min {seconds} s")
    return "; ".join(parts) + f" (on {machine()})"


def summary(run: DemoRun, finished: float | None = None) -> str:
    """The demo's last lines: what was made and where, the figures, what to try next."""
    d, h, py = run.demo, run.hand, ".venv/bin/python"
    lines = ["", "== make demo: done ==", "made:",
             f"  prediction on a held-out image   {d / 'overlay.jpg'} (and its .json)",
             f"  evaluation report and pictures   {d / 'eval'}/ (metrics.json, "
             "pck_per_keypoint.png, worst.jpg: the worst images, truth vs prediction)",
             f"  ONNX models                      {d / 'model.onnx'}, {d / 'hand.onnx'}",
             f"  checkpoints                      {d / 'checkpoints'}/, {h / 'checkpoints'}/",
             f"  training curves                  tensorboard --logdir {d.parent} (pip install "
             f"tensorboard), or {d / 'metrics.jsonl'}"]
    if run.metrics is not None:
        lines += ["figures:", f"  {headline(run.metrics)}"]
    if run.body_parity is not None or run.hand_parity is not None:
        lines.append(f"  {parity_text(run.body_parity, run.hand_parity)}")
    lines.append(f"  {timing_text(run, finished)}")
    lines += ["next: render a signing clip and turn it into keypoints (.npz, with an overlay):",
              f"  {py} -m signlang_jax.synth.clips --out runs/clips --num 1 --seed 3",
              f"  {py} -m signlang_jax.video runs/clips/clip_0000/video.mp4 --out runs/keypoints "
              f"--onnx {d / 'model.onnx'} --hand-onnx {d / 'hand.onnx'} --overlay",
              "  then open runs/keypoints/video.overlay.mp4; docs/VIDEO.md explains the output"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of a demo run; 1 if its evaluation is missing."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.demo_report",
        description="Say what `make demo` made and where, its headline figures and the next "
        "command to try (the last lines of make demo).")
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"),
                        help="the body model's workdir (default %(default)s)")
    parser.add_argument("--hand", type=Path, default=Path("runs/demo_hand"),
                        help="the hand model's workdir (default %(default)s)")
    args = parser.parse_args(argv)
    run = load_run(args.demo, args.hand)
    now = datetime.datetime.now(datetime.UTC).timestamp()
    print(summary(run, now))
    if run.metrics is None:
        print(f"ERROR {args.demo / 'eval' / 'metrics.json'}: no evaluation yet (run make demo)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# ----------------------------------------------------------------------------- README blocks
# A generated block is the text between "<!-- figures:NAME -->" and "<!-- /figures:NAME -->",
# each marker on a line of its own (benchmarks/readme_figures.py writes them).
DETERMINISTIC_BLOCKS = ("demo-eval", "demo-headline")  # the same digits from every fresh run
TIMING_BLOCKS = ("demo-timing",)  # labelled with the machine they were measured on


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- figures:{name} -->", f"<!-- /figures:{name} -->"


def read_block(text: str, name: str) -> str:
    """The body of block `name` in `text`; ValueError if the block is missing or unclosed."""
    start, end = _markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise ValueError(f"figure block {name!r}: expected one {start} ... {end} pair")
    return text[text.index(start) + len(start):text.index(end)].strip("\n")


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with block `name`'s body replaced by `body`."""
    read_block(text, name)  # it exists, once
    start, end = _markers(name)
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def blocks(run: DemoRun, finished: float | None) -> dict[str, str]:
    """The README's generated blocks of a demo run (those whose figures it has)."""
    out = {}
    if run.metrics is not None:
        out["demo-eval"] = f"```\n{eval_block(run.metrics)}\n```"
        headline_text = headline(run.metrics)
        if run.body_parity is not None or run.hand_parity is not None:
            headline_text += "; " + parity_text(run.body_parity, run.hand_parity)
        out["demo-headline"] = headline_text[0].upper() + headline_text[1:] + "."
    out["demo-timing"] = f"Last measured: {timing_text(run, finished)}."
    return out

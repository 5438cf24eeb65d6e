"""A corpus past one process: shards side by side, a killed shard resumed, the Ray runner.

    PYTHONPATH=. python benchmarks/corpus.py --body-onnx runs/demo/model.onnx \
        --hand-onnx runs/demo/hand.onnx [--num 200] [--root runs/corpus] [--json FILE]

Renders `--num` short synthetic clips (320x180, 1 s at 25 fps, seed 11) into a nested corpus
whose leaves share their name - `corpus/sNN/tN/1.mp4`, as PHOENIX-2014 names every video `1` -
then runs the video job (demo pair through onnxruntime, the job's defaults, `--threads 1`
everywhere so outputs can be compared bitwise) five ways, each as its own process(es):

1. one local process over the whole corpus (the reference, and frames/s per worker);
2. `--shard 0/2` and `--shard 1/2` side by side: every clip must be done exactly once (by the
   manifests) and equal the reference bitwise; the scaling from 1 to 2 workers;
3. shard 0/2 killed (SIGKILL) after a third of its clips, then run again: it must finish from
   the manifest without redoing what was done, outputs equal to the reference;
4. the Ray runner on a local 2-worker cluster (`--ray local --workers 2`): outputs equal to the
   reference, and its overhead against the two plain shards;
5. the manifest summary command on the Ray run.

This machine has 2 cores: two workers is the most that can scale here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from signlang_jax.data.sequence_files import read_npz
from signlang_jax.synth.clips import clip_dir, generate_clips
from signlang_jax.video.manifest import read_manifest, summary

SEED, WIDTH, HEIGHT, FRAMES, FPS = 11, 320, 180, 25, 25.0


def render_corpus(root: Path, num: int) -> Path:
    """`num` clips as root/corpus/sNN/tN/1.mp4 (same-named leaves); the corpus folder."""
    corpus = root / "corpus"
    if corpus.is_dir() and len(list(corpus.rglob("*.mp4"))) == num:
        return corpus
    shutil.rmtree(root, ignore_errors=True)
    generate_clips(root / "rendered", num, SEED, WIDTH, HEIGHT, FRAMES, FPS)
    for i in range(num):
        leaf = corpus / f"s{i // 10:02d}" / f"t{i % 10}" / "1.mp4"
        leaf.parent.mkdir(parents=True, exist_ok=True)
        (clip_dir(root / "rendered", i) / "video.mp4").rename(leaf)
    shutil.rmtree(root / "rendered")
    return corpus


def job(corpus: Path, out: Path, model: list[str], *extra: str) -> list[str]:
    """The command line of one video-job process."""
    return [sys.executable, "-m", "signlang_jax.video", str(corpus), "--out", str(out), *model,
            "--threads", "1", *extra]


def timed(*commands: list[str]) -> float:
    """Run the commands side by side; seconds until the last ends (each must succeed)."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for c in commands]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"exit codes {codes} of {commands}")
    return time.perf_counter() - start


def same_outputs(a: Path, b: Path, names: list[str]) -> bool:
    """Whether every NAME.npz of `a` equals `b`'s bitwise (keypoints and time stamps)."""
    for name in names:
        x, y = read_npz(a / f"{name}.npz"), read_npz(b / f"{name}.npz")
        if not (np.array_equal(x.keypoints, y.keypoints)
                and np.array_equal(x.timestamps, y.timestamps)):
            return False
    return True


def manifest_lines(out: Path) -> list[dict]:
    """Every line of every manifest file of `out` (not merged)."""
    return [json.loads(line) for path in sorted((out / "manifest").glob("*.jsonl"))
            for line in path.read_text().splitlines() if line.strip()]


def killed_and_resumed(corpus: Path, out: Path, model: list[str], after: int) -> dict:
    """Shard 0/2 killed once `after` clips are recorded, then run again to the end."""
    proc = subprocess.Popen(job(corpus, out, model, "--shard", "0/2"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest" / "shard-0-of-2.jsonl"
    while proc.poll() is None:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    before = len(manifest_lines(out))
    seconds = timed(job(corpus, out, model, "--shard", "0/2"))
    lines = manifest_lines(out)
    names = [r["input"] for r in lines]
    return {"recorded_before_kill": before, "rerun_seconds": round(seconds, 1),
            "done_after_resume": len(set(names)), "redone": len(names) - len(set(names))}


def main() -> int:
    """Render the corpus, run the job the five ways, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--body-onnx", required=True)
    parser.add_argument("--hand-onnx", required=True)
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--root", type=Path, default=Path("runs/corpus"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    corpus = render_corpus(args.root, args.num)
    model = ["--onnx", args.body_onnx, "--hand-onnx", args.hand_onnx]
    outs = {k: args.root / k for k in ("one", "shards", "killed", "ray")}
    for out in outs.values():
        shutil.rmtree(out, ignore_errors=True)
    one = timed(job(corpus, outs["one"], model))
    names = sorted(read_manifest(outs["one"]))
    frames = sum(r["frames"] for r in read_manifest(outs["one"]).values())
    shards = timed(job(corpus, outs["shards"], model, "--shard", "0/2"),
                   job(corpus, outs["shards"], model, "--shard", "1/2"))
    lines = manifest_lines(outs["shards"])
    once = sorted(r["input"] for r in lines) == names
    in_shard_zero = sum(r["shard"] == "0/2" for r in lines)
    killed = killed_and_resumed(corpus, outs["killed"], model, max(1, in_shard_zero // 3))
    killed_names = sorted({r["input"] for r in manifest_lines(outs["killed"])})
    start, started = time.perf_counter(), datetime.datetime.now(datetime.UTC)
    ray_code = subprocess.call(job(corpus, outs["ray"], model, "--ray", "local", "--workers",
                                   "2"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ray_seconds = time.perf_counter() - start
    first = min(datetime.datetime.fromisoformat(r["finished"])
                for r in manifest_lines(outs["ray"]))
    result = {
        "clips": len(names), "frames": frames,
        "one_process": {"seconds": round(one, 1), "frames_per_second": round(frames / one, 1)},
        "two_shards": {"seconds": round(shards, 1), "frames_per_second": round(frames / shards, 1),
                       "speedup": round(one / shards, 2), "every_clip_once": once,
                       "clips_per_shard": [in_shard_zero, len(lines) - in_shard_zero],
                       "equal_to_one_process": same_outputs(outs["one"], outs["shards"], names)},
        "killed_shard": {**killed, "equal_to_one_process": same_outputs(
            outs["one"], outs["killed"], killed_names)},
        "ray_2_workers": {"exit_code": ray_code, "seconds": round(ray_seconds, 1),
                          "frames_per_second": round(frames / ray_seconds, 1),
                          "against_two_shards": round(shards / ray_seconds, 2),
                          # cluster start, actors and models loaded, first clip run
                          "seconds_to_first_clip": round((first - started).total_seconds(), 1),
                          "equal_to_one_process": same_outputs(outs["one"], outs["ray"], names)},
        "summary": summary(read_manifest(outs["ray"]))["all"],
        "machine": f"{os.cpu_count()} CPUs",
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

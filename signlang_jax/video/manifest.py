"""A corpus run's record: which inputs are done or failed, by which worker, model and settings.

`python -m signlang_jax.video` appends one JSON line per input, when it finishes or fails, to
`DIR/manifest/shard-K-of-N.jsonl` (`shard-0-of-1.jsonl` without `--shard`): each worker its own
file, so many workers on a shared file system never write the same file, and each line goes out
in one `write` followed by `fsync`. Reading merges every file of the folder; for an input seen
more than once (a re-run) its latest line counts. A line cut short by a killed worker is
skipped with a warning naming the file and line (that input is simply not done yet).

`python -m signlang_jax.video.manifest DIR` prints the summary: inputs done and failed (with
the reasons), frames, hours of video, processing time and throughput, per shard and in all.

Shards (`--shard K/N`): an input belongs to shard `int(sha256(name)) mod N`, where `name` is
its output name (its path relative to the folder or glob root it was found under, as the outputs
mirror it). The assignment depends on the name alone - not on the listing order, the machine or
the other inputs - so N workers given the same inputs cover each exactly once without talking
to each other (a SLURM array: `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

MANIFEST_DIR = "manifest"
STATUSES = ("done", "failed")


def parse_shard(text: str) -> tuple[int, int]:
    """(K, N) from "K/N" with 0 <= K < N; ValueError says what is expected."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 0/4 (shard K of N, from 0)"
                         ) from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: expected 0 <= K < N (K counts from 0, as "
                         "SLURM_ARRAY_TASK_ID does with --array=0-(N-1))")
    return index, count


def shard_of(name: str, count: int) -> int:
    """The shard (0 .. count-1) of the input with output name `name`."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def file_digest(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file (the model files a manifest line names)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def shard_file(out: Path, shard: tuple[int, int]) -> Path:
    """DIR/manifest/shard-K-of-N.jsonl: the one file a worker appends to."""
    return out / MANIFEST_DIR / f"shard-{shard[0]}-of-{shard[1]}.jsonl"


def append_record(path: Path, record: dict) -> None:
    """Append one line to a manifest file: one write, then fsync (a kill loses only it). After
    a line cut short by a kill, the new line starts on a line of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_record(name: str, source: str, status: str, *, outputs: Iterable[str] = (),
                error: str | None = None, frames: int = 0, video_seconds: float = 0.0,
                seconds: float = 0.0, shard: tuple[int, int] = (0, 1), model: dict | None = None,
                settings: dict | None = None) -> dict:
    """One manifest line: the input, what became of it, and what made it."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r}; expected one of {STATUSES}")
    return {"input": name, "source": source, "status": status, "error": error,
            "outputs": list(outputs), "frames": int(frames),
            "video_seconds": round(float(video_seconds), 4), "seconds": round(float(seconds), 4),
            "frames_per_second": round(frames / seconds, 2) if seconds > 0 else None,
            "shard": f"{shard[0]}/{shard[1]}", "host": socket.gethostname(), "pid": os.getpid(),
            "finished": datetime.datetime.now(datetime.UTC).isoformat(),
            "model": model or {}, "settings": settings or {}}


def read_manifest(out: Path, warn: bool = True) -> dict[str, dict]:
    """{input name: its latest record} over every manifest file of DIR (none: empty)."""
    latest: dict[str, dict] = {}
    for path in sorted((out / MANIFEST_DIR).glob("*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                record = _parse_line(line)
                if record is None:
                    if warn and line.strip():
                        print(f"WARNING {path}:{number}: not a manifest record (a line cut "
                              "short by a killed worker?); that input counts as not done",
                              file=sys.stderr)
                    continue
                old = latest.get(record["input"])
                if old is None or record["finished"] >= old["finished"]:
                    latest[record["input"]] = record
    return latest


def _parse_line(line: str) -> dict | None:
    """A record from one line, or None when it is not one (torn, or another program's)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    keys = ("input", "status", "finished", "frames", "seconds", "video_seconds")
    if not isinstance(record, dict) or any(k not in record for k in keys):
        return None
    return record if record["status"] in STATUSES else None


def summary(records: dict[str, dict]) -> dict:
    """Totals of a merged manifest: per shard and in all."""
    def totals(rows: list[dict]) -> dict:
        done = [r for r in rows if r["status"] == "done"]
        frames = sum(r["frames"] for r in done)
        seconds = sum(r["seconds"] for r in rows)
        return {"done": len(done), "failed": len(rows) - len(done), "frames": frames,
                "video_hours": sum(r["video_seconds"] for r in done) / 3600,
                "processing_hours": seconds / 3600,
                "frames_per_second": frames / seconds if seconds > 0 else 0.0}

    rows = list(records.values())
    shards = sorted({r.get("shard", "?") for r in rows})
    failures = {r["input"]: r.get("error") or "?" for r in rows if r["status"] == "failed"}
    return {"all": totals(rows), "shards": {s: totals([r for r in rows if r.get("shard") == s])
                                            for s in shards}, "failures": failures}


def format_summary(out: Path, result: dict) -> str:
    """The summary as the lines the command prints."""
    lines = [f"{out}: {result['all']['done']} done, {result['all']['failed']} failed"]

    def line(name: str, t: dict) -> str:
        return (f"  {name}: {t['done']} done, {t['failed']} failed, {t['frames']} frames, "
                f"{t['video_hours']:.3f} h of video, {t['processing_hours']:.3f} h of "
                f"processing, {t['frames_per_second']:.1f} frames/s per worker")

    lines.append(line("all", result["all"]))
    lines += [line(f"shard {s}", t) for s, t in result["shards"].items()]
    for name, error in sorted(result["failures"].items()):
        lines.append(f"  FAILED {name}: {error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the summary of DIR's manifest; 1 if any input failed, 2 if there is none."""
    parser = argparse.ArgumentParser(
        prog="python -m signlang_jax.video.manifest",
        description="Summarise a video job's manifest (DIR/manifest/*.jsonl, one file per "
        "shard): inputs done and failed with the reasons, frames, hours of video, "
        "processing time and throughput, per shard and in all.")
    parser.add_argument("out", type=Path, metavar="DIR", help="the video job's --out folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    records = read_manifest(args.out)
    if not records:
        print(f"ERROR {args.out / MANIFEST_DIR}: no manifest records (is DIR the video job's "
              "--out?)", file=sys.stderr)
        return 2
    result = summary(records)
    print(json.dumps(result, indent=1) if args.json else format_summary(args.out, result))
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

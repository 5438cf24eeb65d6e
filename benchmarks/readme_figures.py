"""Write the README's demo figures from a demo run, or check that they are still those.

    PYTHONPATH=. python benchmarks/readme_figures.py [runs/demo runs/demo_hand] [--check]

Every figure the README quotes from `make demo` lives in a generated block (`<!-- figures:NAME
-->` ... `<!-- /figures:NAME -->`): the evaluation tables exactly as `python -m
signlang_jax.evaluate` printed them (`demo-eval`), the headline figures and the onnxruntime
parity the exports recorded (`demo-headline`), and the training speeds and the whole demo's time
labelled with the machine (`demo-timing`). Training is deterministic for a seed on one kind of
machine, so a fresh clone's `make demo` gives the same deterministic blocks; `--check` says
whether they still match (exit 1 and the first difference if not) without writing anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from signlang_jax.demo_report import (
    DETERMINISTIC_BLOCKS,
    blocks,
    load_run,
    read_block,
    replace_block,
)

README = Path(__file__).resolve().parent.parent / "README.md"


def main() -> int:
    """Regenerate (or check) the README's demo blocks."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", nargs="?", type=Path, default=Path("runs/demo"))
    parser.add_argument("hand", nargs="?", type=Path, default=Path("runs/demo_hand"))
    parser.add_argument("--check", action="store_true",
                        help="compare the deterministic blocks with this run; write nothing")
    args = parser.parse_args()
    run = load_run(args.demo, args.hand)
    if run.metrics is None:
        print(f"ERROR {args.demo}/eval/metrics.json: no evaluation (run make demo first)",
              file=sys.stderr)
        return 2
    last = args.demo / "hand.onnx.json"  # the demo's last output before its summary
    finished = last.stat().st_mtime if last.exists() else None
    new = blocks(run, finished)
    text = README.read_text()
    if args.check:
        changed = [n for n in DETERMINISTIC_BLOCKS if read_block(text, n) != new[n]]
        for name in changed:
            print(f"README block {name} differs from {args.demo}:\n--- README\n"
                  f"{read_block(text, name)}\n--- this run\n{new[name]}", file=sys.stderr)
        print("deterministic blocks " + ("differ" if changed else "match this run"))
        return 1 if changed else 0
    for name, body in new.items():
        text = replace_block(text, name, body)
    README.write_text(text)
    print(f"wrote {', '.join(new)} into {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

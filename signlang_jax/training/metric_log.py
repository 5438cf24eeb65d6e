"""Where training metrics go: TensorBoard event files, a JSONL file, and a console progress bar.

`WORKDIR/tensorboard/` (loss, lr, grad norm, images/s, val metrics, val images with predicted
skeletons; `tensorboard --logdir WORKDIR`), `WORKDIR/metrics.jsonl` (one JSON object per logged
step, for scripts) and a tqdm bar with step, loss, images/s and ETA. Only process 0 writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from signlang_jax.draw import draw_skeleton
from signlang_jax.progress import progress


class MetricLogger:
    """Fan-out of scalar metrics and images to TensorBoard, JSONL and the progress bar."""

    def __init__(self, workdir: Path, total: int, initial: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = progress(total=total, initial=initial, unit="step", dynamic_ncols=True,
                         disable=not enabled, mininterval=1.0)
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(workdir / "tensorboard"))
        self._jsonl = (workdir / "metrics.jsonl").open("a")

    def advance(self, step: int) -> None:
        """Move the progress bar to `step`."""
        self._bar.update(step - self._bar.n)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "") -> None:
        """Log scalars at `step` everywhere; val metrics are also printed."""
        self.advance(step)
        if not self.enabled:
            return
        named = {prefix + k: float(v) for k, v in values.items()}
        for key, value in named.items():
            self._writer.add_scalar(key, value, step)
        self._jsonl.write(json.dumps({"step": step, **named}) + "\n")
        self._jsonl.flush()
        if "train/loss" in named:
            # Shown at the bar's next redraw: a log file then gets one line per interval.
            self._bar.set_postfix(loss=f"{named['train/loss']:.3g}",
                                  img_s=f"{named.get('train/images_per_sec', 0):.1f}",
                                  refresh=False)
        if any(k.startswith("val/") for k in named):
            self.print(val_summary(step, named))

    def skeletons(self, step: int, pairs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Log (image, keypoints) pairs as images with the skeleton drawn."""
        if not self.enabled:
            return
        for i, (image, keypoints) in enumerate(pairs):
            self._writer.add_image(f"val/prediction_{i}", draw_skeleton(image, keypoints, 0.3),
                                   step, dataformats="HWC")

    def print(self, message: str) -> None:
        """Print a line without breaking the progress bar."""
        if self.enabled:
            tqdm.write(message)

    def close(self) -> None:
        """Flush and close everything."""
        self._bar.close()
        if self.enabled:
            self._writer.close()
            self._jsonl.close()


def val_summary(step: int, values: dict[str, float]) -> str:
    """The printed val line: every overall metric, then a short line per mixture source.

    A key val/NAME/METRIC is a source's when val/METRIC is an overall key too; its line keeps
    the metrics without a group suffix (loss, pck@T, hand_pck@0.2), so N sources add N lines.
    """
    overall, sources = [], {}
    for key, value in values.items():
        if not key.startswith("val/"):
            continue
        _, head, *rest = key.split("/")
        if rest and f"val/{'/'.join(rest)}" in values:
            if len(rest) == 1:
                sources.setdefault(head, []).append(f"{rest[0]}={value:.4f}")
        else:
            overall.append(f"{key.removeprefix('val/')}={value:.4f}")
    lines = [f"step {step}: " + ", ".join(overall)]
    lines += [f"  {name}: " + ", ".join(parts) for name, parts in sources.items()]
    return "\n".join(lines)

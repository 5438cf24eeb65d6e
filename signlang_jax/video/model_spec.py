"""Which model a video job runs, as plain data: loaded by the local job and by each Ray actor.

A `ModelSpec` is what the command line says of the model (files, step, decoder, threads,
device); `load()` builds the `RegionPredictor` where it runs (JAX is imported only for a
checkpoint), and `files()` is what each manifest line records of it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from signlang_jax.inference.hand_stage import DEFAULT_MIN_SCORE
from signlang_jax.inference.onnx_runtime import load_onnx
from signlang_jax.inference.region import RegionPredictor, load_jax
from signlang_jax.video.manifest import file_digest


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model of a video job (the `model` flags of `python -m signlang_jax.video`)."""

    onnx: str | None = None
    hand_onnx: str | None = None
    checkpoint: str | None = None
    hand_checkpoint: str | None = None
    step: str | None = None
    dtype: str = "float32"
    hand_min_score: float = DEFAULT_MIN_SCORE
    hand_decoder: str = "dark"
    batch_size: int = 1
    threads: int = 0  # onnxruntime intra-op threads (0: its own choice)
    device: str = "cpu"  # cpu | cuda

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ModelSpec:
        """The spec the parsed command line names."""
        return cls(args.onnx, args.hand_onnx, args.checkpoint, args.hand_checkpoint, args.step,
                   args.dtype, args.hand_min_score, args.hand_decoder, args.batch_size,
                   args.threads, args.device)

    def load(self) -> RegionPredictor:
        """The model, ready to run (ValueError / OSError / TrainingError name what is wrong)."""
        if self.onnx:
            return load_onnx(self.onnx, self.hand_onnx, self.hand_min_score, self.batch_size,
                             self.threads, self.hand_decoder, self.device)
        if self.checkpoint is None:
            raise ValueError("no model: give --onnx FILE or --checkpoint DIR")
        if self.device == "cuda":
            import jax

            if not any(d.platform == "gpu" for d in jax.devices()):
                raise ValueError(f"--device cuda: JAX sees no GPU ({jax.devices()}); install "
                                 "jax[cuda12] or leave --device out")
        return load_jax(self.checkpoint, self.step, self.dtype, self.hand_checkpoint,
                        self.hand_min_score, self.batch_size, self.hand_decoder)

    def files(self) -> dict:
        """What a manifest line says of the model: its files, and each ONNX file's sha256."""
        info: dict = {}
        for key in ("onnx", "hand_onnx"):
            path = getattr(self, key)
            if path:
                info[key] = str(path)
                info[f"{key}_sha256"] = file_digest(path) if Path(path).is_file() else None
        for key in ("checkpoint", "hand_checkpoint", "step"):
            if getattr(self, key):
                info[key] = str(getattr(self, key))
        return info

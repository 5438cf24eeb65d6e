"""Video to keypoint sequences: tracking, smoothing, .npz / .pose output.

`python -m signlang_jax.video` (the CLI is `signlang_jax.video.cli`).

numpy, OpenCV (and onnxruntime for ONNX models) only at import time: JAX is imported only when a
`--checkpoint` model is loaded, so the onnxruntime path runs on a machine without JAX or torch.
"""

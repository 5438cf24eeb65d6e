"""Inference: restoring a trained model, the batch predictor, the hand stage, the ONNX runtime
and the region predictor that the video job and the live demo run. Nothing here imports JAX
at import time except `predictor` and `restore`."""

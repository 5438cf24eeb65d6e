"""Interoperability with PyTorch and ONNX (export path)."""

"""Quantization helpers: ONNX Runtime and NNCF quantizers, parity, sensitivity, Q/DQ checks."""

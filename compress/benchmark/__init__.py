"""Benchmarking: accuracy, latency, throughput, size and parameters of each stage.

Every figure is reported against the original model. `settings` and `report`
import no heavy library; the runtimes load torch or onnxruntime only when used.
"""

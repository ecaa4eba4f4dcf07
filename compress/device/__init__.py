"""Scripts copied into deployment bundles; each runs on the device without compress.

`infer.py` classifies texts or images with the bundle's model (ONNX Runtime,
or TensorRT when an engine was built); `build_engine.py` builds that engine
on the device with `compress/trt_core.py`, copied beside it. They import only
the standard library at the top, and what the device needs inside functions.
"""

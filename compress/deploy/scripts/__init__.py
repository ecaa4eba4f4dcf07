"""Scripts copied into deployment bundles; each runs on the device without compress.

`infer.py` classifies texts or images with the bundle's model (ONNX Runtime,
or TensorRT when an engine was built); `build_engine.py` builds that engine
on the device with `trt_core.py` beside it (a copy of `compress/trt/builder.py`).
They import only the standard library at the top, and what the device needs
inside functions.
"""

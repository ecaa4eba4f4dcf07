"""Scripts copied into deployment bundles; each runs on the device without compress.

`infer.py` classifies texts or images with the bundle's model (ONNX Runtime,
or TensorRT when an engine was built); `build_engine.py` builds that engine
on the device with `trt_core.py` beside it (a copy of `compress/trt/builder.py`).
They import only the standard library at the top, and what the device needs
inside functions. Each answers a missing package or file, a bad argument or a
compute capability the backend cannot build for with one line on stderr that
says what to do, and exit code 2 (so does the `build_engine.sh` a GPU bundle
carries, `compress.deploy.readme.trtexec_script`).
"""

"""Accuracy of ONNX files with ONNX Runtime's kernels for a CPU without VNNI, on any x86 machine.

    qemu-x86_64 -cpu Haswell .venv/bin/python bench/emulated_avx2.py INPUTS.npz FILE.onnx ...

Run under QEMU's user-mode emulator with a Haswell CPU model (AVX2, no
AVX-512, no VNNI; Debian/Ubuntu package `qemu-user`), ONNX Runtime detects
that CPU and picks the U8S8 kernels such CPUs get, whose 16-bit pair sums can
saturate; accuracy is then what an AVX2-only CPU computes, though the timing
means nothing (emulation is about 100x slower). INPUTS.npz holds `x` (model
inputs, one array) and `y` (labels). A file named FILE.onnx:exact runs with
graph optimizations off (Q/DQ as float arithmetic, what TensorRT computes).
Without the emulator it gives this machine's own figures.
"""

import sys

import numpy as np
import onnxruntime as ort


def accuracy(path: str, x: np.ndarray, y: np.ndarray, exact: bool) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if exact:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    predictions = [
        session.run(None, {name: x[i : i + 100]})[0].argmax(-1) for i in range(0, len(x), 100)
    ]
    return float((np.concatenate(predictions) == y).mean())


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    data = np.load(sys.argv[1])
    for spec in sys.argv[2:]:
        exact = spec.endswith(":exact")
        path = spec.removesuffix(":exact")
        score = accuracy(path, data["x"], data["y"], exact)
        print(f"{path}{' (exact)' if exact else ''}: {score:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

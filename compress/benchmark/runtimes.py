"""Runtimes that turn input arrays into logits, plus size and parameter counts of a variant.

torch, transformers, onnx and onnxruntime are imported inside the functions
that need them, so importing this module stays cheap.
"""

from __future__ import annotations

import gc
import inspect
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from compress.artifacts import Artifact, Variant
from compress.errors import ModelLoadError, UserError
from compress.tasks import Task
from compress.tasks.base import logits_of

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "pixel_values")
_ORT_DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}
_NOT_WEIGHTS = ("training_args", "optimizer", "scheduler", "rng_state")


@runtime_checkable
class Runtime(Protocol):
    """Something that maps a batch of input arrays to logits `[batch, num_labels]`."""

    name: str
    input_names: list[str]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray: ...

    def close(self) -> None: ...


class TorchRuntime:
    """A PyTorch classifier (Hugging Face or image model folder) in inference mode.

    `device="cuda"` runs it on the GPU, `half=True` in FP16 (float inputs are
    cast too), `compile=True` through `torch.compile`. Returning NumPy logits
    copies them to the host, so a timed call includes the GPU's work.
    """

    name = "torch"

    def __init__(
        self,
        path: Path,
        threads: int,
        task: Task,
        device: str = "cpu",
        half: bool = False,
        compile: bool = False,
    ) -> None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("runtime needs CUDA, and torch sees no CUDA device")
        torch.set_num_threads(threads)
        model, _ = task.load(str(path), None)
        self.model: Any = model.eval().to(device)
        if half:
            self.model = self.model.half()
        accepted = inspect.signature(self.model.forward).parameters
        self.input_names = [n for n in MODEL_INPUTS if n in accepted]
        if compile:
            self.model = torch.compile(self.model)
        self.device, self.half = device, half
        self.name = "torch" + ("-cuda" if device == "cuda" else "") + ("-fp16" if half else "")
        self.name += "-compile" if compile else ""

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        inputs = {}
        for n in self.input_names:
            if n in feeds:
                tensor = torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device)
                if self.half and tensor.is_floating_point():
                    tensor = tensor.half()
                inputs[n] = tensor
        with torch.inference_mode():
            logits = logits_of(self.model(**inputs))
        return np.asarray(logits.float().cpu().numpy())

    def close(self) -> None:
        self.model = None
        gc.collect()


class OrtRuntime:
    """An ONNX model run by ONNX Runtime (CPU execution provider unless `providers` says else).

    `threads=0` leaves the thread count to ONNX Runtime (all cores). `exact`
    turns graph optimizations off: a Q/DQ model then runs its
    QuantizeLinear/DequantizeLinear nodes as float arithmetic, the integer
    math TensorRT runs, instead of this CPU's fused INT8 kernels (whose
    rounding differs between AVX2 and AVX-512 VNNI CPUs).
    """

    name = "onnxruntime"

    def __init__(
        self, path: Path, threads: int, providers: list[str] | None = None, exact: bool = False
    ) -> None:
        import onnxruntime as ort

        providers = providers or ["CPUExecutionProvider"]
        missing = [p for p in providers if p not in ort.get_available_providers()]
        if missing:
            raise UserError(
                f"ONNX Runtime here lacks {', '.join(missing)} (available: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
            )
        options = ort.SessionOptions()
        if providers[0] == "CPUExecutionProvider":
            options.log_severity_level = 3  # errors only: a CPU session has no fallback to report
        else:
            self.name = "onnxruntime-" + providers[0].removesuffix("ExecutionProvider").lower()
            if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN from the nvidia-* wheels, as torch does
                ort.preload_dlls()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        level = ort.GraphOptimizationLevel
        options.graph_optimization_level = level.ORT_DISABLE_ALL if exact else level.ORT_ENABLE_ALL
        if exact:
            self.name += "-exact"
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise ModelLoadError(f"cannot load {path} in ONNX Runtime: {exc}") from None
        if providers[0] not in session.get_providers():  # ORT falls back with only a warning
            raise UserError(
                f"ONNX Runtime could not start {providers[0]} for {path.name} (it fell back to "
                f"{', '.join(session.get_providers())}); see its log above for the missing library"
            )
        self.session: Any = session
        inputs = session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self._dtypes = {i.name: _ORT_DTYPES.get(i.type, np.int64) for i in inputs}
        outputs = [o.name for o in session.get_outputs()]
        self._output = "logits" if "logits" in outputs else outputs[0]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        shape = next(iter(feeds.values())).shape
        inputs = {}
        for n in self.input_names:
            value = feeds.get(n)
            # a tokenizer without token type ids: the model sees the single-segment default
            inputs[n] = np.zeros(shape, self._dtypes[n]) if value is None else value
            inputs[n] = np.ascontiguousarray(inputs[n], dtype=self._dtypes[n])
        return np.asarray(self.session.run([self._output], inputs)[0])

    def close(self) -> None:
        self.session = None
        gc.collect()


def scored_exactly(variant: Variant) -> bool:
    """Whether `variant` is a Q/DQ file for TensorRT (INT8, or weight-only INT4), whose
    accuracy is that of its exact graph.

    TensorRT runs Q/DQ as integer math with int32 accumulation; ONNX Runtime's
    fused CPU kernels can saturate (AVX2), so they understate what the device
    will compute. Such a file is scored with `exact` execution; its CPU
    kernels' accuracy is a CPU figure only.
    """
    return (variant.runtime, variant.target) == ("onnxruntime", "tensorrt") and (
        variant.precision in ("int8", "int4")
    )


def open_runtime(
    artifact: Artifact, variant: Variant, threads: int, task: Task, exact: bool = False
) -> Runtime:
    """Load `variant` of `artifact` in the runtime it was built for (ONNX: `exact`, see
    `OrtRuntime`)."""
    path = artifact.file(variant)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist (variant '{variant.name}')")
    if variant.runtime == "torch":
        return TorchRuntime(path, threads, task)
    if variant.runtime == "onnxruntime":
        return OrtRuntime(path, threads, exact=exact)
    if variant.runtime == "tensorrt":
        from compress.trt.runtime import TrtRuntime

        return TrtRuntime(path)
    raise UserError(f"variant '{variant.name}' has an unknown runtime '{variant.runtime}'")


def count_parameters(artifact: Artifact, variant: Variant, task: Task) -> int:
    """Number of weights: torch parameters, or elements of every ONNX initializer.

    ONNX counts int8 weights and their scales/zero points; int64 initializers
    (shapes, indices, position ids) are constants, not weights, and are left out.
    A TensorRT engine counts the ONNX file it was built from.
    """
    path = artifact.file(variant)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist (variant '{variant.name}')")
    if variant.runtime == "torch":
        model, _ = task.load(str(path), None)
        return int(sum(p.numel() for p in model.parameters()))
    if variant.runtime == "tensorrt":  # an engine holds the weights of the ONNX it was built from
        from compress.trt.runtime import engine_source

        source = engine_source(artifact.path, artifact.meta)
        if source is None:
            raise ModelLoadError(f"{path}: the ONNX file this engine was built from is gone")
        path = source
    total = 0
    for tensor in _onnx_graph(path).initializer:
        if tensor.data_type == _onnx_int64():
            continue
        total += int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
    return total


def model_size_bytes(artifact: Artifact, variant: Variant) -> int:
    """Bytes of the weights on disk.

    A Hugging Face folder counts its weight files (`*.safetensors`, else
    `*.bin`, without trainer state); an ONNX variant counts its `.onnx` file
    and any external-data files it refers to; an engine, its file.
    """
    path = artifact.file(variant)
    if variant.runtime == "torch" or path.is_dir():
        folder = path if path.is_dir() else path.parent
        files = sorted(folder.glob("*.safetensors")) or [
            f for f in sorted(folder.glob("*.bin")) if not f.name.startswith(_NOT_WEIGHTS)
        ]
        if not files:
            raise ModelLoadError(f"{folder} holds no weight files (*.safetensors or *.bin)")
        return sum(f.stat().st_size for f in files)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist (variant '{variant.name}')")
    if variant.runtime == "tensorrt":
        return path.stat().st_size
    locations = set()
    for tensor in _onnx_graph(path).initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                locations.add(entry.value)
    extra = sum(int((path.parent / loc).stat().st_size) for loc in locations)
    return int(path.stat().st_size) + extra


def _onnx_graph(path: Path) -> Any:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf decode errors have no common base
        raise ModelLoadError(f"cannot read the ONNX model {path}: {exc}") from None


def _onnx_int64() -> int:
    import onnx

    return int(onnx.TensorProto.INT64)


DYNAMIC_INT8_OPS = frozenset({"DynamicQuantizeLinear", "DynamicQuantizeMatMul"})
"""Operators that quantize activations with scales computed from the input itself."""


def scored_one_by_one(artifact: Artifact, variant: Variant) -> bool:
    """Whether `variant` is dynamic INT8, scored one example at a time, as it is served.

    Dynamic INT8 computes each activation's scale from the whole input
    tensor, padding included, so a text's prediction depends on the other
    texts of its batch and on the padding they add: a batch of 64 padded to its
    longest text can score a different accuracy than the same file answering
    one request at a time. Online CPU serving answers one request at a time
    (batch 1, no padding), so the figure reported is that one.
    """
    if variant.runtime != "onnxruntime" or variant.precision != "int8":
        return False
    return dynamic_int8_file(artifact.file(variant))


def dynamic_int8_file(path: Path) -> bool:
    """Whether the ONNX file at `path` quantizes activations on the fly (dynamic INT8)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in DYNAMIC_INT8_OPS for node in graph.node)

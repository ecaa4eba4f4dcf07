"""Run a serialized TensorRT engine on the GPU, its buffers held by PyTorch CUDA tensors.

Like `trt_core`, this module imports only the standard library (the TensorRT
module is passed in; torch and numpy are imported when an engine is loaded),
so deployment bundles carry a verbatim copy next to `infer.py`, and the device
runs engines with the same code `compress bench` measures them with.

    >>> import tensorrt as trt                                          # doctest: +SKIP
    >>> engine = EngineRunner(trt, Path("model.engine").read_bytes())   # doctest: +SKIP
    >>> logits = engine({"input_ids": ids, "attention_mask": mask})["logits"]  # doctest: +SKIP

Inputs are cast to the dtype the engine declares (TensorRT 8.x turns int64
ONNX inputs into int32), an input the engine has but the feeds lack (a
tokenizer without token type ids) is zeros, and a shape outside the engine's
optimization profile is refused with the profile's range.
"""

from __future__ import annotations

from typing import Any

# TensorRT DataType names -> torch dtype names
TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT32": "int32",
    "INT64": "int64",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}
Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class EngineError(Exception):
    """The engine could not be loaded or run here; the message says why."""


def shape_problem(name: str, shape: tuple[int, ...], profile: Profile) -> str | None:
    """Why `shape` is outside the (min, opt, max) profile of input `name`, or None."""
    low, _, high = profile
    if len(shape) != len(low):
        return f"input {name} has {len(shape)} dimensions, the engine wants {len(low)}"
    for axis, (size, lo, hi) in enumerate(zip(shape, low, high, strict=True)):
        if not lo <= size <= hi:
            return (
                f"input {name} axis {axis} is {size}; the engine's profile allows {lo}..{hi} "
                f"(shape {list(shape)}, min {list(low)}, max {list(high)}); rebuild it with a "
                "wider batch/sequence range"
            )
    return None


class EngineRunner:
    """One deserialized engine and its execution context, ready to run batches.

    `input_names` / `output_names` are the engine's I/O tensors in order,
    `profiles` the (min, opt, max) shape of every input in profile 0, and
    `max_batch` the largest first dimension every input accepts.
    """

    def __init__(self, trt: Any, data: bytes, logger: Any = None) -> None:
        import torch

        if not torch.cuda.is_available():
            raise EngineError("running a TensorRT engine needs an NVIDIA GPU, and none is visible")
        self._torch = torch
        self._logger = logger or trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # must outlive the engine
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"TensorRT could not load the engine: {_errors(self._logger)}")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"TensorRT could not create a context: {_errors(self._logger)}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        if not self.output_names:
            raise EngineError("the engine has no output tensor")
        self.dtypes = {n: self._dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self.profiles: dict[str, Profile] = {}
        for n in self.input_names:
            low, opt, high = self.engine.get_tensor_profile_shape(n, 0)
            self.profiles[n] = (tuple(low), tuple(opt), tuple(high))
        self.max_batch = min((p[2][0] for p in self.profiles.values() if p[2]), default=1)

    def _dtype(self, trt_dtype: Any) -> Any:
        name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
        if name not in TORCH_DTYPES:
            raise EngineError(f"the engine uses tensor type {name}, which this runner cannot feed")
        return getattr(self._torch, TORCH_DTYPES[name])

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Every output (NumPy, on the host) for one batch of NumPy inputs."""
        torch = self._torch
        shape = tuple(next(iter(feeds.values())).shape)
        kept = []
        for name in self.input_names:
            value = feeds.get(name)
            if value is None:
                tensor = torch.zeros(shape, dtype=self.dtypes[name], device="cuda")
            else:
                tensor = torch.as_tensor(value).to("cuda", self.dtypes[name]).contiguous()
            problem = shape_problem(name, tuple(tensor.shape), self.profiles[name])
            if problem:
                raise EngineError(problem)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
            kept.append(tensor)
        outputs = {}
        for name in self.output_names:
            dims = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(dims, dtype=self.dtypes[name], device="cuda")
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"TensorRT could not run the engine: {_errors(self._logger)}")
        stream.synchronize()
        low_precision = (torch.float16, torch.bfloat16)
        return {
            name: (tensor.float() if tensor.dtype in low_precision else tensor).cpu().numpy()
            for name, tensor in outputs.items()
        }


def _errors(logger: Any) -> str:
    errors = getattr(logger, "errors", None)
    return str(errors()) if callable(errors) else "see TensorRT's log above"

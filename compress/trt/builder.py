"""The TensorRT engine builder itself: ONNX file + options -> serialized engine.

This module imports nothing but the standard library (the TensorRT module is
passed in), so it is copied verbatim into deployment bundles and builds the
engine on the device (a Jetson, say) with the same code `compress` runs; see
`compress.deploy.bundle`. `compress.trt.cache` adds caching, FP16 conversion for
TensorRT-RTX and the toolkit's errors around it.

    >>> import tensorrt as trt                                          # doctest: +SKIP
    >>> options = BuildOptions("int8", batch=(1, 1, 8), sequence=(1, 64, 64))
    >>> engine, info = build_serialized(trt, "tensorrt", Path("model.onnx"), options,
    ...                                 collecting_logger(trt))         # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

BACKEND_NAMES = {"tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT-RTX"}
# What TensorRT-RTX 1.7 can build for ahead of time (RTX-class GPUs; no SM90, no SM87).
RTX_COMPUTE_CAPABILITIES = {
    "7.5": "SM75",
    "8.0": "SM80",
    "8.6": "SM86",
    "8.9": "SM89",
    "12.0": "SM120",
    "12.1": "SM121",
}


@dataclass(frozen=True)
class BuildOptions:
    """Everything besides the ONNX file and backend that shapes an engine.

    `batch` and `sequence` are (min, opt, max) of the dynamic axes of every
    input, taken in order (first dynamic axis = batch, second = sequence).
    `compute_capabilities` only applies to TensorRT-RTX; full TensorRT builds
    for the GPU it runs on.
    """

    precision: Literal["fp32", "fp16", "int8", "int4"]
    batch: tuple[int, int, int] = (1, 1, 8)
    sequence: tuple[int, int, int] = (1, 128, 128)
    workspace_mb: int = 1024
    sparsity: bool = False
    compute_capabilities: tuple[str, ...] = ()


class BuildFailed(Exception):
    """The ONNX parser refused nodes, or the builder returned no engine; `problems` says which."""

    def __init__(self, what: str, problems: list[str]) -> None:
        self.what = what
        self.problems = problems
        super().__init__(f"{what}: {'; '.join(problems[:10])}")


def build_serialized(
    trt: Any,
    backend: str,
    source: Path,
    options: BuildOptions,
    logger: Any,
    timing_cache: Path | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """(serialized engine, what the network looked like) for the ONNX file `source`.

    `backend` is "tensorrt" (full TensorRT: FP16/INT8 builder flags, timing
    cache) or "tensorrt_rtx" (strongly typed; builds for
    `options.compute_capabilities`). Raises `BuildFailed`.
    """
    name = BACKEND_NAMES[backend]
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    problems = parse(trt, network, logger, source)
    if problems:
        raise BuildFailed(f"the {name} ONNX parser rejected {source.name}", problems)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    inputs = add_profile(builder, network, config, options)
    if backend == "tensorrt":
        if options.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif options.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ layers only: no calibrator is set
        elif options.precision == "int4":
            # weight-only INT4 DequantizeLinear -> MatMul; activations in FP16
            config.set_flag(trt.BuilderFlag.FP16)
            if hasattr(trt.BuilderFlag, "INT4"):
                config.set_flag(trt.BuilderFlag.INT4)
    if options.sparsity:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)
    if backend == "tensorrt_rtx":
        config.num_compute_capabilities = len(options.compute_capabilities)
        for index, capability in enumerate(options.compute_capabilities):
            value = getattr(trt.ComputeCapability, RTX_COMPUTE_CAPABILITIES[capability])
            config.set_compute_capability(value, index)
    cache = load_timing_cache(config, timing_cache) if backend == "tensorrt" else None
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildFailed(
            f"{name} could not build an engine from {source.name}",
            logger.errors_list() or ["the builder returned no engine"],
        )
    if cache is not None and timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized)), {
        "network_layers": int(network.num_layers),
        "parser_errors": 0,
        "inputs": inputs,
        "outputs": [network.get_output(i).name for i in range(network.num_outputs)],
    }


def network_flags(trt: Any) -> int:
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):  # TensorRT 8.x
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def parse(trt: Any, network: Any, logger: Any, source: Path) -> list[str]:
    """What the ONNX parser refused in `source` (empty: every node parsed)."""
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(source)) and not parser.num_errors:
        return []
    problems = [parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
    return problems or ["parse failed without an error message: " + logger.errors()]


def parser_error(error: Any) -> str:
    """'node_name (OpType): description' where the TensorRT version reports the node."""
    name = error.node_name() if hasattr(error, "node_name") else ""
    op = error.node_operator() if hasattr(error, "node_operator") else ""
    where = name or f"node {error.node()}"
    return f"{where}{f' ({op})' if op else ''}: {error.desc()}"


def add_profile(
    builder: Any, network: Any, config: Any, options: BuildOptions
) -> dict[str, dict[str, list[int]]]:
    """One optimization profile: dynamic axes set from (batch, sequence) ranges.

    A decoder with a KV cache (inputs `past_key_values.*`, as optimum exports them) gets a
    profile that covers both of its steps: the prompt (an empty cache, up to the longest
    sequence of new tokens) and decode (one new token, a cache up to that length); its
    optimum is a decode step (one new token after `sequence.opt - 1` cached ones, so the
    attention mask's length is their sum).
    """
    profile = builder.create_optimization_profile()
    shapes: dict[str, dict[str, list[int]]] = {}
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    decoder = any(name.startswith("past_key_values.") for name in names)
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        dynamic = [axis for axis, size in enumerate(dims) if size < 0]
        if len(dynamic) > 2:
            raise BuildFailed(
                "cannot set an optimization profile",
                [f"input {tensor.name} has {len(dynamic)} dynamic axes; only batch and sequence"],
            )
        picked = [list(dims), list(dims), list(dims)]
        for axis, ranges in zip(dynamic, (options.batch, options.sequence), strict=False):
            for which in range(3):
                picked[which][axis] = ranges[which]
        if decoder and len(dynamic) == 2:
            length = dynamic[1]
            if tensor.name.startswith("past_key_values."):
                picked[0][length] = 0  # the prompt's step has no past (an empty cache)
                picked[1][length] = max(options.sequence[1] - 1, 0)
            elif tensor.name != "attention_mask":  # the new tokens: one at a decode step
                picked[1][length] = 1
        profile.set_shape(tensor.name, *picked)
        shapes[tensor.name] = dict(zip(("min", "opt", "max"), picked, strict=True))
    config.add_optimization_profile(profile)
    return shapes


def load_timing_cache(config: Any, path: Path | None) -> Any:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def collecting_logger(trt: Any) -> Any:
    """A TensorRT logger that keeps INFO and above, for the build log and error messages."""

    class Collecting(trt.ILogger):  # type: ignore[misc]  # the module is passed in: Any
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.INFO:
                self.messages.append((str(severity.name), msg))

        def errors_list(self) -> list[str]:
            return [m for s, m in self.messages if s in ("ERROR", "INTERNAL_ERROR")]

        def errors(self) -> str:
            return "; ".join(self.errors_list()) or "no error logged"

        def count(self, severity: str) -> int:
            return sum(1 for s, _ in self.messages if s == severity)

        def text(self) -> str:
            return "".join(f"[{s}] {m}\n" for s, m in self.messages)

    return Collecting()

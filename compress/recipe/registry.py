"""Pass names (the keys a recipe uses) -> their modules, imported only when asked for."""

from __future__ import annotations

import importlib
import importlib.util

from compress.errors import MissingDependencyError, UserError, did_you_mean
from compress.passes.base import PassConfig, PassInfo

PASS_MODULES: dict[str, str] = {
    "fine_tune": "compress.passes.fine_tune",
    "distill": "compress.passes.distill",
    "prune": "compress.passes.prune",
    "prune_channels": "compress.passes.prune_channels",
    "prune_vocab": "compress.passes.prune_vocab",
    "export_onnx": "compress.passes.export_onnx",
    "quantize": "compress.passes.quantize",
    "qat": "compress.passes.qat",
    "tensorrt": "compress.passes.tensorrt",
    "bundle": "compress.passes.bundle",
}


def pass_names() -> list[str]:
    return list(PASS_MODULES)


def all_passes() -> list[PassInfo]:
    """Every registered pass (imports each pass module; none imports a heavy backend)."""
    return [get_pass(name) for name in PASS_MODULES]


def get_pass(name: str) -> PassInfo:
    """The registered pass called `name`; an unknown name suggests the closest one."""
    if name not in PASS_MODULES:
        hint = did_you_mean(name, PASS_MODULES)
        known = ", ".join(PASS_MODULES)
        raise UserError(f"unknown pass '{name}'" + (f", {hint}" if hint else f" (known: {known})"))
    module = importlib.import_module(PASS_MODULES[name])
    info: PassInfo = module.PASS
    return info


def missing_backends(
    info: PassInfo, config: PassConfig | None = None
) -> list[MissingDependencyError]:
    """Errors for each optional backend of `info` (with `config`) that is not importable.

    A requirement naming alternatives is met when any one of them is importable.
    """
    needed = info.requires
    if info.requires_for is not None and config is not None:
        needed = needed + info.requires_for(config)
    missing = []
    for package, install in needed:
        names = (package,) if isinstance(package, str) else package
        if all(importlib.util.find_spec(name) is None for name in names):
            missing.append(MissingDependencyError(package, f"pass '{info.name}'", install))
    return missing

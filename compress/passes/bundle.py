"""`bundle`: package the run's model for one device, with everything needed to run it there.

The bundle is a folder and its `.tar.gz` (in the step folder): the ONNX model
to deploy, the tokenizer or image preprocessing, the label names, scripts
that build the TensorRT engine on the device (`build_engine.py`, with the
builder code compress uses, and the `trtexec` equivalent `build_engine.sh`),
`infer.py`, a README, and `manifest.json` with the sha256 of every file, the
source run, package versions and the accuracy the run's report measured for
that file. The pass runs after the report so that figure is known; see
`compress.deploy.bundle` (also `compress bundle RUN_DIR --target ...`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from compress.artifacts import Artifact, RunFolder
from compress.deploy.bundle import Bundle, BundleSpec, make_bundle
from compress.deploy.devices import DEVICE_NAMES, get_device
from compress.errors import UserError
from compress.passes.base import PassConfig, PassContext, PassInfo
from compress.passkit.io import bundle_artifact, bundle_name
from compress.trt.options import EngineShapes

log = logging.getLogger(__name__)


class BundleConfig(PassConfig, EngineShapes):
    """Options of `bundle` (and of `compress bundle`)."""

    target: str = Field(..., description=f"the device: {', '.join(DEVICE_NAMES)}")
    model: Literal["auto", "tensorrt", "cpu", "fp32"] = Field(
        "auto",
        description="ONNX file to ship; auto: the TensorRT INT8 Q/DQ file on GPU targets (the "
        "CPU INT8 file on x86-cpu), else the FP32 export",
    )
    precision: Literal["auto", "fp32", "fp16", "int8"] = Field(
        "auto", description="engine precision; auto: int8 for a Q/DQ model, else fp16 on GPUs"
    )
    workspace_mb: int | None = Field(
        None, ge=16, description="engine builder workspace; default: the target's"
    )

    @field_validator("target")
    @classmethod
    def _known_device(cls, value: str) -> str:
        try:
            get_device(value)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        return value


def package(
    run_dir: Path, cfg: BundleConfig, out: Path, log: Callable[[str], None] = log.info
) -> Bundle:
    """Write the bundle of the finished run in `run_dir` to `out` (and `out.tar.gz`)."""
    spec = BundleSpec(
        device=get_device(cfg.target),
        model=cfg.model,
        precision=cfg.precision,
        shapes=EngineShapes(batch=cfg.batch, sequence=cfg.sequence),
        workspace_mb=cfg.workspace_mb,
    )
    return make_bundle(RunFolder(run_dir).require(), out, spec, log=log)


def apply(artifact: Artifact, cfg: BundleConfig, ctx: PassContext) -> Artifact:
    own = ctx.own_implementation("bundle")
    if own is not None:  # a task whose bundle has its own script (generate.py, embed.py)
        result: Artifact = own(artifact, cfg, ctx)
        return result
    name = bundle_name(cfg, ctx)
    assert ctx.run_dir is not None  # bundle_name refuses a bundle outside a run
    made = package(ctx.run_dir, cfg, ctx.work_dir / name, log=ctx.log)
    expected = {"expected_accuracy": made.manifest["expected"].get("accuracy")}
    return bundle_artifact(made, name, cfg, ctx, expected)


PASS = PassInfo(
    name="bundle",
    summary="Package the model for a device: ONNX, preprocessing, engine build scripts, infer.py.",
    config=BundleConfig,
    apply=apply,
    consumes=("onnx", "engine", "bundle"),
    produces="bundle",
    after_report=True,
)

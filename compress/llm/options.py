"""Options of the text-generation backends that recipes set (pydantic only: cheap to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from compress.options import RegexList, StrictOptions

WeightOnlyTarget = Literal["cpu", "tensorrt"]


class WeightOnlyConfig(StrictOptions):
    """`quantize.weight_only`: how a causal LM's weights are quantized."""

    targets: list[WeightOnlyTarget] = Field(
        ["cpu"],
        min_length=1,
        description="one file per target: cpu (ONNX Runtime MatMulNBits, model_int{bits}.onnx), "
        "tensorrt (blocked symmetric INT4 DequantizeLinear -> MatMul, opset 21, the form "
        "TensorRT's parser takes: model_int4_qdq.onnx)",
    )
    bits: Literal[4, 8] = Field(4, description="bits of the decoder layers' weights")
    algorithm: Literal["rtn", "hqq", "scale_estimation", "gptq"] = Field(
        "rtn",
        description="rtn: round to nearest (integer zero points); hqq: half-quadratic "
        "optimised scales and float zero points (see integer_zero_points); "
        "scale_estimation: NNCF's scales fitted to the layers' outputs on calibration "
        "text (integer zero points, 4 bits); gptq: each rounding error spread over the "
        "inputs not yet rounded, from the layers' inputs on calibration text (symmetric, "
        "4 bits, cpu target)",
    )
    awq: bool = Field(
        False,
        description="NNCF's activation-aware channel scaling before rounding (rtn or "
        "scale_estimation, 4 bits, calibration text)",
    )
    calibration_samples: int = Field(
        64,
        ge=1,
        le=4096,
        description="training texts that scale_estimation and awq run the model on",
    )
    block_size: int = Field(32, ge=16, le=256, description="weights per scale (power of 2)")
    symmetric: bool = Field(
        False, description="cpu: zero point fixed at the middle (rtn); tensorrt is always symmetric"
    )
    lm_head_bits: Literal[4, 8, "auto"] | None = Field(
        "auto",
        description="bits of the LM head (None: kept float); auto: 8, or 4 where the head "
        "holds over half of the weights (a large vocabulary on a small model, whose 8-bit "
        "head would keep the file from shrinking with the rest)",
    )
    lm_head_algorithm: Literal["rtn", "scale_estimation", "gptq"] = Field(
        "rtn",
        description="how the LM head is rounded: rtn (round to nearest), scale_estimation "
        "(NNCF's scales fitted to the logits on calibration text), or gptq (each rounding "
        "error spread over the inputs not yet rounded, from the head's inputs on calibration "
        "text; symmetric); both 4 bits",
    )
    lm_head_block_size: int | None = Field(
        None, ge=16, le=256, description="weights per scale of the LM head (None: block_size)"
    )
    lm_head_symmetric: bool = Field(True, description="the LM head without zero points")
    int8_layers: RegexList = Field(
        [], description="regexes of MatMul node names kept at 8 bits (round to nearest)"
    )
    rtn_layers: RegexList = Field(
        [],
        description="regexes of MatMul node names rounded to nearest instead of by algorithm "
        "(their integer zero points take less room than HQQ's float ones)",
    )
    embedding: Literal["shared", "int4", "float"] = Field(
        "shared",
        description="the token embedding: shared (a tied model's lookup reads the quantized "
        "LM head, one copy), int4 (its own 4-bit copy), or float; the tensorrt file gives "
        "the lookup its own copy, at the head's bits for shared",
    )
    accuracy_level: Literal[0, 1, 2, 3, 4] = Field(
        4, description="MatMulNBits compute: 0 default, 1 fp32, 4 int8 activations (fastest)"
    )
    integer_zero_points: bool = Field(
        True,
        description="HQQ's float zero points as integer ones plus an exact per-block "
        "correction (ONNX Runtime's fast CPU kernels); false keeps them float",
    )
    keep_float: RegexList = Field([], description="regexes of MatMul node names kept float")

    @property
    def calibrated(self) -> bool:
        """Whether the layers go through NNCF on calibration text."""
        return self.algorithm == "scale_estimation" or self.awq

    def head_bits(self, head_share: float) -> int | None:
        """The LM head's bits for a head holding `head_share` of the weights."""
        if self.lm_head_bits == "auto":
            return 4 if head_share > 0.5 or self.lm_head_algorithm != "rtn" else 8
        return self.lm_head_bits

    @property
    def gptq(self) -> bool:
        """Whether the layers are rounded by GPTQ (on calibration text)."""
        return self.algorithm == "gptq"

    @property
    def uses_calibration(self) -> bool:
        """Whether the layers or the LM head are fitted on calibration text."""
        return self.calibrated or self.gptq or self.lm_head_algorithm != "rtn"

    @model_validator(mode="after")
    def _tensorrt_options(self) -> WeightOnlyConfig:
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("targets must not repeat")
        if "tensorrt" not in self.targets:
            return self
        if self.algorithm == "gptq":
            raise ValueError("gptq writes MatMulNBits: use it with targets: [cpu]")
        if self.algorithm == "hqq":
            raise ValueError(
                "hqq fits float zero points; the tensorrt target is symmetric INT4 (zero point "
                "0): use algorithm rtn or scale_estimation"
            )
        if self.bits != 4:
            raise ValueError("the tensorrt target writes INT4 weights: set bits: 4")
        return self

    @model_validator(mode="after")
    def _calibrated_options(self) -> WeightOnlyConfig:
        if self.awq and self.algorithm == "hqq":
            raise ValueError("awq works with algorithm rtn or scale_estimation, not hqq")
        if self.calibrated and self.bits != 4:
            raise ValueError("scale_estimation and awq write 4-bit weights: set bits: 4")
        if self.gptq and (self.bits != 4 or self.awq):
            raise ValueError("gptq writes 4-bit weights without awq: set bits: 4, awq: false")
        if self.lm_head_algorithm != "rtn" and self.lm_head_bits not in (4, "auto"):
            raise ValueError(
                f"lm_head_algorithm {self.lm_head_algorithm} writes a 4-bit LM head: set "
                "lm_head_bits: 4"
            )
        if self.lm_head_algorithm == "gptq" and not self.lm_head_symmetric:
            raise ValueError("lm_head_algorithm gptq is symmetric: set lm_head_symmetric: true")
        return self

    @field_validator("block_size", "lm_head_block_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError(f"must be a power of 2 (got {value}): MatMulNBits needs it")
        return value

"""Options of the text-generation backends that recipes set (pydantic only: cheap to import)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from compress.options import RegexList, StrictOptions


class WeightOnlyConfig(StrictOptions):
    """`quantize.weight_only`: how a causal LM's weights are quantized."""

    bits: Literal[4, 8] = Field(4, description="bits of the decoder layers' weights")
    algorithm: Literal["rtn", "hqq"] = Field(
        "rtn",
        description="rtn: round to nearest (integer zero points); hqq: half-quadratic "
        "optimised scales and float zero points (see integer_zero_points)",
    )
    block_size: int = Field(32, ge=16, le=256, description="weights per scale (power of 2)")
    symmetric: bool = Field(False, description="zero point fixed at the middle (rtn)")
    lm_head_bits: Literal[4, 8] | None = Field(
        8, description="bits of the LM head, round to nearest (None: kept float)"
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
        "LM head, one copy), int4 (its own 4-bit copy), or float",
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

    @field_validator("block_size", "lm_head_block_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError(f"must be a power of 2 (got {value}): MatMulNBits needs it")
        return value

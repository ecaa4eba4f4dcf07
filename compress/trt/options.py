"""The shapes a TensorRT engine is built for, as the `tensorrt` pass and bundles take them."""

from __future__ import annotations

from pydantic import Field, model_validator

from compress.options import StrictOptions


class ShapeRange(StrictOptions):
    """(min, opt, max) of one dynamic axis in the engine's optimization profile."""

    min: int = Field(1, ge=1)
    opt: int = Field(1, ge=1)
    max: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"needs min <= opt <= max (got {self.min}, {self.opt}, {self.max})")
        return self

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.min, self.opt, self.max)


class EngineShapes(StrictOptions):
    """The batch and sequence ranges of an engine's optimization profile."""

    batch: ShapeRange = Field(ShapeRange(), description="batch sizes the engine accepts")
    sequence: ShapeRange | None = Field(
        None, description="sequence lengths; default min 1, opt = max = data.max_length"
    )

    def sequence_range(self, max_length: int) -> tuple[int, int, int]:
        """The sequence (min, opt, max): as given, else (1, max_length, max_length)."""
        return self.sequence.as_tuple() if self.sequence else (1, max_length, max_length)

"""Benchmark settings of a recipe (the `benchmark:` section)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from compress.options import StrictOptions

PositiveInt = Annotated[int, Field(ge=1)]


class BenchmarkSettings(StrictOptions):
    """How each stage is measured: latency shapes, repetitions, threads and evaluation."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1, 8], min_length=1)
    """batch sizes at which latency is measured (each a separate fixed-shape run)"""

    sequence_length: int = Field(64, ge=1)
    """tokens per example in latency runs (real test texts padded/truncated to it)"""

    threads: int = Field(2, ge=1)
    """intra-op CPU threads for every runtime (inter-op threads: 1)"""

    warmup: int = Field(10, ge=0)
    """untimed runs before timing each batch size"""

    repetitions: int = Field(100, ge=5)
    """timed runs per batch size (percentiles come from these)"""

    eval_batch_size: int = Field(64, ge=1)
    """batch size of the accuracy evaluation"""

    eval_samples: int | None = Field(None, ge=1)
    """test examples used for accuracy; null: the whole test split"""

    stages: Literal["all", "final"] = "all"
    """benchmark every stage ('all') or only the original and the last one ('final')"""

    plot: bool = True
    """also draw report.png (accuracy against latency) when matplotlib is installed"""

    @field_validator("batch_sizes")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"batch sizes must be distinct (got {value})")
        return sorted(value)

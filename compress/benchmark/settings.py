"""Benchmark settings of a recipe (the `benchmark:` section)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator

from compress.options import StrictOptions

PositiveInt = Annotated[int, Field(ge=1)]


class GenerationBudget(StrictOptions):
    """What a stage may lose against the original before the report warns about it."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    perplexity: float = Field(0.10, ge=0)
    """relative perplexity increase (0.10: a stage up to +10% against the original is within)"""

    task_points: float = Field(1.0, ge=0)
    """zero-shot task accuracy, in percentage points lost against the original"""


class GenerationSettings(StrictOptions):
    """How text-generation stages are measured (the `benchmark.generation` section)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    prompt_lengths: list[PositiveInt] = Field(default_factory=lambda: [32, 128], min_length=1)
    """prompt lengths (tokens of real test text) at which time to first token is measured"""

    new_tokens: int = Field(64, ge=2, le=4096)
    """tokens generated greedily at batch 1 after the shortest prompt (decode speed)"""

    rounds: int = Field(5, ge=1, le=100)
    """timed generations per stage, interleaved between stages (medians reported)"""

    perplexity_texts: int = Field(200, ge=1)
    """test texts (one sequence each) that perplexity is measured on"""

    task_samples: int = Field(500, ge=1)
    """test examples of the zero-shot task score (labelled data only)"""

    peak_memory: bool = True
    """also measure each stage's peak resident memory while generating, in its own process"""

    budget: GenerationBudget = GenerationBudget()
    """what a stage may lose against the original (perplexity, task accuracy) before the
    report warns about it"""


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

    generation: GenerationSettings = GenerationSettings()
    """text-generation recipes: prompt lengths, new tokens, rounds and evaluation sizes"""

    @field_validator("batch_sizes")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"batch sizes must be distinct (got {value})")
        return sorted(value)

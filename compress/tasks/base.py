"""What a task provides to the passes and the benchmark."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from compress.artifacts import ModelInfo

if TYPE_CHECKING:  # `compress.tasks` is read by the CLI's parser: no numpy or torch at import
    import numpy as np
    import torch


class Task(Protocol):
    """One kind of model and data (text classification, image classification).

    `processor` is what turns raw inputs into model inputs and is saved beside
    the weights: a tokenizer, or an image preprocessor. `encoded` is whatever
    `encode` returns; only the task's own methods look inside it.

    `recipe_sources` are the `model` and `data` sources a recipe that names
    none uses (None: it must name one; `source_hints` says what it may name);
    `sample_data` is what `compress bench model` feeds when given no data.
    """

    name: str
    input_kind: str  # "texts" or "images"
    recipe_sources: Mapping[str, str | None]
    source_hints: Mapping[str, str]
    sample_data: str

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        """A loadable location for a recipe's `model.source`."""
        ...

    def model_info(self, source: str, base_dir: Path | None = None) -> ModelInfo | None:
        """What the source's folder says of its architecture (None: not known before loading)."""
        ...

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        """(model, processor); the head is sized to `label_names` when given."""
        ...

    def save(self, model: Any, processor: Any, folder: Path) -> None: ...

    def load_processor(self, folder: Path) -> Any: ...

    def label_names(self, model: Any) -> list[str]: ...

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        """Parameters and multiply-accumulates per example (or per token)."""
        ...

    def encode(self, processor: Any, inputs: Sequence[Any], max_length: int) -> Any: ...

    def lengths(self, encoded: Any) -> list[int]:
        """Per-example sizes used to batch similar examples together."""
        ...

    def collate(self, processor: Any, encoded: Any, indices: Any) -> dict[str, torch.Tensor]: ...

    def fixed_batch(
        self, processor: Any, inputs: Sequence[Any], batch_size: int, sequence_length: int
    ) -> dict[str, np.ndarray]:
        """A latency batch of exactly `batch_size` real examples at a fixed shape."""
        ...

    def parity_batches(
        self, processor: Any, inputs: Sequence[Any], max_length: int
    ) -> list[dict[str, torch.Tensor]]:
        """Real inputs that an export is checked on against its source model."""
        ...

    def shape(self, processor: Any, sequence_length: int) -> str:
        """How one example's shape reads in a report, e.g. '64 tokens' or '3x224x224'."""
        ...


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output (a Hugging Face output, or a tensor)."""
    logits: torch.Tensor = getattr(output, "logits", output)
    return logits

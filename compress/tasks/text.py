"""Text classification: Hugging Face sequence classifiers and their tokenizers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.data import text as text_data

if TYPE_CHECKING:
    import torch


class TextClassification:
    name = "text-classification"
    input_kind = "texts"

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        from compress.models import resolve_source

        return resolve_source(source, base_dir)

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        from compress.models import load_classifier

        return load_classifier(location, label_names, revision)

    def save(self, model: Any, processor: Any, folder: Path) -> None:
        from compress.models import save_hf

        save_hf(model, processor, folder)

    def load_processor(self, folder: Path) -> Any:
        from transformers import AutoTokenizer

        from compress.errors import ModelLoadError

        try:
            return AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the tokenizer in {folder}: {exc}") from None

    def label_names(self, model: Any) -> list[str]:
        id2label = model.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        from compress.passes.common import model_meta

        return model_meta(model, max_length)

    def encode(self, processor: Any, inputs: Sequence[Any], max_length: int) -> Any:
        return text_data.encode(processor, list(inputs), max_length)

    def lengths(self, encoded: Any) -> list[int]:
        return [len(e["input_ids"]) for e in encoded]

    def collate(self, processor: Any, encoded: Any, indices: Any) -> dict[str, torch.Tensor]:
        return text_data.collate(processor, encoded, indices)

    def fixed_batch(
        self, processor: Any, inputs: Sequence[Any], batch_size: int, sequence_length: int
    ) -> dict[str, np.ndarray]:
        from compress.benchmark.measure import fixed_shape_batch

        return fixed_shape_batch(processor, list(inputs), batch_size, sequence_length)

    def shape(self, processor: Any, sequence_length: int) -> str:
        return f"{sequence_length} tokens"


TASK = TextClassification()

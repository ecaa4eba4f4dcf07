"""Text classification: Hugging Face sequence classifiers and their tokenizers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.artifacts import ModelInfo, read_model_info
from compress.text import tokens

if TYPE_CHECKING:
    import torch


class TokenizedTexts:
    """How both text tasks feed a model: texts tokenized once, padded per batch."""

    def encode(self, processor: Any, inputs: Sequence[Any], max_length: int) -> Any:
        return tokens.encode(processor, list(inputs), max_length)

    def lengths(self, encoded: Any) -> list[int]:
        return [len(e["input_ids"]) for e in encoded]

    def collate(self, processor: Any, encoded: Any, indices: Any) -> dict[str, torch.Tensor]:
        return tokens.collate(processor, encoded, indices)

    def fixed_batch(
        self, processor: Any, inputs: Sequence[Any], batch_size: int, sequence_length: int
    ) -> dict[str, np.ndarray]:
        return tokens.fixed_shape_batch(processor, list(inputs), batch_size, sequence_length)

    def parity_batches(
        self, processor: Any, inputs: Sequence[Any], max_length: int
    ) -> list[dict[str, torch.Tensor]]:
        return tokens.parity_batches(processor, list(inputs), max_length)


class TextClassification(TokenizedTexts):
    name = "text-classification"
    input_kind = "texts"
    recipe_sources: Mapping[str, str | None] = MappingProxyType(
        {"model": "minilm-l6", "data": "rotten-tomatoes"}
    )
    source_hints: Mapping[str, str] = MappingProxyType(
        {
            "model": "minilm-l6, a Hugging Face model folder, or a hub id",
            "data": "rotten-tomatoes, a .csv/.tsv/.jsonl/.json/.parquet file, or a hub dataset id",
        }
    )
    sample_data = "rotten-tomatoes"

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        from compress.text.models import resolve_source

        return resolve_source(source, base_dir)

    def model_info(self, source: str, base_dir: Path | None = None) -> ModelInfo | None:
        from compress.errors import UserError

        try:
            location = self.resolve(source, base_dir)
        except UserError:  # a missing offline package or folder is reported when it loads
            return None
        return read_model_info(location)

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        from compress.text.models import load_classifier

        return load_classifier(location, label_names, revision)

    def save(self, model: Any, processor: Any, folder: Path) -> None:
        from compress.text.models import save_hf

        save_hf(model, processor, folder)

    def load_processor(self, folder: Path) -> Any:
        from compress.text.models import load_tokenizer

        return load_tokenizer(folder)

    def label_names(self, model: Any) -> list[str]:
        id2label = model.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        from compress.text.pruning import model_meta

        return model_meta(model, max_length)

    def shape(self, processor: Any, sequence_length: int) -> str:
        return f"{sequence_length} tokens"


TASK = TextClassification()

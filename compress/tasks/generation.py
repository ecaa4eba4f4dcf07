"""Text generation: Hugging Face causal language models and their tokenizers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from compress.artifacts import ModelInfo, read_model_info
from compress.tasks.text import TokenizedTexts


class TextGeneration(TokenizedTexts):
    name = "text-generation"
    input_kind = "texts"
    recipe_sources: Mapping[str, str | None] = MappingProxyType(
        {"model": "smollm2-135m", "data": "rotten-tomatoes"}
    )
    source_hints: Mapping[str, str] = MappingProxyType(
        {
            "model": "smollm2-135m, a Hugging Face causal-LM folder, a .gguf file, or a hub id",
            "data": "rotten-tomatoes, a .txt/.csv/.jsonl/.json/.parquet file, or a hub dataset id",
        }
    )
    sample_data = "rotten-tomatoes"

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        from compress.llm.models import resolve_lm_source

        return resolve_lm_source(source, base_dir)

    def model_info(self, source: str, base_dir: Path | None = None) -> ModelInfo | None:
        from compress.errors import UserError
        from compress.llm.models import OFFLINE_MODELS, check_causal

        if source in OFFLINE_MODELS:
            return ModelInfo(source, "llama", "BPE")  # known without converting it first
        try:
            location = self.resolve(source, base_dir)
        except UserError:  # a missing folder is reported when it loads
            return None
        info = read_model_info(location)
        config = Path(location) / "config.json"
        if info is not None and config.is_file():
            data = json.loads(config.read_text(encoding="utf-8"))
            check_causal(data.get("architectures"), data.get("model_type"), location)
        return info

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        from compress.llm.models import load_lm

        return load_lm(location, revision)

    def save(self, model: Any, processor: Any, folder: Path) -> None:
        from compress.llm.models import save_lm

        save_lm(model, processor, folder)

    def load_processor(self, folder: Path) -> Any:
        from compress.llm.models import load_lm_tokenizer

        return load_lm_tokenizer(folder)

    def label_names(self, model: Any) -> list[str]:
        return []

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        from compress.llm.models import lm_meta

        return lm_meta(model)

    def shape(self, processor: Any, sequence_length: int) -> str:
        return f"{sequence_length}-token prompt"


TASK = TextGeneration()

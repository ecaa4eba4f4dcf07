"""Sentence embeddings: an encoder plus its sentence-transformers pooling (`text-embedding`).

The model maps a text to one vector: the encoder's token states pooled as the
folder's `modules.json` / `1_Pooling` say (mean, CLS, max or last token;
normalized when it lists a Normalize module; mean pooling otherwise), see
`compress.text.embedding`. Its ONNX file computes the pooling and the
normalization in the graph and outputs `sentence_embedding [batch, dim]`.
Labels are optional: the passes distil the student's vectors onto the
teacher's; where the data has labels the report adds kNN accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from compress.artifacts import ModelInfo, read_model_info
from compress.tasks.base import Support
from compress.tasks.text import (
    EXAMPLES,
    HIDDEN_STATES,
    NOT_WEIGHT_ONLY,
    RECOVERY_EXAMPLES,
    TokenizedTexts,
    TransformerExport,
)

if TYPE_CHECKING:
    from compress.data.loaders import Reader

VECTORS = "a sentence embedder is distilled on its vectors (cosine distance), not on logits"
NO_LABEL_LOSS = (
    "a sentence embedder has no label loss here: its training objective is the teacher's "
    "vectors; keep distill: true"
)
LABEL_BUDGETS = "{} needs classification accuracy; an embedder's files are scored by cosine"


def _vectors_only(*options: str) -> dict[str, str]:
    return {option: f"{option}: {VECTORS}; remove it" for option in options}


class TextEmbedding(TokenizedTexts, TransformerExport):
    name = "text-embedding"
    data_reader: Reader = "sentences"  # labels optional: they add kNN accuracy
    input_kind = "texts"
    recipe_sources: Mapping[str, str | None] = MappingProxyType(
        {"model": "minilm-l6", "data": "rotten-tomatoes"}
    )
    source_hints: Mapping[str, str] = MappingProxyType(
        {
            "model": "minilm-l6, a sentence-transformers or Hugging Face encoder folder, "
            "or a hub id",
            "data": "rotten-tomatoes, a .csv/.tsv/.jsonl/.json/.parquet file, or a hub dataset id",
        }
    )
    sample_data = "rotten-tomatoes"
    support: Mapping[str, Support] = MappingProxyType(
        {
            "fine_tune": Support(
                unavailable="contrastive training on labelled pairs is not built; distil the "
                "model, or prune it with recovery"
            ),
            "distill": Support(
                refuses={**EXAMPLES, **HIDDEN_STATES, **_vectors_only("temperature", "alpha")}
            ),
            "prune": Support(
                refuses={
                    **RECOVERY_EXAMPLES,
                    **_vectors_only("recovery.temperature", "recovery.alpha"),
                }
            ),
            "prune_vocab": Support(),
            "export_onnx": Support(),
            "quantize": Support(
                refuses={
                    **NOT_WEIGHT_ONLY,
                    **{
                        option: LABEL_BUDGETS.format(option)
                        for option in ("max_accuracy_drop", "float_size_budget")
                    },
                }
            ),
            "qat": Support(
                refuses={"distill=False": NO_LABEL_LOSS, **_vectors_only("temperature", "alpha")}
            ),
            "tensorrt": Support(),
            "bundle": Support(run="compress.passkit.embedding:bundle"),
        }
    )
    objective = "compress.passkit.objectives:EMBEDDINGS"
    measurer = "compress.benchmark.measurers:EMBEDDER"
    export_outputs = ("sentence_embedding",)

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        from compress.text.models import resolve_source

        return resolve_source(source, base_dir)

    def model_info(self, source: str, base_dir: Path | None = None) -> ModelInfo | None:
        import json

        from compress.errors import UserError
        from compress.text.embedding import read_pooling, refuse_non_encoder

        _refuse_other_offline_models(source)
        try:
            location = self.resolve(source, base_dir)
        except UserError:  # a missing offline package or folder is reported when it loads
            return None
        folder = Path(location)
        if (folder / "config.json").is_file():  # a decoder, an image model, a bad pooling
            refuse_non_encoder(location, json.loads((folder / "config.json").read_text()))
            read_pooling(folder)
        return read_model_info(location)

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        from compress.text.embedding import load_embedder

        return load_embedder(location, revision)

    def save(self, model: Any, processor: Any, folder: Path) -> None:
        from compress.text.embedding import save_embedder

        save_embedder(model, processor, folder)

    def load_processor(self, folder: Path) -> Any:
        from compress.text.models import load_tokenizer

        return load_tokenizer(folder)

    def label_names(self, model: Any) -> list[str]:
        return []

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        from compress.text.embedding import embedder_meta

        return embedder_meta(model, max_length)

    def shape(self, processor: Any, sequence_length: int) -> str:
        return f"{sequence_length} tokens"

    def inner(self, model: Any) -> Any:
        return model.encoder

    def with_inner(self, model: Any, inner: Any) -> Any:
        from compress.text.embedding import SentenceEmbedder

        return SentenceEmbedder(inner, model.pooling)

    def export_onnx(
        self, model: Any, processor: Any, source: Path, folder: Path, opset: int
    ) -> Path:
        from compress.artifacts import copy_preprocessing
        from compress.text.embedding_export import export_embedder

        path: Path = export_embedder(model, processor, folder / "model.onnx", opset)
        copy_preprocessing(source, folder)  # tokenizer, config and modules.json beside it
        return path

    def fuse_onnx(self, portable: Path, target: Path, model: Any) -> dict[str, int]:
        from compress.text.embedding_export import optimize_embedder

        return optimize_embedder(portable, target, model.config)


def _refuse_other_offline_models(source: str) -> None:
    """The offline image and decoder models are not encoders: say so before anything loads."""
    from compress.errors import ModelLoadError
    from compress.llm.models import OFFLINE_MODELS as DECODERS
    from compress.tasks.image import OFFLINE as IMAGE_MODELS

    if source in IMAGE_MODELS:
        kind = "an image classifier"
    elif source in DECODERS:
        kind = "a text-generation model"
    else:
        return
    raise ModelLoadError(
        f"{source}: {kind}; text-embedding needs a text encoder (minilm-l6, or a "
        "sentence-transformers or Hugging Face encoder folder)"
    )


TASK = TextEmbedding()

"""Text classification: Hugging Face sequence classifiers and their tokenizers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.artifacts import ModelInfo, read_model_info
from compress.tasks.base import Support
from compress.text import tokens

if TYPE_CHECKING:
    import torch

    from compress.data.loaders import Reader


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


def only_for_generation(option: str) -> str:
    """Why a task other than text generation refuses `option` of a pass."""
    return f"{option} is a text-generation option; remove it"


EXAMPLES = MappingProxyType({"examples": only_for_generation("examples")})
RECOVERY_EXAMPLES = MappingProxyType(
    {"recovery.examples": only_for_generation("recovery.examples")}
)
NOT_WEIGHT_ONLY = MappingProxyType(
    {"weight_only": "weight_only is for text-generation recipes; remove it"}
)
HIDDEN_STATES = MappingProxyType(
    {"hidden_weight": "hidden_weight matches hidden states of text classifiers only"}
)


class TransformerExport:
    """Parts both text encoders' tasks share: the transformer is the model or its `encoder`,
    ONNX Runtime's BERT-family fusions make `model_ort.onnx`."""

    fused_onnx = True
    macs_key = "matmul_macs_per_token"

    def macs(self, model: Any, processor: Any, max_length: int) -> tuple[int, str]:
        from compress.text.pruning import linear_flops_per_token

        macs = linear_flops_per_token(self.inner(model), max_length)  # type: ignore[attr-defined]
        return macs, "encoder matmul MACs/token"

    def fuse_onnx(self, portable: Path, target: Path, model: Any) -> dict[str, int]:
        from onnxruntime.transformers.optimizer import optimize_model

        from compress.quant.ort_quantize import quiet_root_logger

        config = model.config
        uniform = not getattr(config, "pruned_heads", None)  # else let ORT read each layer's
        with quiet_root_logger():  # its fusion notes (e.g. on a tiny vocabulary) are not ours
            optimized = optimize_model(
                str(portable),
                model_type="bert",
                num_heads=config.num_attention_heads if uniform else 0,
                hidden_size=config.hidden_size if uniform else 0,
            )
        optimized.save_model_to_file(str(target))
        return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


class TextClassification(TokenizedTexts, TransformerExport):
    name = "text-classification"
    data_reader: Reader = "texts"
    input_kind = "texts"
    support: Mapping[str, Support] = MappingProxyType(
        {
            "fine_tune": Support(refuses=EXAMPLES),
            "distill": Support(refuses=EXAMPLES),
            "prune": Support(refuses=RECOVERY_EXAMPLES),
            "prune_vocab": Support(),
            "export_onnx": Support(),
            "quantize": Support(refuses=NOT_WEIGHT_ONLY),
            "qat": Support(),
            "tensorrt": Support(),
            "bundle": Support(),
        }
    )
    objective = "compress.passkit.objectives:LOGITS"
    measurer = "compress.benchmark.measurers:CLASSIFIER"
    export_outputs = ("logits",)
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

    def inner(self, model: Any) -> Any:
        return model

    def with_inner(self, model: Any, inner: Any) -> Any:
        return inner

    def export_onnx(
        self, model: Any, processor: Any, source: Path, folder: Path, opset: int
    ) -> Path:
        from optimum.exporters.onnx import onnx_export_from_model

        onnx_export_from_model(
            model,
            folder,
            opset=opset,
            task="text-classification",
            do_validation=False,
            preprocessors=[processor],
        )
        return folder / "model.onnx"


TASK = TextClassification()

"""Text generation: Hugging Face causal language models and their tokenizers."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from compress.artifacts import ModelInfo, read_model_info
from compress.tasks.base import Support
from compress.tasks.text import HIDDEN_STATES, TokenizedTexts

if TYPE_CHECKING:
    from compress.data import Dataset
    from compress.data.loaders import Reader

log = logging.getLogger(__name__)

OWN = "compress.passkit.generation"  # this task's own implementations of the passes
INT8_CLASSIFICATION = (
    "targets", "cpu_mode", "method", "percentile", "per_channel", "reduce_range", "backend",
    "fast_bias_correction", "smooth_quant_alpha", "max_accuracy_drop", "max_float_layers",
    "float_size_budget", "top_k_errors", "exclude",
)  # fmt: skip
BY_ACTIVATIONS = ("importance", "targets", "ignore", "min_heads")


class TextGeneration(TokenizedTexts):
    name = "text-generation"
    data_reader: Reader = "corpus"
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
    support: Mapping[str, Support] = MappingProxyType(
        {
            "fine_tune": Support(run=f"{OWN}:fine_tune"),
            "distill": Support(run=f"{OWN}:distill", refuses=HIDDEN_STATES),
            "prune": Support(
                run=f"{OWN}:prune",
                refuses={
                    name: f"{name}: text-generation prunes by activations on the training "
                    "texts, in whole key/value groups in every layer; remove it"
                    for name in BY_ACTIVATIONS
                },
            ),
            "export_onnx": Support(run=f"{OWN}:export_onnx"),
            "quantize": Support(
                run=f"{OWN}:quantize",
                outputs=f"{OWN}:quantize_outputs",
                refuses={
                    name: f"{name} is an INT8 classification option; text-generation "
                    "quantizes weights only: set quantize.weight_only"
                    for name in INT8_CLASSIFICATION
                },
            ),
            # custom-op graphs (INT4 MatMulNBits) are not parsed: the step says why and goes
            # on; the weight-only INT4 file for TensorRT (precision int4) must build
            "tensorrt": Support(on_failure="skip"),
            "bundle": Support(run=f"{OWN}:bundle"),
        }
    )
    objective = None  # its own passes train on next-token loss, validated by perplexity
    measurer = "compress.benchmark.measurers:GENERATOR"  # perplexity, task, decode speed
    export_outputs = ("logits",)
    fused_onnx = True
    macs_key = "macs_per_token"

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

    def inner(self, model: Any) -> Any:
        return model

    def with_inner(self, model: Any, inner: Any) -> Any:
        return inner

    def macs(self, model: Any, processor: Any, max_length: int) -> tuple[int, str]:
        from compress.llm.models import lm_meta

        return int(lm_meta(model)["macs_per_token"]), "MACs per token"

    def export_onnx(
        self, model: Any, processor: Any, source: Path, folder: Path, opset: int
    ) -> Path:
        from compress.llm.export import export_with_past

        path: Path = export_with_past(model, processor, folder, opset)
        return path

    def fuse_onnx(self, portable: Path, target: Path, model: Any) -> dict[str, int]:
        from compress.llm.export import fuse_decoder

        fused, _ = fuse_decoder(portable, target, model.config)
        return dict(fused)

    def check_loaded(
        self, model: Any, processor: Any, data: Dataset, max_length: int
    ) -> dict[str, Any]:
        """Signs that the model did not load right (`compress.llm.load_checks`), found before
        any pass runs: logged in one line, kept in the input step's metrics for the report."""
        from compress.llm.load_checks import check_model, warning_line

        corpus = data.train.texts or data.test.texts
        validation = data.validation.texts or data.test.texts
        evidence = check_model(model, processor, corpus, validation, max_length)
        line = warning_line(evidence)
        if line:
            log.warning(line)
            evidence["warning"] = line
        return {"load_check": evidence}


TASK = TextGeneration()

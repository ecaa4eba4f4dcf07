"""Serve an exported LM with ONNX Runtime GenAI's runtime (`onnxruntime-genai`, optional),
and open any stage of a generation run in the runtime it names (`open_lm`).

The runtime reads `genai_config.json` beside the ONNX file; for optimum's
`text-generation-with-past` graphs (inputs `input_ids`, `attention_mask`,
`position_ids`, `past_key_values.N.key/value`) the model type, vocabulary,
context length and file name are what it needs. A graph whose attention is
GroupQueryAttention (`model_ort.onnx` and what is quantized from it) takes no
`position_ids` and shares one cache buffer between steps. It decodes with its own
pre-allocated cache, in C++: no Python between tokens.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

from compress.llm.runtime import Generation, LanguageModel, OrtLM, TorchLM

CONFIG = "genai_config.json"


def genai_available() -> bool:
    return importlib.util.find_spec("onnxruntime_genai") is not None


def write_genai_config(folder: Path, onnx_file: str, threads: int | None = None) -> Path:
    """`folder/genai_config.json` for `onnx_file`, from the model's own config.json."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    fused = _has_group_query_attention(folder / onnx_file)
    eos = config.get("eos_token_id")
    heads = int(config["num_attention_heads"])
    decoder: dict[str, Any] = {
        "filename": onnx_file,
        "session_options": {"provider_options": []},
        "head_size": int(config.get("head_dim") or config["hidden_size"] // heads),
        "hidden_size": int(config["hidden_size"]),
        "num_attention_heads": heads,
        "num_hidden_layers": int(config["num_hidden_layers"]),
        "num_key_value_heads": int(config.get("num_key_value_heads", heads)),
        "inputs": {
            "input_ids": "input_ids",
            "attention_mask": "attention_mask",
            **({} if fused else {"position_ids": "position_ids"}),
            "past_key_names": "past_key_values.%d.key",
            "past_value_names": "past_key_values.%d.value",
        },
        "outputs": {
            "logits": "logits",
            "present_key_names": "present.%d.key",
            "present_value_names": "present.%d.value",
        },
    }
    if threads:
        decoder["session_options"]["intra_op_num_threads"] = threads
    context = int(config.get("max_position_embeddings", 2048))
    genai = {
        "model": {
            "type": config.get("model_type", "llama"),
            "bos_token_id": config.get("bos_token_id"),
            "eos_token_id": eos if isinstance(eos, list) else [eos],
            "pad_token_id": config.get("pad_token_id")
            or (eos[0] if isinstance(eos, list) else eos),
            "vocab_size": int(config["vocab_size"]),
            "context_length": context,
            "decoder": decoder,
        },
        "search": {
            "do_sample": False,
            "max_length": context,
            "num_beams": 1,
            "top_k": 1,
            # GroupQueryAttention appends to a cache allocated once; optimum's graph concatenates
            "past_present_share_buffer": fused,
        },
    }
    path = folder / CONFIG
    path.write_text(json.dumps(genai, indent=2) + "\n", encoding="utf-8")
    return path


def _has_group_query_attention(file: Path) -> bool:
    """Whether the graph's attention is ONNX Runtime's GroupQueryAttention (no position_ids)."""
    import onnx

    graph = onnx.load(str(file), load_external_data=False).graph
    return any(node.op_type == "GroupQueryAttention" for node in graph.node)


class GenaiLM:
    """Greedy generation through onnxruntime-genai; whole-sequence logits (perplexity, the
    task score) from ONNX Runtime on the same file, which is what the runtime executes."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import onnxruntime_genai as og

        self.folder, self.threads = folder, threads
        self._scorer: OrtLM | None = None
        config = og.Config(str(folder))
        if threads:
            overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}
            config.overlay(json.dumps(overlay))
        config.clear_providers()
        self.og = og
        self.model = og.Model(config)

    def logits(self, input_ids: Any, attention_mask: Any) -> Any:
        if self._scorer is None:
            file = json.loads((self.folder / CONFIG).read_text())["model"]["decoder"]["filename"]
            self._scorer = OrtLM(self.folder / file, self.threads)
        return self._scorer.logits(input_ids, attention_mask)

    def generate(self, prompt_ids: list[int], new_tokens: int) -> Generation:
        params = self.og.GeneratorParams(self.model)
        total = len(prompt_ids) + new_tokens
        params.set_search_options(max_length=total, min_length=total, do_sample=False)
        generator = self.og.Generator(self.model, params)
        start = time.perf_counter()
        generator.append_tokens(prompt_ids)
        generator.generate_next_token()
        times = [time.perf_counter() - start]
        while not generator.is_done():
            start = time.perf_counter()
            generator.generate_next_token()
            times.append(time.perf_counter() - start)
        tokens = [int(t) for t in generator.get_sequence(0)][len(prompt_ids) :]
        del generator
        return Generation(tokens, times[0], times[1:])

    def close(self) -> None:
        del self.model
        if self._scorer is not None:
            self._scorer.close()


def open_lm(
    path: Path,
    file: str | None,
    threads: int | None = None,
    runtime: str = "onnxruntime",
    exact: bool = False,
) -> LanguageModel:
    """The PyTorch model of a Hugging Face folder (`file` None) or the ONNX file `file` in it,
    run by ONNX Runtime (`exact`: no graph optimization, see `OrtLM`), or by
    onnxruntime-genai (`runtime`, its genai_config.json beside)."""
    if runtime == "onnxruntime-genai":
        return GenaiLM(path, threads)
    if file is None:
        from compress.llm.models import load_lm

        model, _ = load_lm(str(path))
        return TorchLM(model, threads)
    return OrtLM(path / file, threads, exact)

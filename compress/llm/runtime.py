"""Run a causal LM for scoring and for generation: PyTorch, or an ONNX file with a KV cache.

Both runtimes offer the same two calls: `logits(input_ids, attention_mask)`
for whole right-padded sequences (no cache: what perplexity and the task score
read), and `generate(prompt_ids, new_tokens)` for greedy decoding at batch 1
with the KV cache, timed per token: the first token's time (prefill) apart
from the later ones (decode). The ONNX runtime binds ONNX Runtime's own
output buffers back as the next step's past (`OrtValue`s), so no cache tensor
is copied through NumPy between tokens; a graph whose attention compress
rewrote into GroupQueryAttention (metadata `compress.attention`) gets one
cache buffer per layer for the whole generation, bound as both past and
present, which the kernel appends to in place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from compress.errors import UserError

ATTENTION_KEY = "compress.attention"  # model metadata: the attention rewrite the graph has


@dataclass
class Generation:
    """One greedy generation: the new token ids and the time each took (seconds)."""

    tokens: list[int]
    first_token_s: float
    decode_s: list[float]

    @property
    def decode_tokens_per_s(self) -> float:
        return len(self.decode_s) / sum(self.decode_s) if self.decode_s else 0.0


class LanguageModel(Protocol):
    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...

    def generate(self, prompt_ids: list[int], new_tokens: int) -> Generation: ...

    def close(self) -> None: ...


class TorchLM:
    """A Hugging Face causal LM in PyTorch (FP32, KV cache as transformers keeps it)."""

    def __init__(self, model: Any, threads: int | None = None) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval()

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.model(
                input_ids=torch.from_numpy(input_ids),
                attention_mask=torch.from_numpy(attention_mask),
            )
        return np.asarray(out.logits.float().numpy())

    def generate(self, prompt_ids: list[int], new_tokens: int) -> Generation:
        import torch

        ids = torch.tensor([prompt_ids], dtype=torch.int64)
        tokens: list[int] = []
        times: list[float] = []
        with torch.inference_mode():
            past = None
            step = ids
            for _ in range(new_tokens):
                start = time.perf_counter()
                out = self.model(input_ids=step, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = int(out.logits[0, -1].argmax())
                times.append(time.perf_counter() - start)
                tokens.append(token)
                step = torch.tensor([[token]], dtype=torch.int64)
        return Generation(tokens, times[0], times[1:])

    def close(self) -> None:
        return None


class OrtLM:
    """An ONNX causal LM with past inputs (`past_key_values.N.key/value`) in ONNX Runtime.

    `exact` turns graph optimizations off: a weight-only Q/DQ file (the tensorrt target)
    then runs each DequantizeLinear and MatMul as written, in float, instead of ONNX
    Runtime's fused MatMulNBits kernels (which quantize activations to INT8)."""

    def __init__(self, file: Path, threads: int | None = None, exact: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if exact:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in self.inputs if n.startswith("past_key_values.")]
        if "input_ids" not in self.inputs or not self.past_names:
            raise UserError(
                f"{file}: not a causal LM with a KV cache (needs input_ids and "
                "past_key_values.* inputs; export with export_onnx on a text-generation recipe)"
            )
        shape = self.inputs[self.past_names[0]].shape  # [batch, kv_heads, past, head_dim]
        if isinstance(shape[1], int) and isinstance(shape[3], int):
            self.kv_heads, self.head_dim = shape[1], shape[3]
        else:  # named dimensions: the configs beside the file say
            self.kv_heads, self.head_dim = _cache_shape(file.parent)
        self.past_type = (
            np.float16 if "float16" in self.inputs[self.past_names[0]].type else np.float32
        )
        self.present_names = [o.name for o in self.session.get_outputs() if o.name != "logits"]
        self.context = _context_length(file.parent)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.shares_cache = meta.get(ATTENTION_KEY) == "GroupQueryAttention"

    def _empty_past(self, batch: int) -> dict[str, np.ndarray]:
        empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.past_type)
        return dict.fromkeys(self.past_names, empty)

    def _feeds(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, start: int
    ) -> dict[str, Any]:
        feeds: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "position_ids" in self.inputs:
            width = input_ids.shape[1]
            positions = np.arange(start, start + width, dtype=np.int64)
            feeds["position_ids"] = np.broadcast_to(positions, input_ids.shape).copy()
        return feeds

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = self._feeds(input_ids, attention_mask, 0) | self._empty_past(len(input_ids))
        logits: np.ndarray = self.session.run(["logits"], feeds)[0]
        return logits

    def step_logits(self, prompt: list[int], then: list[int]) -> list[tuple[int, np.ndarray]]:
        """(position, logits) of each token of `then`, fed one at a time after `prompt`."""
        ids = np.asarray([prompt], dtype=np.int64)
        feeds = self._feeds(ids, np.ones_like(ids), 0) | self._empty_past(1)
        names = ["logits", *self.present_names]
        outputs = self.session.run(names, feeds)
        out: list[tuple[int, np.ndarray]] = []
        length = len(prompt)
        for token in then:
            past = {_past_name(n): v for n, v in zip(self.present_names, outputs[1:], strict=True)}
            step = np.asarray([[token]], dtype=np.int64)
            mask = np.ones((1, length + 1), dtype=np.int64)
            outputs = self.session.run(names, self._feeds(step, mask, length) | past)
            out.append((length, outputs[0][0, -1]))
            length += 1
        return out

    def generate(self, prompt_ids: list[int], new_tokens: int) -> Generation:
        import onnxruntime as ort

        if self.context is not None and len(prompt_ids) + new_tokens > self.context:
            raise UserError(
                f"a prompt of {len(prompt_ids)} tokens and {new_tokens} new tokens is longer "
                f"than the model's context ({self.context} tokens, max_position_embeddings)"
            )
        # one buffer per cache tensor for the whole generation, bound as past and present
        # (GroupQueryAttention appends in place), or an empty past and each step's presents
        size = len(prompt_ids) + new_tokens if self.shares_cache else 0
        shape = (1, self.kv_heads, size, self.head_dim)
        past = {
            name: ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype=self.past_type))
            for name in self.past_names
        }
        binding = self.session.io_binding()
        ids = np.asarray([prompt_ids], dtype=np.int64)
        tokens: list[int] = []
        times: list[float] = []
        length = 0
        for _ in range(new_tokens):
            start = time.perf_counter()
            mask = np.ones((1, length + ids.shape[1]), dtype=np.int64)
            for name, value in self._feeds(ids, mask, length).items():
                binding.bind_cpu_input(name, value)
            for name, value in past.items():
                binding.bind_ortvalue_input(name, value)
            binding.clear_binding_outputs()
            binding.bind_output("logits")
            for name in self.present_names:
                if self.shares_cache:
                    binding.bind_ortvalue_output(name, past[_past_name(name)])
                else:
                    binding.bind_output(name)
            self.session.run_with_iobinding(binding)
            outputs = binding.get_outputs()
            token = int(outputs[0].numpy()[0, -1].argmax())
            if not self.shares_cache:
                past = dict(zip(map(_past_name, self.present_names), outputs[1:], strict=True))
            times.append(time.perf_counter() - start)
            length += ids.shape[1]
            tokens.append(token)
            ids = np.asarray([[token]], dtype=np.int64)
        return Generation(tokens, times[0], times[1:])

    def close(self) -> None:
        del self.session


def _cache_shape(folder: Path) -> tuple[int, int]:
    """(KV heads, head size) from config.json or genai_config.json beside an ONNX file."""
    import json

    for name in ("config.json", "genai_config.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        config = data.get("model", {}).get("decoder", data) if name.startswith("genai") else data
        heads = config.get("num_attention_heads")
        kv = config.get("num_key_value_heads", heads)
        size = config.get("head_dim") or config.get("head_size")
        if size is None and heads and config.get("hidden_size"):
            size = config["hidden_size"] // heads
        if isinstance(kv, int) and isinstance(size, int):
            return kv, size
    raise UserError(
        f"{folder}: the KV cache shape is not in the graph, config.json or genai_config.json"
    )


def _context_length(folder: Path) -> int | None:
    """The longest sequence the model was built for (config.json beside the file)."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return int(value) if isinstance(value, int) else None


def _past_name(present: str) -> str:
    """`present.3.key` -> `past_key_values.3.key` (optimum's names for the same cache)."""
    return "past_key_values." + present.removeprefix("present.")

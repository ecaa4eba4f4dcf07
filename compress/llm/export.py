"""Export a causal LM to ONNX with its KV cache, and prove the file computes what PyTorch does.

optimum-onnx's `text-generation-with-past` export writes one `model.onnx`
with dynamic batch, sequence and past-length axes (inputs `input_ids`,
`attention_mask`, `position_ids`, `past_key_values.N.key/value`; outputs
`logits`, `present.N.key/value`); an empty past (length 0) is the prompt's
step. Parity is checked both ways it runs: whole right-padded sequences with
no past, and a prompt followed by tokens fed one at a time through the cache.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from compress.errors import ExportParityError


def export_with_past(model: Any, tokenizer: Any, folder: Path, opset: int) -> Path:
    """`folder/model.onnx` (and the tokenizer and configs beside it)."""
    from optimum.exporters.onnx import onnx_export_from_model

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings; parity is checked instead
        onnx_export_from_model(
            model,
            folder,
            opset=opset,
            task="text-generation-with-past",
            do_validation=False,
            preprocessors=[tokenizer],
        )
    return folder / "model.onnx"


def fuse_decoder(source: Path, target: Path, config: Any) -> tuple[dict[str, int], str | None]:
    """ONNX Runtime's decoder fusions of `source` into `target`: RMSNorm (with the residual
    add: SkipSimplifiedLayerNormalization) and rotary embeddings, then each layer's attention
    rewritten into one GroupQueryAttention node (`compress.llm.attention`). Returns the fused
    operator counts and, where the attention could not be rewritten, why.

    The rotary fusion tabulates cos/sin for 131,072 positions; the tables are cut to the
    model's context (max_position_embeddings), the positions it can be fed.
    """
    from onnx import numpy_helper
    from onnxruntime.transformers.optimizer import optimize_model

    from compress.llm.attention import fuse_attention

    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    context = int(getattr(config, "max_position_embeddings", 2048))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimize_model(
            str(source), model_type="gpt2", num_heads=heads, hidden_size=hidden, opt_level=0
        )
    for tensor in fused.model.graph.initializer:
        if tensor.name in ("cos_cache", "sin_cache") and tensor.dims and tensor.dims[0] > context:
            table = numpy_helper.to_array(tensor)[:context]
            tensor.CopyFrom(numpy_helper.from_array(table, tensor.name))
    counts = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    window = getattr(config, "sliding_window", None)
    scaled = [a for a in ("attention_multiplier", "query_pre_attn_scalar") if hasattr(config, a)]
    if head_dim % 16:
        skipped: str | None = f"head size {head_dim} (GroupQueryAttention needs a multiple of 16)"
    elif window and window < context:
        skipped = f"a sliding window of {window} tokens"
    elif scaled:
        skipped = f"attention scaled by {scaled[0]}"
    else:
        found = fuse_attention(fused.model, heads, kv_heads, head_dim**-0.5)
        skipped = found if isinstance(found, str) else None
        if isinstance(found, int):
            counts["GroupQueryAttention"] = found
    large = fused.model.ByteSize() > 1_800_000_000
    fused.save_model_to_file(str(target), use_external_data_format=large)
    return counts, skipped


def lm_parity(model: Any, file: Path, sequences: list[list[int]], atol: float) -> dict[str, float]:
    """Max |logit difference| without past (padded batch) and with past (token by token)."""
    import torch

    from compress.llm.runtime import OrtLM
    from compress.llm.scores import _padded

    ort_lm = OrtLM(file)
    model.eval()
    ids, mask = _padded(sequences, 0)
    with torch.inference_mode():
        expected = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    want = expected.logits.float().numpy()
    got = ort_lm.logits(ids, mask)
    real = mask.astype(bool)
    no_past = float(np.abs(got[real] - want[real]).max())
    with_past = 0.0
    for row, seq in enumerate(sequences[:2]):
        split = max(1, len(seq) // 2)
        for position, logits in ort_lm.step_logits(seq[:split], seq[split:]):
            with_past = max(with_past, float(np.abs(logits - want[row, position]).max()))
    ort_lm.close()
    worst = {"without past": no_past, "with past": with_past}
    bad = {k: v for k, v in worst.items() if not np.isfinite(v) or v > atol}
    if bad:
        raise ExportParityError("ONNX export", bad, atol)
    return worst

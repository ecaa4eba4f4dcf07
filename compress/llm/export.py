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

EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's 2 GB limit, with room


def save_onnx(model: Any, target: Path) -> None:
    """Write `model` (ModelProto) to `target`, its weights in `target.data` when the graph is
    too large for one protobuf."""
    import onnx

    large = model.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save(model, str(target), save_as_external_data=large, location=target.name + ".data")


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
    rewritten into one GroupQueryAttention node (`compress.llm.attention`; its window,
    softcap and scale from `compress.llm.families.gqa_settings`). Returns the fused
    operator counts and, where the attention could not be rewritten (`gqa_blockers`: Q/K
    norms, a fused qkv_proj), why: the file then keeps optimum's
    attention graph.

    The rotary fusion tabulates cos/sin for 131,072 positions; the tables are cut to the
    model's context (max_position_embeddings), the positions it can be fed.
    """
    from onnx import numpy_helper
    from onnxruntime.transformers.optimizer import optimize_model

    from compress.llm.attention import fuse_attention
    from compress.llm.families import gqa_blockers, gqa_settings
    from compress.quant.ort_quantize import quiet_root_logger

    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // heads)
    context = int(getattr(config, "max_position_embeddings", 2048))
    with warnings.catch_warnings(), quiet_root_logger():  # ORT's fusion notes are not ours
        warnings.simplefilter("ignore")
        fused = optimize_model(
            str(source), model_type="gpt2", num_heads=heads, hidden_size=hidden, opt_level=0
        )
    for tensor in fused.model.graph.initializer:
        if tensor.name in ("cos_cache", "sin_cache") and tensor.dims and tensor.dims[0] > context:
            table = numpy_helper.to_array(tensor)[:context]
            tensor.CopyFrom(numpy_helper.from_array(table, tensor.name))
    counts = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    _batch_positions(fused.model)
    blockers = gqa_blockers(config, head_dim)
    skipped: str | None = "; ".join(blockers) if blockers else None
    if not blockers:
        settings = gqa_settings(config, head_dim)
        found = fuse_attention(fused.model, heads, kv_heads, **settings)
        skipped = found if isinstance(found, str) else None
        if isinstance(found, int):
            counts["GroupQueryAttention"] = found
    large = fused.model.ByteSize() > EXTERNAL_DATA_BYTES
    fused.save_model_to_file(str(target), use_external_data_format=large)
    return counts, skipped


ELEMENTWISE = ("Div", "Mul", "Tanh", "Cast", "Add", "Sub")


def head_outputs(graph: Any) -> set[str]:
    """The graph's outputs and what reaches them through elementwise ops alone: the LM
    head's MatMul writes one of these, whether it is the logits (Llama) or is capped
    first (Gemma's `final_logit_softcapping`: tanh(x / cap) * cap)."""
    producers = {out: node for node in graph.node for out in node.output}
    constants = {t.name for t in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    found = {o.name for o in graph.output}
    for name in list(found):
        node = producers.get(name)
        while node is not None and node.op_type in ELEMENTWISE:
            moving = [i for i in node.input if i and i not in constants]
            if len(moving) != 1:
                break
            found.add(moving[0])
            node = producers.get(moving[0])
    return found


def _batch_positions(model: Any) -> None:
    """Give every fused RotaryEmbedding positions of shape (batch, sequence).

    An export without a `position_ids` input (Gemma 2 and 3 in optimum) computes the
    positions once, shape (1, sequence), which PyTorch broadcasts over the batch;
    ONNX Runtime's RotaryEmbedding needs one row per sequence, so they are expanded to the
    shape of `input_ids` (the same positions for every row: prompts are right-padded)."""
    from onnx import helper

    inputs = {i.name for i in model.graph.input}
    shared = {
        n.input[1]
        for n in model.graph.node
        if n.op_type == "RotaryEmbedding" and n.input[1] not in inputs
    }
    if not shared or "input_ids" not in inputs:
        return
    nodes = [helper.make_node("Shape", ["input_ids"], ["rotary/batch_shape"], name="rotary/Shape")]
    renamed = {}
    for index, name in enumerate(sorted(shared)):
        renamed[name] = f"rotary/positions_{index}"
        nodes.append(
            helper.make_node(
                "Expand",
                [name, "rotary/batch_shape"],
                [renamed[name]],
                name=f"rotary/Expand_{index}",
            )
        )
    for node in model.graph.node:
        if node.op_type == "RotaryEmbedding" and node.input[1] in renamed:
            node.input[1] = renamed[node.input[1]]
    # after the last producer of the positions, so the graph stays topologically sorted
    producers = [i for i, n in enumerate(model.graph.node) if set(n.output) & shared]
    at = max(producers) + 1 if producers else 0
    for offset, node in enumerate(nodes):
        model.graph.node.insert(at + offset, node)


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

"""ONNX export of a `SentenceEmbedder`: pooling and L2 normalization inside the graph.

`export_embedder` writes the portable graph (inputs `input_ids`, `attention_mask` and,
when the tokenizer produces them and the encoder takes them, `token_type_ids`; output
`sentence_embedding` [batch_size, dim]); `optimize_embedder` applies ONNX Runtime's
BERT fusions to it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import PassFailed

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from compress.text.embedding import SentenceEmbedder

OUTPUT = "sentence_embedding"
EXAMPLE_TEXTS = ["a short one", "a longer example sentence, so that the batch is padded"]


def input_names(model: SentenceEmbedder, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The graph's inputs, in the order of `SentenceEmbedder.forward`."""
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names and model.accepts("token_type_ids"):
        names.append("token_type_ids")
    return names


def export_embedder(
    model: SentenceEmbedder, tokenizer: PreTrainedTokenizerBase, path: Path, opset: int
) -> Path:
    """Trace `model` to `path` with dynamic batch and sequence axes; returns `path`."""
    import torch

    names = input_names(model, tokenizer)
    batch = tokenizer(EXAMPLE_TEXTS, padding=True, return_tensors="pt")
    args = tuple(
        batch[name] if name in batch else torch.zeros_like(batch["input_ids"]) for name in names
    )
    axes: dict[str, dict[int, str]] = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    axes[OUTPUT] = {0: "batch_size"}
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings; callers check parity instead
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=names,
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path


def optimize_embedder(portable: Path, target: Path, config: Any) -> dict[str, int]:
    """ONNX Runtime's BERT fusions of `portable`, saved to `target`; the fused operator counts.

    With pruned heads the layers differ in width, so ONNX Runtime reads each
    layer's heads from its weights (num_heads=0, hidden_size=0).
    """
    from onnxruntime.transformers.optimizer import optimize_model

    from compress.quant.ort_quantize import quiet_root_logger

    uniform = not getattr(config, "pruned_heads", None)
    with warnings.catch_warnings(), quiet_root_logger():
        warnings.simplefilter("ignore")
        optimized = optimize_model(
            str(portable),
            model_type="bert",
            num_heads=int(config.num_attention_heads) if uniform else 0,
            hidden_size=int(config.hidden_size) if uniform else 0,
        )
    outputs = [o.name for o in optimized.model.graph.output]
    if outputs != [OUTPUT]:
        raise PassFailed(f"{target.name}: ONNX Runtime's fusions changed the outputs to {outputs}")
    target.parent.mkdir(parents=True, exist_ok=True)
    optimized.save_model_to_file(str(target))
    stats = optimized.get_fused_operator_statistics()
    return {str(k): int(v) for k, v in stats.items() if v}

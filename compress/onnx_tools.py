"""Small ONNX Runtime helpers the passes share: sessions, feeds and parity checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.data.text import collate, encode
from compress.errors import ExportParityError
from compress.tasks.base import logits_of

if TYPE_CHECKING:
    import onnxruntime
    from transformers import PreTrainedTokenizerBase


def session(path: Path, threads: int = 0) -> onnxruntime.InferenceSession:
    """A CPU inference session (`threads=0`: ONNX Runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def feeds_for(sess: onnxruntime.InferenceSession, batch: dict[str, Any]) -> dict[str, np.ndarray]:
    """The subset of `batch` the session declares, as NumPy arrays of the declared types."""
    out = {}
    for declared in sess.get_inputs():
        value = batch[declared.name]
        array = value.numpy() if hasattr(value, "numpy") else value
        out[declared.name] = np.asarray(array, dtype=_ORT_TYPES.get(declared.type, np.int64))
    return out


def parity_batches(
    tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int, batches: int = 4
) -> list[dict[str, Any]]:
    """Real inputs for parity checks: batches of mixed lengths, one padded to `max_length`."""
    texts = texts[: batches * 8] or ["a"]
    encoded = encode(tokenizer, texts, max_length)
    out = [
        collate(tokenizer, encoded, range(i, min(i + 8, len(texts))))
        for i in range(0, len(texts), 8)
    ]
    full = tokenizer(
        texts[:2], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    out.append(dict(full))
    return out


def image_parity_batches(processor: Any, images: Any, batches: int = 4) -> list[dict[str, Any]]:
    """Real images for parity checks, in batches of up to 8."""
    import torch

    count = min(len(images), batches * 8)
    if count == 0:
        raise ValueError("no images for the parity check")
    return [
        {
            "pixel_values": torch.from_numpy(
                processor([images[j] for j in range(i, min(i + 8, count))])
            )
        }
        for i in range(0, count, 8)
    ]


def check_parity(
    what: str,
    model: Any,
    onnx_path: Path,
    batches: list[dict[str, Any]],
    atol: float,
) -> float:
    """Max |logit difference| between `model` and the ONNX file; raises above `atol`."""
    import torch

    sess = session(onnx_path)
    worst = 0.0
    model.eval()
    with torch.inference_mode():
        for batch in batches:
            expected = logits_of(model(**batch)).float().numpy()
            got = sess.run(None, feeds_for(sess, batch))[0]
            if got.shape != expected.shape:
                raise ExportParityError(what, {"logits shape": float("inf")}, atol)
            worst = max(worst, float(np.abs(got - expected).max()))
    if not np.isfinite(worst) or worst > atol:
        raise ExportParityError(what, {"logits": worst}, atol)
    return worst

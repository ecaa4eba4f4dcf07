"""A tiny BERT classifier saved offline as a Hugging Face folder plus ONNX files."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from compress.artifacts import Artifact, Variant
from compress.data import Split

_WORDS = (
    "the a movie film plot actor actors story scene scenes good great fine bad awful boring "
    "dull fun loved hated it was is very not really quite and but with of to this that"
)
WORDS = _WORDS.split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXTS = [
    "the movie was great",
    "the plot was very dull and boring",
    "good",
    "bad film",
    "i loved the actors but the story was not really fun",
    "awful",
    "the scenes with the actor were quite fine",
    "hated it",
    "this film is a very good film and the story is great and fun",
    "dull",
]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0]


def _build(folder: Path) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=128)
    tokenizer.save_pretrained(folder)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(SPECIAL) + len(WORDS),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # distinct values, so the exporter merges no equal initializers
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    model.save_pretrained(folder)

    sample = tokenizer(["the movie was good", "bad"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes about constants in the mask code
        torch.onnx.export(
            model,
            (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
            str(folder / "model.onnx"),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    _build(folder)
    return folder


@pytest.fixture(scope="session")
def hf_artifact(model_dir: Path) -> Artifact:
    return Artifact("hf", model_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])


@pytest.fixture(scope="session")
def onnx_artifact(model_dir: Path) -> Artifact:
    variant = Variant("fp32", "onnxruntime", "fp32", "cpu", "model.onnx")
    return Artifact("onnx", model_dir, "tiny-onnx", [variant])


@pytest.fixture(scope="session")
def int8_artifact(model_dir: Path) -> Artifact:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(model_dir / "model.onnx"),
        str(model_dir / "model.int8.onnx"),
        weight_type=QuantType.QInt8,
    )
    variant = Variant("int8", "onnxruntime", "int8", "cpu", "model.int8.onnx")
    return Artifact("onnx", model_dir, "tiny-int8", [variant])


@pytest.fixture()
def split() -> Split:
    return Split(list(TEXTS), np.array(LABELS, dtype=np.int64))


@pytest.fixture()
def tokenizer(model_dir: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)

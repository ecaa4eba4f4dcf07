"""The recipe validator refuses, before any model loads, passes the model cannot take."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compress.errors import RecipeError
from compress.recipe import load_recipe


def fake_model(folder: Path, model_type: str, tokenizer: str | None = "WordPiece") -> Path:
    """A folder with only the JSON files the validator reads (no weights: nothing loads)."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    if tokenizer is not None:
        (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": tokenizer}}))
    return folder


def recipe(tmp_path: Path, passes: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  source: ./m\ndata:\n  source: rotten-tomatoes\npasses:\n" + passes)
    return path


def error_of(path: Path) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    return info.value


def test_an_architecture_without_an_adapter_fails_prune_and_distill_at_validation(
    tmp_path: Path,
) -> None:
    fake_model(tmp_path / "m", "mpnet")
    err = error_of(recipe(tmp_path, "  - fine_tune\n  - prune:\n      ffn: 0.5\n"))
    assert err.key == "passes[1].prune" and err.line == 7
    assert "model type 'mpnet'" in str(err) and "distilbert" in str(err)
    err = error_of(recipe(tmp_path, "  - distill:\n      layers: 2\n"))
    assert "distill.layers does not support model type 'mpnet'" in str(err)
    assert "student:" in str(err)
    # passes that need no adapter still take it
    load_recipe(recipe(tmp_path, "  - fine_tune\n  - export_onnx\n  - quantize\n"))


def test_deberta_heads_and_unknown_tokenizers_are_refused(tmp_path: Path) -> None:
    fake_model(tmp_path / "m", "deberta-v2", tokenizer="WordLevel")
    err = error_of(recipe(tmp_path, "  - prune:\n      heads: 0.5\n"))
    assert "heads" in str(err) and "DeBERTa" in str(err)
    load_recipe(recipe(tmp_path, "  - prune:\n      ffn: 0.5\n      layers: 2\n"))
    err = error_of(recipe(tmp_path, "  - prune_vocab\n"))
    assert "WordLevel" in str(err) and "Unigram" in str(err)


def test_a_given_student_is_checked_in_place_of_the_teacher(tmp_path: Path) -> None:
    fake_model(tmp_path / "m", "bert")
    fake_model(tmp_path / "student", "albert", tokenizer="Unigram")
    path = recipe(tmp_path, "  - distill:\n      student: ./student\n  - prune:\n      ffn: 0.5\n")
    err = error_of(path)
    assert err.key == "passes[1].prune" and "'albert'" in str(err)
    load_recipe(recipe(tmp_path, "  - distill:\n      student: ./student\n  - prune_vocab\n"))


def test_image_passes_check_the_architecture(tmp_path: Path) -> None:
    fake_model(tmp_path / "m", "convnext", tokenizer=None)
    text = "task: image-classification\nmodel:\n  source: ./m\ndata:\n  source: mnist\npasses:\n"
    path = tmp_path / "r.yaml"
    path.write_text(text + "  - prune_channels\n")
    assert "prune_channels does not support 'convnext'" in str(error_of(path))
    path.write_text(text.replace("./m", "mnist-cnn") + "  - prune:\n      ffn: 0.5\n")
    assert "model type 'mnist-cnn'" in str(error_of(path)) and "prune_channels" in str(
        error_of(path)
    )
    path.write_text(text + "  - export_onnx\n  - quantize\n")
    load_recipe(path)


def test_image_size_is_for_image_recipes(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  source: minilm-l6\n  image_size: 64\n")
    err = error_of(path)
    assert err.key == "model.image_size" and err.line == 3
    path.write_text(
        "task: image-classification\nmodel:\n  source: efficientnet-lite0\n  image_size: 64\n"
        "data:\n  source: fashion-mnist\npasses:\n  - export_onnx\n"
    )
    assert load_recipe(path).doc.model.image_size == 64

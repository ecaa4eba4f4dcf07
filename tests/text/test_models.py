"""Model sources: offline names, folders, hub ids, and the loads that are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from compress.errors import ModelLoadError
from compress.text.models import load_classifier, load_tokenizer, resolve_source, save_hf


def test_resolve_offline_local_and_hub(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert Path(resolve_source("minilm-l6"), "config.json").is_file()
    assert resolve_source(str(tiny_model_dir)) == str(tiny_model_dir.resolve())
    assert resolve_source("bert-base-uncased") == "bert-base-uncased"  # left to the hub
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        resolve_source(str(tmp_path / "empty"))


def test_head_is_sized_to_the_labels(tiny_model_dir: Path) -> None:
    model, _ = load_classifier(str(tiny_model_dir), ["a", "b", "c"])
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}


def test_pickle_checkpoints_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    model, _ = load_classifier(str(tiny_model_dir))
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_classifier(str(folder))


def test_remote_code_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    config["model_type"] = "evil-remote"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError, match="never runs code shipped with a model"):
        load_classifier(str(folder))


def test_inputs_the_model_does_not_take_are_not_fed(tmp_path: Path) -> None:
    """A DistilBERT saved with a BERT tokenizer (which emits token_type_ids) still runs."""
    from transformers import (
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    from tests.archs import build

    folder = build("distilbert", tmp_path / "m")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    model, tokenizer = load_classifier(str(folder), ["neg", "pos"])
    batch = tokenizer(["good film"], return_tensors="pt")
    assert "token_type_ids" not in batch
    model(**batch)
    save_hf(model, tokenizer, tmp_path / "saved")
    assert "token_type_ids" not in load_tokenizer(tmp_path / "saved")(["good"])
    assert isinstance(model.config, DistilBertConfig)
    assert isinstance(model, DistilBertForSequenceClassification)

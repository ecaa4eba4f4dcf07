"""Sentence-embedding bundles: embed.py against PyTorch, and make_embed_bundle's files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compress.artifacts import Artifact, RunFolder, Variant, write_manifest
from compress.deploy.embed_bundle import SCRIPT, make_embed_bundle, pick_embed_model
from compress.errors import UserError
from tests.conftest import build_tiny_classifier, widen_weights
from tests.deploy.agreement import device_run

MAX_LENGTH = 16
TEXTS = [
    "good",
    "the movie was really fun",
    "a dull plot and a weak actor but the scene is quite fine",
    # longer than MAX_LENGTH tokens: cut there, as the PyTorch side is
    " ".join(["the story was not very good and the film is really boring"] * 3),
    "Loved it, GREAT fun!",
]


class Encoder:
    """A tiny BERT encoder, widened so that every text gets its own embedding."""

    def __init__(self, folder: Path) -> None:
        from transformers import BertModel, BertTokenizerFast

        build_tiny_classifier(folder, layers=2)
        self.folder = folder
        self.model = BertModel.from_pretrained(folder).eval()
        widen_weights(self.model, std=0.2, seed=3)
        self.tokenizer = BertTokenizerFast.from_pretrained(folder)

    def wrapper(self) -> Any:
        import torch

        class Pooled(torch.nn.Module):
            def __init__(self, bert: Any) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                hidden = self.bert(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                return torch.nn.functional.normalize(mean, dim=-1)

        return Pooled(self.model).eval()

    def export(self, path: Path, output: str = "sentence_embedding") -> Path:
        import torch

        batch = self.tokenizer(["a good film", "bad"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        torch.onnx.export(
            self.wrapper(),
            tuple(batch[n] for n in names),
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
        return path

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
        )
        with torch.no_grad():
            out = self.wrapper()(
                batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
            )
        return out.numpy()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    return Encoder(tmp_path_factory.mktemp("tiny-encoder") / "model")


@pytest.fixture(scope="module")
def script_dir(encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """embed.py beside model.onnx and tokenizer.json, without a manifest."""
    folder = tmp_path_factory.mktemp("embed-script")
    encoder.export(folder / "model.onnx")
    shutil.copyfile(encoder.folder / "tokenizer.json", folder / "tokenizer.json")
    shutil.copyfile(SCRIPT, folder / "embed.py")
    (folder / "texts.txt").write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    return folder


def _embed(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(folder / "embed.py"), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_embed_py_matches_pytorch_in_npy_and_jsonl(encoder: Encoder, script_dir: Path) -> None:
    """Texts of different lengths (one cut at max length), in batches of 2: the .npy holds
    the PyTorch wrapper's embeddings to 1e-4; the .jsonl the same numbers and texts."""
    want = encoder.embed(TEXTS)
    assert np.abs(want[0] - want[1]).max() > 0.05  # texts are told apart
    done = _embed(
        script_dir, "--file", "texts.txt", "--max-length", str(MAX_LENGTH),
        "--batch-size", "2", "--out", "out.npy",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = np.load(script_dir / "out.npy")
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    done = _embed(
        script_dir, "--file", "texts.txt", "--max-length", str(MAX_LENGTH), "--out", "out.jsonl"
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (script_dir / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS
    np.testing.assert_allclose(np.asarray([r["embedding"] for r in rows]), got, rtol=0, atol=1e-6)
    printed = _embed(script_dir, "--text", TEXTS[0], TEXTS[2], "--max-length", str(MAX_LENGTH))
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0] == "2 texts, dim 32" and lines[1].endswith("\tgood")
    first = [float(v) for v in lines[1].split("]")[0].strip("[ .").split()]
    np.testing.assert_allclose(first, want[0][:4], atol=1e-4)


def test_embed_py_refuses_in_one_line(encoder: Encoder, script_dir: Path) -> None:
    """An empty file, a missing file, no texts, a graph with `logits` instead of
    `sentence_embedding`, or an unknown output suffix: exit 2 and one line on stderr."""
    (script_dir / "empty.txt").write_text("\n  \n", encoding="utf-8")
    encoder.export(script_dir / "logits.onnx", output="logits")
    cases = {
        ("--file", "empty.txt"): "empty.txt: no texts in it",
        ("--file", "missing.txt"): "missing.txt: no such file",
        ("--text", "  "): "no texts to embed",
        ("--text", "a", "--model", "logits.onnx"): "no 'sentence_embedding' output (has logits)",
        ("--text", "a", "--model", "nowhere.onnx"): "nowhere.onnx: no such model file",
        ("--text", "a", "--out", "out.csv"): "write .npy or .jsonl",
    }
    for args, message in cases.items():
        done = _embed(script_dir, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
        assert message in done.stderr, done.stderr
        assert done.stdout == ""


def _step(
    run: Path, folder: str, name: str, variants: list[Variant], skipped: str | None = None
) -> None:
    step = run / folder
    artifact = Artifact("onnx", step, f"key-{folder}", variants)
    metrics = {"skipped": skipped} if skipped else {}
    write_manifest(
        step,
        {"pass": name, "artifact": artifact.to_json(), "metrics": metrics, "versions": {}},
    )


@pytest.fixture(scope="module")
def run_dir(encoder: Encoder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run by hand: 01-export_onnx with a portable file and a `cpu` one that keeps its
    weights in external data (and a dynamic embedding axis), then a skipped step holding
    a different file; a report that measured the cpu file."""
    import onnx

    run = tmp_path_factory.mktemp("embed-run") / "run"
    export = run / "01-export_onnx"
    export.mkdir(parents=True)
    encoder.export(export / "model.onnx")
    graph = onnx.load(str(export / "model.onnx"))
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "dim"
    onnx.save(
        graph,
        str(export / "model_ort.onnx"),
        save_as_external_data=True,
        location="model_ort.onnx.data",
        size_threshold=0,
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(encoder.folder / name, export / name)
    config = json.loads((encoder.folder / "config.json").read_text())
    (export / "config.json").write_text(json.dumps(config))
    (export / "1_Pooling").mkdir()
    (export / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    _step(
        run,
        "01-export_onnx",
        "export_onnx",
        [
            Variant("fp32", "onnxruntime", "fp32", "portable", "model.onnx"),
            Variant("fp32-ort", "onnxruntime", "fp32", "cpu", "model_ort.onnx"),
        ],
    )
    skipped = run / "02-tensorrt"
    skipped.mkdir()
    encoder.export(skipped / "other.onnx", output="logits")
    _step(
        run,
        "02-tensorrt",
        "tensorrt",
        [Variant("fp32", "onnxruntime", "fp32", "cpu", "other.onnx")],
        skipped="backend 'tensorrt' is not installed",
    )
    (run / "recipe.resolved.yaml").write_text(
        f"name: tiny\ntask: text-embedding\ndata:\n  max_length: {MAX_LENGTH}\n"
    )
    stage = {
        "stage": "export_onnx",
        "step": "01-export_onnx",
        "variant": "fp32-ort",
        "artifact_key": "key-01-export_onnx",
        "cosine_mean": 0.998,
        "cosine_p5": 0.99,
        "neighbour_recall_at_10": 0.95,
        "knn_accuracy": 0.8,
        "majority_baseline": 0.5,
        "latency_ms": 3.0,
    }
    report = {
        "report_version": 1,
        "method": {"data": {"test_rows": 32}},
        "stages": [{**stage, "stage": "input", "variant": "fp32", "cosine_mean": 1.0}, stage],
    }
    (run / "report.json").write_text(json.dumps(report))
    return run


def test_pick_prefers_cpu_files_skips_skipped_steps_and_refuses_tensorrt(run_dir: Path) -> None:
    steps = RunFolder(run_dir).steps()
    for target, file in [("cpu", "model_ort.onnx"), ("x86-cpu", "model_ort.onnx")]:
        assert pick_embed_model(steps, target)[1].file == file
    step, variant = pick_embed_model(steps, "jetson-orin-nano")
    assert (step.folder.name, variant.file) == ("01-export_onnx", "model.onnx")
    with pytest.raises(UserError, match="builds no TensorRT engine"):
        pick_embed_model(steps, "tensorrt")
    with pytest.raises(UserError, match="no ONNX model to bundle"):
        pick_embed_model(steps[1:], "cpu")


def test_make_embed_bundle_hashes_files_and_runs_without_compress(
    encoder: Encoder, run_dir: Path, tmp_path: Path
) -> None:
    """The tarball holds exactly the manifest's files with their sha256 (the cpu file with
    its external data, tokenizer, pooling config, embed.py); the manifest carries the max
    length, the dimension and the report's figures for this file; embed.py runs there in a
    clean interpreter with the manifest's defaults and matches PyTorch."""
    logged: list[str] = []
    made = make_embed_bundle(RunFolder(run_dir), tmp_path / "b", "x86-cpu", log=logged.append)
    assert made.tarball == tmp_path / "b.tar.gz" and "dim 32" in logged[0]
    with tarfile.open(made.tarball) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    folder = tmp_path / "unpacked" / "b"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest == json.loads((made.folder / "manifest.json").read_text())
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(manifest["files"]) | {"manifest.json"}
    for file, digest in manifest["files"].items():
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == digest, file
    assert on_disk == {
        "manifest.json", "README.md", "embed.py", "model_ort.onnx", "model_ort.onnx.data",
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json",
        "1_Pooling/config.json",
    }  # fmt: skip
    assert (folder / "embed.py").read_bytes() == SCRIPT.read_bytes()
    assert manifest["task"] == "text-embedding" and manifest["target"] == "x86-cpu"
    assert manifest["model"]["source"] == "01-export_onnx/model_ort.onnx"
    assert manifest["model"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["max_length"] == MAX_LENGTH and manifest["embedding_dim"] == 32
    expected = manifest["expected"]
    assert {k: v for k, v in expected.items() if k not in ("measured_on", "report")} == {
        "cosine_mean": 0.998,
        "cosine_p5": 0.99,
        "neighbour_recall_at_10": 0.95,
        "knn_accuracy": 0.8,
        "majority_baseline": 0.5,
    }
    assert expected["measured_on"] == "32 test rows"
    readme = (folder / "README.md").read_text()
    assert "cosine mean 0.998" in readme and "python embed.py --file texts.txt" in readme
    (folder / "texts.txt").write_text("\n".join(TEXTS), encoding="utf-8")
    done = device_run(folder, "embed.py", "--file", "texts.txt", "--out", "e.npy")
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(folder / "e.npy"), encoder.embed(TEXTS), atol=1e-4)


def test_make_embed_bundle_without_report_or_embedding_output(
    run_dir: Path, tmp_path: Path
) -> None:
    """No report: the manifest says why; a graph without `sentence_embedding` is refused
    and leaves nothing behind."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "report.json").unlink()
    made = make_embed_bundle(RunFolder(copy), tmp_path / "portable", "rtx-4090", log=lambda _: None)
    assert made.manifest["model"]["file"] == "model.onnx"
    assert made.manifest["expected"] == {
        "why": "the run has no report.json (run `compress report`)"
    }
    assert "nothing for this file" in (made.folder / "README.md").read_text()
    skipped = json.loads((copy / "02-tensorrt" / "manifest.json").read_text())
    skipped.update(metrics={}, state="ran", reason=None)  # as if the step had run
    (copy / "02-tensorrt" / "manifest.json").write_text(json.dumps(skipped))
    with pytest.raises(UserError, match="no 'sentence_embedding' output"):
        make_embed_bundle(RunFolder(copy), tmp_path / "bad", "cpu", log=lambda _: None)
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".bad.partial").exists()

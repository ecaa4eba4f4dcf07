from pathlib import Path

import pytest

from compress.artifacts import (
    MANIFEST_VERSION,
    Artifact,
    Variant,
    copy_preprocessing,
    hash_files,
    hash_json,
    read_manifest,
    step_writer,
    write_json_atomic,
)


def test_hashes_are_stable_and_content_sensitive(tmp_path: Path) -> None:
    assert hash_json({"a": 1, "b": [1, 2]}) == hash_json({"b": [1, 2], "a": 1})
    assert hash_json({"a": 1}) != hash_json({"a": 2})
    (tmp_path / "w.bin").write_bytes(b"abc")
    first = hash_files(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"abd")
    assert hash_files(tmp_path) != first


def test_step_writer_replaces_atomically(tmp_path: Path) -> None:
    step = tmp_path / "01-x"
    with step_writer(step) as work:
        (work / "a.txt").write_text("1")
        write_json_atomic(
            work / "manifest.json", {"manifest_version": MANIFEST_VERSION, "key": "k1"}
        )
    assert (step / "a.txt").read_text() == "1"
    assert read_manifest(step) == {"manifest_version": MANIFEST_VERSION, "key": "k1"}
    with pytest.raises(RuntimeError), step_writer(step) as work:
        (work / "a.txt").write_text("2")
        raise RuntimeError("crash mid-step")
    assert (step / "a.txt").read_text() == "1"  # the finished step is untouched by the crash
    with step_writer(step) as work:
        (work / "b.txt").write_text("new")
    assert not (step / "a.txt").exists() and (step / "b.txt").is_file()
    assert read_manifest(step) is None  # no manifest: not a finished step
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01-x"]  # no partial or old copies


def test_manifest_of_another_version_is_ignored(tmp_path: Path) -> None:
    write_json_atomic(tmp_path / "manifest.json", {"manifest_version": 999})
    assert read_manifest(tmp_path) is None
    (tmp_path / "manifest.json").write_text("{not json")
    assert read_manifest(tmp_path) is None


def test_copy_preprocessing_skips_weights_manifests_and_caches(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    for name in (
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "model.onnx",
        "model.safetensors",
        "manifest.json",
        "bench-fp32-abc.json",
        ".hidden",
    ):
        (src / name).write_text("x")
    assert copy_preprocessing(src, dst) == ["config.json", "tokenizer.json", "vocab.txt"]


def test_artifact_round_trip_and_variants(tmp_path: Path) -> None:
    variants = [
        Variant("fp32", "onnxruntime", "fp32", "portable", "model.onnx"),
        Variant("int8", "onnxruntime", "int8", "cpu", "model_int8.onnx"),
    ]
    art = Artifact("onnx", tmp_path, "key", variants, {"opset": 18})
    again = Artifact.from_json(art.to_json())
    assert again == art
    assert art.for_target("cpu").name == "int8"
    assert art.for_target("tensorrt").name == "fp32"  # falls back to the portable file
    assert art.file(art.variant("int8")) == tmp_path / "model_int8.onnx"
    with pytest.raises(KeyError):
        art.variant("fp16")


def test_manifest_records_every_file_and_names_the_first_that_changed(tmp_path: Path) -> None:
    from compress.artifacts import finished_step, write_manifest

    step = tmp_path / "01-x"
    with step_writer(step) as work:
        (work / "model.onnx").write_bytes(b"graph")
        (work / "sub").mkdir()
        (work / "sub" / "vocab.txt").write_text("a\nb\n")
        artifact = Artifact("onnx", work, "k", [Variant("v", "onnxruntime", "fp32", "cpu", "x")])
        manifest = write_manifest(work, {"pass": "x", "key": "k", "artifact": artifact.to_json()})
    assert set(manifest["files"]) == {"model.onnx", "sub/vocab.txt"}
    assert manifest["files"]["model.onnx"]["bytes"] == 5
    found = finished_step(step)
    assert found is not None and found.changed_file() is None
    (step / "eval-cache.json").write_text("{}")  # files added after the manifest do not count
    assert found.changed_file() is None
    (step / "model.onnx").write_bytes(b"grapH")  # same size, other bytes
    assert found.changed_file() == "model.onnx changed (sha256 differs)"
    (step / "model.onnx").write_bytes(b"graph, longer")
    assert found.changed_file() == "model.onnx changed size (5 -> 13 bytes)"
    (step / "model.onnx").unlink()
    assert found.changed_file() == "model.onnx is missing"

"""Hostile and broken inputs, each through the real `compress` entry point.

Every case must end in exactly one `error:` line that names the place (the
recipe's file:line and key, the data file and row, the model path), exit code
2, no traceback, and no step folder that looks finished for a step that did
not finish. Nearly all cases stop at validation or while loading data or the
model, so the whole file runs in seconds.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from compress.artifacts import read_manifest
from compress.cli import main
from tests.conftest import make_texts

ROOT = Path(__file__).parents[1]


def expect_error(capsys: pytest.CaptureFixture[str], argv: list[str | Path], *needles: str) -> str:
    """Run the CLI; assert exit 2, one `error:` line (the last) holding `needles`, no traceback."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, f"exit {code}\n{out}\n{err}"
    assert len(errors) == 1, err
    assert err.strip().splitlines()[-1] == errors[0]
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def assert_no_false_step(out: Path) -> None:
    """No step folder without a valid manifest, and no leftover partial folder."""
    if not out.exists():
        return
    for item in out.iterdir():
        assert not item.name.endswith(".partial"), f"left behind: {item}"
        if re.match(r"\d\d-", item.name):
            assert read_manifest(item) is not None, f"{item} looks finished but has no manifest"


# --- the recipe: YAML and validation ------------------------------------------------------------

ALIAS_BOMB = "\n".join(
    ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
)

# (case id, recipe text, what the one error line must hold: "LINE key: ..." after the file name)
RECIPE_CASES = [
    ("unclosed-flow", "passes: [fine_tune\n", [":2: invalid YAML"]),
    ("python-tag", "name: !!python/object/apply:os.system ['id']\n", [":1 name: YAML tag"]),
    ("custom-tag", "model: !include other.yaml\n", [":1 model: YAML tag '!include'"]),
    ("alias-bomb", ALIAS_BOMB, ["more than 64 YAML aliases"]),
    (
        "merge-key",
        "base: &b {epochs: 1}\npasses:\n  - fine_tune:\n      <<: *b\n",
        [":4 passes[0].fine_tune: YAML merge keys"],
    ),
    ("duplicate-key", "seed: 1\nseed: 2\n", [":2 seed: duplicate key"]),
    (
        "duplicate-nested-key",
        "passes:\n  - fine_tune:\n      epochs: 1\n      epochs: 2\n",
        [":4 passes[0].fine_tune.epochs: duplicate key"],
    ),
    (
        "unknown-pass",
        "passes:\n  - quantise\n",
        [":2 passes[0]: unknown pass 'quantise', did you mean 'quantize'?"],
    ),
    ("unknown-top-key", "benchmrk: {}\n", [":1 benchmrk: unknown key", "'benchmark'"]),
    (
        "unknown-pass-option",
        "passes:\n  - distill: {layer: 3}\n",
        [":2 passes[0].distill.layer: unknown option of 'distill'", "'layers'"],
    ),
    ("unknown-data-key", "data:\n  sorce: x.csv\n", [":2 data.sorce: unknown key"]),
    (
        "wrong-type",
        "passes:\n  - fine_tune: {epochs: many}\n",
        [":2 passes[0].fine_tune.epochs:", "'many'"],
    ),
    ("section-not-mapping", "model: 3\n", [":1 model:", "(got 3)"]),
    ("passes-not-list", "passes: fine_tune\n", [":1 passes: Input should be a valid list"]),
    (
        "out-of-range",
        "passes:\n  - prune: {heads: 1.5}\n",
        [":2 passes[0].prune.heads: Input should be less than 1 (got 1.5)"],
    ),
    ("too-short", "data:\n  max_length: 4\n", [":2 data.max_length:", "(got 4)"]),
    ("nan-value", "passes:\n  - export_onnx: {atol: .nan}\n", ["passes[0].export_onnx.atol:"]),
    (
        "onnx-pass-first",
        "passes:\n  - quantize\n  - export_onnx\n",
        [":2 passes[0]: 'quantize' needs an ONNX model", "add 'export_onnx' or 'qat' before it"],
    ),
    (
        "hf-pass-after-export",
        "passes:\n  - export_onnx\n  - distill\n",
        [":3 passes[1]: 'distill' needs a Hugging Face model"],
    ),
    ("pass-two-keys", "passes:\n  - {fine_tune: {}, distill: {}}\n", [":2 passes[0]:", "one key"]),
    ("pass-options-scalar", "passes:\n  - fine_tune: 3\n", ["must be a mapping"]),
    ("recipe-is-list", "- fine_tune\n- distill\n", [":1: a recipe must be a mapping"]),
    ("recipe-is-scalar", "hello\n", [":1: a recipe must be a mapping"]),
    ("two-documents", "seed: 1\n---\nseed: 2\n", [":2: invalid YAML"]),
    ("tab-indent", "passes:\n\t- fine_tune\n", [":2: invalid YAML", "'\\t'"]),
    ("non-string-key", "1: a\n", [":1: keys must be strings"]),
    ("too-deep", "a: " + "[" * 40 + "]" * 40 + "\n", ["nested deeper than 32 levels"]),
    ("date-as-name", "name: 2024-01-01\n", [":1 name: '2024-01-01' reads as a date"]),
    ("name-escapes-runs", "name: ../../outside\n", [":1 name: must be a plain name"]),
    ("seed-negative", "seed: -1\n", [":1 seed: must be between 0 and 4294967295"]),
    ("split-seed-negative", "data:\n  split_seed: -3\n", [":2 data.split_seed:"]),
    ("unknown-task", "task: translation\n", [":1 task:", "'translation'"]),
    (
        "unknown-target",
        "passes:\n  - export_onnx\n  - quantize: {targets: [gpu]}\n",
        [":3 passes[1].quantize.targets[0]:", "'gpu'"],
    ),
    (
        "bad-regex",
        "passes:\n  - export_onnx\n  - quantize: {exclude: ['(']}\n",
        ["passes[1].quantize.exclude:", "not a valid regex"],
    ),
]


@pytest.mark.parametrize(
    ("text", "needles"), [c[1:] for c in RECIPE_CASES], ids=[c[0] for c in RECIPE_CASES]
)
def test_broken_recipe(
    text: str, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    line = expect_error(capsys, ["validate", recipe], *needles)
    assert line.startswith(f"error: {recipe}")
    # `run` refuses the same recipe before it creates anything
    out = tmp_path / "out"
    expect_error(capsys, ["run", recipe, "--out", out], *needles)
    assert not out.exists()


# (case id, --set argument, what the error must hold)
OVERRIDE_CASES = [
    ("no-equals", "seed", ["--set: 'seed' is not key=value"]),
    ("bad-yaml-value", "seed=[1", ["--set:", "invalid YAML"]),
    ("path-does-not-exist", "passes[5].fine_tune.epochs=1", ["'passes[5]' does not exist"]),
    ("empty-key", "=3", ["--set: '=3' has an empty key"]),
    ("tag-in-value", "name=!!python/name:os.system", ["--set", "YAML tag"]),
    ("wrong-type", "passes[0].fine_tune.epochs=abc", ["passes[0].fine_tune.epochs:", "'abc'"]),
]


@pytest.mark.parametrize(
    ("override", "needles"), [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES]
)
def test_bad_override(
    override: str, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("passes:\n  - fine_tune: {epochs: 1}\n")
    expect_error(capsys, ["validate", recipe, "--set", override], *needles)


def test_recipe_file_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect_error(capsys, ["validate", tmp_path / "nope.yaml"], "nope.yaml: recipe not found")
    expect_error(capsys, ["validate", tmp_path], f"{tmp_path}: cannot read recipe")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: café\n".encode("latin-1"))
    expect_error(capsys, ["validate", latin1], "latin1.yaml: cannot read recipe")


def test_bom_and_comment_only_recipes_are_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a byte-order mark (Windows editors) is not an error; the recipe means what it says
    bom = tmp_path / "bom.yaml"
    bom.write_text("\ufeffname: bom\npasses:\n  - fine_tune\n", encoding="utf-8")
    assert main(["validate", str(bom)]) == 0
    assert "model -> fine_tune -> report" in capsys.readouterr().out
    # an empty or comment-only recipe is a one-line error, not "all defaults, no passes"
    for text in ("", "# nothing yet\n", "{}\n"):
        empty = tmp_path / "empty.yaml"
        empty.write_text(text)
        assert main(["validate", str(empty)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {empty}:1: recipe is empty") and "\n" not in err
    # one key is enough: the rest are defaults
    empty.write_text("name: defaults\n")
    assert main(["validate", str(empty)]) == 0
    assert capsys.readouterr().out.strip() == f"{empty}: ok (model -> report)"


def test_real_entry_point_prints_one_line(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("passes:\n  - fine_tune: !!python/object/apply:os.system ['touch pwned']\n")
    done = subprocess.run(
        [sys.executable, "-m", "compress", "validate", str(recipe)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {recipe}:2 passes[0].fine_tune: YAML tag "
        "'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"
    ]
    assert not (tmp_path / "pwned").exists()


# --- data and model, at run time ----------------------------------------------------------------

TEXTS, LABELS = make_texts(60, 7)
ROWS = "".join(f"{t},{['neg', 'pos'][y]}\n" for t, y in zip(TEXTS, LABELS, strict=True))

RUN_RECIPE = """\
name: hostile
model:
  source: {model}
data:
  source: {data}
  validation_size: 8
  test_size: 8
  max_length: 16
{extra}passes: []
"""


class Workspace:
    """A folder with a good CSV, the tiny model, and recipes that point at either or a bad one."""

    def __init__(self, root: Path, model: Path) -> None:
        self.root = root
        self.model = model
        (root / "data.csv").write_text("text,label\n" + ROWS)

    def recipe(
        self, model: Path | str | None = None, data: str = "data.csv", extra: str = ""
    ) -> Path:
        path = self.root / "r.yaml"
        path.write_text(RUN_RECIPE.format(model=model or self.model, data=data, extra=extra))
        return path

    def run_fails(
        self, capsys: pytest.CaptureFixture[str], recipe: Path, *needles: str
    ) -> tuple[str, Path]:
        out = self.root / "out"
        shutil.rmtree(out, ignore_errors=True)
        line = expect_error(
            capsys, ["run", recipe, "--out", out, "--no-report", "--quiet"], *needles
        )
        assert_no_false_step(out)
        assert not (out / "00-input").exists()
        return line, out

    def model_copy(self, name: str) -> Path:
        folder = self.root / "models" / name
        shutil.copytree(self.model, folder)
        return folder


@pytest.fixture()
def ws(tmp_path: Path, tiny_model_dir: Path) -> Workspace:
    return Workspace(tmp_path, tiny_model_dir)


# (case id, data file name, its bytes, extra data: lines, what the error must hold)
DATA_CASES: list[tuple[str, str, bytes | None, str, list[str]]] = [
    ("missing-file", "nope.csv", None, "", ["nope.csv: data file not found"]),
    ("empty-file", "d.csv", b"", "", ["d.csv: the dataset is empty"]),
    ("header-only", "d.csv", b"text,label\n", "", ["d.csv: the dataset is empty"]),
    (
        "one-class",
        "d.csv",
        ("text,label\n" + "".join(f"{t},pos\n" for t in TEXTS)).encode(),
        "",
        ["d.csv: needs at least two classes (found ['pos'])"],
    ),
    (
        "label-outside-label-set",
        "d.csv",
        ("text,label\n" + ROWS).encode(),
        "  labels: [neg, meh]\n",
        ["d.csv: row 2 has label 'pos', not in the label set ['neg', 'meh']"],
    ),
    (
        "labels-repeated",
        "d.csv",
        ("text,label\n" + ROWS).encode(),
        "  labels: [neg, pos, neg]\n",
        ["d.csv: data.labels names ['neg'] more than once"],
    ),
    (
        "not-utf8",
        "d.csv",
        ("text,label\n" + ROWS).encode() + "crème brûlée,pos\n".encode("latin-1"),
        "",
        ["d.csv: not UTF-8 text (byte"],
    ),
    (
        "no-text-column",
        "d.csv",
        ("review,label\n" + ROWS).encode(),
        "",
        ["d.csv: row 1 has no column 'text' (columns: review, label)"],
    ),
    (
        "row-without-label",
        "d.csv",
        ("text,label\n" + ROWS + "a lonely text\n").encode(),
        "",
        ["d.csv: row 61 has no label in column 'label'"],
    ),
    (
        "field-over-csv-limit",
        "d.csv",
        ("text,label\n" + ROWS + "x" * 200_000 + ",pos\n").encode(),
        "",
        ["d.csv: could not parse (field larger than field limit"],
    ),
    (
        "broken-jsonl-line",
        "d.jsonl",
        b'{"text": "good", "label": "pos"}\n{text: bad\n',
        "",
        ["d.jsonl:2: not valid JSON"],
    ),
    (
        "null-label-jsonl",
        "d.jsonl",
        b'{"text": "good", "label": "pos"}\n{"text": "bad", "label": null}\n',
        "",
        ["d.jsonl: row 2 has no label"],
    ),
    ("json-not-a-list", "d.json", b'{"text": "a", "label": "pos"}', "", ["expected a JSON list"]),
    ("unsupported-type", "d.txt", b"hello\n", "", ["d.txt: unsupported data file type"]),
    (
        "too-few-rows",
        "d.csv",
        ("text,label\n" + "".join(ROWS.splitlines(keepends=True)[:16])).encode(),
        "",
        ["16 examples cannot hold test_size=8 + validation_size=8"],
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "extra", "needles"),
    [c[1:] for c in DATA_CASES],
    ids=[c[0] for c in DATA_CASES],
)
def test_broken_data(
    name: str,
    content: bytes | None,
    extra: str,
    needles: list[str],
    ws: Workspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if content is not None:
        (ws.root / name).write_bytes(content)
    ws.run_fails(capsys, ws.recipe(data=name, extra=extra), *needles)


def test_data_source_is_a_folder(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    (ws.root / "folder.csv").mkdir()
    ws.run_fails(capsys, ws.recipe(data="folder.csv"), "folder.csv: not a file")


def _pickle_only(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


def _remote_code(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")


def _nan_weight(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    weights["bert.encoder.layer.1.output.dense.weight"][3, 5] = float("nan")
    weights["bert.encoder.layer.2.output.dense.weight"][0, 0] = float("inf")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _other_architecture(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="llama", architectures=["LlamaForSequenceClassification"])
    (folder / "config.json").write_text(json.dumps(config))


def _no_tokenizer(folder: Path) -> None:
    for item in folder.iterdir():
        if item.name.startswith(("tokenizer", "vocab", "special_tokens")):
            item.unlink()


def _truncate_weights(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


# (case id, how to break a copy of the tiny model, what the error must hold)
MODEL_CASES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("pickle-checkpoint-only", _pickle_only, ["weights only as a pickle (pytorch_model.bin)"]),
    ("asks-for-remote-code", _remote_code, ["asks to run its own code (auto_map"]),
    ("nan-and-inf-weights", _nan_weight, ["weight 'bert.encoder.layer.1.output.dense.weight'"]),
    ("weights-of-another-model", _other_architecture, ["weights do not fit its config.json"]),
    ("no-tokenizer", _no_tokenizer, ["no tokenizer files"]),
    ("truncated-safetensors", _truncate_weights, ["could not load model", "deserializing"]),
    (
        "config-not-json",
        lambda f: (f / "config.json").write_text("{'model_type': bert"),
        ["config.json: not valid JSON"],
    ),
    (
        "not-a-model-folder",
        lambda f: (f / "config.json").unlink(),
        ["not a Hugging Face model folder (no config.json)"],
    ),
]


@pytest.mark.parametrize(
    ("breaks", "needles"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES]
)
def test_broken_model(
    breaks: Callable[[Path], None],
    needles: list[str],
    ws: Workspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = ws.model_copy("broken")
    breaks(folder)
    line, _ = ws.run_fails(capsys, ws.recipe(model=folder), *needles)
    assert str(folder) in line  # the error names the model it refused


def test_model_source_problems(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    # a local path that does not exist is a validation error naming the line, before any run
    gone = ws.recipe(model=ws.root / "gone")
    expect_error(capsys, ["validate", gone], f"model.source: '{ws.root / 'gone'}' does not exist")
    ws.run_fails(capsys, gone, f":3 model.source: '{ws.root / 'gone'}' does not exist")
    fake = ws.root / "model.onnx"
    fake.write_bytes(b"this is not an ONNX protobuf")
    ws.run_fails(
        capsys, ws.recipe(model=fake), f"{fake}: a file; model.source needs a Hugging Face"
    )
    # a hub id with no hub reachable (the tests run with HF_HUB_OFFLINE=1)
    ws.run_fails(
        capsys, ws.recipe(model="bert-base-uncased"), "could not load model 'bert-base-uncased'"
    )


# --- where the run writes -----------------------------------------------------------------------


def test_out_is_a_file(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = ws.root / "file"
    blocker.write_text("x")
    expect_error(
        capsys, ["run", ws.recipe(), "--out", blocker / "run"], "cannot create the run folder"
    )


def test_out_folder_the_run_cannot_write_in(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The out folder exists but the first file the run writes there (its lock file) cannot
    be created: one error line naming the folder, and no step written.

    A folder stands where the lock file goes, so opening it fails even for root (a
    read-only folder would not stop root, and CI runs as root).
    """
    out = ws.root / "blocked"
    out.mkdir()
    (out / ".compress.lock").mkdir()
    line = expect_error(
        capsys, ["run", ws.recipe(), "--out", out, "--no-report"], f"{out}: cannot write"
    )
    assert str(out / ".compress.lock") in line  # and what it could not write
    assert_no_false_step(out)
    assert sorted(p.name for p in out.iterdir()) == [".compress.lock"]


def test_a_file_where_a_step_folder_is_made(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file at the name of a step's partial folder (left by another tool, or a user): one
    error line naming it and saying what to do, no traceback, and the file left alone."""
    out = ws.root / "in-the-way"
    out.mkdir()
    stray = out / ".00-input.partial"
    stray.write_text("not ours")
    line = expect_error(
        capsys, ["run", ws.recipe(), "--out", out, "--no-report"], "00-input: cannot write"
    )
    assert str(stray) in line and "move what is in the way" in line
    assert stray.read_text() == "not ours"
    assert not [p for p in out.iterdir() if re.match(r"\d\d-", p.name)]  # no step written


def _enospc(path: Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_disk_full_while_saving_the_model(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import compress.text.models

    def save_until_full(model: object, tokenizer: object, folder: Path) -> None:
        (folder / "model.safetensors").write_bytes(
            b"\0" * 1024
        )  # half a file, then the disk is full
        raise _enospc(folder / "model.safetensors")

    monkeypatch.setattr(compress.text.models, "save_hf", save_until_full)
    _, out = ws.run_fails(
        capsys,
        ws.recipe(),
        "00-input: cannot write (No space left on device",
        "choose another --out",
    )
    assert not list(
        out.glob(".00-input*")
    )  # the half-written step is gone, not left to fill the disk


def test_disk_full_while_writing_the_manifest(
    ws: Workspace, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import compress.artifacts.step

    real = compress.artifacts.step.write_json_atomic

    def full_at_manifest(path: Path, data: object) -> None:
        if path.name == "manifest.json":
            raise _enospc(path)
        real(path, data)

    monkeypatch.setattr(compress.artifacts.step, "write_json_atomic", full_at_manifest)
    _, out = ws.run_fails(capsys, ws.recipe(), "00-input: cannot write (No space left on device")
    assert not list(out.glob(".00-input*"))


# --- reports and benchmarks ---------------------------------------------------------------------


def test_report_of_unfinished_run(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    out = ws.root / "run"
    recipe = ws.recipe(extra="")
    recipe.write_text(recipe.read_text().replace("passes: []", "passes:\n  - export_onnx"))
    out.mkdir()
    shutil.copy(recipe, out / "recipe.resolved.yaml")
    expect_error(capsys, ["report", out], f"{out / '00-input'}: step did not finish")
    (out / "recipe.resolved.yaml").write_text("passes: [export_onnx\n")
    expect_error(capsys, ["report", out], "recipe.resolved.yaml:2: invalid YAML")


def _not_onnx(size: int) -> bytes:
    """`size` bytes no protobuf reader accepts: 0xff opens a tag of wire type 7, which
    does not exist, and its varint never ends."""
    import onnx
    from google.protobuf.message import DecodeError

    garbage = b"\xff" * size
    with pytest.raises(DecodeError):
        onnx.load_model_from_string(garbage)
    return garbage


def test_report_with_a_model_onnx_that_is_not_onnx(
    ws: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report` refuses a step whose model.onnx was replaced by unparseable bytes, whether the
    size changed or not; a run rebuilds the step, and the file is a valid ONNX model again."""
    import onnx

    recipe = ws.recipe()
    recipe.write_text(
        recipe.read_text().replace("passes: []", "passes:\n  - export_onnx: {optimize: false}")
        + "benchmark: {batch_sizes: [1], warmup: 0, repetitions: 5, sequence_length: 8}\n"
    )
    out = ws.root / "run"
    assert main(["run", str(recipe), "--out", str(out), "--no-report", "--quiet"]) == 0
    step = out / "01-export_onnx"
    onnx_file = step / "model.onnx"
    recorded = read_manifest(step)
    assert recorded is not None
    size = recorded["files"]["model.onnx"]["bytes"]
    assert onnx_file.stat().st_size == size
    # the same number of bytes: only the content check can tell
    onnx_file.write_bytes(_not_onnx(size))
    expect_error(
        capsys, ["report", out, "--quiet"], f"{step}: model.onnx changed (sha256 differs) since"
    )
    # fewer bytes: the size check tells first
    onnx_file.write_bytes(_not_onnx(64))
    expect_error(
        capsys, ["report", out, "--quiet"], f"{step}: model.onnx changed size ({size} -> 64 bytes)"
    )
    assert not (out / "report.json").exists()
    # a run of the same recipe notices it too, and builds the step again
    assert main(["run", str(recipe), "--out", str(out), "--no-report", "--quiet"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "changed size" in line]
    assert warned and warned[0].startswith("warning: ")  # shown even with --quiet
    assert "01-export_onnx: model.onnx changed size" in warned[0]
    onnx.checker.check_model(onnx.load(onnx_file))  # a real ONNX model again
    rebuilt = read_manifest(step)
    assert rebuilt is not None
    assert (
        rebuilt["files"]["model.onnx"]["sha256"]
        == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    )
    assert main(["report", str(out), "--quiet"]) == 0
    assert (out / "report.json").is_file()


def test_bench_compare_inputs(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = ws.root / "report.json"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n")
    expect_error(
        capsys, ["bench", "compare", garbage, garbage], f"{garbage} is not a benchmark report"
    )
    not_report = ws.root / "list.json"
    not_report.write_text("[1, 2]")
    expect_error(capsys, ["bench", "compare", not_report, not_report], "no 'stages' and 'method'")
    baseline = ROOT / "bench" / "baselines" / "distil_int8.json"
    junit = ws.root / "no" / "such" / "checks.xml"
    expect_error(
        capsys, ["bench", "compare", baseline, baseline, "--junit", junit], f"{junit}: cannot write"
    )
    assert not junit.exists()

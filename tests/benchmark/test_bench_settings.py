from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from compress.benchmark.settings import BenchmarkSettings


def test_defaults() -> None:
    s = BenchmarkSettings()
    assert s.batch_sizes == [1, 8]
    assert (s.sequence_length, s.threads, s.warmup, s.repetitions) == (64, 2, 10, 100)
    assert (s.eval_batch_size, s.eval_samples, s.stages, s.plot) == (64, None, "all", True)


def test_every_field_has_a_description() -> None:
    for name, field in BenchmarkSettings.model_fields.items():
        assert field.description, name


@pytest.mark.parametrize(
    "bad",
    [
        {"threads": 0},
        {"repetitions": 4},
        {"warmup": -1},
        {"sequence_length": 0},
        {"eval_batch_size": 0},
        {"eval_samples": 0},
        {"batch_sizes": []},
        {"batch_sizes": [1, 0]},
        {"batch_sizes": [8, 8]},
        {"stages": "some"},
        {"unknown": 1},
    ],
)
def test_rejects(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BenchmarkSettings.model_validate(bad)


def test_frozen_and_sorted() -> None:
    s = BenchmarkSettings(batch_sizes=[16, 1, 4])
    assert s.batch_sizes == [1, 4, 16]
    with pytest.raises(ValidationError):
        s.threads = 4  # type: ignore[misc]


def test_settings_and_report_import_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import compress.benchmark.settings, compress.benchmark.report\n"
        "import compress.benchmark.stage, compress.benchmark.plot\n"
        "heavy = {'torch', 'onnxruntime', 'transformers', 'matplotlib', 'onnx'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

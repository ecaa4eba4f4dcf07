"""What a bundle's infer.py prints on a device, and what the run itself computes for that file.

`device_infer` runs the bundle's infer.py in a clean interpreter (`python -I`, no
PYTHONPATH, a fresh cwd, `compress` unimportable), as on a device. `run_scores` scores
the same inputs through the run's own code path: the step's artifact opened with
`open_runtime` (the runtime the report benchmarks it with) and fed by `predict` (the
loop `evaluate` scores with), with the step's tokenizer or image preprocessor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compress.artifacts import RunFolder, label_names
from compress.benchmark.evaluate import predict
from compress.benchmark.runtimes import open_runtime
from compress.tasks import get_task

# Run code with `compress` made unimportable, as on a device without it.
NO_COMPRESS = "import runpy,sys; sys.modules['compress']=None; sys.argv=sys.argv[1:]; "
# infer.py prints each probability with 3 decimals: equal up to that rounding (and 1e-4)
PRINTED = 0.0005 + 1e-4


def device_run(folder: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -I script args` in `folder`, without PYTHONPATH and with no `compress`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = NO_COMPRESS + f"runpy.run_path({script!r}, run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-I", "-c", code, script, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def device_infer(folder: Path, inputs: Sequence[str]) -> list[tuple[str, float, str]]:
    """(label, probability, input) per line of `infer.py --cpu inputs` run on the "device"."""
    done = device_run(folder, "infer.py", "--cpu", *inputs)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in done.stdout.strip().splitlines()]
    assert [len(row) for row in rows] == [3] * len(inputs), done.stdout
    return [(label, float(p), item) for label, p, item in rows]


def run_scores(
    run: Path, source: str, inputs: Sequence[Any], max_length: int
) -> tuple[list[str], np.ndarray]:
    """Label names and softmax probabilities `[inputs, labels]` that the run computes for
    its file `source` ("STEP/FILE", as a bundle manifest names it) on `inputs`."""
    step_name, file = source.split("/")
    step = RunFolder(run).require_step(step_name)
    (variant,) = [v for v in step.artifact.variants if v.file == file]
    task = get_task(RunFolder(run).recipe()["task"])
    processor = task.load_processor(step.folder)
    runtime = open_runtime(step.artifact, variant, 1, task)  # ONNX: the CPU kernels, as --cpu
    try:

        def fn(batch: dict[str, Any]) -> np.ndarray:
            return np.asarray(runtime({k: np.asarray(v.numpy()) for k, v in batch.items()}))

        encoded = task.encode(processor, list(inputs), max_length)
        logits = predict(fn, processor, encoded, task).astype(np.float64)
    finally:
        runtime.close()
    names = label_names(step.folder / "config.json")
    assert names is not None
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = exp / exp.sum(axis=-1, keepdims=True)
    return [names[i] for i in probabilities.argmax(-1)], probabilities


def assert_infer_agrees(
    printed: list[tuple[str, float, str]], labels: list[str], probabilities: np.ndarray
) -> None:
    """Each printed line has the run's label and the run's probability of that label."""
    assert [row[0] for row in printed] == labels
    shown = np.asarray([row[1] for row in printed])
    np.testing.assert_allclose(shown, probabilities.max(-1), rtol=0, atol=PRINTED)

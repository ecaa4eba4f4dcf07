"""The benchmark step of a text-generation run (see `compress.benchmark.generation`).

Quality figures are cached per stage in its step folder, speed and memory for
the exact set of stages in the run folder, like the classification report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.artifacts import StepResult, hash_json, write_json_atomic
from compress.data import Dataset
from compress.recipe import Recipe


def lm_runtimes() -> tuple[str, ...]:
    """The runtimes of LM variants measured here (onnxruntime-genai where it is installed)."""
    from compress.llm.genai import genai_available

    return ("torch", "onnxruntime") + (("onnxruntime-genai",) if genai_available() else ())


def make_generation_report(
    recipe: Recipe, results: list[StepResult], data: Dataset, out: Path, progress: bool
) -> dict[str, Any]:
    from compress.benchmark import generation as bench
    from compress.benchmark.generation_report import (
        build_generation_report,
        plot,
        render_markdown,
        render_terminal,
    )
    from compress.benchmark.report import method_info, write_report
    from compress.run.report_step import measurement_key, select_stages, skipped_steps

    task = recipe.task
    settings = recipe.doc.benchmark
    max_length = recipe.doc.data.max_length
    bench_key = measurement_key(recipe, data)
    runtimes = lm_runtimes()
    candidates = select_stages(recipe, results, runtimes)
    for step in results:
        for v in step.artifact.variants:
            if v.runtime not in runtimes and not step.skipped:
                why = "pip install onnxruntime-genai" if "genai" in v.runtime else "needs a GPU"
                print(f"  {step.folder.name}:{v.name}: not measured ({v.runtime}: {why})")
    for entry in skipped_steps(results):
        print(f"  {entry['step']}: skipped: {entry['reason']}")
    print(f"benchmarking {len(candidates)} text-generation stages")
    stages: list[dict[str, Any]] = []
    for step, name in candidates:
        variant = step.artifact.variant(name)
        cache = step.folder / f"eval-{variant.name}-{bench_key}.json"
        measured = json.loads(cache.read_text()) if cache.is_file() else None
        if measured is None or measured.get("artifact_key") != step.artifact.key:
            print(f"  evaluating {step.folder.name}:{variant.name} ({variant.runtime})")
            measured = bench.quality(
                step.artifact, variant, data, settings, max_length, progress, task
            )
            measured["artifact_key"] = step.artifact.key
            write_json_atomic(cache, measured)
        stages.append(
            {
                "stage": step.name,
                "variant": variant.name,
                "step": step.folder.name,
                "file": variant.file,
                "pass_seconds": step.manifest.get("seconds"),
                **measured,
            }
        )
    labels = [f"{s['step']}:{s['variant']}" for s in stages]
    key = hash_json([bench_key, [(step.artifact.key, name) for step, name in candidates]])
    cache = out / f"generation-speed-{key}.json"
    if cache.is_file():
        timed: dict[str, Any] = json.loads(cache.read_text())
    else:
        gen = settings.generation
        print(f"  timing {len(stages)} stages interleaved ({gen.rounds} rounds)")
        pairs = {
            label: (step.artifact, step.artifact.variant(name))
            for label, (step, name) in zip(labels, candidates, strict=True)
        }
        timed = {"speed": bench.speed(pairs, data, settings, task), "memory": {}}
        if gen.peak_memory:
            tokenizer = task.load_processor(candidates[0][0].artifact.path)
            prompt = bench.prompts_of(tokenizer, data.test.texts, [min(gen.prompt_lengths)])
            for label, (artifact, variant) in pairs.items():
                print(f"  peak memory of {label}")
                timed["memory"][label] = bench.peak_memory(
                    artifact, variant, next(iter(prompt.values())), settings
                )
        write_json_atomic(cache, timed)
    for stage, label in zip(stages, labels, strict=True):
        stage["speed"] = timed["speed"][label]
        stage["peak_memory"] = timed["memory"].get(label)
    method = method_info(settings, max_length)
    method.update(
        task=task.name,
        recipe=str(recipe.file),
        recipe_name=recipe.name,
        max_length=max_length,
        generation=settings.generation.model_dump(mode="json"),
        prompt=data.notes.get("prompt"),
        label_words=data.notes.get("label_words"),
        data={"source": data.source, "test_rows": len(data.test), "key": data.key},
    )
    report = build_generation_report(stages, method)
    written = write_report(report, out, plot=settings.plot, render=render_markdown, draw=plot)
    print(render_terminal(report))
    print("report: " + ", ".join(str(p) for p in written))
    return report

"""Benchmark text-generation stages: perplexity, task score, speed, memory and size.

Quality (cached per stage): perplexity on the first `perplexity_texts` test
texts, and, for labelled data, zero-shot accuracy by label-word likelihood on
`task_samples` test examples. Speed (all stages together): greedy generation
at batch 1 with the KV cache, the stages taking turns for `rounds` rounds so
their ratios hold on a busy machine; time to first token at each prompt
length, decode tokens per second after the shortest prompt. Peak memory: each
stage generating in a fresh process (`compress.llm.peak_memory`).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from compress.artifacts import INPUT_STEP, Artifact, StepResult, Variant, read_manifest
from compress.benchmark.runtimes import model_size_bytes, scored_exactly
from compress.benchmark.settings import BenchmarkSettings
from compress.data import Dataset
from compress.errors import DataError, UserError
from compress.tasks import Task


def _file(variant: Variant) -> str | None:
    return None if variant.runtime == "torch" else variant.file


def quality(
    artifact: Artifact,
    variant: Variant,
    data: Dataset,
    settings: BenchmarkSettings,
    max_length: int,
    progress: bool,
    task: Task,
) -> dict[str, Any]:
    """Perplexity, the task score (labelled data), size and parameters of one stage."""
    from compress.llm.genai import open_lm
    from compress.llm.scores import label_scores, perplexity, task_accuracy

    gen = settings.generation
    if len(data.test) == 0:
        raise DataError("the test split is empty: nothing to benchmark on")
    tokenizer = task.load_processor(artifact.path)
    exact = scored_exactly(variant)  # a Q/DQ file for TensorRT: its graph as written
    lm = open_lm(artifact.path, _file(variant), settings.threads, variant.runtime, exact)
    try:
        texts = data.test.texts[: gen.perplexity_texts]
        scores: dict[str, Any] = perplexity(lm, tokenizer, texts, max_length, progress=progress)
        scores["perplexity_texts"] = len(texts)
        prompt, words = data.notes.get("prompt"), data.notes.get("label_words")
        if isinstance(prompt, str) and isinstance(words, list):
            scored = data.test.head(gen.task_samples)
            logp = label_scores(
                lm, tokenizer, scored.texts, prompt, words, max_length, progress=progress
            )
            scores["accuracy"] = task_accuracy(logp, scored.labels)
            scores["n_eval"] = len(scored)
            scores["predictions"] = [int(p) for p in logp.argmax(-1)]
    finally:
        lm.close()
    parameters = artifact.meta.get("parameters")
    return {
        "runtime": variant.runtime,
        "precision": variant.precision,
        "target": variant.target,
        **scores,
        "size_bytes": model_size_bytes(artifact, variant),
        "parameters": int(parameters) if isinstance(parameters, int) else None,
    }


def method_facts(first: StepResult, data: Dataset, settings: BenchmarkSettings) -> dict[str, Any]:
    """The report's method facts of a text-generation run: its settings (budget included),
    the zero-shot prompt and its majority-class baseline on the scored test rows, and the
    load check of the input model (`compress.llm.load_checks`, kept by the input step)."""
    from compress.benchmark.sanity import majority_baseline

    gen = settings.generation
    prompt, words = data.notes.get("prompt"), data.notes.get("label_words")
    facts: dict[str, Any] = {
        "generation": gen.model_dump(mode="json"),
        "prompt": prompt,
        "label_words": words,
    }
    scored = data.test.head(gen.task_samples)
    if isinstance(prompt, str) and isinstance(words, list) and len(scored):
        facts["majority_class"] = majority_baseline(scored.labels, data.label_names)
    # the original may come after fine-tuning: the input step loaded (and checked) the model
    manifest = (
        first.manifest if first.folder.name == INPUT_STEP
        else read_manifest(first.folder.parent / INPUT_STEP)
    )  # fmt: skip
    checked = ((manifest or {}).get("metrics") or {}).get("load_check")
    if isinstance(checked, dict):
        facts["load_check"] = checked
    return facts


def prompts_of(tokenizer: Any, texts: list[str], lengths: list[int]) -> dict[int, list[int]]:
    """Real test text cut to exactly each prompt length (texts joined when one is too short)."""
    longest = max(lengths)
    ids: list[int] = []
    for end in range(8, len(texts) + 8, 8):  # as few texts as the longest prompt needs
        ids = tokenizer("\n".join(texts[:end]), truncation=True, max_length=longest)["input_ids"]
        if len(ids) >= longest:
            break
    if len(ids) < longest:
        raise DataError(
            f"the test texts hold {len(ids)} tokens: fewer than a {longest}-token prompt"
        )
    return {n: ids[:n] for n in lengths}


def speed(
    stages: dict[str, tuple[Artifact, Variant]],
    data: Dataset,
    settings: BenchmarkSettings,
    task: Task,
) -> dict[str, dict[str, Any]]:
    """Time to first token per prompt length and decode tokens/s, stages interleaved."""
    from compress.llm.genai import open_lm

    gen = settings.generation
    first = next(iter(stages.values()))[0]
    prompts = prompts_of(task.load_processor(first.path), data.test.texts, gen.prompt_lengths)
    shortest = min(prompts)
    opened = {
        label: open_lm(a.path, _file(v), settings.threads, v.runtime)
        for label, (a, v) in stages.items()
    }
    ttft: dict[str, dict[int, list[float]]] = {label: {n: [] for n in prompts} for label in stages}
    decode: dict[str, list[float]] = {label: [] for label in stages}
    tokens: dict[str, list[int]] = {}
    try:
        for lm in opened.values():  # warm-up: first calls allocate
            lm.generate(prompts[shortest], 4)
        for _ in range(gen.rounds):
            for label, lm in opened.items():
                for n, prompt in prompts.items():
                    new = gen.new_tokens if n == shortest else 1
                    run = lm.generate(prompt, new)
                    ttft[label][n].append(run.first_token_s * 1000)
                    if n == shortest:
                        decode[label].append(run.decode_tokens_per_s)
                        tokens[label] = run.tokens
    finally:
        for lm in opened.values():
            lm.close()
    return {
        label: {
            "ttft_ms": {str(n): statistics.median(v) for n, v in ttft[label].items()},
            "decode_tokens_per_s": statistics.median(decode[label]),
            "decode_rounds": decode[label],
            "generated": tokens[label],
        }
        for label in stages
    }


def peak_memory(
    artifact: Artifact, variant: Variant, prompt: list[int], settings: BenchmarkSettings
) -> dict[str, float] | None:
    """Peak resident memory (MB) of a fresh process generating with this stage."""
    cmd = [sys.executable, "-m", "compress.llm.peak_memory", str(artifact.path)]
    if _file(variant) is not None:
        cmd += ["--file", str(variant.file), "--runtime", variant.runtime]
    cmd += [
        "--prompt",
        ",".join(map(str, prompt)),
        "--new-tokens",
        str(settings.generation.new_tokens),
    ]
    cmd += ["--threads", str(settings.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise UserError(f"measuring peak memory of {artifact.path}: {last}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures

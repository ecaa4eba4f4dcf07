"""The HTML page of a run's report: the deployable files' headline, the run's facts, the table.

The deployable files are, for each target a run builds files for (`cpu`,
`tensorrt`), the stages of the last step that built one: the file a bundle
for that target ships (`compress.deploy.bundle.pick_model`), or the engine
built from it. A run that builds none has its last stage as its final model.
Every figure comes formatted as the report's table shows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.benchmark.report import _batch_keys, _headers, _num, _row, stage_label
from compress.benchmark.report_html import Figure, HeadlineItem, Page, render_page

TARGETS = {"cpu": "CPU", "tensorrt": "TensorRT"}


def deployable(stages: list[dict[str, Any]]) -> list[int]:
    """Indices in `stages` (the first is the original) of the deployable files."""
    picked: set[int] = set()
    for target in TARGETS:
        steps = [s.get("step") for s in stages[1:] if s.get("target") == target]
        if steps:
            picked |= {
                i
                for i, s in enumerate(stages)
                if i > 0 and s.get("step") == steps[-1] and s.get("target") == target
            }
    if not picked and len(stages) > 1:
        picked = {len(stages) - 1}
    return sorted(picked)


def file_title(stage: dict[str, Any]) -> str:
    """What a deployable stage is: "INT8 CPU file", "INT8 TensorRT engine", "INT4 CPU file"."""
    target = TARGETS.get(str(stage.get("target")))
    if target is None:
        return "Final model"
    kind = "engine" if stage.get("runtime") == "tensorrt" else "file"
    return f"{str(stage.get('precision', '')).upper()} {target} {kind}".strip()


def file_name(stage: dict[str, Any]) -> str:
    """`step:variant`, the file (as `code`) and the runtime that ran it."""
    name = f"{stage.get('step') or stage.get('stage')}:{stage.get('variant')}"
    file = f" · `{stage['file']}`" if stage.get("file") else ""
    return f"{name}{file} · {stage.get('runtime', '?')}"


def cpu_fact(method: dict[str, Any]) -> str:
    """'AMD EPYC ...; INT8 instruction sets: avx2, avx512_vnni' (or that it has none of them)."""
    features = method.get("cpu_features") or []
    sets = ", ".join(features) if features else "none of AVX2, AVX-512, VNNI, AMX, dot product"
    return f"{method.get('cpu') or 'unknown'}; INT8 instruction sets: {sets}"


def run_facts(method: dict[str, Any], original: str) -> tuple[tuple[str, str], ...]:
    """Recipe, task, original model, data and test size, CPU, date and compress version."""
    recipe = method.get("recipe_name") or method.get("recipe") or "—"
    if method.get("recipe") and method.get("recipe_name"):
        recipe = f"{method['recipe_name']} (`{method['recipe']}`)"
    data = method.get("data") or {}
    rows = data.get("test_rows")
    scored = method.get("eval_samples")
    test = f"{rows} test rows" if rows is not None else "test size not recorded"
    if scored and rows and scored < rows:
        test += f" ({scored} scored)"
    facts = [
        ("Recipe", str(recipe)),
        ("Task", str(method.get("task") or "—")),
        ("Model", f"{method['model']}; original: {original}" if method.get("model") else original),
        ("Data", f"{data.get('source', '—')}, {test}"),
        ("CPU", cpu_fact(method)),
        ("Date", str(method.get("date") or "—")),
        ("compress", str((method.get("versions") or {}).get("compress") or "—")),
    ]
    return tuple(facts)


def _figures(report: dict[str, Any], stage: dict[str, Any]) -> tuple[Figure, ...]:
    row = _row(report, stage, first=False)
    vs = stage.get("vs_original", {})
    keys = _batch_keys(report) or ["b1"]
    small = keys[0]
    faster = _num(vs.get("speedup", {}).get(small), ".2f", suffix="×")
    rounds = vs.get("speedup_rounds", {}).get(small)
    spread = f" (rounds {rounds['min']:.2f}–{rounds['max']:.2f})" if rounds else ""
    metric = str(report.get("method", {}).get("accuracy_name", "Accuracy"))
    delta = row["dacc"] + (" pt" if row["dacc"] != "—" else "")
    figures = [
        Figure(row["smaller"], f"smaller ({row['size']} MB)"),
        Figure(faster, f"faster at batch {small[1:]}{spread}"),
        Figure(delta, f"{metric}: {row['acc']}"),
    ]
    if "cosine_mean" in stage:
        figures.append(Figure(row["cos"], "cosine to the original"))
    return tuple(figures)


def classification_page(report: dict[str, Any], markdown: str, plot: Path | None) -> Page:
    """The page of a classifier's (or sentence embedder's) report."""
    stages = report["stages"]
    method = report.get("method", {})
    first = _row(report, stages[0], first=True)
    original = (
        f"{first['stage']}, {first['variant']} on {first['runtime']}: {first['acc']}, "
        f"{first['size']} MB, {first['params']} M parameters"
    )
    headline = tuple(
        HeadlineItem(file_title(stages[i]), file_name(stages[i]), _figures(report, stages[i]))
        for i in deployable(stages)
    )
    headers = _headers(report)
    note = (
        f"Each against the original, {stage_label(stages[0], True)}, measured in the same run; "
        "deployable files are the last file built for each target (what a bundle ships)."
        if headline
        else "Only the original was measured."
    )
    name = method.get("recipe_name") or Path(str(method.get("recipe") or "run")).stem
    return Page(
        title=f"{name}: compress report",
        markdown=markdown,
        headline=headline,
        headline_note=note,
        facts=run_facts(method, original),
        key_columns=tuple(
            headers[c] for c in ("stage", "acc", "dacc", "faster", "smaller", "size", "cos")
        ),
        joined=(headers["stage"], headers["variant"]),
        plot=plot,
    )


def report_page(report: dict[str, Any], markdown: str, plot: Path | None) -> str:
    """The page of a run's report: a text-generation report's (stages timed decoding), else
    a classifier's or embedder's."""
    stages = report.get("stages") or []
    if stages and "speed" in stages[0]:
        from compress.benchmark.generation_report import generation_page

        return render_page(generation_page(report, markdown, plot))
    if not stages:
        return render_page(Page(title="compress report", markdown=markdown, plot=plot))
    return render_page(classification_page(report, markdown, plot))

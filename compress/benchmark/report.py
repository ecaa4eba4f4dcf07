"""The benchmark report: every stage against the original, as JSON, Markdown, text and a plot.

Only the standard library and numpy are imported here; matplotlib is loaded
when the plot is drawn.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from compress.artifacts import write_json_atomic
from compress.artifacts.records import SCHEMA_VERSION, validate_report
from compress.artifacts.run_folder import REPORT_FILES, load_report
from compress.benchmark.sanity import warnings
from compress.benchmark.settings import BenchmarkSettings
from compress.benchmark.versus import compare
from compress.errors import UserError
from compress.system import cpu_features, cpu_model, package_versions

__all__ = ["REPORT_FILES", "SCHEMA_VERSION", "build_report", "load_report", "method_info"]


def method_info(settings: BenchmarkSettings, max_length: int | None = None) -> dict[str, Any]:
    """How the figures were measured: shapes, repetitions, threads, versions, CPU, date."""
    return {
        "warmup": settings.warmup,
        "repetitions": settings.repetitions,
        "threads": settings.threads,
        "inter_op_threads": 1,
        "batch_sizes": list(settings.batch_sizes),
        "sequence_length": settings.sequence_length,
        "eval_samples": settings.eval_samples,
        "eval_batch_size": settings.eval_batch_size,
        "eval_max_length": max_length,
        "versions": package_versions(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def build_report(
    stages: list[dict[str, Any]],
    method: dict[str, Any],
    not_run: list[dict[str, Any]] | None = None,
    skipped: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report of `stages` (the first is the original), each with "vs_original".

    Predictions, when stages carry them, become an "agreement" figure and are
    not stored in the report. `not_run` lists artifacts built but not measured
    here (TensorRT engines on a machine without a GPU), each with its reason;
    `skipped` the steps that did not run (a backend was missing), each with why.
    """
    if not stages:
        raise UserError("no stages to report on")
    original = stages[0]
    out = []
    for stage in stages:
        entry = {k: v for k, v in stage.items() if k != "predictions"}
        entry["vs_original"] = compare(stage, original)
        out.append(entry)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "method": dict(method),
        "stages": out,
    }
    if not_run:
        report["not_run"] = [dict(entry) for entry in not_run]
    if skipped:
        report["skipped"] = [dict(entry) for entry in skipped]
    flagged = warnings(out, method.get("majority_class"))
    if flagged:
        report["warnings"] = flagged
    return report


def _batch_keys(report: dict[str, Any]) -> list[str]:
    sizes = report.get("method", {}).get("batch_sizes")
    if sizes:
        return [f"b{size}" for size in sorted(sizes)]
    keys = report["stages"][0].get("latency", {}).keys() if report["stages"] else []
    return sorted(keys, key=lambda k: int(k[1:]) if k[1:].isdigit() else 0)


def _num(value: Any, fmt: str, scale: float = 1.0, suffix: str = "") -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value * scale:{fmt}}{suffix}"


def stage_label(stage: dict[str, Any], first: bool) -> str:
    """The stage's name, marked when it is the original."""
    name = str(stage.get("stage", "?"))
    return f"{name} (original)" if first and "original" not in name else name


def _row(report: dict[str, Any], stage: dict[str, Any], first: bool) -> dict[str, str]:
    """Formatted cells of one stage, keyed by column."""
    keys = _batch_keys(report)
    small, large = (keys[0], keys[-1]) if keys else ("b1", "b1")
    lat = stage.get("latency", {})
    vs = stage.get("vs_original", {})
    return {
        "stage": stage_label(stage, first),
        "variant": str(stage.get("variant", "")),
        "runtime": str(stage.get("runtime", "")),
        "target": str(stage.get("target", "")),
        "acc": _num(stage.get("accuracy"), ".2f", 100, "%"),
        "dacc": "—" if first else _num(vs.get("accuracy_delta_points"), "+.2f"),
        "f1": _num(stage.get("macro_f1"), ".4f"),
        "p50": _num(lat.get(small, {}).get("p50_ms"), ".2f"),
        "p90": _num(lat.get(small, {}).get("p90_ms"), ".2f"),
        "p99": _num(lat.get(small, {}).get("p99_ms"), ".2f"),
        "p50_large": _num(lat.get(large, {}).get("p50_ms"), ".2f"),
        "throughput": _num(lat.get(large, {}).get("throughput_per_s"), ".1f"),
        "size": _num(stage.get("size_bytes"), ".1f", 1e-6),
        "params": _num(stage.get("parameters"), ".2f", 1e-6),
        "smaller": _num(vs.get("size_ratio"), ".2f", suffix="×"),
        "faster": _faster(vs, small, spread=not first),
        "agree": "—" if first else _num(vs.get("agreement"), ".2f", 100, "%"),
        "flops": _num(vs.get("flops_ratio"), ".2f", suffix="×"),
        "per_flops": _num(vs.get("speedup_per_flops", {}).get(large), ".2f"),
        "cos": _num(stage.get("cosine_mean"), ".4f"),
        "cos5": _num(stage.get("cosine_p5"), ".4f"),
        "recall": _num(stage.get("neighbour_recall_at_10"), ".3f"),
    }


def _faster(vs: dict[str, Any], batch: str, spread: bool = True) -> str:
    """`5.15×`, or `5.15× (4.90–5.40)` with the min and max over the interleaved rounds."""
    cell = _num(vs.get("speedup", {}).get(batch), ".2f", suffix="×")
    rounds = vs.get("speedup_rounds", {}).get(batch)
    if spread and rounds and cell != "—":
        cell += f" ({rounds['min']:.2f}–{rounds['max']:.2f})"
    return cell


def _headers(report: dict[str, Any]) -> dict[str, str]:
    keys = _batch_keys(report) or ["b1"]
    small, large = keys[0], keys[-1]
    return {
        "stage": "Stage",
        "variant": "Variant",
        "runtime": "Runtime",
        "target": "Target",
        "acc": str(report.get("method", {}).get("accuracy_name", "Accuracy")),
        "dacc": "Δacc (pt)",
        "f1": "Macro-F1",
        "p50": f"{small} p50 ms",
        "p90": f"{small} p90 ms",
        "p99": f"{small} p99 ms",
        "p50_large": f"{large} p50 ms",
        "throughput": f"{large} throughput /s",
        "size": "Size MB",
        "params": "Params M",
        "smaller": "×smaller",
        "faster": f"×faster ({small})",
        "agree": "Agreement",
        "flops": "×fewer FLOPs",
        "per_flops": f"×faster/×fewer FLOPs ({large})",
        "cos": "Cosine to original",
        "cos5": "Cosine p5",
        "recall": "Recall@10",
    }


EMBEDDING_COLUMNS = ("cos", "cos5", "recall")


def _embedding_columns(report: dict[str, Any], columns: list[str]) -> None:
    """Sentence embedders' fidelity columns, where the stages have them, after accuracy."""
    for column in EMBEDDING_COLUMNS:
        columns.remove(column)
    if any("cosine_mean" in s for s in report["stages"]):
        at = columns.index("dacc") + 1
        columns[at:at] = list(EMBEDDING_COLUMNS)
        if not any(isinstance(s.get("macro_f1"), int | float) for s in report["stages"]):
            columns.remove("f1")
        if not any(isinstance(s.get("accuracy"), int | float) for s in report["stages"]):
            columns.remove("acc")  # texts without labels: no kNN accuracy
            columns.remove("dacc")


def render_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table plus a paragraph on how it was measured."""
    headers = _headers(report)
    columns = list(headers)
    if len(_batch_keys(report)) < 2:
        columns.remove("p50_large")
    if not any("agreement" in s.get("vs_original", {}) for s in report["stages"]):
        columns.remove("agree")
    if not any("flops_ratio" in s.get("vs_original", {}) for s in report["stages"]):
        columns.remove("flops")
        columns.remove("per_flops")
    _embedding_columns(report, columns)
    lines = [
        "# Benchmark",
        "",
        *(f"**Warning:** {text}\n" for text in report.get("warnings", [])),
        "| " + " | ".join(headers[c] for c in columns) + " |",
        "|"
        + "|".join(
            "---" if c in ("stage", "variant", "runtime", "target") else "---:" for c in columns
        )
        + "|",
    ]
    for i, stage in enumerate(report["stages"]):
        row = _row(report, stage, i == 0)
        lines.append("| " + " | ".join(row[c] for c in columns) + " |")
    if report.get("not_run"):
        lines += ["", "Built, not measured here:", ""]
        lines += [
            f"- {e.get('step')}:{e.get('variant')} (`{e.get('file')}`): {e.get('reason')}"
            for e in report["not_run"]
        ]
    if report.get("skipped"):
        lines += ["", "Skipped steps (their input passed on unchanged):", ""]
        lines += [f"- {e.get('step')}: {e.get('reason')}" for e in report["skipped"]]
    lines += _exact_lines(report)
    lines += _error_lines(report)
    lines += ["", "## Method", "", _method_text(report), ""]
    return "\n".join(lines)


def _exact_lines(report: dict[str, Any]) -> list[str]:
    """How files for TensorRT were scored, beside what this CPU's INT8 kernels make of them."""
    exact = [s for s in report["stages"] if s.get("accuracy_method")]
    if not exact:
        return []
    lines = [
        "",
        "## Files for TensorRT",
        "",
        f"Accuracy is that of the {exact[0]['accuracy_method']}.",
    ]
    lines.append("ONNX Runtime's fused INT8 kernels on this CPU score them (a CPU figure only):")
    lines.append("")
    for stage in exact:
        exact_acc = _num(stage.get("accuracy"), ".2f", 100, "%")
        cpu_acc = _num(stage.get("cpu_kernels", {}).get("accuracy"), ".2f", 100, "%")
        name = f"{stage.get('stage')}:{stage.get('variant')}"
        lines.append(f"- {name}: {exact_acc} exact, {cpu_acc} with this CPU's kernels")
    return lines


def _error_lines(report: dict[str, Any]) -> list[str]:
    """Per INT8 file: the layers that add the most quantization error (where to look first)."""
    lines: list[str] = []
    for stage in report["stages"]:
        ranked = stage.get("quantization_error")
        if not ranked:
            continue
        if not lines:
            lines = ["", "## Layers with the largest INT8 error", ""]
            lines += [
                "Each quantized layer's output is compared with FP32 on calibration data; "
                "'added' is the normalised squared error it adds beyond its inputs' (see "
                "`max_accuracy_drop`).",
                "",
            ]
        named = ", ".join(
            f"`{e.get('node')}` ({e.get('added', 0):.2g})" for e in ranked if isinstance(e, dict)
        )
        lines.append(f"- {stage.get('stage')}:{stage.get('variant')}: {named}")
    return lines


def _method_text(report: dict[str, Any]) -> str:
    m = report.get("method", {})
    sizes = ", ".join(str(b) for b in m.get("batch_sizes", [])) or "?"
    versions = m.get("versions", {})
    runtimes = ", ".join(f"{k} {v}" for k, v in versions.items() if v) or "unknown"
    stages = report.get("stages") or [{}]
    samples = stages[0].get("n_eval") or m.get("eval_samples") or "all"
    seq = m.get("sequence_length", "?")
    shape = m.get("example_shape") or f"{seq} tokens"
    if m.get("input_kind") == "images":
        built = f"[batch, {shape}], built from real test images resized to it"
    else:
        built = f"[batch, {seq}] tokens, built from real test texts padded or truncated to {seq}"
    return (
        f"Latency: for each batch size ({sizes}) one fixed input of shape {built}; "
        f"{m.get('warmup', '?')} "
        f"untimed warm-up runs, then {m.get('repetitions', '?')} timed runs "
        f"(percentiles of single calls; throughput from the mean). Every runtime uses "
        f"{m.get('threads', '?')} intra-op thread(s) and 1 inter-op thread on "
        f"{_cpu_text(m)}. Accuracy and macro-F1 on {samples} test "
        f"examples, in batches of {m.get('eval_batch_size', '?')} padded to their longest "
        f"example; dynamic INT8 files one example at a time, as they are served (their "
        f"activation scales come from the whole batch, padding included); agreement is "
        f"the share of test examples on which a stage "
        f"predicts the original's label. Size is the weight files on disk in MB (10^6 bytes); "
        f"×smaller is original size / stage size and ×faster is original p50 / stage p50 "
        f"(the median over the interleaved rounds of the per-round ratio, the rounds' min–max "
        f"in brackets); "
        f"Δacc is in percentage points. Software: {runtimes}. Date: {m.get('date', '?')}."
        + (f" Stages were timed {m['latency_schedule']}." if m.get("latency_schedule") else "")
        + _majority_text(m)
        + "\n\n"
        "Note: stages built for different targets (cpu, tensorrt, portable) are different "
        "artifacts; their figures come from different files, all measured here on the CPU, "
        "so a tensorrt-target file does not show its TensorRT speed."
    )


def _majority_text(method: dict[str, Any]) -> str:
    majority = method.get("majority_class")
    if not majority:
        return ""
    return (
        f" Always predicting the commonest test label ('{majority['label']}') scores "
        f"{majority['accuracy']:.2%} (macro-F1 {majority['macro_f1']:.3f}): a stage must beat "
        "that to have learned anything."
    )


def _cpu_text(method: dict[str, Any]) -> str:
    """The CPU and the instruction sets INT8 speed depends on: 'AMD EPYC ... (avx2, ...)'."""
    features = method.get("cpu_features")
    named = f" ({', '.join(features)})" if features else ""
    return f"{method.get('cpu', 'an unknown CPU')}{named}"


def render_terminal(report: dict[str, Any]) -> str:
    """A compact fixed-width table for the terminal."""
    keys = _batch_keys(report) or ["b1"]
    columns = {
        "stage": "stage",
        "variant": "variant",
        "target": "target",
        "acc": "acc",
        "dacc": "Δacc",
        "p50": f"{keys[0]} p50 ms",
        "faster": "×faster",
        "size": "MB",
        "smaller": "×smaller",
    }
    if any("cosine_mean" in s for s in report["stages"]):  # a sentence embedder's fidelity
        columns = {**columns, "cos": "cosine", "recall": "recall@10"}
    rows = [columns] + [_row(report, s, i == 0) for i, s in enumerate(report["stages"])]
    widths = {c: max(len(r[c]) for r in rows) for c in columns}
    left = ("stage", "variant", "target")
    lines = []
    for row in rows:
        cells = [row[c].ljust(widths[c]) if c in left else row[c].rjust(widths[c]) for c in columns]
        lines.append("  ".join(cells).rstrip())
    lines += [f"warning: {text}" for text in report.get("warnings", [])]
    return "\n".join(lines)


def write_report(
    report: dict[str, Any],
    out_dir: Path,
    *,
    plot: bool = True,
    render: Callable[[dict[str, Any]], str] | None = None,
    draw: Callable[[dict[str, Any], Path], bool] | None = None,
) -> list[Path]:
    """Write report.json, report.md, report.html and (with matplotlib, when `plot`) report.png.

    `render` and `draw` make the Markdown and the plot of another kind of report (a
    text-generation run's); by default the classification ones. The page
    (`compress.benchmark.report_page`) opens with the deployable files' headline.
    """
    from compress.benchmark.report_page import report_page

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path, html_path = (out_dir / name for name in REPORT_FILES)
    validate_report(report, "the report being written")  # the contract readers code against
    write_json_atomic(json_path, report)
    markdown = (render or render_markdown)(report)
    md_path.write_text(markdown, encoding="utf-8")
    written = [json_path, md_path]
    if plot:
        from compress.benchmark.plot import plot_report

        if (draw or plot_report)(report, png_path):
            written.append(png_path)
    has_plot = png_path in written
    page = report_page(report, markdown, png_path if has_plot else None)
    html_path.write_text(page, encoding="utf-8")
    return [*written, html_path]

"""Markdown, a self-contained HTML page and a scaling plot from `compress bench model` JSON."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any


def _rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for entry in result["runtimes"]:
        for row in entry["latency"]:
            seq = row.get("sequence_length")
            rows.append(
                [
                    entry["runtime"],
                    str(row["batch_size"])
                    + (f" ({row['engine_calls']} engine calls)" if row.get("engine_calls") else ""),
                    str(seq) if seq else "-",
                    f"{row['p50_ms']:.3f}",
                    f"{row['p90_ms']:.3f}",
                    f"{row['p99_ms']:.3f}",
                    f"{row['mean_ms']:.3f} ± {row['std_ms']:.3f}",
                    f"{row['throughput_per_s']:.1f}",
                ]
            )
    return rows


HEADER = ["runtime", "batch", "seq", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "examples/s"]


def _facts(result: dict[str, Any]) -> list[str]:
    m = result["method"]
    macs = result.get("macs_per_example") or result.get("macs_per_token")
    unit = "per image" if result.get("macs_per_example") else "per token"
    params = result.get("parameters")
    lines = [
        f"Model: `{result['model']}` ({result['kind']}, {m.get('task')}), "
        f"{result['size_bytes'] / 1e6:.2f} MB on disk"
        + (f", {params:,} parameters" if params is not None else "")
        + (f", {macs / 1e6:.1f}M MACs {unit}" if macs else ""),
        f"Inputs: real examples from `{m.get('data')}`, one example = {m.get('example_shape')}; "
        f"{m.get('warmup')} warm-up calls, then {m.get('repetitions')} timed calls per shape; "
        f"{m.get('threads')} CPU threads; CPU {m.get('cpu')}; GPU {m.get('gpu') or 'none'}; "
        f"{m.get('date')}.",
    ]
    if m.get("labels"):
        lines.append(f"Labels: {m['labels']}.")
    build = result.get("engine_build")
    if build:
        options = build.get("options", {})
        lines.append(
            f"Engine: {build.get('backend_name')} {build.get('backend_version')}, "
            f"{build.get('precision')}, batch range {options.get('batch')}, sequence range "
            f"{options.get('sequence')} (a larger batch runs as several engine calls)"
        )
    for entry in result["runtimes"]:
        if "accuracy" in entry:
            lines.append(
                f"Accuracy ({entry['runtime']}): {entry['accuracy']:.2%} on {entry['n_eval']} "
                f"test examples (macro-F1 {entry['macro_f1']:.3f})"
            )
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    lines = ["# Benchmark", "", *(f"- {f}" for f in _facts(result)), ""]
    lines.append("| " + " | ".join(HEADER) + " |")
    lines.append("|" + "---|" * len(HEADER))
    lines.extend("| " + " | ".join(r) + " |" for r in _rows(result))
    return "\n".join(lines) + "\n"


def render_html(result: dict[str, Any], plot: Path | None) -> str:
    """One HTML file with everything inline (the plot as a data URI)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _rows(result)
    )
    facts = "".join(f"<li>{html.escape(f)}</li>" for f in _facts(result))
    image = ""
    if plot is not None and plot.is_file():
        data = base64.b64encode(plot.read_bytes()).decode()
        image = f'<img alt="latency and throughput" src="data:image/png;base64,{data}">'
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:right}th{background:#f4f4f4}img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>compress benchmark</title>"
        f"<style>{style}</style></head><body><h1>Benchmark</h1><ul>{facts}</ul>"
        f"<table><tr>{head}</tr>{body}</table>{image}</body></html>\n"
    )


def plot_scaling(result: dict[str, Any], path: Path) -> bool:
    """Latency and throughput against batch size, one line per runtime (and sequence length)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for entry in result["runtimes"]:
        series: dict[Any, list[dict[str, Any]]] = {}
        for row in entry["latency"]:
            series.setdefault(row.get("sequence_length"), []).append(row)
        for seq, rows in series.items():
            label = entry["runtime"] + (f" seq {seq}" if seq else "")
            batches = [r["batch_size"] for r in rows]
            left.plot(batches, [r["p50_ms"] for r in rows], marker="o", label=label)
            right.plot(batches, [r["throughput_per_s"] for r in rows], marker="o", label=label)
    for ax, what in ((left, "p50 latency (ms)"), (right, "throughput (examples/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

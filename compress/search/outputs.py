"""What a search leaves in its folder, once its trials are done.

    trials.json   every trial: values, state, validation scores, folder
    pareto.json   the front (feasible, non-dominated on validation) measured on the
                  test split with the original and the hand-written recipe, in one run
    pareto.png    test accuracy against latency, area = size
    best.yaml     the searched recipe with the best front values within the budget
    report.md / report.html   the front and how it was measured

Only the front (and the two references) touch the test split, after the
search: the accuracy reported is not the one trials were selected on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from compress.artifacts import write_json_atomic
from compress.search.trial import Setup, Stage, accuracy_on, latencies
from compress.system import machine_info

if TYPE_CHECKING:
    import optuna

    from compress.search.space import Space


def trials_json(study: optuna.Study, front: set[int]) -> list[dict[str, Any]]:
    """Every trial as the search recorded it."""
    out = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        score: dict[str, Any] = attrs.get("score", {})
        out.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "values": attrs.get("values", {}),
                "hand_written": bool(attrs.get("hand_written")),
                "val_accuracy": score.get("val_accuracy"),
                "latency_ratio": score.get("latency_ratio"),
                "p50_ms": score.get("p50_ms"),
                "size_bytes": score.get("size_bytes"),
                "parameters": score.get("parameters"),
                "feasible": bool(score) and attrs.get("constraint", 1.0) <= 0,
                "on_front": trial.number in front,
                "seconds": attrs.get("seconds"),
                "folder": attrs.get("folder"),
                **{str(k): attrs[k] for k in ("stopped", "error") if k in attrs},
            }
        )
    return out


def best_of(entries: list[dict[str, Any]], objective: str) -> dict[str, Any] | None:
    """The front entry with the lowest objective on validation (size x latency for both)."""
    if not entries:
        return None

    def cost(e: dict[str, Any]) -> tuple[float, float]:
        lat, size = e["validation"]["latency_ratio"], e["validation"]["size_ratio"]
        value = {"latency": lat, "size": size, "both": math.sqrt(lat * size)}[objective]
        return value, -e["validation"]["accuracy"]

    return min(entries, key=cost)


def measure_front(
    setup: Setup,
    original: dict[str, Any],
    rows: list[tuple[str, dict[str, Any], dict[str, Any], bool]],
) -> dict[str, Any]:
    """Test accuracy of the original and every row; latency of all of them, interleaved.

    `rows` holds (label, values, validation score, on the front).
    """
    assert setup.original is not None
    stages: dict[str, Stage] = {"original": setup.original}
    for label, _, score, _ in rows:
        stages[label] = Stage(Path(score["stage"]), score["variant"])
    test = setup.data.test
    timed = latencies(setup, stages, test)
    base_bytes = original["size_bytes"]
    entries = []
    for label, values, score, on_front in [("original", {}, original, False), *rows]:
        figures = accuracy_on(setup, stages[label], test)
        entries.append(
            {
                "label": label,
                "values": values,
                "on_front": on_front,
                "validation": {
                    "accuracy": score["val_accuracy"],
                    "latency_ratio": score["latency_ratio"],
                    "size_ratio": score["size_bytes"] / base_bytes,
                },
                "test_accuracy": figures["accuracy"],
                "test_macro_f1": figures["macro_f1"],
                "n_test": figures["n_eval"],
                "p50_ms": timed[label],
                "speedup": timed["original"] / timed[label],
                "size_bytes": figures["size_bytes"],
                "smaller": base_bytes / figures["size_bytes"],
                "parameters": figures["parameters"],
                "folder": str(Path(score["stage"]).parent.parent),
            }
        )
    return {"original": entries[0], "rows": entries[1:]}


def dominates(a: dict[str, Any], b: dict[str, Any], objective: str) -> bool:
    """Whether `a` is no less accurate on test than `b` and faster or smaller, per `objective`."""
    if a["test_accuracy"] < b["test_accuracy"]:
        return False
    faster, smaller = a["p50_ms"] < b["p50_ms"], a["size_bytes"] < b["size_bytes"]
    return bool({"latency": faster, "size": smaller, "both": faster or smaller}[objective])


def write_best(path: Path, space: Space, raw: dict[str, Any], best: dict[str, Any]) -> None:
    """The searched recipe with the best values, whole (later passes included)."""
    data = space.apply(raw, best["values"])
    data["name"] = f"{raw.get('name') or path.parent.name}-searched"
    values = ", ".join(f"{k}={v!r}" for k, v in best["values"].items())
    header = (
        f"# Found by compress search ({best['label']}): {values}\n"
        f"# validation accuracy {best['validation']['accuracy']:.2%}; test accuracy "
        f"{best['test_accuracy']:.2%}, {best['speedup']:.2f}x faster at batch "
        f"{best.get('batch', 1)} and {best['smaller']:.2f}x smaller than the original\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def render_markdown(pareto: dict[str, Any]) -> str:
    """The search report: the front on the test split, with how it was measured."""
    original = pareto["original"]
    batch = pareto["batch_size"]
    counts = pareto["trials"]
    lines = [
        f"# compress search: {pareto['recipe']}",
        "",
        f"{counts['total']} trials in {counts['seconds'] / 60:.0f} min ({counts['scored']} "
        f"scored, {counts['stopped']} stopped early, {counts['failed']} refused by a pass, "
        f"{counts['interrupted']} interrupted and asked again) over "
        f"{len(pareto['space'])} knobs; objective "
        f"{pareto['objective']}, at most {pareto['max_drop']:g} points of validation accuracy "
        f"below the original ({pareto['floor']:.2%}). Scored model: `{pareto['stage']}`.",
        "",
        "| model | values | val acc | test acc | vs original | "
        f"b{batch} p50 ms | faster | size MB | smaller |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in [original, *pareto["rows"]]:
        values = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in row["values"].items()) or "-"
        delta = 100 * (row["test_accuracy"] - original["test_accuracy"])
        mark = " (best)" if pareto.get("best") == row["label"] else ""
        lines.append(
            f"| {row['label']}{mark} | {values} | {row['validation']['accuracy']:.2%} | "
            f"{row['test_accuracy']:.2%} | {delta:+.2f} | {row['p50_ms']:.2f} | "
            f"{row['speedup']:.2f}x | {row['size_bytes'] / 1e6:.2f} | {row['smaller']:.2f}x |"
        )
    lines += ["", pareto["verdict"], "", "## How it was measured", ""]
    cpu = pareto["machine"]
    lines += [
        f"- Trials were scored on the validation split ({pareto['n_validation']} examples); "
        f"the rows above on the test split ({original['n_test']} examples), after the search.",
        f"- Latency: p50 at batch {batch}, sequence length {pareto['sequence_length']}, "
        f"{pareto['threads']} threads, all rows timed interleaved in one run against the "
        "original (PyTorch FP32).",
        f"- CPU: {cpu.get('cpu', '?')} "
        f"({', '.join(cpu.get('cpu_features', [])) or 'no INT8 extensions'}).",
    ]
    return "\n".join(lines) + "\n"


def front_plot(pareto: dict[str, Any], path: Path) -> bool:
    """pareto.png through the report's plot (original in red, area = size)."""
    from compress.benchmark.plot import plot_report

    key = f"b{pareto['batch_size']}"
    stages = [
        {
            "stage": row["label"],
            "variant": "",
            "accuracy": row["test_accuracy"],
            "latency": {key: {"p50_ms": row["p50_ms"]}},
            "size_bytes": row["size_bytes"],
        }
        for row in [pareto["original"], *pareto["rows"]]
    ]
    method = {k: pareto[k] for k in ("sequence_length", "threads")}
    report = {"method": {"batch_sizes": [pareto["batch_size"]], **method}, "stages": stages}
    return plot_report(report, path)


def write_outputs(out: Path, pareto: dict[str, Any], trials: list[dict[str, Any]]) -> list[Path]:
    """trials.json, pareto.json, pareto.png, report.md and report.html in `out`."""
    from compress.artifacts.records import validate_trials
    from compress.search.page import search_page

    validate_trials(trials)  # the rows search readers and trackers code against
    write_json_atomic(out / "trials.json", trials)
    pareto = {**pareto, "machine": pareto.get("machine") or machine_info()}
    write_json_atomic(out / "pareto.json", pareto)
    markdown = render_markdown(pareto)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    png = out / "pareto.png"
    drawn = front_plot(pareto, png)
    html = search_page(pareto, markdown, png if drawn else None)
    (out / "report.html").write_text(html, encoding="utf-8")
    written = [out / "trials.json", out / "pareto.json", out / "report.md", out / "report.html"]
    return written + ([png] if drawn else [])

"""The report of a text-generation run: every stage against the original, in four forms.

Per stage: perplexity (and its change), the zero-shot task score, time to
first token per prompt length, decode tokens/s, peak memory, size and
parameters; ratios are to the original (PyTorch FP32 with its KV cache),
measured in the same run. JSON is the source; Markdown, HTML and a plot of
perplexity against decode speed are rendered from it.

Warnings open every form (the page shows them above its headline): a model
whose load check (`method.load_check`, `compress.llm.load_checks`) found
signs it did not load right, every stage whose task accuracy does not beat
the zero-shot task's majority class (`method.majority_class`), and every stage
that loses more than the recipe's budget (`benchmark.generation.budget`)
against the original.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.benchmark.report import SCHEMA_VERSION

if TYPE_CHECKING:
    from compress.benchmark.report_html import Figure, Page


def _ratio(a: Any, b: Any) -> float | None:
    return (
        float(a) / float(b)
        if isinstance(a, int | float) and isinstance(b, int | float) and b
        else None
    )


def build_generation_report(stages: list[dict[str, Any]], method: dict[str, Any]) -> dict[str, Any]:
    """The report: stages with `vs_original` figures (the first stage is the original)."""
    base = stages[0]
    for stage in stages:
        vs: dict[str, Any] = {
            "size_x_smaller": _ratio(base["size_bytes"], stage["size_bytes"]),
            "perplexity_change": (_ratio(stage["perplexity"], base["perplexity"]) or 1.0) - 1.0,
            "decode_x": _ratio(
                stage["speed"]["decode_tokens_per_s"], base["speed"]["decode_tokens_per_s"]
            ),
            "ttft_x_faster": {
                n: _ratio(base["speed"]["ttft_ms"][n], ms)
                for n, ms in stage["speed"]["ttft_ms"].items()
            },
        }
        if "accuracy" in stage and "accuracy" in base:
            vs["accuracy_delta"] = stage["accuracy"] - base["accuracy"]
            pairs = zip(stage.get("predictions", []), base.get("predictions", []), strict=False)
            agree = [a == b for a, b in pairs]
            vs["agreement"] = sum(agree) / len(agree) if agree else None
        if stage.get("peak_memory") and base.get("peak_memory"):
            vs["memory_x_smaller"] = _ratio(
                base["peak_memory"]["peak_rss_mb"], stage["peak_memory"]["peak_rss_mb"]
            )
        first = base["speed"]["generated"]
        same = sum(1 for a, b in zip(stage["speed"]["generated"], first, strict=False) if a == b)
        vs["same_greedy_tokens"] = [same, len(first)]
        stage["vs_original"] = vs
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": method.get("task"),  # the recipe's task, as the report's kind
        "stages": stages,
        "method": method,
    }
    flagged = generation_warnings(stages, method)
    if flagged:
        report["warnings"] = flagged
    return report


def budget_of(method: dict[str, Any]) -> dict[str, float]:
    """The recipe's budget (`benchmark.generation.budget`; the defaults where not recorded)."""
    from compress.benchmark.settings import GenerationBudget

    recorded = (method.get("generation") or {}).get("budget") or {}
    return {**GenerationBudget().model_dump(), **recorded}


def generation_warnings(stages: list[dict[str, Any]], method: dict[str, Any]) -> list[str]:
    """The report's warnings: a model that did not load right (`method.load_check`), stages
    no better than the zero-shot task's majority class, and stages over the budget."""
    from compress.benchmark.sanity import ZERO_SHOT, warnings

    out = []
    checked = method.get("load_check") or {}
    if checked.get("problems"):
        out.append(
            checked.get("warning")
            or "model looks wrongly loaded: " + "; ".join(checked["problems"])
        )
    out += warnings(stages, method.get("majority_class"), ZERO_SHOT)
    budget = budget_of(method)
    for stage in stages[1:]:
        vs, over = stage.get("vs_original") or {}, []
        change = vs.get("perplexity_change")
        if isinstance(change, int | float) and change > budget["perplexity"] + 1e-9:
            over.append(
                f"perplexity {_f(stage.get('perplexity'), '.1f')} is {100 * change:+.1f}% "
                f"against the original (budget +{100 * budget['perplexity']:.1f}%)"
            )
        delta = vs.get("accuracy_delta")
        if isinstance(delta, int | float) and -100 * delta > budget["task_points"] + 1e-9:
            over.append(
                f"task accuracy {100 * stage['accuracy']:.2f}% is {100 * delta:+.2f} points "
                f"against the original (budget -{budget['task_points']:.2f} points)"
            )
        if over:
            out.append(
                f"{stage['step']}:{stage['variant']} loses more than the budget "
                f"(benchmark.generation.budget): {'; '.join(over)}."
            )
    return out


def _f(value: Any, fmt: str, suffix: str = "") -> str:
    return "-" if not isinstance(value, int | float) else f"{value:{fmt}}{suffix}"


def render_markdown(report: dict[str, Any]) -> str:
    method = report["method"]
    lengths = [str(n) for n in method["generation"]["prompt_lengths"]]
    labelled = any("accuracy" in s for s in report["stages"])
    head = ["stage", "runtime", "precision", "perplexity", "vs original"]
    head += ["task accuracy"] if labelled else []
    head += [f"TTFT {n} tok (ms)" for n in lengths]
    head += [
        "decode tok/s",
        "vs original",
        "peak memory (MB)",
        "size (MB)",
        "x smaller",
        "params (M)",
    ]
    lines = [f"# {method.get('recipe_name', 'run')}: text generation", ""]
    lines += [f"**Warning:** {text}\n" for text in report.get("warnings", [])]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage in report["stages"]:
        vs, speed = stage["vs_original"], stage["speed"]
        memory = (stage.get("peak_memory") or {}).get("peak_rss_mb")
        row = [
            f"{stage['step']}:{stage['variant']}",
            stage["runtime"],
            stage["precision"],
            _f(stage["perplexity"], ".1f"),
            _f(100 * vs["perplexity_change"], "+.1f", "%"),
        ]
        if labelled:
            row.append(_f(100 * stage["accuracy"], ".2f", "%") if "accuracy" in stage else "-")
        row += [_f(speed["ttft_ms"].get(n), ".1f") for n in lengths]
        row += [
            _f(speed["decode_tokens_per_s"], ".1f"),
            _f(vs["decode_x"], ".2f", "x"),
            _f(memory, ".0f"),
            _f(stage["size_bytes"] / 1e6, ".1f"),
            _f(vs["size_x_smaller"], ".2f", "x"),
            _f((stage.get("parameters") or 0) / 1e6 or None, ".1f"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    if report.get("not_run"):  # where the report carries them
        lines += ["", "Built, not measured here:", ""]
        lines += [
            f"- {e.get('step')}:{e.get('variant')} (`{e.get('file')}`): {e.get('reason')}"
            for e in report["not_run"]
        ]
    if report.get("skipped"):
        lines += ["", "Skipped steps (their input passed on unchanged):", ""]
        lines += [f"- {e.get('step')}: {e.get('reason')}" for e in report["skipped"]]
    gen = method["generation"]
    lines += [
        "",
        "## How this was measured",
        "",
        f"- Perplexity: {report['stages'][0]['perplexity_texts']} test texts, one sequence each "
        f"(at most {method['max_length']} tokens, BOS as the tokenizer adds it); exp of the mean "
        "negative log-likelihood of every token after the first.",
    ]
    if labelled:
        lines.append(
            f"- Task accuracy: zero-shot, {report['stages'][0].get('n_eval')} test examples; the "
            f"label whose word is likeliest after the prompt `{method['prompt']!r}` "
            f"(words: {', '.join(method['label_words'])})."
        )
    baseline = baseline_text(method)
    lines += [f"- Majority-class baseline: {baseline}"] if baseline else []
    lines += [f"- Budget: {budget_text(method)}"]
    checked = load_check_text(method)
    lines += [f"- Load check of the input model: {checked}"] if checked else []
    lines += [
        f"- Speed: greedy decoding at batch 1 with the KV cache, {gen['new_tokens']} new tokens "
        f"after a {min(gen['prompt_lengths'])}-token prompt of real test text; time to first token "
        f"(the prompt's forward pass and the first token) at {', '.join(lengths)} tokens; medians "
        f"of {gen['rounds']} rounds, the stages taking turns in each round; "
        f"{method['threads']} intra-op threads.",
        "- Peak memory: resident set of a fresh process that loads the stage and generates "
        "(an ONNX stage's process does not import PyTorch).",
        "- Size: weight files on disk (safetensors; .onnx plus external data).",
        f"- CPU: {method['cpu']} ({', '.join(method['cpu_features']) or 'no AVX-512/VNNI'}); "
        + ", ".join(f"{k} {v}" for k, v in method["versions"].items()),
        f"- Date: {method['date']}",
    ]
    return "\n".join(lines) + "\n"


def baseline_text(method: dict[str, Any]) -> str | None:
    """The zero-shot task's majority-class baseline, in words (None: no task score)."""
    majority = method.get("majority_class")
    if not majority:
        return None
    return (
        f"always answering '{majority['label']}' scores "
        f"{majority['accuracy']:.2%} of the {majority['rows']} scored test rows; a stage must "
        "beat that to do the task."
    )


def budget_text(method: dict[str, Any]) -> str:
    budget = budget_of(method)
    return (
        f"a stage may lose up to +{100 * budget['perplexity']:.1f}% perplexity and "
        f"{budget['task_points']:.2f} points of task accuracy against the original before "
        "the report warns (benchmark.generation.budget)."
    )


def load_check_text(method: dict[str, Any]) -> str | None:
    """What the load check of the input model found, in one sentence (None: not checked)."""
    checked = method.get("load_check")
    if not checked:
        return None
    low, high = checked["expected_tokens_per_char"]
    parts = [
        f"{_f(checked.get('tokens_per_char'), '.3f')} tokens/char on "
        f"{checked.get('sample_texts')} corpus texts ({checked['tokenizer_kind']}, "
        f"{checked['vocab_size']} tokens, expects {low:.2f}-{high:.2f})",
        f"{len(checked.get('round_trip_failures') or [])} plain sentences fail encode+decode",
    ]
    if isinstance(checked.get("perplexity"), int | float):
        bits = checked.get("bits_per_char")
        per_char = f", {bits:.2f} bits/char" if isinstance(bits, int | float) else ""
        parts.append(
            f"perplexity {checked['perplexity']:.1f} on {checked.get('perplexity_texts')} "
            f"validation texts{per_char}"
        )
    verdict = "FLAGGED (see the warning above)" if checked.get("problems") else "nothing wrong"
    return "; ".join(parts) + f": {verdict}."


# the page's key columns, in order ("vs original" twice: perplexity's, then decode speed's)
KEY_COLUMNS: tuple[str, ...] = (
    *("stage", "perplexity", "vs original", "task accuracy"),
    *("decode tok/s", "vs original", "x smaller", "size (MB)"),
)


def _headline_figures(stage: dict[str, Any]) -> tuple[Figure, ...]:
    from compress.benchmark.report_html import Figure

    vs = stage["vs_original"]
    figures = [
        Figure(
            _f(vs["size_x_smaller"], ".2f", "×"), f"smaller ({stage['size_bytes'] / 1e6:.1f} MB)"
        ),
        Figure(
            _f(vs["decode_x"], ".2f", "×"),
            f"faster decoding at batch 1 ({_f(stage['speed']['decode_tokens_per_s'], '.1f')} "
            "tok/s)",
        ),
        Figure(
            _f(100 * vs["perplexity_change"], "+.1f", "%"),
            f"perplexity: {_f(stage['perplexity'], '.1f')}",
        ),
    ]
    if isinstance(vs.get("accuracy_delta"), int | float):
        figures.append(
            Figure(
                _f(100 * vs["accuracy_delta"], "+.2f", " pt"),
                f"task accuracy: {_f(100 * stage['accuracy'], '.2f', '%')}",
            )
        )
    return tuple(figures)


def generation_page(report: dict[str, Any], markdown: str, plot: Path | None) -> Page:
    """The page: the deployable files' size, decode speed and perplexity against the original."""
    from compress.benchmark.report_html import HeadlineItem, Page
    from compress.benchmark.report_page import deployable, file_name, file_title, run_facts

    stages, method = report["stages"], report["method"]
    base = stages[0]
    original = (
        f"{base['step']}:{base['variant']} on {base['runtime']}: perplexity "
        f"{_f(base['perplexity'], '.1f')}, {base['size_bytes'] / 1e6:.1f} MB"
    )
    headline = tuple(
        HeadlineItem(file_title(stages[i]), file_name(stages[i]), _headline_figures(stages[i]))
        for i in deployable(stages)
    )
    name = method.get("recipe_name") or "run"
    facts = run_facts(method, original)
    facts += tuple(
        (key, text)
        for key, text in (
            ("Load check", load_check_text(method)),
            ("Task baseline", baseline_text(method)),
            ("Budget", budget_text(method)),
        )
        if text
    )
    # every warning opens the page, above the headline figures they put in doubt
    body = "\n".join(line for line in markdown.splitlines() if not line.startswith("**Warning:**"))
    return Page(
        title=f"{name}: compress report (text generation)",
        markdown=body,
        alerts=tuple(report.get("warnings", [])),
        headline=headline,
        headline_note=f"Each against the original, {base['step']}:{base['variant']}, measured "
        "in the same run; deployable files are the last file built for each target.",
        facts=facts,
        key_columns=KEY_COLUMNS,
        plot=plot,
        plot_alt="perplexity against decode speed",
    )


def render_terminal(report: dict[str, Any]) -> str:
    out = []
    for stage in report["stages"]:
        vs = stage["vs_original"]
        accuracy = f", task {100 * stage['accuracy']:.2f}%" if "accuracy" in stage else ""
        out.append(
            f"  {stage['step']}:{stage['variant']}: perplexity {stage['perplexity']:.1f} "
            f"({100 * vs['perplexity_change']:+.1f}%){accuracy}, "
            f"{stage['speed']['decode_tokens_per_s']:.1f} tok/s ({_f(vs['decode_x'], '.2f')}x), "
            f"{stage['size_bytes'] / 1e6:.1f} MB ({_f(vs['size_x_smaller'], '.2f')}x smaller)"
        )
    out += [f"warning: {text}" for text in report.get("warnings", [])]
    return "\n".join(out)


def plot(report: dict[str, Any], path: Path) -> bool:
    """Perplexity against decode tokens/s (area: size; the original in red)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    stages = report["stages"]
    biggest = max(s["size_bytes"] for s in stages)
    for i, stage in enumerate(stages):
        x, y = stage["speed"]["decode_tokens_per_s"], stage["perplexity"]
        area = 40 + 600 * stage["size_bytes"] / biggest
        ax.scatter([x], [y], s=area, alpha=0.6, color="tab:red" if i == 0 else "tab:blue")
        ax.annotate(  # stages often share a perplexity: labels step up and down
            f"{stage['step']}:{stage['variant']}",
            (x, y),
            xytext=(6, 11 * (i % 3) - 11),
            textcoords="offset points",
            fontsize=7,
        )
    left, right = ax.get_xlim()
    ax.set_xlim(left, right + 0.25 * (right - left))  # room for the labels of the fastest
    ax.set_xlabel("decode tokens/s at batch 1 (higher is better)")
    ax.set_ylabel("perplexity (lower is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True

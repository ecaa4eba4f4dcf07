"""report.html opened in a real headless Chromium at 1280x800, measured by the browser's layout.

The run report comes from a tiny recipe run; the text-generation and search
reports from their own writers fed with figures of their shape. Each page must
show its title (the recipe's name) and its headline inside the first screen,
have no horizontal overflow outside the table's scroll box, keep the table's
key columns in view and its first column in place when the table is scrolled
sideways.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compress.benchmark.generation_report import build_generation_report
from compress.benchmark.generation_report import plot as generation_plot
from compress.benchmark.generation_report import render_markdown as generation_markdown
from compress.benchmark.report import method_info, write_report
from compress.benchmark.settings import BenchmarkSettings
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from compress.search.outputs import write_outputs
from tests.benchmark.browser import Chromium, Tab, find_chromium
from tests.conftest import write_labelled_csv

WIDTH, HEIGHT = 1280, 800
SKIP_ENGINE = importlib.util.find_spec("tensorrt") is None  # a skipped step, as on most CPUs
RECIPE = """\
name: tiny-page
model: {{source: {model}}}
data: {{source: data.csv, validation_size: 32, test_size: 32, max_length: 32}}
passes:
  - export_onnx
  - quantize: {{targets: [cpu, tensorrt], calibration_samples: 16}}
{engine}benchmark: {{batch_sizes: [1, 8], sequence_length: 16, warmup: 1, repetitions: 5}}
"""
ENGINE = "  - tensorrt: {backend: tensorrt, if_missing: skip}\n"

# Waits two frames (layout and sticky offsets settled), measures, scrolls the table to its
# right end, waits again and measures the table once more.
MEASURE = """
(async () => {
  const frames = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  await frames();
  const root = document.documentElement;
  const box = el => {
    const r = el.getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
  };
  const shown = el => {
    const s = getComputedStyle(el);
    return s.display !== 'none' && s.visibility === 'visible' && Number(s.opacity) > 0
      && el.getClientRects().length > 0;
  };
  const onTop = el => {
    const b = box(el);
    return el.contains(document.elementFromPoint((b.left + b.right) / 2, (b.top + b.bottom) / 2));
  };
  const seen = el => el && {text: el.innerText, box: box(el), shown: shown(el), onTop: onTop(el)};
  const scroller = document.querySelector('.table-scroll');
  let right = {right: -1e9}, left = {left: 1e9};
  for (const el of document.body.querySelectorAll('*')) {
    if (scroller && scroller !== el && scroller.contains(el)) continue;
    const b = el.getBoundingClientRect();
    if (b.width === 0 && b.height === 0) continue;
    const what = el.tagName + ': ' + (el.innerText || '').slice(0, 80);
    if (b.right > right.right) right = {right: b.right, what};
    if (b.left < left.left) left = {left: b.left, what};
  }
  const out = {
    viewport: [innerWidth, innerHeight], scrollY,
    clientWidth: root.clientWidth, scrollWidth: root.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth,
    overflowX: [getComputedStyle(root).overflowX, getComputedStyle(document.body).overflowX],
    title: seen(document.querySelector('h1')),
    headline: seen(document.querySelector('#headline')),
    files: [...document.querySelectorAll('#headline .file')].map(seen),
    facts: Object.fromEntries([...document.querySelectorAll('#facts dt')].map(
      dt => [dt.innerText, seen(dt.nextElementSibling)])),
    rightmost: right, leftmost: left, text: document.body.innerText,
    fetched: performance.getEntriesByType('resource').map(r => r.name)
      .filter(name => !name.startsWith('data:')),
    linked: document.querySelectorAll('script, link, iframe, object, embed').length,
    plot: [...document.querySelectorAll('#plot img')].map(img => img.naturalWidth),
  };
  if (scroller) {
    const headers = [...scroller.querySelectorAll('tr:first-child th')];
    out.table = {box: box(scroller), clientWidth: scroller.clientWidth,
                 scrollWidth: scroller.scrollWidth, headers: headers.map(seen)};
    scroller.scrollLeft = scroller.scrollWidth;
    await frames();
    out.scrolled = {scrollLeft: scroller.scrollLeft, box: box(scroller),
                    first: [...scroller.querySelectorAll('tr')].map(tr => box(tr.cells[0])),
                    headers: headers.map(box)};
  }
  return out;
})()
"""


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    """One headless Chromium for the session."""
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: apt-get install chromium, or set CHROMIUM to one")
    with Chromium(executable, tmp_path_factory.mktemp("chromium")) as opened:
        yield opened


def measure(browser: Chromium, page: Path) -> dict[str, Any]:
    """What the browser's layout says of `page` in a 1280x800 viewport."""
    tab: Tab = browser.open(page.as_uri(), WIDTH, HEIGHT)
    try:
        measured: dict[str, Any] = tab.evaluate(MEASURE)
    finally:
        tab.close()
    return measured


def in_first_screen(element: dict[str, Any], width: float) -> bool:
    """Whether `element`'s box lies inside the viewport as the page opens."""
    b = element["box"]
    return bool(b["left"] >= 0 and b["right"] <= width and b["top"] >= 0 and b["bottom"] <= HEIGHT)


def check_page(seen: dict[str, Any], name: str, key_columns: list[str]) -> None:
    """The checks every report page must pass (see the module docstring)."""
    assert seen["viewport"] == [WIDTH, HEIGHT] and seen["scrollY"] == 0
    # self-contained: nothing fetched or linked; the plot, a data URI, decodes
    assert seen["fetched"] == [] and seen["linked"] == 0
    assert len(seen["plot"]) == 1 and seen["plot"][0] > 0
    width = seen["clientWidth"]  # the viewport less a vertical scrollbar, if any
    for part in ("title", "headline"):
        element = seen[part]
        assert element is not None, f"no {part}"
        assert element["shown"] and element["onTop"], part
        assert in_first_screen(element, width), (part, element["box"])
    assert name in seen["title"]["text"]
    assert seen["files"] and all(in_first_screen(f, width) for f in seen["files"])
    # no horizontal overflow: the page is as wide as the viewport, nothing hidden by CSS,
    # and no element outside the table's scroll box reaches past either edge
    assert seen["scrollWidth"] <= width and seen["bodyScrollWidth"] <= width
    assert not {"hidden", "clip"} & set(seen["overflowX"])
    assert seen["rightmost"]["right"] <= width + 0.5, seen["rightmost"]
    assert seen["leftmost"]["left"] >= -0.5, seen["leftmost"]
    table = seen["table"]
    headers = {h["text"].split("\n")[0]: h["box"] for h in table["headers"]}
    edge = table["box"]
    for column in key_columns:  # in view without scrolling the table
        assert column in headers, (column, list(headers))
        assert edge["left"] - 0.5 <= headers[column]["left"], column
        assert headers[column]["right"] <= edge["right"] + 0.5, column
    if table["scrollWidth"] > table["clientWidth"]:  # the first column stays in view
        scrolled = seen["scrolled"]
        assert scrolled["scrollLeft"] > 0
        for cell in scrolled["first"]:
            assert abs(cell["left"] - scrolled["box"]["left"]) <= 2, cell
        assert scrolled["headers"][-1]["right"] <= scrolled["box"]["right"] + 0.5


@pytest.fixture(scope="module")
def run_report(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny recipe's run folder: FP32 exports, INT8 files for the CPU and TensorRT."""
    folder = tmp_path_factory.mktemp("page-run")
    write_labelled_csv(folder, 160, 7)
    recipe = folder / "tiny.yaml"
    engine = ENGINE if SKIP_ENGINE else ""
    recipe.write_text(RECIPE.format(model=tiny_model_dir, engine=engine))
    run_recipe(load_recipe(recipe), folder / "run", progress=False)
    return folder / "run"


def test_run_report_page_opens_with_the_deployable_files(
    browser: Chromium, run_report: Path
) -> None:
    """The headline holds each deployable file's ×smaller, ×faster at batch 1 and Δaccuracy
    as report.json has them; the facts, the INT8 errors and the skipped step are shown."""
    report = json.loads((run_report / "report.json").read_text())
    seen = measure(browser, run_report / "report.html")
    check_page(seen, "tiny-page", ["Stage", "Accuracy", "Δacc (pt)", "×faster (b1)", "×smaller"])
    assert seen["table"]["scrollWidth"] > seen["table"]["clientWidth"]  # wider than the page
    files = {s["variant"]: s for s in report["stages"]}
    for variant, title in (("int8-dynamic", "INT8 CPU file"), ("int8-qdq", "INT8 TensorRT file")):
        vs = files[variant]["vs_original"]
        card = next(f["text"] for f in seen["files"] if f"02-quantize:{variant}" in f["text"])
        assert title in card
        assert f"{vs['size_ratio']:.2f}×" in card and f"{vs['speedup']['b1']:.2f}×" in card
        assert f"{vs['accuracy_delta_points']:+.2f} pt" in card
    assert len(seen["files"]) == 2  # the FP32 exports are not deployable files here
    facts = seen["facts"]
    assert "tiny-page" in facts["Recipe"]["text"] and in_first_screen(facts["Recipe"], WIDTH)
    assert f"{report['method']['data']['test_rows']} test rows" in facts["Data"]["text"]
    assert report["method"]["cpu"] in facts["CPU"]["text"]
    assert "INT8 instruction sets" in facts["CPU"]["text"]
    assert facts["Date"]["text"] == report["method"]["date"]
    assert facts["compress"]["text"] == report["method"]["versions"]["compress"]
    assert "Layers with the largest INT8 error" in seen["text"]
    if SKIP_ENGINE:
        assert "03-tensorrt: backend 'tensorrt' is not installed" in seen["text"]
    markdown = (run_report / "report.md").read_text()
    assert markdown.startswith("# Benchmark") and "## Method" in markdown


def test_the_checks_see_an_overflow_and_a_headline_out_of_view(
    browser: Chromium, run_report: Path, tmp_path: Path
) -> None:
    """Controls: the same page with its table out of the scroll box overflows, and with
    its headline pushed down the headline is out of the first screen; the browser's
    measurements say so, and `check_page` fails on both."""
    page = (run_report / "report.html").read_text()
    broken = tmp_path / "unboxed.html"
    broken.write_text(page.replace('class="table-scroll"', 'class="unboxed"'))
    seen = measure(browser, broken)
    assert seen["scrollWidth"] > seen["clientWidth"]
    assert seen["rightmost"]["right"] > seen["clientWidth"]
    with pytest.raises(AssertionError):
        check_page(seen, "tiny-page", ["Stage"])
    low = tmp_path / "low.html"
    low.write_text(page.replace("</style>", "#headline{margin-top:60em}</style>"))
    seen = measure(browser, low)
    assert seen["headline"]["box"]["top"] > HEIGHT
    with pytest.raises(AssertionError, match="headline"):
        check_page(seen, "tiny-page", ["Stage"])


def _generation_stage(
    step: str, variant: str, precision: str, target: str, ppl: float, tps: float, mb: float
) -> dict[str, Any]:
    return {  # as the run's report step records a stage
        "stage": step.split("-", 1)[1],
        "variant": variant,
        "step": step,
        "artifact_key": f"key-{step}",
        "pass_seconds": 1.0,
        "runtime": "torch" if step == "01-fine_tune" else "onnxruntime",
        "precision": precision,
        "target": target,
        "file": None if step == "01-fine_tune" else f"model_{precision}.onnx",
        "perplexity": ppl,
        "perplexity_texts": 16,
        "accuracy": 0.75 if precision == "fp32" else 0.7,
        "n_eval": 16,
        "predictions": [1, 0] * 8,
        "speed": {
            "ttft_ms": {"8": 900 / tps, "16": 1800 / tps},
            "decode_tokens_per_s": tps,
            "generated": [1, 2, 3, 4],
        },
        "peak_memory": {"peak_rss_mb": 2 * mb},
        "size_bytes": int(mb * 1e6),
        "parameters": int(mb * 2.5e5),
    }


def test_generation_report_page(browser: Chromium, tmp_path: Path) -> None:
    """A text-generation report: the INT4 file's headline (size, decode speed, perplexity)."""
    method = method_info(BenchmarkSettings(), 256)
    method.update(
        task="text-generation",
        recipe="recipes/smollm_int4.yaml",
        recipe_name="smollm_int4",
        max_length=256,
        data={"source": "tiny-corpus", "test_rows": 32, "key": "k"},
        generation={"prompt_lengths": [8, 16], "new_tokens": 6, "rounds": 2},
        prompt="Review: {text} Sentiment:",
        label_words=["neg", "pos"],
    )
    stages = [
        _generation_stage("01-fine_tune", "fp32", "fp32", "portable", 110.0, 22.0, 538.0),
        _generation_stage("03-export_onnx", "fp32-ort", "fp32", "cpu", 110.0, 40.0, 540.0),
        _generation_stage("04-quantize", "int4", "int4", "cpu", 155.0, 110.9, 108.7),
    ]
    report = build_generation_report(stages, method)
    report["skipped"] = [{"step": "05-tensorrt", "pass": "tensorrt", "reason": "no TensorRT"}]
    write_report(report, tmp_path, render=generation_markdown, draw=generation_plot)
    seen = measure(browser, tmp_path / "report.html")
    check_page(seen, "smollm_int4", ["stage", "perplexity", "decode tok/s", "x smaller"])
    (card,) = [f["text"] for f in seen["files"]]
    vs = report["stages"][2]["vs_original"]
    assert "INT4 CPU file" in card and "04-quantize:int4" in card
    assert f"{vs['size_x_smaller']:.2f}×" in card and f"{vs['decode_x']:.2f}×" in card
    assert f"{100 * vs['perplexity_change']:+.1f}%" in card
    assert "smollm_int4" in seen["facts"]["Recipe"]["text"]
    assert "How this was measured" in seen["text"] and "05-tensorrt: no TensorRT" in seen["text"]


def _front_row(label: str, accuracy: float, p50: float, mb: float, values: dict[str, Any]) -> Any:
    return {
        "label": label,
        "values": values,
        "on_front": label.startswith("trial"),
        "validation": {"accuracy": accuracy, "latency_ratio": p50 / 10, "size_ratio": mb / 90},
        "test_accuracy": accuracy,
        "test_macro_f1": accuracy - 0.01,
        "n_test": 200,
        "p50_ms": p50,
        "speedup": 10.0 / p50,
        "size_bytes": int(mb * 1e6),
        "smaller": 90.0 / mb,
        "parameters": int(mb * 2.5e5),
        "folder": f"trials/{label}",
    }


def test_search_report_page(browser: Chromium, tmp_path: Path) -> None:
    """A search's report: the best trial's and the hand-written recipe's headline."""
    knobs = {"passes[1].distill.layers": 3, "passes[2].prune.heads": 0.5}
    pareto = {
        "recipe": "recipes/distil_int8.yaml",
        "stage": "06-quantize",
        "space": {"passes[1].distill.layers": [2, 4], "passes[2].prune.heads": [0.0, 0.75]},
        "objective": "both",
        "max_drop": 1.0,
        "floor": 0.8,
        "batch_size": 1,
        "sequence_length": 64,
        "threads": 2,
        "n_validation": 400,
        "trials": {
            "total": 12,
            "scored": 10,
            "stopped": 1,
            "failed": 1,
            "interrupted": 0,
            "seconds": 1800,
        },
        "original": _front_row("original", 0.81, 10.0, 90.0, {}),
        "rows": [
            _front_row("hand-written", 0.812, 1.3, 9.9, knobs),
            _front_row("trial 7", 0.809, 1.1, 8.2, {**knobs, "passes[2].prune.heads": 0.75}),
        ],
        "best": "trial 7",
        "verdict": "trial 7 does not dominate the hand-written recipe on the test split.",
    }
    write_outputs(tmp_path, pareto, [])
    seen = measure(browser, tmp_path / "report.html")
    check_page(seen, "distil_int8", ["model", "test acc", "vs original", "faster", "smaller"])
    best, hand = (f["text"] for f in seen["files"])
    assert "Best within the budget" in best and "trial 7" in best
    assert "9.09×" in best  # 10 / 1.1 ms faster
    assert "10.98×" in best and "-0.10 pt" in best  # 90 / 8.2 MB smaller; 80.90% - 81.00%
    assert "Hand-written recipe" in hand and "+0.20 pt" in hand
    assert "distil_int8" in seen["facts"]["Recipe"]["text"]
    assert "How it was measured" in seen["text"]

"""The records that cross the JSON boundary, as typed models: the report and a search trial's score.

`report.json` is what the CI gate (`compress bench compare`), `compress report`,
the bundles, the search and experiment trackers read. These models are its
contract: the writer validates every report through `Report` before it writes
it, and `read_report` validates what it reads, upgrading older versions or
refusing them in one line. `compress report --schema` prints the JSON Schema.

Stage figures a task adds beyond those named here (a new task's own metrics)
are kept as extra fields, so a report of a newer task still reads; the fields
named here have fixed types.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 2
READS = (1, 2)  # the versions `read_report` understands

Runtime = Literal["torch", "onnxruntime", "onnxruntime-genai", "tensorrt"]
Target = Literal["portable", "cpu", "tensorrt"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Latency(_Record):
    """One batch size's latency: percentiles of single calls, in milliseconds."""

    p50_ms: float
    p90_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    throughput_per_s: float | None = None
    round_p50_ms: list[float] | None = Field(
        None, description="the median of each interleaved round"
    )


class Spread(_Record):
    min: float
    max: float


class VsOriginal(_Record):
    """A stage against the original model (the report's first stage)."""

    size_ratio: float | None = Field(None, description="original size / stage size")
    size_x_smaller: float | None = None
    parameter_ratio: float | None = None
    speedup: dict[str, float | None] | None = Field(
        None, description="original p50 / stage p50, per batch key (b1, b8...)"
    )
    speedup_rounds: dict[str, Spread] | None = None
    accuracy_delta_points: float | None = None
    accuracy_delta: float | None = None
    macro_f1_delta_points: float | None = None
    agreement: float | None = Field(None, description="share of the original's predictions kept")
    flops_ratio: float | None = None
    speedup_per_flops: dict[str, float | None] | None = None
    perplexity_change: float | None = Field(None, description="relative, 0.1 = +10%")
    decode_x: float | None = None
    ttft_x_faster: dict[str, float | None] | None = None
    memory_x_smaller: float | None = None
    same_greedy_tokens: list[int] | None = None


class Speed(_Record):
    """A decoder's generation speed."""

    ttft_ms: dict[str, float | None] = Field(
        default_factory=dict, description="time to first token per prompt length"
    )
    decode_tokens_per_s: float | None = None
    decode_rounds: list[float] | None = None
    generated: list[int] | None = None


class PeakMemory(_Record):
    peak_rss_mb: float
    start_rss_mb: float | None = None


class Stage(_Record):
    """One measured file of one step."""

    stage: str = Field(description="the pass that made it, or 'input' for the original")
    variant: str
    step: str | None = Field(None, description="the step folder, e.g. 03-quantize")
    file: str | None = None
    runtime: Runtime | None = None
    precision: str | None = None
    target: Target | None = None
    artifact_key: str | None = None
    pass_seconds: float | None = None
    n_eval: int | None = None
    eval_batch_size: int | None = None
    accuracy: float | None = Field(None, description="the task's accuracy, 0..1")
    accuracy_method: str | None = None
    macro_f1: float | None = None
    perplexity: float | None = None
    latency: dict[str, Latency | None] = Field(
        default_factory=dict, description="per batch key (b1, b8...)"
    )
    size_bytes: int | None = None
    parameters: int | None = None
    macs_per_token: int | None = None
    macs_per_example: int | None = None
    quantization_error: list[dict[str, Any]] | None = None
    cosine_mean: float | None = None
    cosine_p5: float | None = None
    neighbour_recall_at_10: float | None = None
    knn_accuracy: float | None = None
    knn_accuracy_original: float | None = None
    majority_baseline: float | None = None
    embedding_dim: int | None = None
    vectors: str | None = Field(None, description="the stage's saved vectors, beside its cache")
    predictions: list[int] | None = None
    perplexity_texts: int | None = None
    tokens: float | None = None
    speed: Speed | None = None
    peak_memory: PeakMemory | None = None
    cpu_kernels: dict[str, Any] | None = None
    vs_original: VsOriginal | None = None


class NotRun(_Record):
    """A file the report could not measure here (no GPU, a runtime missing)."""

    step: str
    variant: str | None = None
    file: str | None = None
    reason: str


class Skipped(_Record):
    """A step that did not run (its backend was missing), and why."""

    step: str
    pass_: str | None = Field(None, alias="pass")
    reason: str


class LoadCheck(_Record):
    """Signs that the input model did not load right (`compress.llm.load_checks`)."""

    tokenizer_kind: str
    vocab_size: int
    expected_tokens_per_char: list[float] = Field(description="[low, high] for its kind")
    tokens_per_char: float | None = None
    sample_texts: int | None = None
    unknown_share: float | None = None
    round_trip_failures: list[list[str]] = Field(
        default_factory=list, description="[sentence, decode(encode(sentence))] pairs"
    )
    perplexity: float | None = None
    perplexity_texts: int | None = None
    bits_per_char: float | None = None
    problems: list[str] = Field(default_factory=list, description="empty: nothing found")
    warning: str | None = None


class Method(_Record):
    """How the report measured: settings, machine, software, data."""

    task: str | None = None
    recipe: str | None = Field(None, description="the resolved recipe file")
    recipe_name: str | None = None
    model: str | None = Field(None, description="the recipe's model source")
    data: dict[str, Any] | None = None
    input_kind: str | None = None
    max_length: int | None = None
    batch_sizes: list[int] = Field(default_factory=list)
    sequence_length: int | None = None
    example_shape: str | None = None
    warmup: int | None = None
    repetitions: int | None = None
    latency_schedule: str | None = None
    threads: int | None = None
    inter_op_threads: int | None = None
    eval_samples: int | None = None
    eval_batch_size: int | None = None
    eval_max_length: int | None = None
    platform: str | None = None
    cpu: str | None = None
    cpu_features: list[str] = Field(
        default_factory=list, description="the CPU's INT8-relevant instruction sets"
    )
    date: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    accuracy_name: str | None = None
    majority_class: dict[str, Any] | None = None
    load_check: LoadCheck | None = None
    generation: dict[str, Any] | None = None
    prompt: str | None = None
    label_words: list[str] | None = None


class Report(_Record):
    """report.json."""

    schema_version: int = SCHEMA_VERSION
    kind: str | None = Field(None, description="the task whose own report this is, if any")
    method: Method
    stages: list[Stage]
    not_run: list[NotRun] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


class TrialScore(_Record):
    """One row of a search's trials.json: a trial's values and validation scores."""

    number: int
    state: Literal["complete", "pruned", "fail", "running", "waiting"]
    values: dict[str, Any] = Field(default_factory=dict, description="the recipe keys tried")
    hand_written: bool = False
    val_accuracy: float | None = Field(None, description="validation accuracy, 0..1")
    latency_ratio: float | None = Field(None, description="stage p50 / original p50")
    p50_ms: float | None = None
    size_bytes: int | None = None
    parameters: int | None = None
    feasible: bool = False
    on_front: bool = False
    seconds: float | None = None
    folder: str | None = None
    stopped: str | None = Field(None, description="why the trial stopped early, and where")
    error: str | None = None


class StepManifest(_Record):
    """A step folder's manifest.json: what made the step, and whether it ran or was skipped."""

    manifest_version: int
    pass_: str = Field(alias="pass")
    key: str | None = None
    parent_key: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    data_key: str | None = None
    seed: int | None = None
    artifact: dict[str, Any]
    metrics: dict[str, Any] = Field(default_factory=dict)
    state: Literal["ran", "skipped"] = Field(
        "ran", description="skipped: the step passed its input on unchanged (see `reason`)"
    )
    reason: str | None = Field(None, description="why the step was skipped")
    versions: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    files: dict[str, Any] = Field(default_factory=dict)


class RecordError(ValueError):
    """A record that does not match its model, in one line."""


def _one_line(error: ValidationError, what: str) -> RecordError:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return RecordError(f"{what}: {where}: {first['msg']}{more}")


def upgrade_report(data: dict[str, Any], what: str = "report") -> dict[str, Any]:
    """`data` as a current report: an older version upgraded, an unknown one refused."""
    version = data.get("schema_version", data.get("report_version"))
    if version not in READS:
        raise RecordError(
            f"{what} is a report of version {version!r}; this version of compress reads "
            f"versions {', '.join(map(str, READS))}"
        )
    if version == 1:  # version 1 named its version `report_version`; nothing else moved
        data = {k: v for k, v in data.items() if k != "report_version"}
        data["schema_version"] = SCHEMA_VERSION
    return data


def validate_report(data: dict[str, Any], what: str = "report") -> dict[str, Any]:
    """`data` checked against `Report` (after `upgrade_report`), as plain JSON data again."""
    data = upgrade_report(data, what)
    try:
        Report.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, what) from None
    return data


def validate_trials(rows: list[dict[str, Any]], what: str = "trials.json") -> None:
    """Check a search's trial rows against `TrialScore`."""
    for row in rows:
        try:
            TrialScore.model_validate(row)
        except ValidationError as exc:
            raise _one_line(exc, f"{what} trial {row.get('number')}") from None


def validate_manifest(data: dict[str, Any], what: str = "manifest") -> StepManifest:
    """`data` checked against `StepManifest`."""
    try:
        return StepManifest.model_validate(data)
    except ValidationError as exc:
        raise _one_line(exc, what) from None


def report_schema(tasks: list[str] | None = None) -> dict[str, Any]:
    """The JSON Schema of report.json; `tasks` (the registered task names) as an enum."""
    schema = Report.model_json_schema()
    if tasks:
        method = schema["$defs"]["Method"]["properties"]["task"]
        method["anyOf"] = [{"enum": sorted(tasks), "type": "string"}, {"type": "null"}]
    schema["$id"] = f"compress-report-v{SCHEMA_VERSION}"
    return schema

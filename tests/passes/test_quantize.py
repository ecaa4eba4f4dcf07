import itertools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from compress.artifacts import Artifact, Variant
from compress.data import Dataset
from compress.passes.base import PassContext
from compress.passes.export_onnx import ExportOnnxConfig
from compress.passes.export_onnx import apply as export
from compress.passes.quantize import QuantizeConfig, apply
from compress.quant.qdq_check import check_qdq
from tests.qdq_reference import (
    activation_scale_problems,
    int8_weight_problems,
    int8_weights,
    mutate,
    qdq_layer_problems,
    split_accuracy,
)


@pytest.fixture(scope="module")
def onnx_input(
    tiny_model_dir: Path, tiny_dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Artifact:
    work = tmp_path_factory.mktemp("q-export")
    ctx = PassContext(
        work_dir=work, data=tiny_dataset, max_length=32, seed=0, key="e", progress=False
    )
    src = Artifact("hf", tiny_model_dir, "tiny", [Variant("fp32", "torch", "fp32", "portable")])
    return export(src, ExportOnnxConfig(), ctx)


def _ctx(tmp_path: Path, data: Dataset) -> PassContext:
    return PassContext(work_dir=tmp_path, data=data, max_length=32, seed=0, key="q", progress=False)


def _accuracy(path: Path, source: Artifact, data: Dataset, exact: bool, one: bool = False) -> float:
    """Validation accuracy of an ONNX file computed here (argmax against the labels)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.path))
    val = data.validation
    return split_accuracy(path, tokenizer, val.inputs, val.labels, 32, exact, one)


def _calibration(ctx: PassContext, source: Artifact, samples: int) -> list[dict[str, np.ndarray]]:
    """The feeds `quantize` calibrates on (the same rows, the same shape)."""
    from compress.passkit.calibration import calibration_feeds
    from compress.quant.ort_quantize import CalibrationReader, input_names

    feeds = calibration_feeds(ctx, ctx.task.load_processor(source.path), samples)
    return CalibrationReader(feeds, input_names(source.path / "model.onnx")).batches


def test_both_targets(onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path) -> None:
    """One file per target; each INT8 weight is its FP32 weight rounded to nearest with a
    min-max scale, the Q/DQ file's layers compute their scales' arithmetic, and the recorded
    accuracies are the ones computed here."""
    ctx = _ctx(tmp_path, tiny_dataset)
    out = apply(onnx_input, QuantizeConfig(calibration_samples=32), ctx)
    assert [(v.name, v.target) for v in out.variants] == [
        ("int8-dynamic", "cpu"),
        ("int8-qdq", "tensorrt"),
    ]
    # the TensorRT file is symmetric int8 Q/DQ with per-channel weights and float biases
    report = check_qdq(tmp_path / "model_int8_qdq.onnx")
    assert report.ok, report.problems
    assert report.per_channel_weights > 0 and report.per_tensor_weights == 0
    graph = onnx.load(str(tmp_path / "model_int8_qdq.onnx")).graph
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            assert numpy_helper.to_array(inits[node.input[0]]).dtype == np.int8
    # the CPU file came from the fused graph and uses integer kernels
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model_int8_cpu.onnx")).graph.node}
    assert ops & {"QAttention", "MatMulInteger", "DynamicQuantizeMatMul"}
    assert set(ctx.metrics["validation_accuracy"]) == {"model_int8_cpu.onnx", "model_int8_qdq.onnx"}
    # exactness against the FP32 files, from the scales in the files
    qdq, cpu = tmp_path / "model_int8_qdq.onnx", tmp_path / "model_int8_cpu.onnx"
    portable, fused = onnx_input.path / "model.onnx", onnx_input.path / "model_ort.onnx"
    assert int8_weight_problems(portable, qdq) == []
    assert int8_weight_problems(fused, cpu) == []  # dynamic INT8 is built from the fused graph
    matmul_weights = [w for w in int8_weights(cpu).values() if w[0].dtype == np.int8]
    assert matmul_weights and all(w[1].size == w[0].shape[-1] for w in matmul_weights)  # per column
    feeds = _calibration(ctx, onnx_input, 32)
    assert activation_scale_problems(portable, qdq, feeds) == []
    assert qdq_layer_problems(portable, qdq, feeds) == []
    accuracy = ctx.metrics["validation_accuracy"]
    assert accuracy["model_int8_qdq.onnx"] == _accuracy(qdq, onnx_input, tiny_dataset, True)
    assert accuracy["model_int8_cpu.onnx"] == _accuracy(cpu, onnx_input, tiny_dataset, False, True)
    assert (tmp_path / "tokenizer.json").is_file() and (tmp_path / "config.json").is_file()
    assert (tmp_path / "model_int8_cpu.onnx").stat().st_size < (
        onnx_input.path / "model.onnx"
    ).stat().st_size


@pytest.mark.parametrize("bug", ["scale x2", "transpose", "activation scale x2"])
def test_the_int8_checks_reject_a_corrupted_file(
    tiny_onnx: Artifact, tiny_qdq: Artifact, tiny_dataset: Dataset, tmp_path: Path, bug: str
) -> None:
    """Mutation check: the checks `test_both_targets` passes reject a Q/DQ file with a weight
    scale doubled, a square weight transposed, or an activation scale doubled."""
    fp32 = tiny_onnx.path / "model.onnx"
    good = tiny_qdq.file(tiny_qdq.variants[0])
    feeds = _calibration(_ctx(tmp_path, tiny_dataset), tiny_onnx, 32)
    assert int8_weight_problems(fp32, good) == []
    assert activation_scale_problems(fp32, good, feeds) == []
    bad = mutate(good, tmp_path / "bad.onnx", bug)
    if bug == "activation scale x2":
        assert activation_scale_problems(fp32, bad, feeds)
    else:
        assert int8_weight_problems(fp32, bad)
        assert qdq_layer_problems(fp32, bad, feeds)


def test_static_cpu(onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path) -> None:
    """Static INT8 for cpu: Q/DQ from the portable graph, its weights the FP32 ones rounded."""
    cfg = QuantizeConfig(targets=["cpu"], cpu_mode="static", calibration_samples=16)
    out = apply(onnx_input, cfg, _ctx(tmp_path, tiny_dataset))
    assert out.variants[0].name == "int8-static"
    graph = onnx.load(str(tmp_path / "model_int8_cpu.onnx")).graph
    assert "QuantizeLinear" in [n.op_type for n in graph.node]
    assert "Attention" not in [n.op_type for n in graph.node]  # built from the portable graph
    assert (
        int8_weight_problems(onnx_input.path / "model.onnx", tmp_path / "model_int8_cpu.onnx") == []
    )


def test_percentile_calibration_of_a_transformer_keeps_its_mask_float(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """The mask stays float, and both files score the accuracy computed here."""
    # the export's attention mask is Where(mask, 0, float32 min): no finite histogram
    cfg = QuantizeConfig(targets=["cpu", "tensorrt"], cpu_mode="static", method="percentile",
                         calibration_samples=16)  # fmt: skip
    ctx = _ctx(tmp_path, tiny_dataset)
    apply(onnx_input, cfg, ctx)
    graph = onnx.load(str(tmp_path / "model_int8_cpu.onnx")).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    wheres = [n for n in graph.node if n.op_type == "Where"]
    assert wheres and "QuantizeLinear" in made_by.values()
    for node in wheres:  # the mask is built in float: no input of Where is dequantized
        assert all(made_by.get(i) != "DequantizeLinear" for i in node.input)
    assert check_qdq(tmp_path / "model_int8_qdq.onnx").ok
    accuracy = ctx.metrics["validation_accuracy"]
    assert set(accuracy) == {"model_int8_cpu.onnx", "model_int8_qdq.onnx"}
    cpu, qdq = tmp_path / "model_int8_cpu.onnx", tmp_path / "model_int8_qdq.onnx"
    assert accuracy[cpu.name] == _accuracy(cpu, onnx_input, tiny_dataset, False)
    assert accuracy[qdq.name] == _accuracy(qdq, onnx_input, tiny_dataset, True)
    assert int8_weight_problems(onnx_input.path / "model.onnx", cpu) == []


def test_entropy_calibration_of_padded_attention_fails_clearly(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    from compress.errors import PassFailed

    # masked attention scores hold float32 min: entropy's symmetric histogram overflows
    cfg = QuantizeConfig(targets=["cpu"], cpu_mode="static", method="entropy",
                         calibration_samples=16)  # fmt: skip
    with pytest.raises(
        PassFailed, match=r"INT8 calibration \(entropy\) failed.*try method: minmax"
    ):
        apply(onnx_input, cfg, _ctx(tmp_path, tiny_dataset))


def test_exclude_keeps_matching_nodes_in_float(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    cfg = QuantizeConfig(targets=["tensorrt"], calibration_samples=16, exclude=[".*classifier.*"])
    apply(onnx_input, cfg, _ctx(tmp_path, tiny_dataset))
    graph = onnx.load(str(tmp_path / "model_int8_qdq.onnx")).graph
    producers = {o: n for n in graph.node for o in n.output}
    classifier = [
        n for n in graph.node if "classifier" in n.name and n.op_type in ("Gemm", "MatMul")
    ]
    assert classifier
    for node in classifier:
        assert all(
            producers.get(i) is None or producers[i].op_type != "DequantizeLinear"
            for i in node.input
        )


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="repeat"):
        QuantizeConfig(targets=["cpu", "cpu"])
    with pytest.raises(ValueError, match="valid regex"):
        QuantizeConfig(exclude=["("])


def test_top_layers_by_quantization_error_are_recorded(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    ctx = _ctx(tmp_path, tiny_dataset)
    apply(
        onnx_input,
        QuantizeConfig(targets=["tensorrt"], calibration_samples=16, top_k_errors=3),
        ctx,
    )
    top = ctx.metrics["quantization_error"]["model_int8_qdq.onnx"]
    assert len(top) == 3
    assert [e["added"] for e in top] == sorted((e["added"] for e in top), reverse=True)
    assert all(e["op_type"] in ("MatMul", "Gemm") and e["error"] > 0 for e in top)


def test_accuracy_budget_is_recorded_against_the_fp32_file(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """The record's FP32 and INT8 accuracies are those computed here of the FP32 file and of
    the INT8 file left on disk, and its drop is theirs."""
    ctx = _ctx(tmp_path, tiny_dataset)
    cfg = QuantizeConfig(targets=["tensorrt"], calibration_samples=16, max_accuracy_drop=0.0)
    apply(onnx_input, cfg, ctx)
    record = ctx.metrics["accuracy_budget"]["model_int8_qdq.onnx"]
    fp32 = _accuracy(onnx_input.path / "model.onnx", onnx_input, tiny_dataset, False)
    int8 = _accuracy(tmp_path / "model_int8_qdq.onnx", onnx_input, tiny_dataset, True)
    assert record["fp32_accuracy"] == fp32
    assert record["accuracy"] == int8 == ctx.metrics["validation_accuracy"]["model_int8_qdq.onnx"]
    assert record["drop_points"] == pytest.approx(100 * (fp32 - int8))
    assert record["within_budget"] == (100 * (fp32 - int8) <= 0)
    assert record["within_budget"] or record["float_layers"]


def test_fallback_builds_files_with_the_ranked_layers_in_float(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """On real files, run exactly (Q/DQ as float arithmetic, the same on every CPU)."""
    from compress.passes.quantize import _static
    from compress.passkit.calibration import calibration_feeds
    from compress.quant.ort_quantize import CalibrationReader, input_names
    from compress.quant.parity import feeds_for, session
    from compress.quant.sensitivity import keep_float_within_budget, layer_errors

    ctx = _ctx(tmp_path, tiny_dataset)
    cfg = QuantizeConfig(targets=["tensorrt"], calibration_samples=16)
    source, out = onnx_input.path / "model.onnx", tmp_path / "model_int8_qdq.onnx"
    tokenizer = ctx.task.load_processor(onnx_input.path)
    reader = CalibrationReader(calibration_feeds(ctx, tokenizer, 16), input_names(source))
    batches = ctx.task.parity_batches(tokenizer, tiny_dataset.validation.inputs, 32)
    fp32 = session(source, exact=True)
    reference = [fp32.run(None, feeds_for(fp32, b))[0] for b in batches]

    def build(keep_float: list[str]) -> Path:
        _static(source, out, cfg, reader, True, keep_float, True)
        return out

    def error(path: Path) -> float:
        sess = session(path, exact=True)
        diffs = [
            np.abs(sess.run(None, feeds_for(sess, b))[0] - r).max()
            for b, r in zip(batches, reference, strict=True)
        ]
        return float(max(diffs))

    all_int8 = error(build([]))
    ranking = [e.node for e in layer_errors(source, out, reader.batches[:4])]
    assert len(ranking) >= 4 and all_int8 > 0
    half = ranking[: len(ranking) // 2]
    build(half)
    graph = onnx.load(str(out)).graph
    weights = {t.name for t in graph.initializer}
    dequantized_weights = {
        n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights
    }
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    for node in graph.node:  # the named layers keep float weights, the others read int8
        if node.name in half:
            assert not any(i in dequantized_weights for i in node.input), node.name
        elif node.name in ranking:
            assert any(i in dequantized for i in node.input), node.name
    # every quantized layer in float: the file computes what the FP32 one does
    assert error(build(ranking)) <= 0.01 * all_int8
    # a budget only that meets: the search keeps a prefix of the ranking in float, doubling
    # its length up to every layer, and leaves its last build on disk
    budget = 100 * 0.01 * all_int8
    result = keep_float_within_budget(
        build, lambda p: -error(p), 0.0, budget, ranking, len(ranking), lambda _: None
    )
    assert result.within_budget
    assert result.float_layers == ranking[: len(result.float_layers)]
    counts = [t["float_layers"] for t in result.tries]
    assert counts == sorted(counts) and counts[0] == 1
    assert all(b == min(2 * a, len(ranking)) for a, b in itertools.pairwise(counts))
    assert -error(out) == pytest.approx(result.accuracy)


def test_nncf_backend_writes_working_int8(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """NNCF's Q/DQ file: TensorRT form, exact against the FP32 file from its scales, and
    scored as computed here."""
    pytest.importorskip("nncf")
    ctx = _ctx(tmp_path, tiny_dataset)
    cfg = QuantizeConfig(targets=["tensorrt"], backend="nncf", calibration_samples=16)
    out = apply(onnx_input, cfg, ctx)
    path = out.file(out.variants[0])
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > 0
    assert ctx.metrics["tensorrt_qdq"]["ok"]
    # its weights are the FP32 ones rounded to nearest with min-max scales, and each layer,
    # executed exactly, computes its scales' arithmetic within their bound of the float layer
    fp32 = onnx_input.path / "model.onnx"
    assert int8_weight_problems(fp32, path) == []
    assert qdq_layer_problems(fp32, path, _calibration(ctx, onnx_input, 16)) == []
    accuracy = _accuracy(path, onnx_input, tiny_dataset, True)
    assert ctx.metrics["validation_accuracy"][path.name] == accuracy


def test_backend_options_are_validated() -> None:
    with pytest.raises(ValueError, match="cpu_mode: static"):
        QuantizeConfig(backend="nncf")
    with pytest.raises(ValueError, match="needs backend: nncf"):
        QuantizeConfig(smooth_quant_alpha=0.5)
    assert QuantizeConfig(backend="nncf", targets=["tensorrt"], smooth_quant_alpha=0.5)
    with pytest.raises(ValueError, match="reduce_range is an ONNX Runtime option"):
        QuantizeConfig(backend="nncf", targets=["tensorrt"], reduce_range=True)


def _int8_weight_range(path: Path) -> tuple[int, int]:
    """The smallest and largest value of the file's INT8 weight initializers."""
    arrays = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    weights = [a for a in arrays if a.dtype == np.int8 and a.size > 64]
    assert weights
    return min(int(a.min()) for a in weights), max(int(a.max()) for a in weights)


@pytest.mark.parametrize("cpu_mode", ["dynamic", "static"])
def test_reduce_range_auto_follows_the_cpu(
    onnx_input: Artifact,
    tiny_dataset: Dataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cpu_mode: str,
) -> None:
    import compress.system

    cfg = QuantizeConfig(targets=["cpu"], cpu_mode=cpu_mode, calibration_samples=16)  # type: ignore[arg-type]
    assert cfg.reduce_range == "auto"
    for saturates in (True, False):
        monkeypatch.setattr(compress.system, "int8_saturates", lambda s=saturates: s)
        (tmp_path / str(saturates)).mkdir()
        ctx = _ctx(tmp_path / str(saturates), tiny_dataset)
        apply(onnx_input, cfg, ctx)
        assert ctx.metrics["reduce_range"]["value"] is saturates
        assert ctx.metrics["reduce_range"]["why"].startswith("auto")
        low, high = _int8_weight_range(tmp_path / str(saturates) / "model_int8_cpu.onnx")
        if saturates:  # 7-bit weights: a pair of u8 x s8 products fits in 16 bits (2*255*64)
            assert low >= -64 and high <= 64
        else:
            assert high - low > 127
    (tmp_path / "set").mkdir()
    ctx = _ctx(tmp_path / "set", tiny_dataset)
    apply(onnx_input, cfg.model_copy(update={"reduce_range": True}), ctx)
    assert ctx.metrics["reduce_range"] == {"value": True, "why": "set in the recipe"}


def test_int8_saturates_only_on_avx2_without_vnni(monkeypatch: pytest.MonkeyPatch) -> None:
    import compress.system as system

    for features, expected in [
        (["avx2", "avx512f"], True),
        (["avx2"], True),
        (["avx2", "avx512f", "avx512_vnni"], False),
        (["avx2", "avx_vnni"], False),
        (["asimd", "asimddp"], False),
        ([], False),
    ]:
        monkeypatch.setattr(system, "cpu_features", lambda f=features: f)
        assert system.int8_saturates() is expected, features


def test_float_within_size_buys_the_most_error_per_byte() -> None:
    from compress.quant.sensitivity import LayerError, float_within_size

    errors = [
        LayerError("big", "MatMul", 0.5, 0.30),  # 0.30 for 900 bytes
        LayerError("small", "MatMul", 0.2, 0.10),  # 0.10 for 100 bytes: best per byte
        LayerError("mid", "MatMul", 0.3, 0.12),  # 0.12 for 300 bytes
        LayerError("qk", "MatMul", 0.4, 0.50),  # no weights: not sized by this budget
        LayerError("none", "Gemm", 0.1, 0.0),  # adds nothing: never worth a byte
    ]
    extra = {"big": 900, "small": 100, "mid": 300, "none": 50}
    assert float_within_size(errors, extra, 0) == []
    assert float_within_size(errors, extra, 400) == ["small", "mid"]
    assert float_within_size(errors, extra, 1000) == ["small", "mid"]  # big no longer fits
    assert float_within_size(errors, extra, 1300) == ["small", "mid", "big"]


def test_size_budget_keeps_layers_float_and_records_the_choice(
    onnx_input: Artifact, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    from compress.quant.sensitivity import float_weight_bytes

    ctx = _ctx(tmp_path / "int8", tiny_dataset)
    (tmp_path / "int8").mkdir()
    apply(onnx_input, QuantizeConfig(targets=["tensorrt"], calibration_samples=16), ctx)
    all_int8 = tmp_path / "int8" / "model_int8_qdq.onnx"
    extra = float_weight_bytes(all_int8)
    graph = onnx.load(str(all_int8)).graph
    assert set(extra) <= {n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")}
    assert extra and all(v > 0 and v % 3 == 0 for v in extra.values())

    (tmp_path / "mixed").mkdir()
    ctx = _ctx(tmp_path / "mixed", tiny_dataset)
    cfg = QuantizeConfig(targets=["tensorrt"], calibration_samples=16, float_size_budget=0.5)
    apply(onnx_input, cfg, ctx)
    record = ctx.metrics["mixed_precision"]["model_int8_qdq.onnx"]
    assert record["float_layers"] and record["all_int8_bytes"] == all_int8.stat().st_size
    growth = record["bytes"] - record["all_int8_bytes"]
    assert 0 < growth <= 0.5 * record["all_int8_bytes"] + 4096  # + protobuf framing
    # the weights' extra bytes bound the growth (float layers also drop their Q/DQ nodes)
    assert growth <= sum(extra[n] for n in record["float_layers"])
    assert 0 < record["int8_error_kept_out"] <= record["int8_error_total"]
    assert check_qdq(tmp_path / "mixed" / "model_int8_qdq.onnx").ok
    with pytest.raises(ValueError, match="float_size_budget or max_accuracy_drop"):
        QuantizeConfig(float_size_budget=0.1, max_accuracy_drop=1.0)

"""The text-generation task's own implementations of the passes (decoder LMs).

A causal LM trains on next-token loss validated by perplexity, prunes whole
layers, FFN neurons and key/value groups by their activations, exports with
its KV cache, and quantizes its weights only: the task's table
(`compress.tasks.generation`) points the passes here.

`quantize`: ONNX Runtime's MatMulNBits quantizer does the work (`compress.llm.int4`):
the decoder's MatMuls in blocks of `block_size` weights along the input axis, by
`algorithm` (rtn: round to nearest; hqq: half-quadratic optimisation of
scales and zero points against the weights' own error; scale_estimation
and awq: NNCF's data-aware methods, run on `calibration_samples` training
texts, `compress.llm.calibrated`), the LM head at its
own bits (round to nearest), and the token embedding, which a tied model's
lookup reads from the quantized LM head (one copy, as in PyTorch;
GatherBlockQuantized). The file runs on ONNX Runtime's CPU kernels
(`accuracy_level` 4: INT8 activations in the MatMuls). `weight_only.targets`
adds `tensorrt`: `model_int4_qdq.onnx`, the same algorithms written as blocked
symmetric INT4 `DequantizeLinear` -> `MatMul` (opset 21) on the portable export
(`compress.llm.int4_qdq`), the form TensorRT's parser takes; it is checked for
that form (`compress.trt.weight_only`) and scored exactly on ONNX Runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.artifacts import Artifact, Variant, copy_preprocessing
from compress.errors import PassFailed, UserError
from compress.llm.options import WeightOnlyConfig
from compress.passkit.context import PassContext
from compress.passkit.io import load_input, save_output
from compress.passkit.lm_training import Examples

CLASSIFICATION_ONLY = (
    "targets", "cpu_mode", "method", "percentile", "per_channel", "reduce_range", "backend",
    "fast_bias_correction", "smooth_quant_alpha", "max_accuracy_drop", "max_float_layers",
    "float_size_budget", "top_k_errors", "exclude",
)  # fmt: skip


def fine_tune(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """Next-token loss on the corpus (fully or with LoRA on every linear layer, merged)."""
    model, tokenizer = load_input(artifact, ctx)
    from compress.llm.losses import causal_lm_loss
    from compress.passkit.lm_training import train_lm

    trained = model
    if cfg.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        lora = LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=cfg.lora_targets or "all-linear",
        )
        try:
            trained = get_peft_model(model, lora)
        except ValueError as exc:
            raise UserError(f"fine_tune LoRA on {model.config.model_type}: {exc}") from None
        trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
        ctx.log(f"LoRA: {trainable:,} trainable parameters")
    metrics = train_lm(
        trained, tokenizer, cfg, ctx, causal_lm_loss, "fine_tune", cfg.examples, cfg.min_steps
    )
    if cfg.method == "lora":
        model = trained.merge_and_unload()
    ctx.metrics.update(metrics)
    return save_output(model, tokenizer, ctx)


def distill(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """Logit distillation of a causal LM into a layer subset of it, or into `student`."""
    teacher, tokenizer = load_input(artifact, ctx)
    import copy

    from compress.llm.losses import lm_distillation_loss
    from compress.llm.pruning import drop_layers
    from compress.passkit.lm_training import train_lm
    from compress.text.layers import pick_layers

    keep = None
    if cfg.student is not None:
        student, tokenizer = ctx.task.load(ctx.task.resolve(cfg.student), None)
    else:
        depth = teacher.config.num_hidden_layers
        keep = pick_layers(depth, cfg.layers, "distill.layers")
        student = copy.deepcopy(teacher)
        drop_layers(student, keep)
        ctx.log(f"student keeps teacher layers {keep} of {depth}")
    if student.config.vocab_size != teacher.config.vocab_size:
        raise UserError(
            f"distill: the student's vocabulary ({student.config.vocab_size}) differs from the "
            f"teacher's ({teacher.config.vocab_size}); logit distillation needs the same one"
        )
    teacher.eval()
    loss = lm_distillation_loss(teacher, cfg.temperature, cfg.alpha)
    ctx.metrics.update(train_lm(student, tokenizer, cfg, ctx, loss, "distill", cfg.examples))
    ctx.metrics["student_layers"] = keep
    ctx.metrics["student_parameters"] = sum(p.numel() for p in student.parameters())
    return save_output(student, tokenizer, ctx)


def prune(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """Depth (least-influential layers) and width (FFN neurons, KV groups) of a decoder LM."""
    model, tokenizer = load_input(artifact, ctx)
    import copy

    from compress.llm import pruning
    from compress.llm.models import lm_meta
    from compress.passkit.lm_training import text_batches
    from compress.text.pruning import round_width

    teacher = copy.deepcopy(model) if cfg.recovery is not None else None
    before = lm_meta(model)
    batches = text_batches(tokenizer, ctx, cfg.importance_batches)
    result: dict[str, Any] = {}
    if cfg.layers is not None:
        depth = model.config.num_hidden_layers
        if isinstance(cfg.layers, int):
            if not 1 <= cfg.layers <= depth:
                raise UserError(f"prune.layers: {cfg.layers} layers asked, the model has {depth}")
            influence = pruning.layer_influence(model, batches)
            keep = sorted(sorted(range(depth), key=lambda i: -influence[i])[: cfg.layers])
            result["layer_influence"] = [round(v, 5) for v in influence]
        else:
            keep = sorted(cfg.layers)
            if keep[-1] >= depth:
                raise UserError(f"prune.layers: layer {keep[-1]} asked, the model has {depth}")
        pruning.drop_layers(model, keep)
        result["kept_layers"] = keep
        ctx.log(f"keeping {len(keep)} of {depth} layers: {keep}")
    if cfg.heads > 0 or cfg.ffn > 0:
        ffn_scores, group_scores = pruning.width_scores(model, batches)
        if cfg.ffn > 0:
            total = model.config.intermediate_size
            width = round_width(total * (1 - cfg.ffn), cfg.round_to, total)
            pruning.prune_ffn(model, ffn_scores, width)
            result["ffn_width"] = [total, width]
        if cfg.heads > 0:
            groups = model.config.num_key_value_heads
            kept = max(1, groups - round(cfg.heads * groups))
            if kept == groups:
                raise UserError(
                    f"prune.heads: {cfg.heads:g} of {groups} key/value groups rounds to none; "
                    f"heads are removed in whole groups (at least {1 / groups:.3g})"
                )
            pruning.prune_kv_groups(model, group_scores, kept)
            result["kv_groups"] = [groups, kept]
    after = lm_meta(model)
    ctx.metrics.update(result)
    ctx.metrics["parameters"] = [before["parameters"], after["parameters"]]
    ctx.log(f"parameters {before['parameters'] / 1e6:.1f}M -> {after['parameters'] / 1e6:.1f}M")
    if cfg.recovery is not None and teacher is not None:
        from compress.llm.losses import lm_distillation_loss
        from compress.passkit.lm_training import train_lm

        loss = lm_distillation_loss(teacher, cfg.recovery.temperature, cfg.recovery.alpha)
        examples: Examples = cfg.recovery.examples or "text"
        ctx.metrics["recovery"] = train_lm(
            model, tokenizer, cfg.recovery, ctx, loss, "recover", examples
        )
    return save_output(model, tokenizer, ctx)


def export_onnx(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """`model.onnx` with the KV cache as inputs and outputs, checked with and without past."""
    from compress.llm.export import export_with_past, fuse_decoder, lm_parity

    model, tokenizer = load_input(artifact, ctx)
    portable = export_with_past(model, tokenizer, ctx.work_dir, cfg.opset)
    texts = ctx.data.validation.texts[:8]
    sequences = tokenizer(texts, truncation=True, max_length=ctx.max_length)["input_ids"]
    variants = [Variant("fp32", "onnxruntime", "fp32", "portable", "model.onnx")]
    files = [portable]
    if cfg.optimize:
        fused, skipped = fuse_decoder(portable, ctx.work_dir / "model_ort.onnx", model.config)
        ctx.log(f"model_ort.onnx: ONNX Runtime decoder fusions {fused}")
        if skipped:
            ctx.log(f"model_ort.onnx keeps optimum's attention graph: {skipped}")
        ctx.metrics["fused_operators"] = fused
        why = f"optimum's attention: {skipped}" if skipped else "GroupQueryAttention"
        ctx.metrics["attention"] = {"model_ort.onnx": why}
        variants.append(Variant("fp32-ort", "onnxruntime", "fp32", "cpu", "model_ort.onnx"))
        files.append(ctx.work_dir / "model_ort.onnx")
    ctx.metrics["parity"], ctx.metrics["parity_detail"] = {}, {}
    for file in files:
        diffs = lm_parity(model, file, sequences, cfg.atol)
        shown = ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
        ctx.log(f"{file.name} matches PyTorch: max |logit diff| {shown} (atol {cfg.atol:g})")
        ctx.metrics["parity"][file.name] = max(diffs.values())
        ctx.metrics["parity_detail"][file.name] = diffs
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, {**artifact.meta, "opset": cfg.opset})


def quantize_outputs(cfg: Any) -> tuple[tuple[str, str], ...]:
    """What `quantize` hands on for a decoder: one weight-only file per target."""
    wo = cfg.weight_only or WeightOnlyConfig()
    return tuple((f"int{wo.bits}", target) for target in wo.targets)


def quantize(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """`model_int{bits}.onnx` (cpu) and `model_int4_qdq.onnx` (tensorrt) beside the tokenizer,
    with their validation perplexity logged."""
    from compress.quant.ort_quantize import quiet_root_logger

    with quiet_root_logger():
        return _quantize(artifact, cfg.weight_only or WeightOnlyConfig(), ctx)


def _quantize(artifact: Artifact, wo: WeightOnlyConfig, ctx: PassContext) -> Artifact:
    from compress.llm.calibrated import calibration_sequences
    from compress.llm.genai import write_genai_config
    from compress.llm.int4 import quantize_weights

    # the fused graph where the export wrote one (the faster file on ONNX Runtime)
    cpu = [v for v in artifact.variants if v.target == "cpu"] or artifact.variants
    source = artifact.path / (cpu[0].file or "model.onnx")
    tokenizer = ctx.task.load_processor(artifact.path)
    copy_preprocessing(artifact.path, ctx.work_dir)
    calibration: list[list[int]] = []
    if wo.uses_calibration:  # the layers' or the LM head's data-aware rounding
        calibration = calibration_sequences(
            tokenizer, ctx.data.train.texts, wo.calibration_samples, ctx.seed, ctx.max_length
        )
        ctx.log(f"calibrating on {len(calibration)} training texts ({wo.algorithm}, awq {wo.awq})")
    precision = f"int{wo.bits}"
    variants: list[Variant] = []
    files: dict[str, tuple[Path, bool]] = {"fp32": (source, False)}
    if "cpu" in wo.targets:
        name = f"model_int{wo.bits}.onnx"
        summary = quantize_weights(source, ctx.work_dir / name, wo, ctx.progress, calibration)
        ctx.metrics["weight_only"] = summary
        write_genai_config(ctx.work_dir, name)
        files[precision] = (ctx.work_dir / name, False)
        variants += [
            Variant(precision, "onnxruntime", precision, "cpu", name),
            Variant(
                f"{precision}-genai",
                "onnxruntime-genai",
                precision,
                "cpu",
                name,
                "the same file served by onnxruntime-genai (genai_config.json)",
            ),
        ]
    if "tensorrt" in wo.targets:
        portable = [v for v in artifact.variants if v.target == "portable"] or artifact.variants
        qdq = _tensorrt_file(
            artifact.path / (portable[0].file or "model.onnx"), wo, ctx, calibration
        )
        files[f"{precision}-qdq"] = (qdq, True)
        variants.append(
            Variant(
                f"{precision}-qdq",
                "onnxruntime",
                precision,
                "tensorrt",
                qdq.name,
                "weight-only INT4 for TensorRT (DequantizeLinear -> MatMul, opset 21), scored "
                "exactly on ONNX Runtime",
            )
        )
    ctx.metrics["validation_perplexity"] = _validation_perplexity(files, tokenizer, ctx)
    return Artifact("onnx", ctx.work_dir, ctx.key, variants, dict(artifact.meta))


def _tensorrt_file(
    source: Path, wo: WeightOnlyConfig, ctx: PassContext, calibration: list[list[int]]
) -> Path:
    """`model_int4_qdq.onnx` from the portable export, checked for TensorRT's form."""
    import onnx

    from compress.llm.int4_qdq import quantize_weights_qdq
    from compress.trt.weight_only import check_weight_only

    target = ctx.work_dir / "model_int4_qdq.onnx"
    ctx.log(f"{target.name}: blocked symmetric INT4 DequantizeLinear -> MatMul from {source.name}")
    summary = quantize_weights_qdq(source, target, wo, ctx.progress, calibration)
    form = check_weight_only(onnx.load(str(target), load_external_data=False))
    summary["form"] = {"ok": form.ok, "summary": form.summary(), "problems": form.problems[:10]}
    ctx.metrics["weight_only_tensorrt"] = summary
    if not form.ok:
        raise PassFailed(f"{target.name} is not TensorRT's weight-only form: {form.problems[:3]}")
    ctx.log(form.summary())
    return target


def _validation_perplexity(
    files: dict[str, tuple[Path, bool]], tokenizer: Any, ctx: PassContext
) -> dict[str, float]:
    """Perplexity of each file on the first 100 validation texts (`exact`: no graph
    optimization, the Q/DQ graph as written)."""
    from compress.llm.runtime import OrtLM
    from compress.llm.scores import perplexity

    validation = ctx.data.validation.texts[:100]
    figures = {}
    for label, (file, exact) in files.items():
        lm = OrtLM(file, exact=exact)
        figures[label] = perplexity(lm, tokenizer, validation, ctx.max_length)["perplexity"]
        lm.close()
    for label, (file, _) in files.items():
        if label != "fp32":
            ctx.log(
                f"{file.name}: validation perplexity {figures[label]:.2f} "
                f"(fp32 file {figures['fp32']:.2f}, {len(validation)} texts)"
            )
    return figures


def bundle(artifact: Artifact, cfg: Any, ctx: PassContext) -> Artifact:
    """The run's ONNX decoder with `generate.py` (see `compress.deploy.lm_bundle`)."""
    from compress.artifacts import RunFolder
    from compress.deploy.lm_bundle import make_lm_bundle
    from compress.passkit.io import bundle_artifact, bundle_name
    from compress.trt.options import EngineShapes

    name = bundle_name(cfg, ctx)
    assert ctx.run_dir is not None  # bundle_name refuses a bundle outside a run
    shapes = EngineShapes(batch=cfg.batch, sequence=cfg.sequence)
    made = make_lm_bundle(
        RunFolder(ctx.run_dir).require(),
        ctx.work_dir / name,
        cfg.target,
        shapes=shapes,
        workspace_mb=cfg.workspace_mb,
    )
    return bundle_artifact(made, name, cfg, ctx, {"expected": made.manifest["expected"]})

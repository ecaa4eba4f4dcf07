"""NNCF, as the `qat` pass and `quantize backend: nncf` use it (imported only when they run).

The settings aim at TensorRT's explicit quantization: the PERFORMANCE preset
(symmetric INT8 activations and weights, zero points 0), per-channel weights,
and no overflow fix (which would use only 7 of the 8 weight bits; it exists
for old x86 VNNI kernels, not for GPUs).
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

INSTALL_HINT = "pip install 'edge-compress[nncf]'"
# The first QAT run compiles NNCF's C++ quantizer extension (~60 s on 2 cores), which
# NNCF aborts after 60 s by default; a busy machine needs longer, once.
_EXTENSION_TIMEOUT_S = "900"


def load_nncf() -> Any:
    """`import nncf`, quiet, with room for its one-time extension build."""
    os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", _EXTENSION_TIMEOUT_S)
    import nncf

    logging.getLogger("nncf").setLevel(logging.WARNING)
    return nncf


def advanced_parameters(
    smooth_quant_alpha: float | None = None, fast_bias_correction: bool = True
) -> Any:
    """TensorRT-friendly advanced options; SmoothQuant only when an alpha is given."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    alpha = -1.0 if smooth_quant_alpha is None else smooth_quant_alpha  # -1 turns it off
    return AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.DISABLE,
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha, convolution=-1),
        disable_bias_correction=not fast_bias_correction,
    )


def ignored_scope(names: Iterable[str] = (), patterns: Iterable[str] = ()) -> Any:
    """Layers NNCF leaves in float (patterns that match nothing are not an error)."""
    nncf = load_nncf()
    return nncf.IgnoredScope(names=list(names), patterns=list(patterns), validate=False)


def prepare_qat(
    model: Any,
    batches: list[dict[str, Any]],
    keep_float: list[str],
    transformer: bool,
) -> Any:
    """`model` with calibrated, trainable fake quantizers inserted (NNCF PTQ init).

    `batches` are model inputs (dicts of tensors); `keep_float` are regexes of
    NNCF node names (module paths, e.g. `.*embeddings.*`) left unquantized.
    """
    nncf = load_nncf()
    from nncf.parameters import ModelType

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nncf.quantize(
            model,
            nncf.Dataset(batches),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            model_type=ModelType.TRANSFORMER if transformer else None,
            subset_size=len(batches),  # items of the dataset, each a batch
            ignored_scope=ignored_scope(patterns=keep_float),
            advanced_parameters=advanced_parameters(),
        )


def force_signed(model: Any) -> int:
    """Make every unsigned fake quantizer (NNCF's choice after a ReLU) signed int8.

    TensorRT takes int8 Q/DQ only; NNCF refuses to force signedness when
    quantizing, so the quantizers are switched after calibration, before QAT
    trains their scales. Returns how many were switched.
    """
    from nncf.torch.quantization.layers import SymmetricQuantizer

    switched = 0
    for module in model.modules():
        if isinstance(module, SymmetricQuantizer) and not module.signed:
            module.signed = True
            switched += 1
    return switched


def export_qat(
    model: Any,
    example: dict[str, Any],
    path: Path,
    dynamic_axes: dict[str, dict[int, str]],
    opset: int,
    output: str = "logits",
) -> tuple[Any, dict[str, int]]:
    """Strip NNCF's quantizers to torch fake-quant ops and export symmetric Q/DQ ONNX
    (its one output named `output`).

    Returns the stripped model (what the ONNX file must match) and what folding did.
    """
    import onnx
    import torch

    from compress.quant.qdq_fold import fold_qdq_constants

    nncf = load_nncf()
    model.eval()
    stripped = nncf.strip(model, strip_format=nncf.StripFormat.NATIVE, example_input=example)
    stripped.eval()
    # The tracer orders graph inputs by the forward signature, whatever the order of the
    # keyword arguments; names given in another order would be attached to the wrong inputs.
    order = [n for n in inspect.signature(stripped.forward).parameters if n in example]
    example = {name: example[name] for name in order}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings; parity is checked by the caller
        torch.onnx.export(
            stripped,
            (),
            str(path),
            kwargs=example,
            input_names=order,
            output_names=[output],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,  # fake-quant ops export only with the TorchScript exporter
        )
    proto = onnx.load(str(path))
    folded = fold_qdq_constants(proto)
    onnx.save(proto, str(path))
    return stripped, folded


def quantize_onnx(
    source: Path,
    target: Path,
    batches: list[dict[str, Any]],
    *,
    symmetric: bool,
    transformer: bool,
    fast_bias_correction: bool,
    smooth_quant_alpha: float | None,
    keep_float: list[str],
) -> None:
    """NNCF post-training quantization of an ONNX file, calibrated on `batches` (feeds)."""
    import onnx

    nncf = load_nncf()
    from nncf.parameters import ModelType

    model = onnx.load(str(source))
    preset = nncf.QuantizationPreset.PERFORMANCE if symmetric else nncf.QuantizationPreset.MIXED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = nncf.quantize(
            model,
            nncf.Dataset(batches),
            preset=preset,
            model_type=ModelType.TRANSFORMER if transformer else None,
            subset_size=len(batches),  # items of the dataset, each a batch
            fast_bias_correction=True,
            ignored_scope=ignored_scope(names=keep_float),
            advanced_parameters=advanced_parameters(smooth_quant_alpha, fast_bias_correction),
        )
    onnx.save(quantized, str(target))

"""Which layers of a Q/DQ INT8 file stay float: by an accuracy budget or by a size budget.

`quantize` measures every quantized layer's error (`compress.quant.sensitivity`)
and then either re-quantizes with the worst layers float until the validation
accuracy is within `max_accuracy_drop` (`AccuracyBudget`), or picks per layer
INT8 or float by error per byte under `float_size_budget` (`mixed_precision`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress.passkit.context import PassContext
from compress.passkit.io import onnx_validation_accuracy
from compress.quant.sensitivity import (
    LayerError,
    float_weight_bytes,
    float_within_size,
    keep_float_within_budget,
)


def mixed_precision(
    share: float,
    out: Path,
    build: Callable[[list[str]], Path],
    ranking: list[LayerError],
    ctx: PassContext,
) -> None:
    """`float_size_budget`: per layer INT8 or float, chosen by error per byte; recorded."""
    size = out.stat().st_size
    extra = float_weight_bytes(out)
    chosen = float_within_size(ranking, extra, share * size)
    ctx.log(
        f"{out.name}: {len(chosen)} of {len(extra)} weighted layers kept float within "
        f"+{share:.0%} size ({', '.join(chosen[:5])}{', ...' if len(chosen) > 5 else ''})"
    )
    if chosen:
        build(chosen)
    added = {e.node: e.added for e in ranking}
    ctx.metrics.setdefault("mixed_precision", {})[out.name] = {
        "size_budget": share,
        "all_int8_bytes": size,
        "bytes": out.stat().st_size,
        "float_layers": chosen,
        "int8_error_kept_out": sum(added[n] for n in chosen),
        "int8_error_total": sum(e.added for e in ranking),
    }


class AccuracyBudget:
    """`max_accuracy_drop`: the FP32 reference accuracy and the fallback per INT8 file."""

    def __init__(self, max_drop: float, max_layers: int, ctx: PassContext, processor: Any) -> None:
        self.max_drop, self.max_layers = max_drop, max_layers
        self.ctx, self.processor = ctx, processor
        self.reference: dict[Path, float] = {}

    def _accuracy(self, file: Path, exact: bool = False) -> float:
        return onnx_validation_accuracy(self.ctx, self.processor, file, exact=exact, log=False)

    def _drop(self, source: Path, out: Path, exact: bool = False) -> tuple[float, float]:
        if source not in self.reference:
            self.reference[source] = self._accuracy(source)
        accuracy = self._accuracy(out, exact)
        return accuracy, 100 * (self.reference[source] - accuracy)

    def check_only(self, source: Path, out: Path) -> None:
        accuracy, drop = self._drop(source, out)
        within = drop <= self.max_drop
        self.ctx.metrics.setdefault("accuracy_budget", {})[out.name] = {
            "fp32_accuracy": self.reference[source],
            "accuracy": accuracy,
            "drop_points": drop,
            "within_budget": within,
            "float_layers": [],
            "note": "dynamic INT8 is checked, not searched: the fallback works on Q/DQ files",
        }
        if not within:
            self.ctx.log(f"{out.name}: drop {drop:.2f} points is over max_accuracy_drop")

    def fallback(
        self,
        source: Path,
        out: Path,
        build: Callable[[list[str]], Path],
        ranking: list[str],
        exact: bool,
    ) -> None:
        """Keep the worst layers float until the drop is within budget; `exact` scores the
        files as their Q/DQ graph computes (files for TensorRT)."""
        budget = self.max_drop
        accuracy, drop = self._drop(source, out, exact)
        record: dict[str, Any] = {
            "fp32_accuracy": self.reference[source],
            "all_int8_accuracy": accuracy,
            "all_int8_drop_points": drop,
            "float_layers": [],
            "accuracy": accuracy,
            "drop_points": drop,
            "within_budget": drop <= budget,
        }
        if drop > budget:
            self.ctx.log(
                f"{out.name}: drop {drop:.2f} points > {budget:g}; keeping the layers with the "
                "largest quantization error in float"
            )
            result = keep_float_within_budget(
                build,
                lambda file: self._accuracy(file, exact),
                self.reference[source],
                budget,
                ranking,
                self.max_layers,
                self.ctx.log,
                baseline=accuracy,
            )
            if result.tries:
                record.update(
                    float_layers=result.float_layers,
                    accuracy=result.accuracy,
                    drop_points=100 * (self.reference[source] - result.accuracy),
                    within_budget=result.within_budget,
                    tries=result.tries,
                )
        self.ctx.metrics.setdefault("accuracy_budget", {})[out.name] = record

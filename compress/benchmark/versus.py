"""A stage against the original: size, parameters, speed (with its spread over the
interleaved rounds), accuracy, FLOPs and agreement."""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.benchmark.measure import round_ratios


def _ratio(numerator: Any, denominator: Any) -> float | None:
    if not isinstance(numerator, int | float) or not isinstance(denominator, int | float):
        return None
    return float(numerator) / float(denominator) if denominator else None


def _points(value: Any, reference: Any) -> float | None:
    if not isinstance(value, int | float) or not isinstance(reference, int | float):
        return None
    return (float(value) - float(reference)) * 100.0


def _speedups(
    stage: dict[str, Any], original: dict[str, Any]
) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
    """Speedup per batch size, and its spread over the interleaved rounds.

    Where both were timed in the same interleaved rounds, the speedup is the
    median of the per-round ratios (original p50 / stage p50 in each round),
    with the rounds' min and max: one noisy round moves neither. Otherwise
    (figures measured apart) it is the ratio of the two p50s.
    """
    speedup: dict[str, float | None] = {}
    spread: dict[str, dict[str, float]] = {}
    for key, ref in original.get("latency", {}).items():
        mine = stage.get("latency", {}).get(key)
        if mine is None:
            continue
        ratios = round_ratios(ref.get("round_p50_ms") or [], mine.get("round_p50_ms") or [])
        if ratios:
            speedup[key] = float(np.median(ratios))
            spread[key] = {"min": min(ratios), "max": max(ratios), "rounds": len(ratios)}
        else:
            speedup[key] = _ratio(ref.get("p50_ms"), mine.get("p50_ms"))
    return speedup, spread


def compare(stage: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """`stage` against `original`: ratios above 1 mean smaller, fewer or faster."""
    speedup, spread = _speedups(stage, original)
    result: dict[str, Any] = {
        "size_ratio": _ratio(original.get("size_bytes"), stage.get("size_bytes")),
        "parameter_ratio": _ratio(original.get("parameters"), stage.get("parameters")),
        "speedup": speedup,
        **({"speedup_rounds": spread} if spread else {}),
        "accuracy_delta_points": _points(stage.get("accuracy"), original.get("accuracy")),
        "macro_f1_delta_points": _points(stage.get("macro_f1"), original.get("macro_f1")),
    }
    flops = _ratio(original.get("macs_per_token"), stage.get("macs_per_token"))
    if flops is None:
        flops = _ratio(original.get("macs_per_example"), stage.get("macs_per_example"))
    if flops is not None:
        # Honest speedup accounting: how much of the FLOPs cut shows up as measured speed.
        result["flops_ratio"] = flops
        result["speedup_per_flops"] = {k: _ratio(v, flops) for k, v in speedup.items()}
    ours, theirs = stage.get("predictions"), original.get("predictions")
    if ours is not None and theirs is not None and len(ours) == len(theirs) and ours:
        result["agreement"] = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)
    return result

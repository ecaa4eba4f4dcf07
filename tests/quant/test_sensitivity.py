"""The accuracy-budget search on its own: which layers stay float, which file is kept."""

from __future__ import annotations

from pathlib import Path

from compress.quant.sensitivity import keep_float_within_budget

RANKING = ["a", "b", "c", "d", "e", "f"]


class Builds:
    """A stand-in quantizer: each build records the float layers; accuracy is a table."""

    def __init__(self, accuracy: dict[int, float]) -> None:
        self.accuracy = accuracy
        self.built: list[list[str]] = []

    def build(self, keep_float: list[str]) -> Path:
        self.built.append(list(keep_float))
        return Path(f"{len(keep_float)}.onnx")

    def evaluate(self, path: Path) -> float:
        return self.accuracy[int(path.stem)]


def test_doubles_the_float_layers_until_the_budget_is_met() -> None:
    builds = Builds({1: 0.80, 2: 0.85, 4: 0.895, 6: 0.90})
    result = keep_float_within_budget(builds.build, builds.evaluate, 0.90, 1.0, RANKING, 6)
    assert result.within_budget and result.float_layers == ["a", "b", "c", "d"]
    assert [t["float_layers"] for t in result.tries] == [1, 2, 4]
    assert builds.built[-1] == ["a", "b", "c", "d"]  # the kept file is the last one built


def test_an_unmet_budget_keeps_the_most_accurate_try() -> None:
    builds = Builds({1: 0.70, 2: 0.82, 4: 0.81, 6: 0.80})
    result = keep_float_within_budget(builds.build, builds.evaluate, 0.90, 1.0, RANKING, 6)
    assert not result.within_budget
    assert [t["float_layers"] for t in result.tries] == [1, 2, 4, 6]
    assert result.float_layers == ["a", "b"] and result.accuracy == 0.82
    assert builds.built[-1] == ["a", "b"]  # rebuilt, so the file on disk is that try


def test_no_try_better_than_all_int8_keeps_every_layer_quantized() -> None:
    builds = Builds({1: 0.70, 2: 0.71})
    result = keep_float_within_budget(
        builds.build, builds.evaluate, 0.90, 1.0, RANKING, 2, baseline=0.75
    )
    assert result.float_layers == [] and result.accuracy == 0.75
    assert builds.built[-1] == []


def test_max_layers_bounds_the_search() -> None:
    builds = Builds({1: 0.5, 2: 0.5, 3: 0.5})
    result = keep_float_within_budget(builds.build, builds.evaluate, 0.90, 1.0, RANKING, 3)
    assert [t["float_layers"] for t in result.tries] == [1, 2, 3]

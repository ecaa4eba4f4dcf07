from pathlib import Path

import pytest

from compress.errors import RecipeError, UserError
from compress.recipe import apply_override, load_recipe

GOOD = """\
name: t
model:
  source: minilm-l6
data:
  source: rotten-tomatoes
passes:
  - fine_tune:
      epochs: 1
  - distill
  - export_onnx:
      atol: 1.0e-4
  - quantize:
      targets: [cpu]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text), overrides)
    return info.value


def test_valid_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, GOOD))
    assert [s.name for s in recipe.steps] == ["fine_tune", "distill", "export_onnx", "quantize"]
    assert recipe.steps[0].folder == "01-fine_tune"
    assert recipe.steps[2].config.atol == 1e-4  # type: ignore[attr-defined]
    assert recipe.resolved["passes"][3]["quantize"]["targets"] == ["cpu"]
    assert recipe.resolved["name"] == "t"


def test_unknown_pass_suggests(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("  - quantize:", "  - quantise:"))
    assert "unknown pass 'quantise', did you mean 'quantize'?" in str(err)
    assert err.line == 12
    assert err.key == "passes[3]"


def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD + "benchmrk: {}\n")
    assert err.key == "benchmrk" and err.line == 14
    assert "did you mean 'benchmark'?" in str(err)


def test_unknown_option_suggests(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("epochs: 1", "epoch: 1"))
    assert str(err).startswith(f"{tmp_path / 'r.yaml'}:8 passes[0].fine_tune.epoch: unknown option")
    assert "did you mean 'epochs'?" in str(err)


def test_unknown_nested_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("  source: rotten-tomatoes", "  sorce: x"))
    assert err.key == "data.sorce" and err.line == 5 and "unknown key" in str(err)


def test_wrong_type_and_range(tmp_path: Path) -> None:
    err = error_of(tmp_path, GOOD.replace("epochs: 1", "epochs: many"))
    assert err.key == "passes[0].fine_tune.epochs" and err.line == 8 and "'many'" in str(err)
    err = error_of(tmp_path, GOOD.replace("atol: 1.0e-4", "atol: -1"))
    assert err.key == "passes[2].export_onnx.atol" and "greater than 0" in str(err)
    err = error_of(tmp_path, GOOD.replace("targets: [cpu]", "targets: [gpu]"))
    assert err.key == "passes[3].quantize.targets[0]" and err.line == 13


def test_pass_order_is_checked(tmp_path: Path) -> None:
    text = "passes:\n  - quantize\n  - export_onnx\n"
    err = error_of(tmp_path, text)
    assert err.line == 2 and "needs an ONNX model" in str(err)
    assert "add 'export_onnx' or 'qat' before it" in str(err)
    err = error_of(tmp_path, "passes:\n  - export_onnx\n  - distill\n")
    assert err.key == "passes[1]" and "needs a Hugging Face model" in str(err)


def test_malformed_pass_entry(tmp_path: Path) -> None:
    err = error_of(tmp_path, "passes:\n  - {fine_tune: {}, distill: {}}\n")
    assert "one key" in str(err)
    err = error_of(tmp_path, "passes:\n  - fine_tune: 3\n")
    assert "must be a mapping" in str(err)


def test_recipe_must_be_mapping(tmp_path: Path) -> None:
    assert "mapping" in str(error_of(tmp_path, "- a\n- b\n"))


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides(tmp_path: Path) -> None:
    recipe = load_recipe(
        write(tmp_path, GOOD),
        ["passes[0].fine_tune.epochs=3", "passes.1.distill.layers=[0, 2]", "seed=7"],
    )
    assert recipe.steps[0].config.epochs == 3  # type: ignore[attr-defined]
    assert recipe.steps[1].config.layers == [0, 2]  # type: ignore[attr-defined]
    assert recipe.doc.seed == 7
    err = error_of(tmp_path, GOOD, ["passes[9].fine_tune.epochs=3"])
    assert err.file == "--set" and "does not exist" in str(err)
    err = error_of(tmp_path, GOOD, ["seed"])
    assert "key=value" in str(err)


def test_override_on_bare_pass() -> None:
    data = {"passes": ["distill"]}
    apply_override(data, "passes[0].distill.epochs=1")
    assert data == {"passes": [{"distill": {"epochs": 1}}]}


def test_empty_recipe_is_an_error(tmp_path: Path) -> None:
    for text in ("", "# later\n", "{}\n"):
        err = error_of(tmp_path, text)
        assert err.line == 1 and "recipe is empty" in str(err)


def test_one_key_uses_defaults_for_the_rest(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, "seed: 1\n"))
    assert recipe.steps == []
    assert recipe.doc.model.source == "minilm-l6"
    assert recipe.doc.benchmark.batch_sizes == [1, 8]


def test_shipped_recipes_validate() -> None:
    recipes = sorted(Path(__file__).parents[2].glob("recipes/*.yaml"))
    assert recipes, "no recipes shipped"
    for path in recipes:
        assert load_recipe(path).steps


def test_a_local_source_that_does_not_exist_is_a_validation_error(tmp_path: Path) -> None:
    """Missing local paths fail at their line; an existing one resolves beside the recipe, a hub
    id stays a hub id."""
    for source in ("/no/such/folder", "./nope", "../nope", "~/surely-not-a-model-folder"):
        err = error_of(tmp_path, f"name: t\nmodel:\n  source: {source}\n")
        assert err.key == "model.source" and err.line == 3, source
        assert f"'{source}' does not exist" in str(err)
    err = error_of(tmp_path, "name: t\ndata: {source: ./missing.csv}\n")
    assert err.key == "data.source" and "does not exist" in str(err)
    # relative to the recipe's folder is found; a hub id is not a local path
    (tmp_path / "data.csv").write_text("text,label\n")
    found = load_recipe(write(tmp_path, "data: {source: ./data.csv}\n"))
    assert found.resolved["data"]["source"] == str(tmp_path / "data.csv")
    hub = load_recipe(write(tmp_path, "model: {source: bert-base-uncased}\n"))
    assert hub.resolved["model"]["source"] == "bert-base-uncased"


def test_from_names_the_step_whose_model_a_pass_takes(tmp_path: Path) -> None:
    text = (
        "passes:\n  - fine_tune\n  - export_onnx\n  - quantize: {targets: [cpu]}\n"
        "  - distill: {layers: 2}\n    from: fine_tune\n  - export_onnx\n"
        "  - fine_tune:\n    from: input\n"
    )
    recipe = load_recipe(write(tmp_path, text))
    assert [s.source for s in recipe.steps] == [0, 1, 2, 1, 4, 0]
    assert recipe.resolved["passes"][3] == {
        "distill": recipe.steps[3].config.model_dump(mode="json"),
        "from": "01-fine_tune",
    }
    assert recipe.resolved["passes"][5]["from"] == "input"
    assert "from" not in recipe.resolved["passes"][4]  # the pass before it: said by no key
    # a step folder names one of two passes of the same name
    folder = text.replace("from: fine_tune", "from: 06-fine_tune").replace(
        "  - fine_tune:\n    from: input\n", ""
    )
    assert "no pass '06-fine_tune'" in str(error_of(tmp_path, folder))


def test_from_errors_name_the_line(tmp_path: Path) -> None:
    """`from:` errors name the line and the candidates; a step folder picks one of two passes."""
    base = "passes:\n  - fine_tune\n  - export_onnx\n  - distill:\n    from: {}\n"
    err = error_of(tmp_path, base.format("fine_tun"))
    assert err.line == 5 and err.key == "passes[2].from"
    assert "no pass 'fine_tun' runs before this one" in str(err) and "fine_tune" in str(err)
    assert "needs a Hugging Face model" in str(error_of(tmp_path, base.format("export_onnx")))
    assert "must name an earlier pass" in str(error_of(tmp_path, base.format("[1]")))
    twice = "passes:\n  - fine_tune\n  - fine_tune\n  - distill:\n    from: fine_tune\n"
    err = error_of(tmp_path, twice)
    assert "runs 2 times" in str(err) and "01-fine_tune, 02-fine_tune" in str(err)
    named = load_recipe(write(tmp_path, twice.replace("from: fine_tune", "from: 02-fine_tune")))
    assert [s.source for s in named.steps] == [0, 1, 2]  # distill takes the second fine_tune
    later = "passes:\n  - fine_tune:\n    from: distill\n  - distill\n"
    assert "no pass 'distill' runs before this one" in str(error_of(tmp_path, later))
    # the order check follows the branch: tensorrt int8 after qat's branch, not quantize's
    trt = (
        "passes:\n  - export_onnx\n  - quantize: {targets: [cpu]}\n  - tensorrt:\n"
        "    from: quantize\n"
    )
    assert "precision int8 builds the Q/DQ file" in str(error_of(tmp_path, trt))

import pytest

from compress.errors import RecipeError
from compress.recipe.yaml_lines import format_path, load_yaml


def test_lines_of_keys_and_items() -> None:
    data, lines = load_yaml("a: 1\npasses:\n  - fine_tune:\n      epochs: 2\n  - quantize\n")
    assert data == {"a": 1, "passes": [{"fine_tune": {"epochs": 2}}, "quantize"]}
    assert lines.line_of(("passes", 0, "fine_tune", "epochs")) == 4
    assert lines.line_of(("passes", 1)) == 5
    # a key that does not exist falls back to its nearest ancestor
    assert lines.line_of(("passes", 0, "fine_tune", "lr")) == 3


def test_format_path() -> None:
    assert format_path(("passes", 2, "quantize", "method")) == "passes[2].quantize.method"
    assert format_path(()) == ""


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("a: !!python/object:os.system x", "tag", 1),
        ("a: [1\n", "invalid YAML", 2),
        ("<<: {a: 1}", "merge keys", 1),
        ("a: 1\na: 2", "duplicate key", 2),
        ("!foo {a: 1}", "tag", 1),
        ("1: a", "keys must be strings", 1),
    ],
)
def test_rejects_unsafe_or_broken_yaml(text: str, message: str, line: int) -> None:
    with pytest.raises(RecipeError) as info:
        load_yaml(text, "r.yaml")
    assert message in str(info.value)
    assert info.value.line == line
    assert info.value.file == "r.yaml"


def test_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 9)}]")
    with pytest.raises(RecipeError, match="aliases"):
        load_yaml("\n".join(lines))

"""The bundle's standalone generate.py: both cache layouts, and the chat template."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import onnxruntime as ort
import pytest

from compress.llm.export import export_with_past, fuse_decoder
from compress.llm.models import load_lm
from compress.llm.runtime import OrtLM

SCRIPT = Path(__file__).parents[2] / "compress" / "deploy" / "scripts" / "generate.py"
TEMPLATE = (
    "{% for message in messages %}{{ '<s> ' + message['role'] + ' ' + message['content'] }}"
    "{% endfor %}{% if add_generation_prompt %}{{ ' Sentiment:' }}{% endif %}"
)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bundle_generate", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_decodes_what_the_runtime_decodes_with_either_cache(
    tiny_llama: Path, tmp_path: Path
) -> None:
    model, tokenizer = load_lm(str(tiny_llama))
    portable = export_with_past(model, tokenizer, tmp_path, 17)
    fuse_decoder(portable, tmp_path / "model_ort.onnx", model.config)
    prompt = tokenizer("the plot is not really great").input_ids
    script = _script()
    for name in ("model.onnx", "model_ort.onnx"):  # concatenated cache, then in place
        session = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
        tokens, first, rest = script.generate(session, prompt, 6, set())
        assert tokens == OrtLM(tmp_path / name).generate(prompt, 6).tokens
        assert first > 0 and rest > 0


def test_chat_wraps_the_prompt_as_transformers_does(tiny_llama: Path, tmp_path: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_llama, folder)
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    hf = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "a fine film"}]
    text = _script().chat_prompt(folder, "a fine film")
    assert text == hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(text, add_special_tokens=False)
    want = hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    assert ids.ids == list(want["input_ids"] if isinstance(want, dict) else want)


def test_chat_without_a_template_is_refused_in_one_line(tiny_llama: Path) -> None:
    with pytest.raises(SystemExit, match="no chat template"):
        _script().chat_prompt(tiny_llama, "hello")

"""The bundle's standalone generate.py: both cache layouts, the chat template, and a bundle's
script on a "device" (no compress) decoding what the run's own runtime decodes."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import onnxruntime as ort
import pytest

from compress.llm.export import export_with_past, fuse_decoder
from compress.llm.genai import open_lm
from compress.llm.models import load_lm
from compress.llm.runtime import OrtLM
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from compress.tasks import get_task
from tests.conftest import write_labelled_csv
from tests.deploy.agreement import device_run

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


RECIPE = """\
task: text-generation
model: {{source: {model}}}
data: {{source: data.csv, validation_size: 16, test_size: 16, max_length: 32}}
passes:
  - export_onnx
  - bundle: {{target: x86-cpu}}
"""


def _varied(model: Any) -> Any:
    """`model` with seeded noise on every weight: the fresh tiny Llama greedily repeats one
    token whatever it is fed; these weights make the tokens depend on the prompt, the
    positions and the cache, so the comparisons below can see a decoding mistake."""
    import torch

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(4)  # sharper attention: positions matter
    return model


def test_the_script_decodes_what_the_runtime_decodes_with_either_cache(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """generate() of the script, on the concatenated and the in-place cache graphs, gives the
    tokens OrtLM's greedy decoding gives."""
    model, tokenizer = load_lm(str(tiny_llama))
    portable = export_with_past(_varied(model), tokenizer, tmp_path, 17)
    fuse_decoder(portable, tmp_path / "model_ort.onnx", model.config)
    prompt = tokenizer("the plot is not really great").input_ids
    script = _script()
    for name in ("model.onnx", "model_ort.onnx"):  # concatenated cache, then in place
        session = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
        tokens, first, rest = script.generate(session, prompt, 6, set())
        assert tokens == OrtLM(tmp_path / name).generate(prompt, 6).tokens
        assert len(set(tokens)) > 2 and first > 0 and rest > 0


def test_chat_wraps_the_prompt_as_transformers_does(tiny_llama: Path, tmp_path: Path) -> None:
    """--chat renders the template to the text and ids transformers' chat template gives."""
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
    """A model without a chat template: --chat exits with one line saying so."""
    with pytest.raises(SystemExit, match="no chat template") as refused:
        _script().chat_prompt(tiny_llama, "hello")
    assert "\n" not in str(refused.value)


def _until(tokens: list[int], eos: list[int]) -> list[int]:
    """`tokens` up to and including the first end-of-text token."""
    ends = [i for i, token in enumerate(tokens) if token in eos]
    return tokens[: ends[0] + 1] if ends else tokens


def test_a_bundles_script_without_compress_decodes_what_the_run_decodes(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """A run's bundle: its generate.py, run as on a device (clean interpreter, no compress),
    prints the greedy tokens the run's own runtime (open_lm on the shipped file, the run's
    tokenizer) decodes for the same prompt, plain and wrapped in a chat template, stopping at
    the end-of-text token, and refuses a prompt longer than the model's context."""
    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    (model / "chat_template.jinja").write_text(TEMPLATE)
    _varied(load_lm(str(model))[0]).save_pretrained(model)
    write_labelled_csv(tmp_path, 64, 0)
    (tmp_path / "lm.yaml").write_text(RECIPE.format(model=model))
    run = tmp_path / "run"
    run_recipe(load_recipe(tmp_path / "lm.yaml"), run, progress=False, report=False)
    bundle = run / "02-bundle" / "run-x86-cpu"
    manifest = json.loads((bundle / "manifest.json").read_text())
    step, file = manifest["model"]["source"].split("/")
    assert (bundle / manifest["model"]["file"]).read_bytes() == (run / step / file).read_bytes()
    assert "chat_template.jinja" in manifest["files"]
    tokenizer = get_task("text-generation").load_processor(run / step)
    lm = open_lm(run / step, file)
    eos = manifest["eos_token_ids"]
    assert eos == [tokenizer.eos_token_id]
    prompts = {"the plot is not really great": False, "a fine film": True}

    def script(prompt: str, chat: bool) -> list[int]:
        args = [prompt, "--max-new-tokens", "12", "--ids", *(["--chat"] if chat else [])]
        done = device_run(bundle, "generate.py", *args)
        assert done.returncode == 0, done.stderr
        return [int(t) for t in done.stdout.split()]

    decoded: dict[str, list[int]] = {}
    try:
        for prompt, chat in prompts.items():
            ids = tokenizer(prompt).input_ids
            if chat:
                messages = [{"role": "user", "content": prompt}]
                wrapped = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
                ids = list(wrapped["input_ids"] if isinstance(wrapped, dict) else wrapped)
            decoded[prompt] = lm.generate(ids, 12).tokens
            assert len(set(decoded[prompt])) > 2, decoded  # the prompt shapes the tokens
            assert script(prompt, chat) == _until(decoded[prompt], eos), prompt
    finally:
        lm.close()
    # the manifest's end-of-text tokens end the reply: make a token the model emits one
    plain = decoded["the plot is not really great"]
    manifest["eos_token_ids"] = [plain[5]]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    stopped = script("the plot is not really great", False)
    assert stopped == plain[: plain.index(plain[5]) + 1] and len(stopped) < len(plain) == 12
    context = manifest["context_length"]
    config = json.loads((run / step / "config.json").read_text())
    assert context == config["max_position_embeddings"]
    readme = (bundle / "README.md").read_text()  # names this bundle's file, context, figures
    assert readme.startswith(f"# {manifest['model']['file']} ({manifest['model']['precision']})")
    assert f"Context: {context} tokens" in readme and "python generate.py " in readme
    assert "The run measured: nothing for this file." in readme  # run without a report
    too_long = device_run(bundle, "generate.py", "good " * context, "--max-new-tokens", "1")
    assert too_long.returncode == 2
    assert f"more than the model's context of {context} tokens" in too_long.stderr

"""Prompted fine-tuning teaches the answer and the end of it: each example ends with the
model's end-of-text token, so decoding stops after the label word."""

from __future__ import annotations

from pathlib import Path

from compress.data import Split
from compress.passkit.lm_training import end_of_text, prompted, text_fitter
from compress.recipe import load_recipe
from compress.run.runner import run_recipe
from tests.conftest import write_labelled_csv

RECIPE = """
task: text-generation
model: {{source: {model}}}
data: {{source: {data}, validation_size: 16, test_size: 16, max_length: 32,
        prompt: "Review: {{text}} Sentiment:"}}
passes:
  - fine_tune: {{method: full, epochs: 2, min_steps: 60, batch_size: 8, lr: 0.003,
                 examples: prompted}}
"""


def test_prompted_examples_end_with_the_end_of_text_and_fit_the_context(
    tiny_llama: Path,
) -> None:
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    config = AutoConfig.from_pretrained(tiny_llama)
    end = end_of_text(tokenizer, config)
    assert tokenizer.convert_tokens_to_ids(end) == config.eos_token_id
    long_text = " ".join(["good"] * 40)
    split = prompted(
        Split([long_text, "bad"], [1, 0]),
        "Review: {text} Sentiment:",
        ["neg", "pos"],
        end,
        text_fitter(tokenizer, 16),
    )
    first, second = split.texts
    assert second == f"Review: bad Sentiment: neg{end}"
    assert first.endswith(f"Sentiment: pos{end}")  # the review is cut, never the answer
    ids = tokenizer(first)["input_ids"]
    assert len(ids) <= 16 and ids[-1] == config.eos_token_id


def test_a_prompted_tuned_model_stops_after_its_answer(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_labelled_csv(tmp_path, 300, 0)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(RECIPE.format(model=tiny_llama, data=data))
    out = tmp_path / "run"
    run_recipe(load_recipe(recipe_file), out, progress=False, report=False)
    folder = out / "01-fine_tune"
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    eos = model.config.eos_token_id
    stopped = 0
    prompts = ["Review: good great fine Sentiment:", "Review: bad awful poor Sentiment:"]
    prompts += ["Review: the movie was good Sentiment:", "Review: a bad film Sentiment:"]
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out_ids = model.generate(
                ids, max_new_tokens=8, do_sample=False, eos_token_id=eos, pad_token_id=0
            )
        new = out_ids[0, ids.shape[1] :].tolist()
        words = tokenizer.convert_ids_to_tokens(new)
        assert words[0] in ("neg", "pos"), words  # the answer first
        stopped += int(len(new) == 2 and new[1] == eos)  # then the end, and nothing more
    assert stopped == len(prompts)

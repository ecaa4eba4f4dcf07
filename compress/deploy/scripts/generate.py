#!/usr/bin/env python3
"""Generate text with this bundle's ONNX language model on a CPU.

Needs only `pip install onnxruntime tokenizers numpy` (and jinja2 for
`--chat`, which wraps the prompt in the model's chat template). Greedy
decoding by default (`--temperature` > 0 samples), with the KV cache: the
prompt runs once, then one token per step.

    python generate.py "The capital of France is" --max-new-tokens 32
    python generate.py --chat "Write a haiku about the sea."

A missing package or file or a bad argument is answered with one line on
stderr that says what to do, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import numpy as np

HERE = Path(__file__).resolve().parent
ATTENTION = "compress.attention"  # model metadata: the graph's attention is GroupQueryAttention
REQUIREMENTS = "pip install onnxruntime tokenizers numpy"


class Failure(SystemExit):
    """A problem to report in one line on stderr (exit 2 from `main`)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), not with its usage."""

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message} (python {Path(sys.argv[0]).name} --help lists the options)")


def need(path: Path, what: str) -> Path:
    """`path`, or a Failure naming it when it is not a file."""
    if not path.is_file():
        raise Failure(f"{path}: no such file; {what}")
    return path


def _past_name(present: str) -> str:
    return "past_key_values." + present.removeprefix("present.")


def _pick(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    import numpy as np

    if temperature <= 0:
        return int(logits.argmax())
    p = np.exp((logits - logits.max()) / temperature)
    return int(rng.choice(len(p), p=p / p.sum()))


def generate(
    session: Any,
    prompt_ids: list[int],
    new_tokens: int,
    eos_ids: set[int],
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[list[int], float, float]:
    """New token ids, seconds to the first token, seconds for the rest.

    A graph with GroupQueryAttention (metadata `compress.attention`) keeps one cache buffer
    per tensor for the whole generation, bound as past and present; others take each step's
    present as the next past.
    """
    import numpy as np
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    inputs = {i.name: i for i in session.get_inputs()}
    past_names = [n for n in inputs if n.startswith("past_key_values.")]
    dtype = np.float16 if "float16" in inputs[past_names[0]].type else np.float32
    shape = inputs[past_names[0]].shape
    in_place = session.get_modelmeta().custom_metadata_map.get(ATTENTION) == "GroupQueryAttention"
    size = len(prompt_ids) + new_tokens if in_place else 0
    past = {
        n: ort.OrtValue.ortvalue_from_numpy(
            np.zeros((1, int(shape[1]), size, int(shape[3])), dtype)
        )
        for n in past_names
    }
    presents = [o.name for o in session.get_outputs() if o.name != "logits"]
    binding = session.io_binding()
    ids = np.asarray([prompt_ids], dtype=np.int64)
    length, out, first, start = 0, [], 0.0, time.perf_counter()
    for step in range(new_tokens):
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", np.ones((1, length + ids.shape[1]), np.int64))
        if "position_ids" in inputs:
            positions = np.arange(length, length + ids.shape[1], dtype=np.int64)[None]
            binding.bind_cpu_input("position_ids", positions)
        for name, value in past.items():
            binding.bind_ortvalue_input(name, value)
        binding.clear_binding_outputs()
        binding.bind_output("logits")
        for name in presents:
            if in_place:
                binding.bind_ortvalue_output(name, past[_past_name(name)])
            else:
                binding.bind_output(name)
        session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        token = _pick(outputs[0].numpy()[0, -1].astype(np.float64), temperature, rng)
        if step == 0:
            first = time.perf_counter() - start
        if not in_place:
            past = {_past_name(n): v for n, v in zip(presents, outputs[1:], strict=True)}
        length += ids.shape[1]
        out.append(token)
        if token in eos_ids:
            break
        ids = np.asarray([[token]], dtype=np.int64)
    return out, first, time.perf_counter() - start - first


def chat_prompt(folder: Path, text: str) -> str:
    """`text` as the user's turn in the model's chat template, ready for the reply."""
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    template_file = folder / "chat_template.jinja"
    template = (
        template_file.read_text(encoding="utf-8")
        if template_file.exists()
        else config.get("chat_template")
    )
    if not isinstance(template, str):
        raise Failure(
            "--chat: this model has no chat template (chat_template.jinja); leave --chat out"
        )
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise Failure("--chat renders the chat template with jinja2: pip install jinja2") from None

    def special(name: str) -> str:
        value = config.get(name)
        return str(value.get("content", "")) if isinstance(value, dict) else str(value or "")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(template).render(
        messages=[{"role": "user", "content": text}],
        add_generation_prompt=True,
        bos_token=special("bos_token"),
        eos_token=special("eos_token"),
    )


def run(argv: list[str] | None) -> int:
    parser = Parser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    parser.add_argument("--ids", action="store_true", help="print the token ids, not the text")
    parser.add_argument(
        "--chat", action="store_true", help="wrap the prompt in the model's chat template"
    )
    args = parser.parse_args(argv)
    for flag, value, least in (
        ("--max-new-tokens", args.max_new_tokens, 1),
        ("--temperature", args.temperature, 0),
        ("--threads", args.threads, 0),
    ):
        if value < least:
            parser.error(f"{flag} must be at least {least} (got {value})")
    manifest_file = need(HERE / "manifest.json", "unpack the whole bundle and run it there")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Failure(f"{manifest_file}: cannot read it ({exc}); unpack the bundle again") from None
    tokenizer_file = need(HERE / "tokenizer.json", "unpack the whole bundle")
    model = need(HERE / manifest["model"]["file"], "unpack the whole bundle")
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()  # a saved tokenizer may carry the truncation it was last used with
    tokenizer.no_padding()
    if args.chat:  # the template writes the special tokens itself
        prompt = tokenizer.encode(chat_prompt(HERE, args.prompt), add_special_tokens=False).ids
    else:
        prompt = tokenizer.encode(args.prompt).ids
    context = int(manifest["context_length"])
    if len(prompt) + args.max_new_tokens > context:
        raise Failure(
            f"the prompt has {len(prompt)} tokens; with --max-new-tokens "
            f"{args.max_new_tokens} that is more than the model's context of {context} tokens"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    eos = set(manifest.get("eos_token_ids", []))
    tokens, first, rest = generate(session, prompt, args.max_new_tokens, eos, args.temperature)
    print(" ".join(map(str, tokens)) if args.ids else tokenizer.decode(tokens))
    rate = (len(tokens) - 1) / rest if rest > 0 and len(tokens) > 1 else 0.0
    print(
        f"[{len(prompt)} prompt tokens, first token {first * 1000:.0f} ms, "
        f"{len(tokens)} new, {rate:.1f} tokens/s after it]",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except Failure as exc:
        message = " ".join(str(exc.code).split())
    except ImportError as exc:
        message = f"{exc.name or exc} is not installed here: {REQUIREMENTS}"
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Generate text with this bundle's ONNX language model on a CPU.

Needs only `pip install onnxruntime tokenizers numpy`. Greedy decoding by
default (`--temperature` > 0 samples), with the KV cache: the prompt runs
once, then one token per step.

    python generate.py "The capital of France is" --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _past_name(present: str) -> str:
    return "past_key_values." + present.removeprefix("present.")


def generate(
    session: Any,
    prompt_ids: list[int],
    new_tokens: int,
    eos_ids: set[int],
    temperature: float = 0.0,
    seed: int = 0,
) -> tuple[list[int], float, float]:
    """New token ids, seconds to the first token, seconds for the rest."""
    rng = np.random.default_rng(seed)
    inputs = {i.name: i for i in session.get_inputs()}
    past_names = [n for n in inputs if n.startswith("past_key_values.")]
    dtype = np.float16 if "float16" in inputs[past_names[0]].type else np.float32
    shape = inputs[past_names[0]].shape
    past = {n: np.zeros((1, int(shape[1]), 0, int(shape[3])), dtype) for n in past_names}
    presents = [o.name for o in session.get_outputs() if o.name != "logits"]
    ids = np.asarray([prompt_ids], dtype=np.int64)
    length, out, first, start = 0, [], 0.0, time.perf_counter()
    for step in range(new_tokens):
        feeds = {"input_ids": ids, "attention_mask": np.ones((1, length + ids.shape[1]), np.int64)}
        if "position_ids" in inputs:
            feeds["position_ids"] = np.arange(length, length + ids.shape[1], dtype=np.int64)[None]
        outputs = session.run(["logits", *presents], {**feeds, **past})
        logits = outputs[0][0, -1].astype(np.float64)
        if temperature > 0:
            p = np.exp((logits - logits.max()) / temperature)
            token = int(rng.choice(len(p), p=p / p.sum()))
        else:
            token = int(logits.argmax())
        if step == 0:
            first = time.perf_counter() - start
        past = {_past_name(n): v for n, v in zip(presents, outputs[1:], strict=True)}
        length += ids.shape[1]
        out.append(token)
        if token in eos_ids:
            break
        ids = np.asarray([[token]], dtype=np.int64)
    return out, first, time.perf_counter() - start - first


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    parser.add_argument("--ids", action="store_true", help="print the token ids, not the text")
    args = parser.parse_args(argv)
    tokenizer = Tokenizer.from_file(str(HERE / "tokenizer.json"))
    tokenizer.no_truncation()  # a saved tokenizer may carry the truncation it was last used with
    tokenizer.no_padding()
    prompt = tokenizer.encode(args.prompt).ids
    context = int(manifest["context_length"])
    if len(prompt) + args.max_new_tokens > context:
        print(
            f"error: the prompt has {len(prompt)} tokens; with --max-new-tokens "
            f"{args.max_new_tokens} that is more than the model's context of {context} tokens",
            file=sys.stderr,
        )
        return 2
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(
        str(HERE / manifest["model"]["file"]), options, providers=["CPUExecutionProvider"]
    )
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


if __name__ == "__main__":
    raise SystemExit(main())

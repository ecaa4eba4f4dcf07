"""Signs that a causal LM did not load right, found before any pass runs.

A model whose tokenizer was converted wrongly (a GGUF whose merges were
lost, a vocabulary that maps the corpus to unknown tokens) still loads,
compresses and benchmarks; every later stage matches it, and the report
reads like a success. Three checks catch it from the loaded tokenizer, the
model and the run's own texts:

- tokens per character on a sample of mostly-ASCII corpus texts, against the
  range the tokenizer's kind expects on natural-language text
  (`EXPECTED_TOKENS_PER_CHAR`, widened for small vocabularies, where subwords
  are shorter); far outside it (`FAR`) is flagged. The share of unknown
  tokens is flagged above `MAX_UNKNOWN`.
- a round trip, decode(encode(s)) == s, on a few plain ASCII sentences.
- the perplexity of the loaded model on a few validation texts: flagged when
  it is near a uniform guess over the vocabulary (a random or untrained model,
  weights that did not load: log perplexity at least `NEAR_UNIFORM` of
  log(vocabulary)), above `MAX_PERPLEXITY`, or above `MAX_BITS_PER_CHAR` bits
  per character of mostly-ASCII text (tokenizer-independent: a wrong
  tokenizer makes more tokens, each predicted badly).

Every check only marks: the run goes on, with one warning line before the
passes and the evidence at the top of the report. A model a user means to
compress can fail one (a random model in a test, a corpus in a script the
ranges were not measured on), so nothing here refuses.

    >>> expected_range("byte-level BPE", 49152)
    (0.18, 0.3)
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

EXPECTED_TOKENS_PER_CHAR: dict[str, tuple[float, float]] = {
    "byte-level BPE": (0.18, 0.30),
    "SentencePiece BPE": (0.18, 0.30),
    "SentencePiece Unigram": (0.18, 0.30),
    "BPE": (0.18, 0.30),
    "Unigram": (0.18, 0.30),
    "WordPiece": (0.18, 0.30),
    "word-level": (0.15, 0.30),
    "unknown": (0.12, 0.40),
}
"""Tokens per character of English prose for a vocabulary of `LARGE_VOCAB` or more. Measured
on Rotten Tomatoes: SmolLM2-135M's byte-level BPE (49,152 tokens) 0.223; byte-level BPE,
SentencePiece-style BPE and Unigram, and WordPiece trained on the corpus: 0.21-0.23 at 16k
tokens, 0.26-0.27 at 4k, 0.36-0.38 at 1k; word-level 0.20."""

LARGE_VOCAB = 16_000
FAR = 1.5
"""Flagged above FAR x the upper end or below the lower end / FAR. A Gemma GGUF whose
tokenizer was converted wrongly made about twice the tokens of a correct one."""
MAX_UNKNOWN = 0.05
"""Flagged when more than this share of the corpus's tokens are the unknown token."""
NEAR_UNIFORM = 0.9
"""Flagged when log(perplexity) >= this share of log(vocabulary): a near-uniform guess."""
MAX_PERPLEXITY = 1000.0
MAX_BITS_PER_CHAR = 3.0
"""Working LMs score about 1-2 bits per character of English; SmolLM2-135M scores 1.6 on
Rotten Tomatoes snippets (perplexity ~130-160 per token); a model that only knows which
letters are common scores about 4."""
SAMPLE_TEXTS = 200
PERPLEXITY_TEXTS = 16
ASCII_SHARE = 0.9  # a text counts as mostly-ASCII (Latin script) above this share

ROUND_TRIP = (
    "The capital of France is Paris.",
    "It rained all day, so we stayed in and read two books.",
    "A 3-hour film can still feel short when the story is good!",
)


def tokenizer_kind(tokenizer: Any) -> str:
    """'byte-level BPE', 'SentencePiece BPE', 'SentencePiece Unigram', 'WordPiece',
    'word-level', 'BPE', 'Unigram' or 'unknown', from a fast tokenizer's model and
    pre-tokenizer (a SentencePiece one marks word starts with U+2581)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return "unknown"
    model = type(backend.model).__name__
    pre = _state(backend.pre_tokenizer)
    if model == "WordPiece":
        return "WordPiece"
    if model == "WordLevel":
        return "word-level"
    if model not in ("BPE", "Unigram"):
        return "unknown"
    if model == "BPE" and '"ByteLevel"' in pre:
        return "byte-level BPE"
    if '"Metaspace"' in pre or "\u2581" in _state(backend.normalizer):
        return f"SentencePiece {model}"
    return str(model)


def _state(component: Any) -> str:
    if component is None:
        return ""
    try:
        state = component.__getstate__()
    except (AttributeError, TypeError):
        return ""
    text = state.decode("utf-8") if isinstance(state, bytes) else str(state)
    return json.dumps(json.loads(text), ensure_ascii=False) if text.startswith("{") else text


def expected_range(kind: str, vocab_size: int) -> tuple[float, float]:
    """Tokens per character a tokenizer of `kind` and `vocab_size` makes of English prose;
    a subword vocabulary under `LARGE_VOCAB` makes shorter pieces (upper end x (16k/V)^0.25)."""
    low, high = EXPECTED_TOKENS_PER_CHAR.get(kind, EXPECTED_TOKENS_PER_CHAR["unknown"])
    if kind != "word-level" and 0 < vocab_size < LARGE_VOCAB:
        high *= (LARGE_VOCAB / vocab_size) ** 0.25
    return round(low, 2), round(high, 2)


def mostly_ascii(text: str) -> bool:
    return bool(text.strip()) and sum(c.isascii() for c in text) >= ASCII_SHARE * len(text)


def tokens_per_char(tokenizer: Any, texts: Sequence[str]) -> dict[str, Any]:
    """Tokens per character (no special tokens) and the unknown tokens' share over `texts`."""
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []
    tokens = sum(len(row) for row in ids)
    chars = sum(len(t) for t in texts)
    unk = getattr(tokenizer, "unk_token_id", None)
    unknown = sum(row.count(unk) for row in ids) if unk is not None else 0
    return {
        "tokens_per_char": tokens / chars if chars else None,
        "unknown_share": unknown / tokens if tokens else None,
        "texts": len(texts),
    }


def round_trip_failures(tokenizer: Any, sentences: Sequence[str] = ROUND_TRIP) -> list[list[str]]:
    """[sentence, what decode(encode(sentence)) gave] for each that does not come back
    (whitespace runs compared as one space)."""
    failed = []
    for sentence in sentences:
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        back = tokenizer.decode(ids, skip_special_tokens=True)
        if " ".join(back.split()) != " ".join(sentence.split()):
            failed.append([sentence, back])
    return failed


def perplexity_figures(
    model: Any, tokenizer: Any, texts: Sequence[str], max_length: int
) -> dict[str, Any]:
    """Perplexity of `model` on `texts` (those within `max_length` tokens), and bits per
    character where they are mostly ASCII."""
    from compress.llm.runtime import TorchLM
    from compress.llm.scores import perplexity

    lengths = [len(r) for r in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    whole = [t for t, n in zip(texts, lengths, strict=True) if 2 <= n <= max_length]
    scored_texts = whole or [t for t, n in zip(texts, lengths, strict=True) if n >= 2]
    if not scored_texts:
        return {}
    scored = perplexity(TorchLM(model), tokenizer, scored_texts, max_length)
    nats = math.log(scored["perplexity"]) * scored["tokens"]
    chars = sum(len(t) for t in whole)  # texts cut at max_length have no bits per character
    ascii_text = bool(whole) and all(mostly_ascii(t) for t in whole)
    return {
        "perplexity": scored["perplexity"],
        "perplexity_texts": len(scored_texts),
        "bits_per_char": nats / math.log(2) / chars if ascii_text and chars else None,
    }


def check_model(
    model: Any,
    tokenizer: Any,
    corpus: Sequence[str],
    validation: Sequence[str],
    max_length: int,
) -> dict[str, Any]:
    """The evidence of every check, and `problems`: one phrase per sign that the model did
    not load right (empty: nothing found). `corpus`: texts to sample for tokens per
    character; `validation`: texts the perplexity is measured on."""
    vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
    kind = tokenizer_kind(tokenizer)
    low, high = expected_range(kind, vocab)
    sample = [t for t in corpus if mostly_ascii(t)][:SAMPLE_TEXTS]
    ratio = tokens_per_char(tokenizer, sample)
    failures = round_trip_failures(tokenizer)
    figures = perplexity_figures(model, tokenizer, validation[:PERPLEXITY_TEXTS], max_length)
    evidence: dict[str, Any] = {
        "tokenizer_kind": kind,
        "vocab_size": vocab,
        "expected_tokens_per_char": [low, high],
        "tokens_per_char": ratio["tokens_per_char"],
        "sample_texts": ratio["texts"],
        "unknown_share": ratio["unknown_share"],
        "round_trip_failures": failures,
        "perplexity": figures.get("perplexity"),
        "perplexity_texts": figures.get("perplexity_texts", 0),
        "bits_per_char": figures.get("bits_per_char"),
    }
    evidence["problems"] = problems(evidence)
    return evidence


def problems(evidence: dict[str, Any]) -> list[str]:
    """One phrase per sign in `evidence` (as `check_model` returns it)."""
    out = []
    kind, vocab = evidence["tokenizer_kind"], evidence["vocab_size"]
    low, high = evidence["expected_tokens_per_char"]
    ratio, texts = evidence.get("tokens_per_char"), evidence.get("sample_texts")
    if isinstance(ratio, float) and (ratio > FAR * high or ratio < low / FAR):
        out.append(
            f"{ratio:.2f} tokens/char ({kind} expects {low:.2f}-{high:.2f}) on {texts} corpus texts"
        )
    unknown = evidence.get("unknown_share")
    if isinstance(unknown, float) and unknown > MAX_UNKNOWN:
        out.append(f"{unknown:.0%} of the corpus's tokens are the unknown token")
    failures = evidence.get("round_trip_failures") or []
    if failures:
        sentence, back = failures[0]
        out.append(
            f"{len(failures)} of {len(ROUND_TRIP)} plain sentences do not survive "
            f"encode+decode ({sentence!r} -> {back!r})"
        )
    ppl, bits = evidence.get("perplexity"), evidence.get("bits_per_char")
    if isinstance(ppl, float):
        where = f"on {evidence.get('perplexity_texts')} validation texts"
        if vocab > 1 and math.log(ppl) >= NEAR_UNIFORM * math.log(vocab):
            out.append(
                f"perplexity {ppl:.0f} {where}, near a uniform guess over its {vocab} tokens "
                "(random or untrained weights?)"
            )
        elif ppl > MAX_PERPLEXITY or (isinstance(bits, float) and bits > MAX_BITS_PER_CHAR):
            per_char = f", {bits:.1f} bits/char" if isinstance(bits, float) else ""
            out.append(f"perplexity {ppl:.0f} {where}{per_char}")
    return out


def warning_line(evidence: dict[str, Any]) -> str | None:
    """The one line a run logs before its passes, or None when nothing was found."""
    found = evidence.get("problems") or []
    return "model looks wrongly loaded: " + "; ".join(found) if found else None

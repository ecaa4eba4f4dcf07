"""Shrink a fast tokenizer to a subset of its vocabulary: WordPiece, byte-level BPE, Unigram.

Kept tokens keep their relative order and get new, dense ids. Every file of a
saved fast tokenizer that carries ids is rewritten consistently:
`tokenizer.json` (vocabulary, BPE merges, added tokens, the post-processor's
special tokens), `vocab.txt` / `vocab.json` + `merges.txt`, and
`tokenizer_config.json`'s `added_tokens_decoder`. A SentencePiece model file
(`*.model`) cannot be rewritten without SentencePiece and would disagree with
the new ids, so it is removed; `tokenizer.json` is what loads.

Why texts made of kept tokens split exactly as before:
- WordPiece matches the longest known prefix first; every piece of such a
  word is still known.
- BPE applies its merges by rank. The kept set is closed under merge
  ancestry (a kept token keeps the two tokens it is merged from) and keeps
  the byte alphabet, so every merge such a word used survives; a dropped merge
  was never the best applicable one for it.
- Unigram picks the best-scoring segmentation; it used only kept pieces, and
  removing other pieces cannot make a different one score higher.
A word that needs a dropped token is split into kept pieces (BPE, WordPiece
where it can, Unigram where the characters are kept), else becomes unknown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.errors import PassFailed

KINDS = ("WordPiece", "BPE", "Unigram")
SENTENCEPIECE_FILES = ("sentencepiece.bpe.model", "spm.model", "tokenizer.model")


def _read_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise PassFailed(f"{folder}: no tokenizer.json (vocabulary pruning needs a fast tokenizer)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    kind = data.get("model", {}).get("type")
    if kind not in KINDS:
        raise PassFailed(
            f"vocabulary pruning supports {', '.join(KINDS)} tokenizers; this one is {kind}"
        )
    return data


def _tokens_by_id(model: dict[str, Any]) -> dict[int, str]:
    if model["type"] == "Unigram":
        return {i: piece for i, (piece, _score) in enumerate(model["vocab"])}
    return {i: t for t, i in model["vocab"].items()}


def tokenizer_kind(folder: Path) -> str:
    """WordPiece, BPE or Unigram (PassFailed for anything else)."""
    return str(_read_tokenizer_json(folder)["model"]["type"])


def vocabulary(folder: Path) -> dict[str, int]:
    """The tokenizer's vocabulary, token -> id (any of the supported kinds)."""
    return {t: i for i, t in _tokens_by_id(_read_tokenizer_json(folder)["model"]).items()}


def vocab_size(folder: Path) -> int:
    """Ids the tokenizer can produce: its vocabulary and its added tokens."""
    data = _read_tokenizer_json(folder)
    ids = set(_tokens_by_id(data["model"])) | {t["id"] for t in data.get("added_tokens", [])}
    return max(ids) + 1


def _merges(model: dict[str, Any]) -> list[tuple[str, str]]:
    """BPE merges as pairs (saved as "a b" strings or as [a, b] lists)."""
    out = []
    for merge in model.get("merges", []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        out.append((a, b))
    return out


def required_ids(folder: Path, keep: set[int]) -> set[int]:
    """`keep` plus what the tokenizer needs to split kept words as before.

    Always: the added tokens. BPE: every single-character token (the byte
    alphabet, so any text still encodes) and, recursively, the two tokens
    each kept token is merged from.
    """
    data = _read_tokenizer_json(folder)
    model = data["model"]
    out = set(keep) | {t["id"] for t in data.get("added_tokens", [])}
    if model["type"] != "BPE":
        return out
    vocab: dict[str, int] = model["vocab"]
    out |= {i for t, i in vocab.items() if len(t) == 1}
    parents = {a + b: (a, b) for a, b in _merges(model)}
    by_id = _tokens_by_id(model)
    todo = [by_id[i] for i in out if i in by_id]
    while todo:
        pair = parents.get(todo.pop())
        if pair is None:
            continue
        for part in pair:
            if part in vocab and vocab[part] not in out:
                out.add(vocab[part])
                todo.append(part)
    return out


def rewrite_tokenizer(folder: Path, keep: list[int]) -> dict[int, int]:
    """Rewrite the tokenizer files in `folder` to keep only the ids in `keep`.

    Returns the old id -> new id map.
    """
    data = _read_tokenizer_json(folder)
    model = data["model"]
    by_id = _tokens_by_id(model)
    remap = {old: new for new, old in enumerate(sorted(set(keep)))}
    kept_tokens = [by_id[old] for old in sorted(remap) if old in by_id]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][old] for old in sorted(remap) if old in by_id]
        if model.get("unk_id") is not None:
            if model["unk_id"] not in remap:
                raise PassFailed("the unknown token must be kept")
            model["unk_id"] = remap[model["unk_id"]]
    else:
        model["vocab"] = {by_id[old]: new for old, new in remap.items() if old in by_id}
    if model["type"] == "BPE":
        known = set(model["vocab"])
        pairs = [(a, b) for a, b in _merges(model) if a in known and b in known and a + b in known]
        as_strings = any(isinstance(m, str) for m in model.get("merges", []))
        model["merges"] = [f"{a} {b}" if as_strings else [a, b] for a, b in pairs]
    for token in data.get("added_tokens", []):
        if token["id"] not in remap:
            raise PassFailed(f"special token {token['content']!r} must be kept")
        token["id"] = remap[token["id"]]
    _remap_post_processor(data.get("post_processor") or {}, remap)
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    _rewrite_side_files(folder, data, kept_tokens, remap)
    return remap


def _remap_post_processor(post: dict[str, Any], remap: dict[int, int]) -> None:
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in processors:
        for special in (proc.get("special_tokens") or {}).values():
            special["ids"] = [remap[i] for i in special["ids"]]
        for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(proc.get(key), list):
                proc[key][1] = remap[proc[key][1]]


def _rewrite_side_files(
    folder: Path, data: dict[str, Any], kept_tokens: list[str], remap: dict[int, int]
) -> None:
    """vocab.txt, vocab.json + merges.txt and tokenizer_config.json, matching tokenizer.json."""
    model = data["model"]
    if (folder / "vocab.txt").is_file():
        (folder / "vocab.txt").write_text("\n".join(kept_tokens) + "\n", encoding="utf-8")
    if (folder / "vocab.json").is_file() and model["type"] == "BPE":
        (folder / "vocab.json").write_text(
            json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8"
        )
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        (folder / "merges.txt").write_text(
            "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
        )
    for name in SENTENCEPIECE_FILES:
        (folder / name).unlink(missing_ok=True)
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            config["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in decoder.items()}
        config.pop("vocab_file", None)
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")

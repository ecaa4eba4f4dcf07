"""Shrink a WordPiece tokenizer (BERT family) to a subset of its vocabulary.

Kept tokens keep their relative order and get new, dense ids. Every file of a
saved fast tokenizer that carries ids is rewritten consistently:
`tokenizer.json` (vocabulary, added tokens, the post-processor's special
tokens), `vocab.txt`, and `tokenizer_config.json`'s `added_tokens_decoder`.
WordPiece matches greedily (longest known prefix first), so a word whose
pieces are all kept is split exactly as before; a word that needs a dropped
piece is split into the kept pieces where it can be, else it becomes `[UNK]`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compress.errors import PassFailed


def wordpiece_vocab(folder: Path) -> dict[str, int]:
    """The vocabulary of the fast tokenizer saved in `folder` (token -> id)."""
    data = _read_tokenizer_json(folder)
    vocab: dict[str, int] = data["model"]["vocab"]
    return vocab


def _read_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise PassFailed(f"{folder}: no tokenizer.json (vocabulary pruning needs a fast tokenizer)")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    kind = data.get("model", {}).get("type")
    if kind != "WordPiece":
        raise PassFailed(
            f"vocabulary pruning supports WordPiece tokenizers (BERT family); this one is {kind}"
        )
    return data


def rewrite_tokenizer(folder: Path, keep: list[int]) -> dict[int, int]:
    """Rewrite the tokenizer files in `folder` to keep only the ids in `keep`.

    Returns the old id -> new id map.
    """
    data = _read_tokenizer_json(folder)
    old_vocab: dict[str, int] = data["model"]["vocab"]
    by_id = {i: t for t, i in old_vocab.items()}
    remap = {old: new for new, old in enumerate(sorted(set(keep)))}
    data["model"]["vocab"] = {by_id[old]: new for old, new in remap.items()}
    for token in data.get("added_tokens", []):
        if token["id"] not in remap:
            raise PassFailed(f"special token {token['content']!r} must be kept")
        token["id"] = remap[token["id"]]
    post = data.get("post_processor") or {}
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in processors:
        for special in (proc.get("special_tokens") or {}).values():
            special["ids"] = [remap[i] for i in special["ids"]]
        for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
            if isinstance(proc.get(key), list):
                proc[key][1] = remap[proc[key][1]]
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")

    if (folder / "vocab.txt").is_file():
        tokens = [by_id[old] for old in sorted(remap)]
        (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        decoder = config.get("added_tokens_decoder")
        if isinstance(decoder, dict):
            config["added_tokens_decoder"] = {str(remap[int(k)]): v for k, v in decoder.items()}
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return remap

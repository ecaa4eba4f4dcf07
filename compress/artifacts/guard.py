"""Checks that keep a broken or unsafe model from reaching a pass.

A model folder is refused before loading when its only weights are pickles
(loading a pickle can run code) or it has no tokenizer; a loaded model is
refused when most of its weights did not come from the checkpoint (the config
describes another model) or when any weight is NaN or infinite (training on it
would silently produce garbage).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def refuse_pickle_only(folder: Path) -> None:
    """A local folder whose weights are pickles only (`pytorch_model.bin`) is refused."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"{folder}: weights only as a pickle ({', '.join(pickles)}); compress loads "
            "safetensors only, because loading a pickle can run code (convert it where you "
            "trust it: model.save_pretrained(folder, safe_serialization=True))"
        )


def require_tokenizer(folder: Path) -> None:
    """A local text model folder must carry its tokenizer."""
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
            "save the tokenizer next to the model (tokenizer.save_pretrained(folder))"
        )


def check_weights_fit(model: torch.nn.Module, loading_info: dict[str, Any], where: str) -> None:
    """Refuse a model most of whose weights were freshly initialised instead of loaded.

    A new classification head is expected (a few tensors); a config that
    describes a different architecture than the checkpoint leaves nearly all
    of them missing.
    """
    missing = list(loading_info.get("missing_keys", []))
    total = len(model.state_dict())
    if total and len(missing) > total / 2:
        raise ModelLoadError(
            f"{where}: the weights do not fit its config.json: {len(missing)} of {total} "
            f"tensors are not in the checkpoint (e.g. '{missing[0]}')"
        )


def check_finite(model: torch.nn.Module, where: str) -> None:
    """Refuse a model that holds NaN or infinite weights, naming the first such tensor."""
    import torch

    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ModelLoadError(
                    f"{where}: weight '{name}' holds {bad} NaN or infinite value(s); "
                    "the model is broken (a diverged training run?)"
                )

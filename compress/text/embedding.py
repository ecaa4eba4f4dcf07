"""Sentence embeddings: a Hugging Face encoder plus the sentence-transformers pooling of its folder.

A sentence-transformers folder is a transformers encoder folder plus `modules.json`
(Transformer -> Pooling -> optional Normalize) and the pooling's `config.json`.
`read_pooling` reads those (legacy `pooling_mode_*` flags or the newer
`pooling_mode` key); `SentenceEmbedder` runs encoder + pooling (+ L2
normalization) as one module whose output is the sentence embedding, so that
export puts pooling and normalization inside the graph; `save_embedder` writes a
folder `sentence_transformers.SentenceTransformer` loads to the same embeddings.
Anything else in the pipeline (a Dense layer, a mean_sqrt_len pooling, ...) is
refused with one line instead of being silently dropped.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import torch

from compress.artifacts.guard import (
    check_finite,
    check_weights_fit,
    refuse_pickle_only,
    require_tokenizer,
)
from compress.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PoolingMode = Literal["mean", "cls", "max", "lasttoken"]
MODES: tuple[PoolingMode, ...] = ("mean", "cls", "max", "lasttoken")
# legacy pooling config flag -> mode (None: a mode sentence-transformers has that we refuse)
MODE_FLAGS: dict[str, str] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "lasttoken",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
}
SUPPORTED_MODULES = "Transformer, Pooling (mean, cls, max, lasttoken) and Normalize"
# Copied from compress.llm.DECODER_TYPES (text and llm are one layer and never import each other)
# plus other common decoder-only families.
DECODER_TYPES = ("llama", "mistral", "qwen2", "qwen3", "gpt2", "gpt_neox", "gemma", "phi", "opt")
IMAGE_TYPES = ("vit", "deit", "beit", "swin", "convnext", "resnet", "mobilenet_v2", "efficientnet")


@dataclass(frozen=True)
class Pooling:
    """How token embeddings become one sentence embedding."""

    mode: PoolingMode = "mean"
    normalize: bool = False
    dimension: int | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{path}: not readable JSON ({reason})") from None


def _module_kind(type_name: str) -> str | None:
    """'Transformer', 'Pooling' or 'Normalize' for a sentence-transformers module type
    (old `sentence_transformers.models.Pooling` or newer `....modules.pooling.Pooling`)."""
    if not type_name.startswith("sentence_transformers."):
        return None
    kind = type_name.rsplit(".", 1)[-1]
    return kind if kind in ("Transformer", "Pooling", "Normalize") else None


def read_pooling(folder: Path) -> Pooling:
    """The pooling a sentence-transformers folder declares (mean, no normalization without one)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return Pooling("mean", False, None)
    modules = _read_json(modules_file)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ModelLoadError(f"{modules_file}: expected a list of modules (objects with a 'type')")
    kinds = []
    pooling_path: str | None = None
    for module in modules:
        type_name = str(module.get("type", ""))
        kind = _module_kind(type_name)
        if kind is None:
            raise ModelLoadError(
                f"{modules_file}: module '{type_name}' is not supported; "
                f"text-embedding supports {SUPPORTED_MODULES}"
            )
        kinds.append(kind)
        if kind == "Pooling":
            pooling_path = str(module.get("path", ""))
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ModelLoadError(
            f"{modules_file}: modules {' -> '.join(kinds)}; text-embedding supports "
            "Transformer -> Pooling, optionally -> Normalize"
        )
    assert pooling_path is not None
    mode, dimension = _read_pooling_config(folder / pooling_path / "config.json")
    return Pooling(mode, kinds[-1] == "Normalize", dimension)


def _read_pooling_config(path: Path) -> tuple[PoolingMode, int | None]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object with the pooling mode")
    if "pooling_mode" in data:  # sentence-transformers >= 5: a mode name or a list of them
        given = data["pooling_mode"]
        modes = [given] if isinstance(given, str) else list(given or [])
    else:
        modes = [mode for key, mode in MODE_FLAGS.items() if data.get(key) is True]
    supported = ", ".join(MODES)
    if len(modes) != 1:
        found = "no pooling mode" if not modes else f"several pooling modes ({', '.join(modes)})"
        raise ModelLoadError(f"{path}: {found}; text-embedding needs exactly one of {supported}")
    if modes[0] not in MODES:
        raise ModelLoadError(
            f"{path}: pooling mode '{modes[0]}' is not supported; use one of {supported}"
        )
    dimension = data.get("word_embedding_dimension", data.get("embedding_dimension"))
    return cast(PoolingMode, modes[0]), int(dimension) if dimension is not None else None


def read_max_seq_length(folder: Path) -> int | None:
    """`max_seq_length` of `sentence_bert_config.json`, when the folder has one."""
    path = folder / "sentence_bert_config.json"
    if not path.is_file():
        return None
    data = _read_json(path)
    value = data.get("max_seq_length") if isinstance(data, dict) else None
    return int(value) if isinstance(value, int) else None


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """[batch, seq, dim] token embeddings -> [batch, dim], ignoring padded positions.

    Written with elementwise ops and reductions only (no data-dependent indexing), so the
    traced ONNX graph keeps dynamic batch and sequence axes; cls and lasttoken pick the
    first and last real token whichever side the tokenizer pads.
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [batch, seq, 1]
    if mode == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "max":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
    seen = attention_mask.long().cumsum(1)  # real tokens up to each position
    real = attention_mask.long() == 1
    if mode == "cls":
        pick = real & (seen == 1)
    elif mode == "lasttoken":
        pick = real & (seen == seen[:, -1:])
    else:
        raise ValueError(f"unknown pooling mode {mode!r}")
    return (hidden * pick.to(hidden.dtype).unsqueeze(-1)).sum(1)


class SentenceEmbedder(torch.nn.Module):
    """Encoder + pooling (+ L2 normalization): token ids -> sentence embeddings [batch, dim].

    `encoder` may be replaced or pruned in place; nothing about it is cached.
    """

    def __init__(
        self, encoder: PreTrainedModel, pooling: Pooling, max_seq_length: int | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.max_seq_length = max_seq_length

    @property
    def config(self) -> Any:
        return self.encoder.config

    def accepts(self, name: str) -> bool:
        """Whether the encoder's forward takes the input `name` (e.g. token_type_ids)."""
        return name in inspect.signature(self.encoder.forward).parameters

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {}
        if token_type_ids is not None and self.accepts("token_type_ids"):
            extra["token_type_ids"] = token_type_ids
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra)
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling.mode)
        if self.pooling.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
        return pooled


def _config_dict(location: str, revision: str | None) -> dict[str, Any]:
    path = Path(location) / "config.json"
    if path.is_file():
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ModelLoadError(f"{path}: expected a JSON object")
        return data
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(location, revision=revision, trust_remote_code=False)
    except Exception as exc:  # hub and parsing errors of many types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(f"could not load model '{location}': {first}") from None
    return dict(config.to_dict())


def refuse_non_encoder(location: str, config: dict[str, Any]) -> None:
    """A decoder (text generation) or image model is refused with one line."""
    if config.get("auto_map"):
        raise ModelLoadError(
            f"{location}: the model asks to run its own code (auto_map in config.json); "
            "compress never runs code shipped with a model"
        )
    archs = [str(a) for a in config.get("architectures") or []]
    model_type = str(config.get("model_type", ""))
    causal = [a for a in archs if a.endswith(("ForCausalLM", "LMHeadModel"))]
    if causal or config.get("is_decoder") or model_type in DECODER_TYPES:
        what = causal[0] if causal else model_type or "is_decoder"
        raise ModelLoadError(
            f"{location}: a text-generation model ({what}); text-embedding needs an encoder "
            "(BERT, MiniLM, RoBERTa, ...)"
        )
    if config.get("is_encoder_decoder"):
        raise ModelLoadError(
            f"{location}: an encoder-decoder model ({archs[0] if archs else model_type}); "
            "text-embedding needs an encoder (BERT, MiniLM, RoBERTa, ...)"
        )
    image = [a for a in archs if a.endswith("ForImageClassification")]
    if image or "num_channels" in config or model_type in IMAGE_TYPES or not model_type:
        what = image[0] if image else model_type or "no model_type in config.json"
        raise ModelLoadError(
            f"{location}: an image model or not a transformers text model ({what}); "
            "text-embedding needs a text encoder with its tokenizer (BERT, MiniLM, RoBERTa, ...)"
        )


def load_embedder(
    location: str, revision: str | None = None
) -> tuple[SentenceEmbedder, PreTrainedTokenizerBase]:
    """Load an encoder, its tokenizer and its sentence-transformers pooling (safetensors only)."""
    from transformers import AutoModel, AutoTokenizer

    from compress.text.models import _feed_only_accepted_inputs

    folder = Path(location)
    refuse_non_encoder(location, _config_dict(location, revision))
    refuse_pickle_only(folder)
    require_tokenizer(folder)
    pooling = read_pooling(folder) if folder.is_dir() else _hub_pooling(location, revision)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
        encoder, info = AutoModel.from_pretrained(
            location,
            revision=revision,
            use_safetensors=True,
            trust_remote_code=False,
            output_loading_info=True,
        )
    except Exception as exc:  # transformers and safetensors raise many types for broken files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(first) > 200:
            first = first[:200] + "..."
        raise ModelLoadError(f"could not load model '{location}': {first}") from None
    check_weights_fit(encoder, info, location)
    check_finite(encoder, location)
    hidden = int(encoder.config.hidden_size)
    if pooling.dimension is not None and pooling.dimension != hidden:
        raise ModelLoadError(
            f"{location}: the pooling config says {pooling.dimension} dimensions but the encoder "
            f"outputs {hidden}; text-embedding supports {SUPPORTED_MODULES} only"
        )
    _feed_only_accepted_inputs(encoder, tokenizer)
    max_len = read_max_seq_length(folder) if folder.is_dir() else None
    return SentenceEmbedder(encoder, Pooling(pooling.mode, pooling.normalize, hidden), max_len), (
        tokenizer
    )


def _hub_pooling(location: str, revision: str | None) -> Pooling:
    """`read_pooling` for a hub id: its modules.json and pooling config, when it has them."""
    import tempfile

    from huggingface_hub import hf_hub_download

    def fetch(name: str) -> Path | None:
        try:
            return Path(hf_hub_download(location, name, revision=revision))
        except Exception:  # absent file, offline, ...: no sentence-transformers metadata
            return None

    modules = fetch("modules.json")
    if modules is None:
        return Pooling("mean", False, None)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        (local / "modules.json").write_bytes(modules.read_bytes())
        for module in _read_json(modules) or []:
            if isinstance(module, dict) and _module_kind(str(module.get("type", ""))) == "Pooling":
                config = fetch(f"{module.get('path', '')}/config.json")
                if config is not None:
                    target = local / str(module.get("path", "")) / "config.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(config.read_bytes())
        return read_pooling(local)


def save_embedder(
    model: SentenceEmbedder,
    tokenizer: PreTrainedTokenizerBase,
    folder: Path,
    max_seq_length: int | None = None,
) -> None:
    """A Hugging Face folder that is also a sentence-transformers model folder."""
    folder.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    config = model.encoder.config
    normalize = model.pooling.normalize
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    pooling: dict[str, Any] = {"word_embedding_dimension": int(config.hidden_size)}
    pooling.update({key: mode == model.pooling.mode for key, mode in MODE_FLAGS.items()})
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")
    length = max_seq_length or model.max_seq_length
    if length is None:
        limits = [getattr(config, "max_position_embeddings", None), tokenizer.model_max_length]
        length = min((x for x in limits if isinstance(x, int) and 0 < x < 1_000_000), default=512)
    st_config = {"max_seq_length": int(length), "do_lower_case": False}
    (folder / "sentence_bert_config.json").write_text(json.dumps(st_config, indent=2) + "\n")


def embedder_meta(model: SentenceEmbedder, max_length: int) -> dict[str, Any]:
    """`model_meta` of the encoder (parameters, matmul MACs per token) plus the pooling."""
    from compress.text.pruning import model_meta

    meta = model_meta(model.encoder, max_length)
    meta.update(
        pooling=model.pooling.mode,
        normalize=model.pooling.normalize,
        dimension=int(model.encoder.config.hidden_size),
    )
    return meta

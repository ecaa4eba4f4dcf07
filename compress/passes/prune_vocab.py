"""`prune_vocab`: keep only the tokens a corpus uses, and shrink the embedding to match.

In small encoders the word embedding is most of the model (MiniLM-L6: 11.7M of
22.7M parameters). The pass counts the tokens of a corpus (the recipe's
training split by default), keeps those seen at least `min_count` times plus
the special tokens and the first `reserve` ids, renumbers the tokenizer, and
slices the embedding rows. Texts made only of kept tokens give exactly the
same outputs as before (checked); other words are split into kept pieces
where the tokenizer can, else map to the unknown token (the share is
reported). WordPiece (BERT, DistilBERT, ELECTRA), byte-level BPE (RoBERTa) and
Unigram (XLM-R, DeBERTa-v3) tokenizers are supported (`compress.text.vocab`).
The result is an ordinary Hugging Face folder that `from_pretrained` loads.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from compress.artifacts import Artifact, ModelInfo
from compress.errors import DataError, PassFailed
from compress.passes.base import PassConfig, PassContext, PassInfo
from compress.passkit.io import load_input, save_output
from compress.tasks.base import logits_of

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class PruneVocabConfig(PassConfig):
    """Options of `prune_vocab`."""

    corpus: str = Field(
        "train", description="'train' (the recipe's training split) or a UTF-8 text file"
    )
    min_count: int = Field(1, ge=1, description="keep tokens seen at least this often")
    reserve: int = Field(0, ge=0, description="also keep the first N ids of the vocabulary")
    atol: float = Field(1e-4, gt=0, description="max |logit diff| on texts of kept tokens")


def _corpus(cfg: PruneVocabConfig, ctx: PassContext) -> list[str]:
    if cfg.corpus == "train":
        return ctx.data.train.texts
    path = Path(cfg.corpus).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"prune_vocab.corpus: {path} not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"prune_vocab.corpus: {path} is not UTF-8 (byte {exc.start})") from None
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise DataError(f"prune_vocab.corpus: {path} has no text")
    return texts


def shrink_embeddings(model: PreTrainedModel, keep: list[int], pad_id: int | None) -> None:
    """Keep only the embedding rows in `keep` (in order) and update the config."""
    import torch

    old = model.get_input_embeddings()
    if not isinstance(old, torch.nn.Embedding) or model.get_output_embeddings() is not None:
        raise PassFailed("prune_vocab supports encoders with a plain embedding and no LM head")
    weight = old.weight.detach()[torch.as_tensor(keep)]
    new = torch.nn.Embedding(len(keep), weight.shape[1], padding_idx=pad_id)
    new.weight.data.copy_(weight)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep)
    if pad_id is not None:
        model.config.pad_token_id = pad_id


def _check_kept_outputs(
    artifact: Artifact,
    ctx: PassContext,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    new_tokenizer: PreTrainedTokenizerBase,
    remap: dict[int, int],
    sample: list[str],
) -> float | None:
    """Max |logit diff| between the original and the pruned model on `sample` (None: empty)."""
    import torch

    if not sample:
        ctx.log("no text consists only of kept tokens; output check skipped")
        return None
    old_model, _ = load_input(artifact, ctx)
    old_model.eval()
    kw = {"padding": True, "truncation": True, "max_length": ctx.max_length, "return_tensors": "pt"}
    old_batch, new_batch = tokenizer(sample, **kw), new_tokenizer(sample, **kw)
    remapped = old_batch["input_ids"].clone().apply_(lambda i: remap[i])
    if not torch.equal(remapped, new_batch["input_ids"]):
        raise PassFailed("the pruned tokenizer splits kept words differently from the original")
    with torch.inference_mode():
        return float(
            (logits_of(old_model(**old_batch)) - logits_of(model(**new_batch))).abs().max()
        )


def apply(artifact: Artifact, cfg: PruneVocabConfig, ctx: PassContext) -> Artifact:
    import numpy as np
    from transformers import AutoTokenizer

    from compress.text.vocab import required_ids, rewrite_tokenizer, tokenizer_kind, vocab_size

    model, tokenizer = load_input(artifact, ctx)
    model.eval()
    kind = tokenizer_kind(artifact.path)
    size_before = vocab_size(artifact.path)
    counts: Counter[int] = Counter()
    texts = _corpus(cfg, ctx)
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    keep = {i for i, c in counts.items() if c >= cfg.min_count}
    keep |= set(tokenizer.all_special_ids) | set(range(min(cfg.reserve, size_before)))
    keep_sorted = sorted(required_ids(artifact.path, keep))
    params_before = sum(p.numel() for p in model.parameters())

    tokenizer.save_pretrained(ctx.work_dir)
    remap = rewrite_tokenizer(ctx.work_dir, keep_sorted)
    new_tokenizer = AutoTokenizer.from_pretrained(ctx.work_dir)
    pad = tokenizer.pad_token_id
    shrink_embeddings(ctx.task.inner(model), keep_sorted, remap[pad] if pad is not None else None)

    # Same tokens -> same outputs: compare on texts made only of kept tokens.
    candidates = ctx.data.validation.texts[:256] + texts[:256]
    sample = [t for t in candidates if set(tokenizer(t)["input_ids"]) <= keep][:64]
    diff = _check_kept_outputs(artifact, ctx, model, tokenizer, new_tokenizer, remap, sample)
    if diff is not None and diff > cfg.atol:
        raise PassFailed(f"pruned model differs on kept tokens: max |logit diff| {diff:.3g}")

    unk = new_tokenizer.unk_token_id
    val_ids = new_tokenizer(ctx.data.validation.texts, add_special_tokens=False)["input_ids"]
    total = sum(len(ids) for ids in val_ids)
    unk_share = sum(ids.count(unk) for ids in val_ids) / max(1, total) if unk is not None else 0.0
    old_total = sum(
        len(ids)
        for ids in tokenizer(ctx.data.validation.texts, add_special_tokens=False)["input_ids"]
    )
    out = save_output(model, new_tokenizer, ctx)
    params_after = sum(p.numel() for p in model.parameters())
    ctx.metrics.update(
        tokenizer=kind,
        vocab_before=size_before,
        vocab_after=len(keep_sorted),
        parameters_before=params_before,
        parameters_after=params_after,
        corpus_texts=len(texts),
        validation_unk_share=float(np.round(unk_share, 6)),
        validation_tokens=[old_total, total],
        max_logit_diff_on_kept_tokens=diff,
    )
    ctx.log(
        f"{kind} vocabulary {size_before} -> {len(keep_sorted)} tokens; parameters "
        f"{params_before / 1e6:.2f}M -> {params_after / 1e6:.2f}M; validation tokens now [UNK]: "
        f"{unk_share:.2%}; validation tokens {old_total} -> {total}; "
        f"max |logit diff| on kept tokens {diff}"
    )
    return out


def _check_model(cfg: PruneVocabConfig, info: ModelInfo) -> None:
    from compress.text.adapters import tokenizer_unsupported

    problem = tokenizer_unsupported(info.tokenizer)
    if problem is not None:
        raise ValueError(problem)


PASS = PassInfo(
    name="prune_vocab",
    summary="Keep only the tokens a corpus uses; shrink the embedding (WordPiece, BPE, Unigram).",
    config=PruneVocabConfig,
    apply=apply,
    consumes="hf",
    produces="hf",
    check_model=_check_model,
)

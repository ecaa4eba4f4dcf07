"""Rewrite an exported decoder's attention into ONNX Runtime's GroupQueryAttention.

optimum's export spells each layer's attention as ~150 small nodes (head
reshapes, repeat-KV expands, a causal mask built from `attention_mask`,
Softmax, two MatMuls, shape arithmetic); ONNX Runtime's optimizer fuses the
rotary embeddings and RMSNorms but has no fusion for the rest. Decoding one
token runs all of them once per layer, which on a CPU costs about as much as
the INT4 matrix products. `com.microsoft.GroupQueryAttention` does the same in
one kernel: rotary embedding of Q and K, appending to the KV cache, grouped
heads, causal softmax.

The rewrite finds each layer from its cache outputs, so it needs no node
names: `present.N.key` is `Concat(past_key_values.N.key, RotaryEmbedding(K))`,
`present.N.value` is `Concat(past_key_values.N.value, V)`, Q is the other
rotated projection of the same normalised input, and the attention's output is
the input of the first weight MatMul after Q (the output projection). The
three projections become one packed QKV MatMul (one matrix product instead of
three). Everything the new nodes make unused (the mask, shape arithmetic,
`position_ids`) is removed. Positions come from the attention mask
(`seqlens_k` = real tokens - 1), so prompts are right-padded, as everywhere in
compress. Sliding-window layers (Mistral, Gemma 2) keep their window
(`local_window_size`, per layer), Gemma 2 its attention softcapping (`softcap`)
and `query_pre_attn_scalar` (`scale`): `compress.llm.families.gqa_settings`;
a layer whose K is not rotated (SmolLM3's `no_rope_layers`) gets `do_rotary=0`.
The caller proves the result with `lm_parity`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from compress.llm.runtime import ATTENTION_KEY

SEQLENS = "attention/seqlens_k"
TOTAL = "attention/total_sequence_length"


@dataclass
class _Layer:
    index: int
    q: Any  # the projection nodes (MatMul), or the bias Add after one
    k: Any
    v: Any
    rotary: tuple[str, str] | None  # cos and sin tables (None: a layer without rotary)
    attention_out: str  # the tensor the output projection reads
    o_proj: Any


class _Graph:
    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.producer = {out: n for n in graph.node for out in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {t.name: t for t in graph.initializer}

    def op(self, name: str, *types: str) -> Any | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type in types else None

    def projection(self, name: str) -> Any | None:
        """The MatMul (or MatMul + bias Add) behind `Transpose(Reshape(x))`, else None."""
        transpose = self.op(name, "Transpose")
        reshape = transpose and self.op(transpose.input[0], "Reshape")
        if not reshape:
            return None
        node = self.op(reshape.input[0], "MatMul", "Add")
        if node is not None and node.op_type == "Add":
            inner = self.matmul_of(node)
            return node if inner is not None and self.bias_of(node) is not None else None
        return node if node is not None and node.input[1] in self.initializers else None

    def bias_of(self, add: Any) -> str | None:
        """The constant input of a bias Add (either side)."""
        return next((name for name in add.input if name in self.initializers), None)

    def matmul_of(self, projection: Any) -> Any:
        """The weight MatMul of a projection (itself, or behind its bias Add)."""
        if projection.op_type != "Add":
            return projection
        for name in projection.input:
            node = self.op(name, "MatMul")
            if node is not None and node.input[1] in self.initializers:
                return node
        return None

    def first_weight_matmul(self, start: str) -> Any | None:
        """Breadth-first from `start` (not through Shape): the first MatMul with a weight."""
        seen, queue = {start}, [start]
        while queue:
            name = queue.pop(0)
            for node in self.consumers.get(name, []):
                if node.op_type == "Shape":
                    continue
                if node.op_type == "MatMul" and node.input[1] in self.initializers:
                    return node
                for out in node.output:
                    if out not in seen:
                        seen.add(out)
                        queue.append(out)
        return None


def _layer(g: _Graph, index: int) -> _Layer | str:
    """One layer's pieces, or why the pattern does not match."""
    key_cat = g.op(f"present.{index}.key", "Concat")
    value_cat = g.op(f"present.{index}.value", "Concat")
    if key_cat is None or value_cat is None or len(key_cat.input) != 2:
        return "the cache outputs are not Concat(past, new)"
    rot_k = g.op(key_cat.input[1], "RotaryEmbedding")  # None: a layer without rotary
    k = g.projection(rot_k.input[0] if rot_k is not None else key_cat.input[1])
    if rot_k is None and k is None:
        return "K is not rotated by a fused RotaryEmbedding (nor a plain projection)"
    v = g.projection(value_cat.input[1])
    if k is None or v is None:
        return "K or V is not a reshaped projection"
    source = g.matmul_of(k).input[0]
    q = q_out = rot_q = None
    for node in g.consumers[source]:
        if node.op_type != "MatMul" or node in (g.matmul_of(k), g.matmul_of(v)):
            continue
        head = g.consumers[node.output[0]]
        tail = head[0] if len(head) == 1 and head[0].op_type == "Add" else node
        for reshape in g.consumers[tail.output[0]]:
            for transpose in g.consumers[reshape.output[0]]:
                if rot_k is None and transpose.op_type == "Transpose":
                    q, q_out = g.projection(transpose.output[0]), transpose.output[0]
                for rot in g.consumers[transpose.output[0]]:
                    if rot_k is not None and rot.op_type == "RotaryEmbedding" and rot is not rot_k:
                        q, rot_q, q_out = g.projection(transpose.output[0]), rot, rot.output[0]
    if q is None or q_out is None:
        return "no Q projection beside K" if rot_k is None else "no rotated Q projection beside K"
    if (q.op_type == "Add") != (k.op_type == "Add") or (k.op_type == "Add") != (v.op_type == "Add"):
        return "only some of Q, K, V have a bias"
    rotary = None
    if rot_k is not None and rot_q is not None:
        if list(rot_q.input[2:4]) != list(rot_k.input[2:4]) or _interleaved(rot_k):
            return "Q and K use different or interleaved rotary tables"
        rotary = (rot_k.input[2], rot_k.input[3])
    if any(len(g.initializers[g.matmul_of(p).input[1]].dims) != 2 for p in (q, k, v)):
        return "a projection weight is not a matrix"
    o_proj = g.first_weight_matmul(q_out)
    if o_proj is None:
        return "no output projection after the attention"
    return _Layer(index, q, k, v, rotary, o_proj.input[0], o_proj)


def _interleaved(node: Any) -> bool:
    return any(a.name == "interleaved" and a.i for a in node.attribute)


def fuse_attention(
    model: Any,
    heads: int,
    kv_heads: int,
    scale: float,
    windows: list[int] | None = None,
    softcap: float = 0.0,
) -> int | str:
    """Rewrite every layer of `model` (an onnx ModelProto, in place); returns the number of
    GroupQueryAttention nodes, or why nothing was rewritten (the model is then unchanged).

    `windows`: per layer, how many keys (itself included) a query sees, -1 for all of them
    (sliding-window layers: Mistral, Gemma 2); `softcap`: attention logits capped at
    softcap * tanh(x / softcap) (Gemma 2), 0 for none."""
    from onnx import helper, numpy_helper
    from onnxruntime.transformers.onnx_model import OnnxModel

    g = _Graph(model.graph)
    count = sum(1 for o in model.graph.output if o.name.startswith("present.") and "key" in o.name)
    if not count or "attention_mask" not in {i.name for i in model.graph.input}:
        return "no present.N.key outputs or no attention_mask input"
    layers: list[_Layer] = []
    for index in range(count):
        found = _layer(g, index)
        if isinstance(found, str):
            return f"layer {index}: {found}"
        layers.append(found)

    new_nodes: dict[int, list[Any]] = defaultdict(list)  # id(anchor node) -> nodes before it
    drop: set[int] = set()
    for layer in layers:
        packed = f"/model/layers.{layer.index}/self_attn/qkv_proj"
        mats = [g.matmul_of(p) for p in (layer.q, layer.k, layer.v)]
        weights = [numpy_helper.to_array(g.initializers[m.input[1]]) for m in mats]
        model.graph.initializer.append(
            numpy_helper.from_array(np.concatenate(weights, axis=1), f"{packed}.weight")
        )
        qkv = f"{packed}/MatMul_output_0"
        nodes = [
            helper.make_node(
                "MatMul", [mats[0].input[0], f"{packed}.weight"], [qkv], name=f"{packed}/MatMul"
            )
        ]
        if layer.q.op_type == "Add":
            bias = [
                numpy_helper.to_array(g.initializers[g.bias_of(p) or ""])
                for p in (layer.q, layer.k, layer.v)
            ]
            model.graph.initializer.append(
                numpy_helper.from_array(np.concatenate(bias), f"{packed}.bias")
            )
            nodes.append(
                helper.make_node(
                    "Add", [qkv, f"{packed}.bias"], [qkv + "_bias"], name=f"{packed}/Add"
                )
            )
            qkv += "_bias"
        i = layer.index
        nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [
                    qkv,
                    "",
                    "",
                    f"past_key_values.{i}.key",
                    f"past_key_values.{i}.value",
                    SEQLENS,
                    TOTAL,
                    *(layer.rotary or ()),
                ],
                [layer.attention_out, f"present.{i}.key", f"present.{i}.value"],
                name=f"/model/layers.{i}/self_attn/GroupQueryAttention",
                domain="com.microsoft",
                num_heads=heads,
                kv_num_heads=kv_heads,
                scale=scale,
                do_rotary=int(layer.rotary is not None),
                rotary_interleaved=0,
                local_window_size=windows[i] if windows else -1,
            )
        )
        if softcap:
            nodes[-1].attribute.append(helper.make_attribute("softcap", softcap))
        new_nodes[id(layer.o_proj)] = nodes
        drop.update(
            id(g.producer[name])
            for name in (layer.attention_out, f"present.{i}.key", f"present.{i}.value")
        )

    kept = []
    for node in model.graph.node:
        kept.extend(new_nodes.get(id(node), []))
        if id(node) not in drop:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(_mask_nodes(model, helper) + kept)
    OnnxModel(model).prune_graph()  # nodes, initializers and inputs no output needs
    helper.set_model_props(
        model,
        {**{p.key: p.value for p in model.metadata_props}, ATTENTION_KEY: "GroupQueryAttention"},
    )
    return len(layers)


def _mask_nodes(model: Any, helper: Any) -> list[Any]:
    """seqlens_k = sum(attention_mask) - 1 (int32, per row); total = its width (int32)."""
    from onnx import TensorProto

    model.graph.initializer.extend(
        [
            helper.make_tensor("attention/one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("attention/index", TensorProto.INT64, [], [1]),
        ]
    )
    nodes: list[tuple[str, list[str], list[str], dict[str, Any]]] = [
        ("ReduceSum", ["attention_mask", "attention/one"], ["attention/sum"], {"keepdims": 0}),
        ("Sub", ["attention/sum", "attention/one"], ["attention/seqlens"], {}),
        ("Cast", ["attention/seqlens"], [SEQLENS], {"to": TensorProto.INT32}),
        ("Shape", ["attention_mask"], ["attention/shape"], {}),
        ("Gather", ["attention/shape", "attention/index"], ["attention/total"], {}),
        ("Cast", ["attention/total"], [TOTAL], {"to": TensorProto.INT32}),
    ]
    return [
        helper.make_node(op, inputs, outputs, name=f"/model/attn_mask/{outputs[0]}", **attrs)
        for op, inputs, outputs, attrs in nodes
    ]

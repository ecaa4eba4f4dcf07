"""Keep a tied LM head tied in an exported ONNX decoder: one copy of the embedding matrix.

A tied model's LM head multiplies by the transpose of the token embedding. The
PyTorch exporter can fold that transpose into a second initializer (optimum
then warns "Found different candidate ONNX initializers (likely duplicate) for
the tied weights"), so the file holds the matrix twice: SmolLM2-135M's 113 MB
embedding, Gemma 3 270M's 671 MB. `tie_lm_head` finds a MatMul whose constant
weight equals the embedding's transpose, value for value, and makes it read
`Transpose(embedding)` instead, the form optimum writes when it does not fold;
the duplicate goes. The rewrite is exact (the same numbers reach the MatMul),
and the INT4 quantizer recognises that form (`compress.llm.int4`), so the
quantized embedding can still share the quantized head.

    saved = tie_file(Path("model.onnx"))  # bytes removed (0: nothing duplicated)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from compress.llm.export import EXTERNAL_DATA_BYTES

log = logging.getLogger(__name__)


def embedding_names(model: Any) -> list[str]:
    """Initializers that a Gather reads with a graph input as indices (the token lookups)."""
    constants = {t.name for t in model.graph.initializer}
    inputs = {i.name for i in model.graph.input}
    return [
        n.input[0]
        for n in model.graph.node
        if n.op_type == "Gather" and n.input[0] in constants and n.input[1] in inputs
    ]


def tie_lm_head(model: Any) -> int:
    """Make every MatMul whose constant weight is an embedding's transpose read
    `Transpose(embedding)` (ModelProto, in place); returns the bytes of duplicates removed."""
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    saved = 0
    for embedding in dict.fromkeys(embedding_names(model)):
        table = constants[embedding]
        if len(table.dims) != 2:
            continue
        transposed_dims = [table.dims[1], table.dims[0]]
        heads = [
            n
            for n in graph.node
            if n.op_type == "MatMul"
            and n.input[1] in constants
            and list(constants[n.input[1]].dims) == transposed_dims
            and constants[n.input[1]].data_type == table.data_type
        ]
        if not heads:
            continue
        values = numpy_helper.to_array(table)
        tied = embedding + "_transposed"
        while tied in constants or any(tied in n.output for n in graph.node):
            tied += "_"
        used = False
        for head in heads:
            weight = constants[head.input[1]]
            if not np.array_equal(numpy_helper.to_array(weight), values.T):
                continue
            duplicate, head.input[1] = weight.name, tied
            used = True
            if not any(duplicate in n.input for n in graph.node):
                graph.initializer.remove(weight)
                del constants[duplicate]
                saved += values.nbytes
        if used:
            transpose = helper.make_node("Transpose", [embedding], [tied], name=tied, perm=[1, 0])
            graph.node.insert(0, transpose)
    return saved


def tie_file(path: Path) -> int:
    """`tie_lm_head` on an ONNX file (rewritten in place, its external data too); returns the
    bytes removed (the file is left untouched when nothing was duplicated)."""
    import onnx

    head = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value
        for tensor in head.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    model = onnx.load(str(path))
    saved = tie_lm_head(model)
    if not saved:
        return 0
    for location in locations:  # onnx.save appends to an existing data file
        (path.parent / location).unlink(missing_ok=True)
    external = bool(locations) or model.ByteSize() > EXTERNAL_DATA_BYTES
    location = sorted(locations)[0] if locations else path.name + ".data"
    onnx.save(model, str(path), save_as_external_data=external, location=location)
    log.info(
        "%s: the tied LM head reads the embedding (%.1f MB duplicate removed)",
        path.name,
        saved / 1e6,
    )
    return saved

"""Causal language models (text generation): loading, scoring, pruning, export and INT4.

The `text-generation` task (`compress.tasks.generation`) and the passes that
serve it go through these modules; each imports torch, transformers or ONNX
Runtime only inside the functions that need them.
"""

# the decoder families whose layers `compress.llm.pruning` knows (`compress.llm.families`)
from compress.llm.families import SUPPORTED as DECODER_TYPES

__all__ = ["DECODER_TYPES"]

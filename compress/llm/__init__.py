"""Causal language models (text generation): loading, scoring, pruning, export and INT4.

The `text-generation` task (`compress.tasks.generation`) and the passes that
serve it go through these modules; each imports torch, transformers or ONNX
Runtime only inside the functions that need them.
"""

DECODER_TYPES = ("llama", "mistral", "qwen2", "qwen3")
"""Decoder LMs whose layers `compress.llm.pruning` knows (Llama-style projections)."""

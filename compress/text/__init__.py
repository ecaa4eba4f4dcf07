"""Text encoders: loading Hugging Face classifiers, tokens, layer subsets, pruning, vocabularies."""

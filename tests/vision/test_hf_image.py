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
from tests.archs import assert_same_function, assert_student_is_teacher_layers, masked_reference
from tests.int8_checks import assert_exports_to_int8_and_engine
from tests.vision_archs import HF_IMAGE_ARCHITECTURES, build_hf_image, masked_channel_reference

CNNS = ("resnet", "mobilenet_v2")


@pytest.fixture(scope="module", params=HF_IMAGE_ARCHITECTURES)
def hf_image(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, mnist_slice: Dataset
) -> Artifact:
    arch = request.param
    folder = tmp_path_factory.mktemp(arch) / "m"
    build_hf_image(arch, folder, mnist_slice.label_names, random_norms=arch in CNNS)
    return Artifact("hf", folder, arch, [Variant("fp32", "torch", "fp32", "portable")])


def _ctx(tmp_path: Path, data: Dataset, name: str) -> PassContext:
    work = tmp_path / name
    work.mkdir()
    task = get_task("image-classification")
    return PassContext(work, data, 32, 0, name, progress=False, task=task)


def _pixels(images: list[np.ndarray]) -> torch.Tensor:
    """28x28 grayscale images as the folders' preprocessing writes it: /255, mean 0.286, std
    0.353 (no resize needed)."""
    scaled = np.stack(images).astype(np.float32)[:, None] / 255
    return torch.from_numpy((scaled - 0.286) / 0.353)


def _logits(folder: Path, images: list[np.ndarray]) -> torch.Tensor:
    model, processor = load(folder)
    with torch.inference_mode():
        return model.eval()(torch.from_numpy(processor(images)))


def test_loads_fine_tunes_and_saves_a_transformers_folder(
    hf_image: Artifact, mnist_slice: Dataset, tmp_path: Path
) -> None:
    """The fine-tuned folder is one transformers loads and runs alone to the same logits."""
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
    with torch.inference_mode():  # transformers alone, on pixels normalized by hand
        plain = reloaded.eval()(pixel_values=_pixels(images)).logits
    assert not torch.allclose(plain[0], plain[1], atol=1e-3)  # the logits depend on the image
    torch.testing.assert_close(_logits(tuned.path, images), plain, atol=1e-5, rtol=0)
    assert not torch.allclose(plain, _logits(hf_image.path, images), atol=1e-4)  # it trained


def test_structured_pruning_computes_the_masked_unpruned_model(
    hf_image: Artifact, mnist_slice: Dataset, tmp_path: Path
) -> None:
    """ViT (`prune`): the reloaded output is the unpruned model with layer 1 dropped and the
    recorded heads and lost neurons zeroed by hand; the CNNs (`prune_channels`): the unpruned
    model with the lost channels zeroed after their batch norms; ConvNeXt: both passes are
    refused before anything runs."""
    if hf_image.key == "convnext":
        _assert_convnext_is_refused(hf_image.path, tmp_path)
        return
    images = list(mnist_slice.validation.inputs[:4])
    ctx = _ctx(tmp_path, mnist_slice, "prune")
    if hf_image.key == "vit":
        cfg = PruneConfig(heads=0.25, ffn=0.5, layers=1, importance_batches=2)
        out = prune(hf_image, cfg, ctx)
        assert ctx.metrics["ffn_width"] == [64, 32] and ctx.metrics["kept_layers"] == [0]
    else:  # the fixture's batch norms have random statistics: each channel is recognizable
        cfg = PruneChannelsConfig(ratio=0.5, importance="magnitude")  # taylor: tests/passes
        out = prune_channels(hf_image, cfg, ctx)
        assert ctx.metrics["pruned_layers"]
    assert ctx.metrics["parameters"][1] < ctx.metrics["parameters"][0]
    model, _ = load(out.path)
    assert sum(p.numel() for p in model.parameters()) == ctx.metrics["parameters"][1]
    original, _ = load(hf_image.path)
    if hf_image.key == "vit":
        plan = {int(k): v for k, v in ctx.metrics["pruned_heads"].items()}
        assert sum(len(h) for h in plan.values()) == 1  # a quarter of 4 heads
        reference = masked_reference(original.net, [0], plan, model.net)
        assert_same_function(model.net, reference, {"pixel_values": _pixels(images)})
    else:
        reference = masked_channel_reference(original, model)
        with torch.inference_mode():
            expected = reference(_pixels(images))
            assert not torch.allclose(original(_pixels(images)), expected, atol=1e-3)
            assert not torch.allclose(expected[0], expected[1], atol=1e-3)  # images matter
        torch.testing.assert_close(_logits(out.path, images), expected, atol=1e-5, rtol=0)


def _assert_convnext_is_refused(folder: Path, tmp_path: Path) -> None:
    """ConvNeXt has no structured pruning: `prune_channels` gives torch-pruning no pruner for
    its channels-first LayerNorm or its per-channel layer-scale parameter, and `prune`'s table
    of encoders has no ConvNeXt. A recipe naming either pass on it is refused up front."""
    from compress.errors import RecipeError
    from compress.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    for passes, refusal in (
        ("prune_channels", r"prune_channels does not support 'convnext'"),
        ("prune: {ffn: 0.5}", r"prune does not support model type 'convnext'"),
    ):
        recipe.write_text(
            f"task: image-classification\nmodel: {{source: {folder}}}\n"
            f"data: {{source: mnist}}\npasses:\n  - {passes}\n"
        )
        with pytest.raises(RecipeError, match=refusal):
            load_recipe(recipe)


def test_export_and_tensorrt_form_int8(
    hf_image: Artifact, mnist_slice: Dataset, tmp_path: Path
) -> None:
    images = list(mnist_slice.test.inputs[:6])
    reference = ({"pixel_values": _pixels(images).numpy()}, _logits(hf_image.path, images).numpy())
    cfg = QuantizeConfig(targets=["cpu", "tensorrt"], cpu_mode="static", calibration_samples=16)
    assert_exports_to_int8_and_engine(
        hf_image, lambda name: _ctx(tmp_path, mnist_slice, name), cfg, tmp_path, reference
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
    """The recipe's bundle classifies PNGs on the device (no compress) as the run does: each
    image gets the label and probability the run's own runtime computes for the bundled file."""
    import json
    import tarfile

    from PIL import Image

    from compress.recipe import load_recipe
    from compress.run.runner import run_recipe
    from tests.deploy.agreement import assert_infer_agrees, device_infer, run_scores

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
    images = list(mnist_slice.test.inputs[:12])
    pngs = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        pngs.append(str(tmp_path / f"{i}.png"))
    printed = device_infer(folder, pngs)
    assert [row[2] for row in printed] == pngs
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["source"] == "04-quantize/model_int8_cpu.onnx"
    assert_infer_agrees(printed, *run_scores(run, manifest["model"]["source"], images, 32))


def test_a_vit_student_starts_as_the_teachers_kept_layer(
    mnist_slice: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With training stubbed out, `distill(layers=[1])` of a ViT saves teacher layer 1 (and all
    around it) unchanged, computing the teacher with layer 0 dropped by hand."""
    from compress.passes import distill as distill_module
    from compress.passes.distill import DistillConfig
    from compress.passes.distill import apply as distill

    monkeypatch.setattr(distill_module, "train", lambda *args, **kwargs: {})
    folder = build_hf_image("vit", tmp_path / "vit", mnist_slice.label_names)
    teacher = Artifact("hf", folder, "vit", [Variant("fp32", "torch", "fp32", "portable")])
    ctx = _ctx(tmp_path, mnist_slice, "distill")
    out = distill(teacher, DistillConfig(layers=[1]), ctx)
    model, _ = load(out.path)
    assert isinstance(model, HFImageClassifier) and model.net.config.num_hidden_layers == 1
    assert ctx.metrics["student_layers"] == [1]
    pixels = {"pixel_values": _pixels(list(mnist_slice.validation.inputs[:4]))}
    assert_student_is_teacher_layers(model.net, load(folder)[0].net, [1], pixels)


def test_an_image_hub_id_that_cannot_be_fetched_is_one_clear_error() -> None:
    from compress.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="could not fetch image model 'org/vit-nope'"):
        get_task("image-classification").resolve("org/vit-nope")

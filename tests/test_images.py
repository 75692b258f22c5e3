"""The image generator: the built-in pipeline and the diffusers path every configured model takes."""

from __future__ import annotations

import io
import json
import math
import shutil
from unittest import mock

import numpy as np
import pytest
from django.test import override_settings
from PIL import Image

from inference.base import InferenceError, InputTooLong, ModelUnavailable
from inference.images import LocalImageGenerator
from inference.prepare import (
    BUILTIN_SPEC,
    MANIFEST,
    build_builtin_pipeline,
    builtin_model_dir,
    prepare_image_model,
    read_manifest,
    weights_sha256,
)

PROMPT = "a lighthouse at dusk, oil painting"


@pytest.fixture(scope="session")
def image_generator():
    """The default IMAGE_MODEL: builds MODELS_DIR/tiny-diffusion if it is missing (as serving does)."""
    return LocalImageGenerator(BUILTIN_SPEC)


def pixels(generated) -> np.ndarray:
    return np.asarray(generated.image.convert("RGB"), dtype=np.int16)


@pytest.mark.slow
def test_builtin_build_is_reproducible_labelled_and_leaves_no_temporary_files(tmp_path):
    first = build_builtin_pipeline(tmp_path / "a")
    second = build_builtin_pipeline(tmp_path / "b")
    assert first.sha256 == second.sha256 == weights_sha256(tmp_path / "a")
    assert first.key == f"image:tiny-diffusion@{first.sha256[:12]}"
    assert read_manifest(tmp_path / "a") == first
    manifest = json.loads((tmp_path / "a" / MANIFEST).read_text())
    assert manifest["meaningful"] is False and manifest["kind"] == "image"
    assert "random weights" in manifest["note"]
    model_index = json.loads((tmp_path / "a" / "model_index.json").read_text())
    assert model_index["_class_name"] == "StableDiffusionPipeline"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # temp folders renamed or removed

    again, built = prepare_image_model(tmp_path / "a")
    assert not built and again == first


@pytest.mark.slow
def test_a_half_written_folder_is_replaced_by_a_complete_build(tmp_path):
    target = tmp_path / "tiny"
    (target / "unet").mkdir(parents=True)
    (target / "model_index.json").write_text("{}")  # no manifest: an interrupted copy
    prepared, built = prepare_image_model(target)
    assert built and read_manifest(target) == prepared
    assert (target / "unet" / "diffusion_pytorch_model.safetensors").exists()


@pytest.mark.slow
def test_builtin_generator_says_its_pictures_are_not_meaningful(image_generator):
    manifest = read_manifest(builtin_model_dir())
    assert manifest is not None
    assert image_generator.meaningful is False
    assert image_generator.model_version == manifest.key
    assert image_generator.model_version.startswith("image:tiny-diffusion@")
    generated = image_generator.generate(PROMPT, width=64, height=64, seed=1)
    assert generated.metadata["meaningful"] == "false"


@pytest.mark.slow
def test_image_has_the_asked_size_and_its_png_says_where_it_came_from(image_generator):
    generated = image_generator.generate(
        PROMPT, negative_prompt="blurry", width=96, height=64, steps=2, guidance=3.0, seed=42
    )
    assert generated.image.size == (96, 64)
    assert generated.model_version == image_generator.model_version

    png = Image.open(io.BytesIO(generated.png()))
    assert png.format == "PNG" and png.size == (96, 64)
    assert png.text["parley:prompt"] == PROMPT
    assert png.text["parley:negative_prompt"] == "blurry"
    assert png.text["parley:model_version"] == image_generator.model_version
    assert png.text["parley:seed"] == "42"
    assert png.text["parley:steps"] == "2"
    assert png.text["parley:guidance"] == "3.0"
    assert (png.text["parley:width"], png.text["parley:height"]) == ("96", "64")
    assert png.text["parley:meaningful"] == "false"


@pytest.mark.slow
def test_same_seed_gives_the_same_pixels_and_another_seed_different_ones(image_generator):
    first = image_generator.generate(PROMPT, width=64, height=64, seed=7)
    again = image_generator.generate(PROMPT, width=64, height=64, seed=7)
    other = image_generator.generate(PROMPT, width=64, height=64, seed=8)
    assert np.array_equal(pixels(first), pixels(again))
    assert np.abs(pixels(first) - pixels(other)).mean() > 5
    assert pixels(first).std() > 5  # a picture, not one flat colour


@pytest.mark.slow
def test_without_a_seed_one_is_drawn_and_recorded_so_the_image_can_be_remade(image_generator):
    generated = image_generator.generate(PROMPT, width=64, height=64)
    seed = int(generated.metadata["seed"])
    remade = image_generator.generate(PROMPT, width=64, height=64, seed=seed)
    assert np.array_equal(pixels(generated), pixels(remade))


@pytest.mark.slow
def test_a_256_pixel_image_uses_the_default_steps(image_generator):
    generated = image_generator.generate(PROMPT, width=256, height=256, seed=3)
    assert generated.image.size == (256, 256)
    assert generated.metadata["steps"] == str(image_generator.default_steps) == "4"
    assert generated.metadata["guidance"] == "0.0"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"width": 100}, "invalid_size"),  # not a multiple of 8
        ({"height": 32}, "invalid_size"),  # below 64
        ({"width": 136}, "invalid_size"),  # above IMAGE_MAX_SIDE (128 here)
        ({"width": 64.0}, "invalid_size"),
        ({"steps": 0}, "invalid_steps"),
        ({"steps": 6}, "invalid_steps"),  # above IMAGE_MAX_STEPS (5 here)
        ({"guidance": -1.0}, "invalid_guidance"),
        ({"guidance": math.nan}, "invalid_guidance"),
        ({"seed": -1}, "invalid_seed"),
        ({"seed": 2**63}, "invalid_seed"),
        ({"prompt": "   "}, "empty_prompt"),
        ({"prompt": ""}, "empty_prompt"),
        ({"prompt": "x" * 2001}, InputTooLong.code),
    ],
)
def test_bad_requests_are_refused_with_a_clear_code(image_generator, kwargs, code):
    request = {"prompt": PROMPT, "width": 64, "height": 64, "seed": 1, **kwargs}
    with override_settings(IMAGE_MAX_SIDE=128, IMAGE_MAX_STEPS=5), pytest.raises(InferenceError) as caught:
        image_generator.generate(**request)
    assert caught.value.code == code
    assert caught.value.message


@pytest.mark.slow
def test_a_configured_model_folder_loads_through_auto_pipeline(image_generator, tmp_path):
    """A user's IMAGE_MODEL folder (here the built-in weights without our manifest) takes the
    diffusers AutoPipelineForText2Image path and is keyed by the sha256 of its weights."""
    from diffusers import AutoPipelineForText2Image

    folder = tmp_path / "my-model"
    shutil.copytree(builtin_model_dir(), folder)
    (folder / MANIFEST).unlink()
    real = AutoPipelineForText2Image.from_pretrained
    with (
        override_settings(IMAGE_MODEL=str(folder)),
        mock.patch.object(AutoPipelineForText2Image, "from_pretrained", side_effect=real) as spy,
    ):
        configured = LocalImageGenerator()
    spy.assert_called_once()
    assert spy.call_args.args[0] == str(folder)
    assert type(configured.pipeline).__name__ == "StableDiffusionPipeline"

    builtin = read_manifest(builtin_model_dir())
    assert configured.model_version == f"image:my-model@{builtin.sha256[:12]}"
    assert configured.meaningful is True  # we cannot know otherwise for a folder we did not build
    # An unknown name gets Stable Diffusion's usual defaults; ask for the built-in's to compare.
    assert (configured.default_steps, configured.default_guidance) == (30, 7.5)
    mine = configured.generate(PROMPT, width=64, height=64, steps=4, guidance=0.0, seed=5)
    same_weights = image_generator.generate(PROMPT, width=64, height=64, steps=4, guidance=0.0, seed=5)
    assert np.array_equal(pixels(mine), pixels(same_weights))
    assert mine.metadata["model_version"] == configured.model_version


@pytest.mark.slow
def test_a_hub_model_missing_from_the_offline_cache_is_reported_unavailable(monkeypatch):
    monkeypatch.setattr("inference.images.generator.hub_offline", lambda: True)
    with pytest.raises(ModelUnavailable) as caught:
        LocalImageGenerator("parley-tests/no-such-diffusion-model")
    assert caught.value.code == "model_unavailable"
    assert "HF_HUB_OFFLINE" in caught.value.message


@pytest.mark.parametrize("spec", ["/no/such/folder", "builtin:huge"])
def test_an_image_model_that_is_neither_folder_nor_hub_id_is_reported_unavailable(spec):
    with pytest.raises(ModelUnavailable):
        LocalImageGenerator(spec)


@pytest.mark.slow
@pytest.mark.gpu
def test_on_cuda_the_pipeline_runs_in_half_precision_and_is_reproducible():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    generator = LocalImageGenerator(BUILTIN_SPEC, device="cuda")
    assert generator.device.type == "cuda"
    assert generator.dtype in (torch.bfloat16, torch.float16)
    assert next(generator.pipeline.unet.parameters()).dtype == generator.dtype
    first = generator.generate(PROMPT, width=256, height=256, seed=11)
    again = generator.generate(PROMPT, width=256, height=256, seed=11)
    assert first.image.size == (256, 256)
    assert np.array_equal(pixels(first), pixels(again))

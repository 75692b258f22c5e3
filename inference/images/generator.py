"""`LocalImageGenerator`: IMAGE_MODEL loaded in this process through diffusers'
AutoPipelineForText2Image, run on the model thread (the package docstring says why)."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import torch
from diffusers import AutoPipelineForText2Image
from django.conf import settings
from PIL import Image

from inference.base import (
    GeneratedImage,
    ImageCancelled,
    ImageGenerator,
    ImageProgress,
    ImageSpec,
    ModelUnavailable,
)
from inference.engine.device import pipeline_dtype, resolve_device
from inference.images.preview import latent_preview, previewable
from inference.images.request import check_request
from inference.images.source import ImageModelSource, hub_offline, resolve_image_model
from inference.runtime import model_thread

log = logging.getLogger(__name__)


class LocalImageGenerator(ImageGenerator):
    """IMAGE_MODEL in this process through diffusers' AutoPipelineForText2Image.

    Loading is eager (the constructor blocks for the load, and for building the built-in pipeline
    the first time), like the other local backends; services.py builds one per process.
    """

    def __init__(self, model: str | None = None, *, device: str | None = None) -> None:
        self.spec = model or settings.IMAGE_MODEL
        self.device = resolve_device(device or settings.INFERENCE_DEVICE)
        self.dtype = pipeline_dtype(self.device)
        source = model_thread().call(resolve_image_model, self.spec)
        self.pipeline = model_thread().call(self._load, source)
        self.model_version = source.model_version()
        if source.prepared is not None:
            self.meaningful = source.prepared.meaningful
        self.name = source.name
        self.default_steps, self.default_guidance = source.defaults()

    def _load(self, source: ImageModelSource) -> Any:
        started = time.perf_counter()
        offline = hub_offline()
        try:
            pipeline = AutoPipelineForText2Image.from_pretrained(  # type: ignore[no-untyped-call]
                source.location, dtype=self.dtype, local_files_only=offline
            )
        except (OSError, ValueError) as exc:
            hint = " (HF_HUB_OFFLINE is set: only the local Hugging Face cache is read)" if offline else ""
            raise ModelUnavailable(f"Could not load the image model {self.spec!r}{hint}: {exc}") from exc
        if not settings.IMAGE_SAFETY_CHECKER and getattr(pipeline, "safety_checker", None) is not None:
            pipeline.safety_checker = None  # the operator turned the model's own filter off
        pipeline.to(self.device)
        pipeline.set_progress_bar_config(disable=True)
        log.info(
            "event=image_model_loaded model=%s pipeline=%s device=%s dtype=%s seconds=%.2f",
            source.name,
            type(pipeline).__name__,
            self.device,
            self.dtype,
            time.perf_counter() - started,
        )
        return pipeline

    def render(self, spec: ImageSpec, progress: ImageProgress | None) -> GeneratedImage:
        """Blocking. Cost grows with steps (one UNet pass each, two with guidance > 1) and with
        width*height (the latent is 1/8 of each side). The same seed and inputs on the same
        device give the same pixels; with no seed one is drawn and recorded in the metadata."""
        steps = self.default_steps if spec.steps is None else spec.steps
        guidance = self.default_guidance if spec.guidance is None else spec.guidance
        prompt, negative_prompt, seed = check_request(spec, steps, guidance)
        width, height = spec.width, spec.height

        started = time.perf_counter()
        image, filtered = model_thread().call(
            self._run, prompt, negative_prompt, width, height, steps, float(guidance), seed, progress
        )
        log.info(
            "event=image_generated model=%s width=%d height=%d steps=%d seconds=%.2f",
            self.model_version,
            width,
            height,
            steps,
            time.perf_counter() - started,
        )
        metadata = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "model_version": self.model_version,
            "seed": str(seed),
            "steps": str(steps),
            "guidance": str(float(guidance)),
            "width": str(width),
            "height": str(height),
            "meaningful": "true" if self.meaningful else "false",
        }
        if filtered:
            metadata["safety_filtered"] = "true"  # the model's own safety checker blanked it
        return GeneratedImage(image=image, metadata=metadata, model_version=self.model_version)

    def _run(
        self,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        steps: int,
        guidance: float,
        seed: int,
        progress: ImageProgress | None = None,
    ) -> tuple[Image.Image, bool]:
        # A CPU generator draws the same starting noise for a seed on every device.
        generator = torch.Generator(device="cpu").manual_seed(seed)
        kwargs: dict[str, Any] = {}
        if negative_prompt:  # not every pipeline class takes one (FLUX does not)
            kwargs["negative_prompt"] = negative_prompt
        cancelled = False
        parameters = inspect.signature(self.pipeline.__call__).parameters
        if progress is not None and "callback_on_step_end" in parameters:
            previews = "callback_on_step_end_tensor_inputs" in parameters and previewable(self.pipeline)

            def on_step_end(
                pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
            ) -> dict[str, Any]:
                nonlocal cancelled
                preview = latent_preview(callback_kwargs.get("latents")) if previews else None
                if progress(step + 1, steps, preview) is False:
                    cancelled = True
                    pipeline._interrupt = True  # diffusers' pipelines skip the remaining steps
                return callback_kwargs

            kwargs["callback_on_step_end"] = on_step_end
            if previews:
                kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        output = self.pipeline(
            prompt=prompt,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generator,
            output_type="pil",
            **kwargs,
        )
        if cancelled:
            raise ImageCancelled()
        flags = getattr(output, "nsfw_content_detected", None)
        return output.images[0], bool(flags and flags[0])

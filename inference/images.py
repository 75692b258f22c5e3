"""Text to image with diffusers: one code path for the built-in pipeline and any configured model.

IMAGE_MODEL names what `LocalImageGenerator` loads, always through diffusers'
`AutoPipelineForText2Image` (which picks the pipeline class from the folder's `model_index.json`):
- `builtin:tiny` (default): a tiny Stable-Diffusion-shaped pipeline built here from configs with
  seeded random weights and saved under MODELS_DIR/tiny-diffusion. No pretrained diffusion weights
  can be fetched offline, so this keeps the image path (tasks, API, PNG metadata) working
  everywhere; its pictures are structured noise and `meaningful` is False, so interfaces must say
  so next to them.
- a local folder saved by `save_pretrained` or cloned from the Hub, or a Hub id such as
  `stabilityai/sd-turbo` (fetched into the Hugging Face cache when online; with HF_HUB_OFFLINE=1
  only the cache is read).

All torch work runs on the model thread (inference/runtime.py). One image holds that thread for the
whole denoising loop, because diffusers runs the loop inside one call: the built-in pipeline takes
well under a second at 256x256 on 2 CPU cores, a real model on CPU seconds to minutes, during which
chat decode steps wait.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from inference.base import (
    GeneratedImage,
    ImageCancelled,
    ImageGenerator,
    InferenceError,
    InputTooLong,
    ModelUnavailable,
)
from inference.prepare import MANIFEST, PreparedModel, _sha256, prepare_image_model, read_manifest
from inference.runtime import model_thread

log = logging.getLogger(__name__)

BUILTIN_SPEC = "builtin:tiny"
BUILTIN_NAME = "tiny-diffusion"
BUILTIN_SEED = 20240601  # fixed: the same torch version builds the same weights, byte for byte
MAX_PROMPT_CHARS = 2000  # CLIP reads 77 tokens; longer prompts are truncated by the pipeline anyway
MAX_GUIDANCE = 30.0
MAX_SEED = 2**63  # torch.Generator.manual_seed takes a signed 64-bit integer

# Default (steps, guidance) by a substring of the model's name, first match wins; a request may
# set either. Each denoising step costs one UNet pass (two when guidance > 1: the negative prompt
# runs as a second batch row), so steps are the main cost knob.
DEFAULTS: tuple[tuple[str, int, float], ...] = (
    (BUILTIN_NAME, 4, 0.0),  # random weights: quality does not depend on either
    ("turbo", 1, 0.0),  # sd-turbo / sdxl-turbo model cards: 1-4 steps, no classifier-free guidance
    ("schnell", 4, 0.0),  # FLUX.1-schnell model card
)
FALLBACK_DEFAULTS = (30, 7.5)  # Stable Diffusion 1.x/2.x with their usual schedulers


class InvalidImageRequest(InferenceError):
    code = "invalid_request"
    message = "The image request is not valid."


def builtin_model_dir() -> Path:
    return Path(settings.MODELS_DIR) / BUILTIN_NAME


def _tiny_components() -> dict[str, Any]:
    """The built-in pipeline's parts, shaped like Stable Diffusion 1.x/2.x but ~1.3M parameters.

    The VAE keeps SD's 4 resolution levels, so latents are 1/8 of the image side as in every SD
    model (a 256x256 image denoises a 4x32x32 latent); the UNet has 2 levels of 32/64 channels.
    The tokenizer is byte-level CLIP BPE with no merges (514 tokens: 256 bytes, 256 bytes that end
    a word, start and end): CLIPTokenizer accepts it as is, it needs no vocabulary file from the
    Hub, and merges would buy nothing for random weights.
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({char: 2 + i for i, char in enumerate(alphabet)})
    vocab.update({f"{char}</w>": 2 + len(alphabet) + i for i, char in enumerate(alphabet)})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)

    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
    )
    # sd-turbo's scheduler: "trailing" spacing makes 1-4 steps start from pure noise.
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="trailing",
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": text_encoder,
        "unet": unet,
        "vae": vae,
        "scheduler": scheduler,
    }


def weights_sha256(folder: Path) -> str:
    """One digest over every weight file of a pipeline folder (relative path and content), so
    the same weights give the same registry key wherever the folder lies. Reads every byte: about
    a second per GB."""
    files = sorted(
        path
        for pattern in ("*.safetensors", "*.bin")
        for path in folder.rglob(pattern)
        if ".cache" not in path.relative_to(folder).parts
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def build_builtin_pipeline(folder: Path) -> PreparedModel:
    """Build the built-in pipeline from configs with seeded random weights and save it at
    `folder` with a manifest (meaningful: false). About a second on 2 CPU cores, 5 MB on disk.

    Written to a temporary folder beside `folder` and renamed into place, so an interrupted build
    never leaves half a pipeline; if another process finished first, its copy is kept.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    started = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
        out_dir = Path(tmp) / "pipeline"
        # fork_rng: seed the weights without disturbing the process's global generator.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILTIN_SEED)
            pipeline = StableDiffusionPipeline(
                **_tiny_components(),
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
            )
        pipeline.save_pretrained(out_dir, safe_serialization=True)
        sha = weights_sha256(out_dir)
        prepared = PreparedModel(
            key=f"image:{BUILTIN_NAME}@{sha[:12]}",
            kind="image",
            name=BUILTIN_NAME,
            path=folder,
            source="builtin",
            sha256=sha,
            dtype="float32",
            meaningful=False,
        )
        manifest = {
            "key": prepared.key,
            "kind": "image",
            "name": BUILTIN_NAME,
            "source": "builtin",
            "sha256": sha,
            "dtype": "float32",
            "meaningful": False,
            "note": (
                "Built offline from configs with random weights (seed "
                f"{BUILTIN_SEED}): its images show nothing. Set IMAGE_MODEL to a real model "
                "(e.g. stabilityai/sd-turbo) for meaningful pictures."
            ),
            "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if folder.exists() and read_manifest(folder) is None:
            shutil.rmtree(folder)  # a half-written folder from before atomic builds, or by hand
        try:
            out_dir.rename(folder)
        except OSError:
            # Another process renamed its build in first: same seed, same weights; keep it.
            if read_manifest(folder) is None:
                raise
    log.info("event=image_model_built key=%s seconds=%.2f", prepared.key, time.perf_counter() - started)
    return prepared


@dataclass(frozen=True)
class ImageModelSource:
    """Where IMAGE_MODEL points: `location` is what AutoPipelineForText2Image.from_pretrained gets."""

    location: str
    name: str
    is_hub_id: bool
    prepared: PreparedModel | None  # the folder's parley manifest, when it has one


def resolve_image_model(spec: str) -> ImageModelSource:
    """Map IMAGE_MODEL to a folder or Hub id; builds the built-in pipeline if it is missing."""
    if spec == BUILTIN_SPEC:
        prepared, _ = prepare_image_model(builtin_model_dir())
        return ImageModelSource(str(prepared.path), prepared.name, False, prepared)
    if spec.startswith("builtin:"):
        raise ModelUnavailable(
            f"Unknown built-in image model {spec!r}; the one built in is {BUILTIN_SPEC!r}."
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        prepared = read_manifest(path)
        return ImageModelSource(
            str(path.resolve()), prepared.name if prepared else path.name, False, prepared
        )
    looks_like_path = spec.startswith(("/", ".", "~")) or spec.count("/") != 1
    if looks_like_path:
        raise ModelUnavailable(f"IMAGE_MODEL={spec!r} is neither a folder nor a Hugging Face Hub id.")
    return ImageModelSource(spec, spec, True, None)


def _hub_offline() -> bool:
    from huggingface_hub.constants import is_offline_mode

    return is_offline_mode()


def _hub_revision(repo_id: str) -> str:
    """The commit of the cached snapshot from_pretrained just used (the Hub cache's folder name)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "model_index.json")
    if isinstance(found, str):
        return Path(found).parent.name
    return "unknown"


def _pipeline_dtype(device: Any) -> Any:
    """Half precision on CUDA (bf16 where supported: its float32 range avoids the fp16 overflow
    that turns some VAEs' output into NaN); float32 elsewhere, as the CPU kernels want."""
    import torch

    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _int_between(value: Any, low: int, high: int) -> bool:
    # bool is an int subclass: True must not pass for a width of 1.
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _defaults_for(name: str) -> tuple[int, float]:
    lowered = name.lower()
    for fragment, steps, guidance in DEFAULTS:
        if fragment in lowered:
            return steps, guidance
    return FALLBACK_DEFAULTS


class LocalImageGenerator(ImageGenerator):
    """IMAGE_MODEL in this process through diffusers' AutoPipelineForText2Image.

    Loading is eager (the constructor blocks for the load, and for building the built-in pipeline
    the first time), like the other local backends; services.py builds one per process.
    """

    def __init__(self, model: str | None = None, *, device: str | None = None) -> None:
        from inference.engine import resolve_device  # torch loads only when a generator is built

        self.spec = model or settings.IMAGE_MODEL
        self.device = resolve_device(device or settings.INFERENCE_DEVICE)
        self.dtype = _pipeline_dtype(self.device)
        source = model_thread().call(resolve_image_model, self.spec)
        self.pipeline = model_thread().call(self._load, source)
        if source.prepared is not None:
            self.model_version = source.prepared.key
            self.meaningful = source.prepared.meaningful
        elif source.is_hub_id:
            self.model_version = f"image:{source.name}@{_hub_revision(source.name)[:12]}"
        else:
            self.model_version = f"image:{source.name}@{weights_sha256(Path(source.location))[:12]}"
        self.name = source.name
        self.default_steps, self.default_guidance = _defaults_for(source.name)

    def _load(self, source: ImageModelSource) -> Any:
        from diffusers import AutoPipelineForText2Image

        started = time.perf_counter()
        offline = _hub_offline()
        try:
            pipeline = AutoPipelineForText2Image.from_pretrained(
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

    def generate(
        self,
        prompt: str,
        negative_prompt: str = "",
        width: int = 512,
        height: int = 512,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        progress: Callable[[int, int, Any], bool | None] | None = None,
    ) -> GeneratedImage:
        """Blocking. Cost grows with steps (one UNet pass each, two with guidance > 1) and with
        width*height (the latent is 1/8 of each side). The same seed and inputs on the same
        device give the same pixels; with no seed one is drawn and recorded in the metadata."""
        steps = self.default_steps if steps is None else steps
        guidance = self.default_guidance if guidance is None else guidance
        prompt, negative_prompt = self._validate(
            prompt, negative_prompt or "", width, height, steps, guidance
        )
        if seed is None:
            seed = secrets.randbelow(2**32)
        elif not _int_between(seed, 0, MAX_SEED - 1):
            raise InvalidImageRequest(
                f"The seed must be an integer from 0 to {MAX_SEED - 1}.", code="invalid_seed"
            )

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

    def _validate(
        self, prompt: str, negative_prompt: str, width: int, height: int, steps: int, guidance: float
    ) -> tuple[str, str]:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidImageRequest("Describe the picture: the prompt is empty.", code="empty_prompt")
        if not isinstance(negative_prompt, str):
            raise InvalidImageRequest("The negative prompt must be text.", code="invalid_request")
        if len(prompt) > MAX_PROMPT_CHARS or len(negative_prompt) > MAX_PROMPT_CHARS:
            raise InputTooLong(f"Prompts are limited to {MAX_PROMPT_CHARS} characters.")
        max_side = settings.IMAGE_MAX_SIDE
        for side in (width, height):
            if not _int_between(side, 64, max_side) or side % 8:
                raise InvalidImageRequest(
                    f"Width and height must be multiples of 8 from 64 to {max_side} pixels.",
                    code="invalid_size",
                )
        if not _int_between(steps, 1, settings.IMAGE_MAX_STEPS):
            raise InvalidImageRequest(
                f"Steps must be a whole number from 1 to {settings.IMAGE_MAX_STEPS}.", code="invalid_steps"
            )
        if (
            isinstance(guidance, bool)
            or not isinstance(guidance, int | float)
            or not math.isfinite(guidance)
            or not 0 <= guidance <= MAX_GUIDANCE
        ):
            raise InvalidImageRequest(
                f"Guidance must be a number from 0 to {MAX_GUIDANCE:g}.", code="invalid_guidance"
            )
        return prompt.strip(), negative_prompt.strip()

    def _run(
        self,
        prompt: str,
        negative_prompt: str,
        width: int,
        height: int,
        steps: int,
        guidance: float,
        seed: int,
        progress: Callable[[int, int, Any], bool | None] | None = None,
    ) -> tuple[Any, bool]:
        import torch

        # A CPU generator draws the same starting noise for a seed on every device.
        generator = torch.Generator(device="cpu").manual_seed(seed)
        kwargs: dict[str, Any] = {}
        if negative_prompt:  # not every pipeline class takes one (FLUX does not)
            kwargs["negative_prompt"] = negative_prompt
        cancelled = False
        parameters = inspect.signature(self.pipeline.__call__).parameters
        if progress is not None and "callback_on_step_end" in parameters:
            previews = "callback_on_step_end_tensor_inputs" in parameters and _four_channel_latents(
                self.pipeline
            )

            def on_step_end(pipeline, step, timestep, callback_kwargs):
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


# Stable Diffusion 1.x/2.x latents to RGB, a linear approximation of the VAE decoder (the factors
# community previewers use): a blurry picture of where the denoising is going, for step previews,
# at no decoder cost. Only meaningful for 4-channel SD-style latents.
_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


def _four_channel_latents(pipeline: Any) -> bool:
    unet = getattr(pipeline, "unet", None)
    return getattr(getattr(unet, "config", None), "in_channels", None) == 4


def latent_preview(latents: Any) -> Any:
    """A small PIL image from the first latent of a batch (None when the shape is not 4xHxW)."""
    import torch
    from PIL import Image

    if latents is None or latents.ndim != 4 or latents.shape[1] != 4:
        return None
    factors = torch.tensor(_LATENT_RGB, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].detach().float().cpu(), factors)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")

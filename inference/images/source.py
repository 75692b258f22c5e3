"""Where IMAGE_MODEL points (the built-in pipeline, a local folder or a Hugging Face Hub id), how
that model is named in the registry, and its default steps and guidance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from huggingface_hub.constants import is_offline_mode

from inference.base import ModelUnavailable
from inference.prepare import (
    BUILTIN_NAME,
    BUILTIN_SPEC,
    PreparedModel,
    builtin_model_dir,
    prepare_image_model,
    read_manifest,
    weights_sha256,
)

# Default (steps, guidance) by a substring of the model's name, first match wins; a request may
# set either. Each denoising step costs one UNet pass (two when guidance > 1: the negative prompt
# runs as a second batch row), so steps are the main cost knob.
DEFAULTS: tuple[tuple[str, int, float], ...] = (
    (BUILTIN_NAME, 4, 0.0),  # random weights: quality does not depend on either
    ("turbo", 1, 0.0),  # sd-turbo / sdxl-turbo model cards: 1-4 steps, no classifier-free guidance
    ("schnell", 4, 0.0),  # FLUX.1-schnell model card
)
FALLBACK_DEFAULTS = (30, 7.5)  # Stable Diffusion 1.x/2.x with their usual schedulers


@dataclass(frozen=True)
class ImageModelSource:
    """Where IMAGE_MODEL points: `location` is what AutoPipelineForText2Image.from_pretrained gets."""

    location: str
    name: str
    is_hub_id: bool
    prepared: PreparedModel | None  # the folder's parley manifest, when it has one

    def model_version(self) -> str:
        """The registry key: the manifest's, else the Hub snapshot's commit, else the digest of
        the folder's weights (about a second per GB read)."""
        if self.prepared is not None:
            return self.prepared.key
        if self.is_hub_id:
            return f"image:{self.name}@{hub_revision(self.name)[:12]}"
        return f"image:{self.name}@{weights_sha256(Path(self.location))[:12]}"

    def defaults(self) -> tuple[int, float]:
        """(steps, guidance) when a request does not say."""
        lowered = self.name.lower()
        for fragment, steps, guidance in DEFAULTS:
            if fragment in lowered:
                return steps, guidance
        return FALLBACK_DEFAULTS


def resolve_image_model(spec: str) -> ImageModelSource:
    """Map IMAGE_MODEL to a folder or Hub id; builds the built-in pipeline if it is missing."""
    if spec == BUILTIN_SPEC:
        builtin, _ = prepare_image_model(builtin_model_dir())
        return ImageModelSource(str(builtin.path), builtin.name, False, builtin)
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


def hub_offline() -> bool:
    """HF_HUB_OFFLINE: only the local Hugging Face cache may be read."""
    return is_offline_mode()


def hub_revision(repo_id: str) -> str:
    """The commit of the cached snapshot from_pretrained just used (the Hub cache's folder name)."""
    found = try_to_load_from_cache(repo_id, "model_index.json")
    if isinstance(found, str):
        return Path(found).parent.name
    return "unknown"

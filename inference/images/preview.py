"""Step previews: a blurry picture of where the denoising is going, from the latents alone."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

# Stable Diffusion 1.x/2.x latents to RGB, a linear approximation of the VAE decoder (the factors
# community previewers use), at no decoder cost. Only meaningful for 4-channel SD-style latents.
_LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264), (-0.184, -0.271, -0.473))


def previewable(pipeline: Any) -> bool:
    """Whether the pipeline's UNet denoises 4-channel latents (SD 1.x/2.x): the ones we preview."""
    unet = getattr(pipeline, "unet", None)
    return getattr(getattr(unet, "config", None), "in_channels", None) == 4


def latent_preview(latents: torch.Tensor | None) -> Image.Image | None:
    """A small PIL image from the first latent of a batch (None when the shape is not 4xHxW)."""
    if latents is None or latents.ndim != 4 or latents.shape[1] != 4:
        return None
    factors = torch.tensor(_LATENT_RGB, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].detach().float().cpu(), factors)  # (H, W, 3)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")

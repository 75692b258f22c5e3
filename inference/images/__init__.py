"""Text to image with diffusers: one code path for the built-in pipeline and any configured model.

IMAGE_MODEL names what `LocalImageGenerator` loads, always through diffusers'
`AutoPipelineForText2Image` (which picks the pipeline class from the folder's `model_index.json`):
- `builtin:tiny` (default): a tiny Stable-Diffusion-shaped pipeline built from configs with
  seeded random weights and saved under MODELS_DIR/tiny-diffusion (inference/prepare.py and
  inference/builtin_image.py). No pretrained diffusion weights can be fetched offline, so this
  keeps the image path (tasks, API, PNG metadata) working everywhere; its pictures are structured
  noise and `meaningful` is False, so interfaces must say so next to them.
- a local folder saved by `save_pretrained` or cloned from the Hub, or a Hub id such as
  `stabilityai/sd-turbo` (fetched into the Hugging Face cache when online; with HF_HUB_OFFLINE=1
  only the cache is read).

All torch work runs on the model thread (inference/runtime.py). One image holds that thread for the
whole denoising loop, because diffusers runs the loop inside one call: the built-in pipeline takes
well under a second at 256x256 on 2 CPU cores, a real model on CPU seconds to minutes, during which
chat decode steps wait.

One module per concept:

- `generator.py`: `LocalImageGenerator`, loading a pipeline and running it on the model thread.
- `source.py`: where IMAGE_MODEL points (built-in, folder or Hub id) and that model's defaults.
- `request.py`: the limits every request is checked against before any work.
- `preview.py`: step previews from the latents, without the VAE decoder.

`LocalImageGenerator` is re-exported here: IMAGE_GENERATOR_BACKEND names it as
`inference.images.LocalImageGenerator`.
"""

from __future__ import annotations

from inference.images.generator import LocalImageGenerator

__all__ = ["LocalImageGenerator"]

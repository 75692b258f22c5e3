"""The built-in image pipeline's weights: a tiny Stable-Diffusion-shaped pipeline built from
configs with seeded random weights.

No pretrained diffusion weights can be fetched offline, so this keeps the image path (tasks, API,
PNG metadata) working everywhere; its pictures are structured noise. prepare.py decides where it
goes, writes its manifest (`meaningful: false`) and swaps it into place; this module only builds
and saves the diffusers folder, and imports torch and diffusers to do so (prepare.py imports it
only when a build is needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tokenizers.pre_tokenizers import ByteLevel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer


def save_tiny_pipeline(out_dir: Path, *, seed: int) -> None:
    """Build the pipeline with weights drawn from `seed` and save it to `out_dir` (safetensors).
    The same torch version builds the same weights, byte for byte. About a second on 2 CPU cores,
    5 MB on disk."""
    # fork_rng: seed the weights without disturbing the process's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipeline = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
            **_tiny_components(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipeline.save_pretrained(out_dir, safe_serialization=True)  # type: ignore[attr-defined]


def _tiny_components() -> dict[str, Any]:
    """The built-in pipeline's parts, shaped like Stable Diffusion 1.x/2.x but ~1.3M parameters.

    The VAE keeps SD's 4 resolution levels, so latents are 1/8 of the image side as in every SD
    model (a 256x256 image denoises a 4x32x32 latent); the UNet has 2 levels of 32/64 channels.
    The tokenizer is byte-level CLIP BPE with no merges (514 tokens: 256 bytes, 256 bytes that end
    a word, start and end): CLIPTokenizer accepts it as is, it needs no vocabulary file from the
    Hub, and merges would buy nothing for random weights.
    """
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
    unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
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
    vae = AutoencoderKL(  # type: ignore[no-untyped-call]
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
    scheduler = EulerDiscreteScheduler(  # type: ignore[no-untyped-call]
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

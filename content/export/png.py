"""The item's images in an export: their file names (refused if one could leave images/),
their PNG bytes as stored or with the metadata stripped, and the caption every AI-generated
image carries."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from PIL import Image

from content.errors import ExportError

IMAGE_DIR = "images/"
AI_CAPTION = "AI-generated image"
PLACEHOLDER_NOTE = "placeholder from the built-in offline model: not a real picture"


def image_bytes(image: Mapping[str, Any], *, strip_metadata: bool) -> bytes:
    """The image's PNG as stored, or re-encoded from its pixels alone (no parley:* text chunks,
    no EXIF, ICC or other ancillary chunks) when `strip_metadata` is True. Re-encoding costs one
    PNG decode and encode: tens of milliseconds for a 1024x1024 picture."""
    png = _png(image)
    if not strip_metadata:
        return png
    with open_png(png) as source:
        clean = source.copy()  # decodes the pixels; the palette comes along for "P" images
    # The copy inherits `info` (text, exif, icc_profile, dpi, ...); transparency alone is part
    # of what the pixels mean.
    clean.info = {key: value for key, value in clean.info.items() if key == "transparency"}
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG")
    return buffer.getvalue()


def png_metadata(png: bytes) -> dict[str, str]:
    """The PNG's parley:* text chunks, keys without the prefix ({"prompt": ..., "seed": ...}), as
    inference/ writes them."""
    with open_png(png) as image:
        text = dict(getattr(image, "text", {}))
    return {key.removeprefix("parley:"): value for key, value in text.items() if key.startswith("parley:")}


def item_images(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The item's images, refused if a filename could escape images/ or repeats."""
    images = list(item.get("images") or [])
    seen = set()
    for image in images:
        name = image.get("filename")
        if (
            not isinstance(name, str)
            or not name
            or name.startswith(".")
            or any(char in name for char in "/\\:")
            or any(ord(char) < 32 for char in name)
        ):
            raise ExportError("bad_image_filename", f"The image file name {name!r} is not allowed.")
        if name in seen:
            raise ExportError("duplicate_image", f"Two images are called {name!r}.")
        seen.add(name)
    return images


def _png(image: Mapping[str, Any]) -> bytes:
    png = image.get("png")
    if not isinstance(png, bytes | bytearray) or not png:
        raise ExportError("missing_image", f"The image {image.get('filename')!r} has no file.")
    return bytes(png)


def open_png(png: bytes) -> Image.Image:
    """The decoded PNG, its text chunks included (those after the pixels too)."""
    try:
        image = Image.open(io.BytesIO(png), formats=["PNG"])
        image.load()  # decode now, so a truncated or corrupt file fails here and not later
    except Image.DecompressionBombError as exc:
        raise ExportError("image_too_large", "An image is too large to export.") from exc
    # Pillow reports broken PNGs as OSError (UnidentifiedImageError is one), SyntaxError or ValueError.
    except (OSError, SyntaxError, ValueError) as exc:
        raise ExportError("unreadable_image", "An image file is not a readable PNG.") from exc
    return image


def image_src(image: Mapping[str, Any]) -> str:
    return IMAGE_DIR + quote(image["filename"])


def caption(image: Mapping[str, Any]) -> str:
    if image.get("meaningful", True):
        return AI_CAPTION
    return f"{AI_CAPTION}: {PLACEHOLDER_NOTE}"

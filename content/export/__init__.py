"""Exports of an approved article: Markdown with front matter, a standalone HTML page, JSON, and a
zip bundle of the three with the images. Pure functions over a plain dict, so a view, a Celery
task or a management command can call them alike; none of them touches the database, and none
of them checks the item's state or the caller's rights (that is the action's job).

The item:

    {"id", "state", "language", "keyphrase", "title", "meta_title", "meta_description", "slug",
     "body",            # Markdown: "# <title>", then "## ..." sections
     "faq": [{"question", "answer"}],
     "images": [{"filename", "alt", "prompt", "negative_prompt", "seed", "steps", "guidance",
                 "width", "height", "model_version", "meaningful", "png"}],  # chosen images only
     "approved_by", "approved_at", "published_at", "model_version", "prompt_template", "revision"}

Images are referenced as `images/<filename>` everywhere, the path they have in the bundle, so
the exported Markdown and HTML show them once unpacked next to that folder.
"""

from __future__ import annotations

from content.errors import ExportError
from content.export.bundle import EXPORT_VERSION, bundle, to_json
from content.export.markdown import faq_jsonld, to_markdown
from content.export.page import article_html, to_html
from content.export.png import AI_CAPTION, IMAGE_DIR, PLACEHOLDER_NOTE, image_bytes, png_metadata

# markdown.py (the Markdown and the FAQ's JSON-LD), page.py (HTML), bundle.py (JSON, zip), png.py
# (the images); ExportError is content/errors.py's.
__all__ = [
    "AI_CAPTION",
    "EXPORT_VERSION",
    "IMAGE_DIR",
    "PLACEHOLDER_NOTE",
    "ExportError",
    "article_html",
    "bundle",
    "faq_jsonld",
    "image_bytes",
    "png_metadata",
    "to_html",
    "to_json",
    "to_markdown",
]

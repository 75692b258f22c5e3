"""The article as JSON (`to_json`: everything but the PNG bytes) and the zip bundle of the
Markdown, the HTML page, the JSON and the images (`bundle`), byte for byte the same for the
same item."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from content.export.markdown import faq_jsonld, to_markdown
from content.export.page import to_html
from content.export.png import IMAGE_DIR, caption, image_bytes, item_images

EXPORT_VERSION = 1  # bump when article.json changes shape, so consumers can tell
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def to_json(item: Mapping[str, Any]) -> dict[str, Any]:
    """Everything in the item but the PNG bytes, plus the FAQPage JSON-LD and, per image, its
    path in the bundle and the caption the HTML shows. JSON-serialisable."""
    data = {key: value for key, value in item.items() if key not in {"images", "faq"}}
    data["faq"] = [
        {"question": entry["question"], "answer": entry["answer"]} for entry in item.get("faq") or []
    ]
    data["images"] = [
        {
            **{key: value for key, value in image.items() if key != "png"},
            "path": IMAGE_DIR + image["filename"],
            "ai_generated": True,
            "caption": caption(image),
        }
        for image in item_images(item)
    ]
    data["faq_jsonld"] = faq_jsonld(item)
    data["export_version"] = EXPORT_VERSION
    return data


def bundle(item: Mapping[str, Any], *, strip_metadata: bool = False, base_url: str | None = None) -> bytes:
    """A zip with article.md, article.html, article.json and images/<filename>. The same item
    gives the same bytes: entries are dated by approval, not by the clock. `strip_metadata`
    applies to the image files only; article.json still records how each image was made."""
    stamp = _zip_timestamp(item.get("approved_at"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:

        def add(name: str, data: bytes, compression: int = zipfile.ZIP_DEFLATED) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = compression
            archive.writestr(info, data)

        add("article.md", to_markdown(item).encode())
        add("article.html", to_html(item, base_url=base_url).encode())
        add("article.json", json.dumps(to_json(item), ensure_ascii=False, indent=2).encode())
        for image in item_images(item):
            # PNG is compressed already; deflating it again only costs time.
            add(
                IMAGE_DIR + image["filename"],
                image_bytes(image, strip_metadata=strip_metadata),
                zipfile.ZIP_STORED,
            )
    return buffer.getvalue()


def _zip_timestamp(value: str | None) -> tuple[int, int, int, int, int, int]:
    if not value:
        return _ZIP_EPOCH
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return _ZIP_EPOCH
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    if moment.year < 1980:  # zip cannot date earlier
        return _ZIP_EPOCH
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)

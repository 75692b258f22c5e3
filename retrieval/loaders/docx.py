"""Word documents (.docx) through python-docx: "Heading N" paragraphs give the section path,
other paragraphs and tables (rows as "a | b") become Blocks, in document order.

A .docx is a zip archive, and python-docx reads every part into memory, so the archive's
declared sizes are checked first: a few kilobytes can otherwise expand to gigabytes.
"""

from __future__ import annotations

import io
import re
import zipfile

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph
from lxml import etree

from retrieval.errors import IngestError
from retrieval.loaders.base import Block, HeadingTrail, ParsedDocument, clean_inline, clean_lines

KIND = "docx"
SUFFIXES = frozenset({".docx"})
CONTENT_TYPES = frozenset({"application/vnd.openxmlformats-officedocument.wordprocessingml.document"})

# Real documents: a few dozen parts, XML compressing 5-20x, tens of MB with images at most.
MAX_ENTRIES = 2000
MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024
MAX_RATIO = 100  # for entries above 1 MiB; zeros and repeated XML compress ~1000x in bombs
_RATIO_MIN_BYTES = 1024 * 1024

_HEADING_STYLE = re.compile(r"^heading (\d)$", re.IGNORECASE)


def load(data: bytes, name: str) -> ParsedDocument:
    check_archive(data, name)
    try:
        document = docx.Document(io.BytesIO(data))
    except (KeyError, ValueError, zipfile.BadZipFile, PackageNotFoundError, etree.XMLSyntaxError) as exc:
        raise IngestError(
            f"{name} is not a Word document (the archive has no readable document part)", code="malformed"
        ) from exc
    title = ""
    trail = HeadingTrail("")
    blocks: list[Block] = []
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            text = _table_text(item)
            if text:
                blocks.append(trail.block(text))
            continue
        text = clean_inline(item.text)
        if not text:
            continue
        style = _style_name(item)
        level = _heading_level(item)
        if style == "title" and not title:
            title = trail.title = text
        elif level:
            trail.enter(level, text)
        else:
            blocks.append(trail.block(("- " + text) if style.startswith("list") else text))
    if not title:
        title = clean_inline(document.core_properties.title or "")
    return ParsedDocument(title=title, blocks=blocks, kind=KIND)


def check_archive(data: bytes, name: str) -> None:
    """Refuse a non-zip or a zip bomb by the central directory alone, before inflating anything.

    The declared sizes can be trusted as limits: Python's zipfile stops inflating an entry at its
    declared size (and then fails its CRC check), so an entry that lies cannot grow past them.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise IngestError(
            f"{name} is not a valid .docx file (not a readable zip archive)", code="malformed"
        ) from exc
    if len(entries) > MAX_ENTRIES:
        raise IngestError(
            f"{name} has {len(entries)} parts inside; that is not a normal Word document", code="zip_bomb"
        )
    total = sum(entry.file_size for entry in entries)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise IngestError(
            f"{name} would expand to {total} bytes (the limit is {MAX_UNCOMPRESSED_BYTES})", code="zip_bomb"
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > _RATIO_MIN_BYTES and ratio > MAX_RATIO:
            raise IngestError(
                f"{name} contains a part compressed {ratio:.0f} times ({entry.filename}); "
                "it looks like a zip bomb",
                code="zip_bomb",
            )


def _style_name(paragraph: Paragraph) -> str:
    style = paragraph.style
    return (style.name or "").lower() if style is not None else ""


def _heading_level(paragraph: Paragraph) -> int:
    """1-9 for "Heading N" paragraphs, including custom styles based on one; else 0."""
    style = paragraph.style
    for _ in range(10):  # styles can chain (and, in broken files, loop)
        if style is None:
            return 0
        match = _HEADING_STYLE.match(style.name or "")
        if match:
            return int(match.group(1))
        style = style.base_style
    return 0


def _table_text(table: Table) -> str:
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = clean_inline(cell.text)
            # A merged cell is returned once per grid column it spans: keep it once.
            if text and (not cells or cells[-1] != text):
                cells.append(text)
        lines.append(" | ".join(cells))
    return clean_lines("\n".join(lines))

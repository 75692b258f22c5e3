"""Document loaders: bytes of a supported file in, a ParsedDocument (title, structured text blocks,
language) out. Every failure is an IngestError whose message names the file and says what is wrong.

    doc = parse(data, filename="returns.pdf", content_type="application/pdf", max_bytes=20_000_000)

One module per format, all the same shape (see base.py); this module picks one and checks what
is common to all: size, emptiness, and that nothing but IngestError escapes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from retrieval.errors import IngestError
from retrieval.loaders import docx, faq, html, markdown, pdf, text
from retrieval.loaders.base import Block, ParsedDocument
from retrieval.loaders.language import detect_language

__all__ = ["SUPPORTED_SUFFIXES", "Block", "ParsedDocument", "parse", "suffix_for_content_type"]

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 300  # Document.title's column
_LANGUAGE_SAMPLE_BLOCKS = 200


@dataclass(frozen=True)
class _Format:
    kind: str
    suffix: str  # the one to name a fetched file by
    suffixes: frozenset[str]
    content_types: frozenset[str]
    load: Callable[[bytes, str], ParsedDocument]


_FORMATS = (
    _Format(pdf.KIND, ".pdf", pdf.SUFFIXES, pdf.CONTENT_TYPES, pdf.load),
    _Format(docx.KIND, ".docx", docx.SUFFIXES, docx.CONTENT_TYPES, docx.load),
    _Format(html.KIND, ".html", html.SUFFIXES, html.CONTENT_TYPES, html.load),
    _Format(markdown.KIND, ".md", markdown.SUFFIXES, markdown.CONTENT_TYPES, markdown.load),
    _Format(text.KIND, ".txt", text.SUFFIXES, text.CONTENT_TYPES, text.load),
    _Format(faq.KIND, ".csv", faq.SUFFIXES, faq.CONTENT_TYPES, faq.load),
    _Format("json", ".json", faq.JSON_SUFFIXES, faq.JSON_CONTENT_TYPES, faq.load_json),
)
_BY_SUFFIX = {suffix: f for f in _FORMATS for suffix in f.suffixes}
_BY_CONTENT_TYPE = {content_type: f for f in _FORMATS for content_type in f.content_types}

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_BY_SUFFIX)


def parse(
    data: bytes, *, filename: str, content_type: str = "", max_bytes: int | None = None
) -> ParsedDocument:
    """Parse one document. `content_type` (an HTTP header value, parameters allowed) decides the
    format when it names a supported one; otherwise the filename's suffix does."""
    name = PurePosixPath(filename.replace("\\", "/")).name or filename
    # Before anything else touches the bytes: the limit protects every loader below.
    if max_bytes is not None and len(data) > max_bytes:
        raise IngestError(f"{name} is {len(data)} bytes; the limit is {max_bytes}", code="too_large")
    fmt = _pick_format(name, content_type)
    if not data.strip():
        raise IngestError(f"{name} is empty", code="empty")
    try:
        parsed = fmt.load(data, name)
    except IngestError:
        raise
    except Exception as exc:  # RecursionError and MemoryError included
        # Parsers of hostile files fail in ways no list of exceptions covers; the file is at
        # fault, not us, but keep the traceback for the case where we are.
        log.warning("event=parse_failed kind=%s error=%s", fmt.kind, exc.__class__.__name__, exc_info=True)
        raise IngestError(
            f"{name} could not be read as {fmt.kind} ({exc.__class__.__name__})", code="malformed"
        ) from exc
    blocks = [block for block in parsed.blocks if block.text.strip()]
    if not blocks:
        hint = " (a scanned PDF needs text recognition first)" if fmt.kind == "pdf" else ""
        raise IngestError(f"{name} has no text to index{hint}", code="empty")
    title = (parsed.title or _title_from_filename(name))[:TITLE_MAX_CHARS]
    language = detect_language("\n".join(block.text for block in blocks[:_LANGUAGE_SAMPLE_BLOCKS]))
    return ParsedDocument(title=title, blocks=blocks, kind=fmt.kind, language=language)


def suffix_for_content_type(content_type: str) -> str | None:
    """The suffix of the format a Content-Type header names (".html"), or None."""
    fmt = _BY_CONTENT_TYPE.get(_media_type(content_type))
    return fmt.suffix if fmt else None


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _pick_format(name: str, content_type: str) -> _Format:
    media_type = _media_type(content_type)
    by_type = _BY_CONTENT_TYPE.get(media_type)
    by_suffix = _BY_SUFFIX.get(PurePosixPath(name).suffix.lower())
    # Servers send .md, .csv and .json files as text/plain: there the name says more.
    if by_type and not (media_type == "text/plain" and by_suffix):
        return by_type
    if by_suffix:
        return by_suffix
    what = PurePosixPath(name).suffix or media_type or "without a suffix"
    supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
    raise IngestError(
        f"{name}: unsupported file type ({what}); supported: {supported}", code="unsupported_type"
    )


def _title_from_filename(name: str) -> str:
    stem = PurePosixPath(name).stem.replace("-", " ").replace("_", " ").strip()
    return stem[:1].upper() + stem[1:] if stem else name

"""PDF through pypdf: the text of each page, in paragraphs, each Block knowing its page.

pypdf gives text line by line with no paragraph marks, so lines are joined back into paragraphs
(a blank line or a line ending a sentence well short of the page's usual width ends one), and words
hyphenated across a line break are rejoined.
"""

from __future__ import annotations

import io
import re

from pypdf import PasswordType, PdfReader
from pypdf.errors import PyPdfError

from retrieval.errors import IngestError
from retrieval.loaders.base import Block, ParsedDocument, clean_inline

KIND = "pdf"
SUFFIXES = frozenset({".pdf"})
CONTENT_TYPES = frozenset({"application/pdf", "application/x-pdf"})

_HYPHENATED = re.compile(r"(\w)-\n(\w)")
_TITLE_MAX_CHARS = 150
# Metadata titles that name the producing program or a template rather than the document.
_JUNK_TITLE = re.compile(r"^(untitled|microsoft word - .*|document\d*|.*\.(docx?|pdf|odt))$", re.IGNORECASE)


def load(data: bytes, name: str) -> ParsedDocument:
    # The PDF spec lets the header sit anywhere in the first 1024 bytes.
    if b"%PDF-" not in data[:1024]:
        raise IngestError(f"{name} is not a PDF file (it has no %PDF header)", code="malformed")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        _unlock(reader, name)
        pages = [page.extract_text() or "" for page in reader.pages]
        metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    except IngestError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise IngestError(
            f"{name} is damaged or truncated and could not be read as a PDF ({exc.__class__.__name__})",
            code="malformed",
        ) from exc
    blocks = [
        Block(text=paragraph, page=number)
        for number, text in enumerate(pages, start=1)
        for paragraph in _paragraphs(text)
    ]
    title = clean_inline(str(metadata_title))
    if not title or _JUNK_TITLE.match(title):
        title = _first_line(pages)
    return ParsedDocument(title=title, blocks=blocks, kind=KIND)


def _unlock(reader: PdfReader, name: str) -> None:
    """Open a PDF that is encrypted only against editing (empty user password); refuse the rest."""
    if not reader.is_encrypted:
        return
    try:
        unlocked = reader.decrypt("") != PasswordType.NOT_DECRYPTED
    except (PyPdfError, NotImplementedError) as exc:  # e.g. AES without a crypto library installed
        unlocked = False
        reason = f" ({exc})"
    else:
        reason = ""
    if not unlocked:
        raise IngestError(
            f"{name} is password-protected; upload a copy without a password{reason}", code="encrypted"
        )


def _paragraphs(page_text: str) -> list[str]:
    text = _HYPHENATED.sub(r"\1\2", page_text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.strip() for line in text.split("\n")]
    width = max((len(line) for line in lines), default=0)
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        if line:
            current.append(line)
        # A short line that ends a sentence is the last line of a paragraph.
        if current and (not line or (line.endswith((".", "!", "?", ":")) and len(line) < 0.7 * width)):
            paragraphs.append(clean_inline(" ".join(current)))
            current = []
    if current:
        paragraphs.append(clean_inline(" ".join(current)))
    return [p for p in paragraphs if p]


def _first_line(pages: list[str]) -> str:
    for text in pages:
        for line in text.splitlines():
            line = clean_inline(line)
            if line:
                return line[:_TITLE_MAX_CHARS]
    return ""

"""What every loader returns, and the few helpers they share (text decoding, heading paths).

Each format module (pdf.py, docx.py, html.py, markdown.py, text.py, faq.py) has the same shape:
`KIND`, `SUFFIXES`, `CONTENT_TYPES` and `load(data, name) -> ParsedDocument`, raising IngestError
with a message that names the file.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from charset_normalizer import from_bytes
from django.utils.text import slugify

from retrieval.errors import IngestError


@dataclass(frozen=True)
class Block:
    text: str
    headings: tuple[str, ...] = ()  # enclosing headings, outermost first, NOT including the document title
    page: int | None = None  # 1-based page for PDFs
    kind: str = "text"  # "text" or "faq" (a question/answer pair; text = "Q: ...\nA: ...")
    anchor: str = ""  # slug/id of the nearest heading (for #links)


@dataclass
class ParsedDocument:
    title: str
    blocks: list[Block]
    kind: str  # "pdf" | "docx" | "html" | "markdown" | "text" | "csv" | "json"
    language: str = ""  # ISO 639-1 code detected from the text ("" if unknown)


_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control characters that never appear in text (everything below 0x20 but tab, LF, FF, CR, ESC).
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_SNIFF_BYTES = 8192


def decode_text(data: bytes, name: str) -> str:
    """Bytes of a text format as str: a BOM decides; else UTF-8; else a guess, only when confident.

    A wrong guess silently indexes mojibake, which is worse than asking for UTF-8, so the guess
    from charset-normalizer is kept only when it is clean and either reads as a language or is
    one of very few encodings that decode the bytes at all (typical of multi-byte CJK encodings).
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise IngestError(
                    f"{name} starts with a {encoding} mark but is not valid {encoding}", code="bad_encoding"
                ) from exc
    reject_binary(data, name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    results = from_bytes(data)
    best = results.best()
    if best is not None and best.chaos <= 0.1 and (best.coherence >= 0.2 or len(results) <= 3):
        return str(best)
    raise IngestError(
        f"{name} is not UTF-8 and its encoding could not be told reliably; save it as UTF-8 and try again",
        code="bad_encoding",
    )


def reject_binary(data: bytes, name: str) -> None:
    """Text formats must look like text: NUL or other control bytes mean a binary file."""
    head = data[:_SNIFF_BYTES]
    if b"\x00" in head or len(_CONTROL.findall(head)) > max(2, len(head) // 100):
        raise IngestError(f"{name} looks like a binary file, not text", code="binary_content")


_SPACE = re.compile(r"[ \t\f\v\u00a0\u200b]+")


def clean_inline(text: str) -> str:
    """Collapse runs of spaces (and line breaks) inside a paragraph to single spaces."""
    return _SPACE.sub(" ", " ".join(text.split("\n"))).strip()


def clean_lines(text: str) -> str:
    """Tidy each line's spaces but keep the line breaks (lists, tables, addresses)."""
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


@dataclass
class HeadingTrail:
    """The path of headings above the current position, as a parser walks a document.

    The document title is usually the first level-1 heading too; it is left out of the path
    (`section` strings put the title in front themselves), as chunk sections always have been.
    """

    title: str
    _path: list[tuple[int, str]] = field(default_factory=list)
    anchor: str = ""

    def enter(self, level: int, heading: str) -> None:
        self._path = [(lvl, h) for lvl, h in self._path if lvl < level] + [(level, heading)]
        self.anchor = slugify(heading)

    @property
    def headings(self) -> tuple[str, ...]:
        names = [h for _, h in self._path]
        if names and names[0] == self.title:
            names = names[1:]
        return tuple(names)

    def block(self, text: str, *, page: int | None = None) -> Block:
        return Block(text=text, headings=self.headings, page=page, anchor=self.anchor)

"""HTML: the page's main text through trafilatura, which drops navigation, footers, cookie
banners, scripts and styles, and keeps headings, lists and tables as elements we can walk.

Chosen over readability-lxml because it keeps heading levels (readability returns cleaned HTML
that would need a second pass) and scores best in published main-text extraction benchmarks.
Only text leaves this module: no tag, attribute or script body reaches a Block.
"""

from __future__ import annotations

import codecs
import re

import lxml.html
from lxml import etree

from retrieval.errors import IngestError
from retrieval.loaders.base import (
    Block,
    HeadingTrail,
    ParsedDocument,
    clean_inline,
    clean_lines,
    reject_binary,
)

KIND = "html"
SUFFIXES = frozenset({".html", ".htm"})
CONTENT_TYPES = frozenset({"text/html", "application/xhtml+xml"})

# Elements whose content is never text a reader sees (for HTML fragments inside Markdown and FAQ
# answers; whole pages go through trafilatura, which drops these itself).
_NOT_TEXT = ("script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "math", "head")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
# Recall mode keeps cookie and consent banners that sit outside a content container; these are
# the markers the common consent widgets use (not bare "cookie": a privacy page's own section).
_BANNER_MARKERS = (
    "cookie-banner cookie-consent cookie-notice cookie-bar cookiebar cookie-popup cookie-law "
    "consent-banner gdpr onetrust cookiebot cc-window"
).split()
_ID_AND_CLASS = (
    "translate(concat(@id, ' ', @class), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
)
_CONSENT_BANNERS = "//*[" + " or ".join(f"contains({_ID_AND_CLASS}, '{m}')" for m in _BANNER_MARKERS) + "]"
_LOOSE_TEXT = frozenset("p h1 h2 h3 h4 h5 h6 ul ol table".split())
_LINE_BREAKING = tuple("br p div li tr h1 h2 h3 h4 h5 h6 blockquote pre dd dt".split())


def load(data: bytes, name: str) -> ParsedDocument:
    import trafilatura  # takes ~0.3 s to import: only when an HTML page is actually loaded

    try:
        # Our own parse, not trafilatura's: it rejects bare fragments ("<p>...</p>", as help-centre
        # exports are) and ignores <meta charset>.
        tree = lxml.html.document_fromstring(_XML_DECLARATION.sub("", decode_html(data, name), count=1))
    except (etree.ParserError, ValueError):
        tree = None
    # favor_recall: knowledge-base pages are often short (one answer); precision mode drops them.
    extracted = None
    if tree is not None:
        _contain_loose_content(tree)
        extracted = trafilatura.bare_extraction(
            tree,
            favor_recall=True,
            include_comments=False,
            include_tables=True,
            with_metadata=True,
            prune_xpath=_CONSENT_BANNERS,
        )
    if extracted is None or isinstance(extracted, dict) or extracted.body is None:  # dict: as_dict only
        raise IngestError(
            f"{name} has no readable main text (is it a page of links only, or nested too deeply to parse?)",
            code="empty",
        )
    title = clean_inline(extracted.title or "") or _first_h1(extracted.body)
    trail = HeadingTrail(title)
    blocks: list[Block] = []
    for element in extracted.body:
        if element.tag == "head":
            heading = _text(element)
            if heading:
                trail.enter(_level(element), heading)
            continue
        text = _element_text(element)
        if text:
            blocks.append(trail.block(text))
    return ParsedDocument(title=title, blocks=blocks, kind=KIND)


def _contain_loose_content(tree: lxml.html.HtmlElement) -> None:
    """Put text that sits directly in <body> (fragments, simple exports) inside a <main>: without a
    content container trafilatura falls back to extractors that drop headings. (Not <article>:
    its fallback for short pages takes an article's whole text, navigation included.)"""
    body = tree.find("body")
    if body is None or not any(child.tag in _LOOSE_TEXT for child in body):
        return
    main = lxml.html.Element("main")
    main.text, body.text = body.text, None
    main.extend(list(body))
    body.append(main)


def decode_html(data: bytes, name: str) -> str:
    """Decode as browsers do, minus their guessing: BOM, then <meta charset>, then UTF-8, then
    windows-1252 (the HTML standard's fallback for undeclared pages; it decodes any byte)."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            return data.decode(encoding, errors="replace")
    reject_binary(data, name)
    declared = _META_CHARSET.search(data[:4096])
    for encoding in ([declared.group(1).decode("ascii")] if declared else []) + ["utf-8"]:
        try:
            return data.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _level(head: etree._Element) -> int:
    rend = head.get("rend", "")
    return int(rend[1]) if len(rend) == 2 and rend[0] == "h" and rend[1] in "123456" else 2


def _first_h1(body: etree._Element) -> str:
    for head in body.iter("head"):
        if _level(head) == 1:
            return _text(head)
    return ""


def _text(element: etree._Element) -> str:
    return clean_inline("".join(element.itertext()))


def _element_text(element: etree._Element) -> str:
    """Plain text of one of trafilatura's output elements: p, list, table, quote, code."""
    if element.tag == "list":
        return "\n".join(_list_lines(element, depth=0))
    if element.tag == "table":
        rows = (" | ".join(_text(cell) for cell in row.iter("cell")) for row in element.iter("row"))
        return clean_lines("\n".join(rows))
    if element.tag == "code":
        return "".join(element.itertext()).strip("\n")
    return _text(element)


def _list_lines(element: etree._Element, depth: int) -> list[str]:
    lines: list[str] = []
    for item in element.iterchildren("item"):
        nested = list(item.iterchildren("list"))
        for sub in nested:
            item.remove(sub)  # its text belongs on its own lines, not glued to the parent item
        text = _text(item)
        if text:
            lines.append("  " * depth + "- " + text)
        for sub in nested:
            lines.extend(_list_lines(sub, depth + 1))
    return lines


def fragment_text(html: str) -> str:
    """The visible text of an HTML fragment (raw HTML in Markdown, HTML answers in FAQ exports)."""
    if not html.strip():
        return ""
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    etree.strip_elements(root, *_NOT_TEXT, with_tail=False)
    # text_content() glues neighbouring blocks ("<p>a</p><p>b</p>" -> "ab"): break lines first.
    for element in root.iter(*_LINE_BREAKING):
        element.tail = "\n" + (element.tail or "")
    for cell in root.iter("td", "th"):
        cell.tail = " " + (cell.tail or "")
    return clean_lines(root.text_content())

"""Markdown through markdown-it-py's token stream (CommonMark plus tables): headings give the
section path; every top-level block (paragraph, list, table, quote, code) becomes one Block of
plain text. Using a real parser means `#` lines in code fences, setext headings and inline
markup are handled as a reader sees them, which the old line regexes could not do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token

from retrieval.loaders.base import Block, HeadingTrail, ParsedDocument, clean_lines, decode_text
from retrieval.loaders.html import fragment_text

KIND = "markdown"
SUFFIXES = frozenset({".md", ".markdown"})
CONTENT_TYPES = frozenset({"text/markdown", "text/x-markdown"})

# YAML front matter (Jekyll, Hugo, Docusaurus): CommonMark would read it as a rule and a heading.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_FRONT_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.MULTILINE)

_parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def load(data: bytes, name: str) -> ParsedDocument:
    title, blocks = parse_markdown(decode_text(data, name))
    return ParsedDocument(title=title, blocks=blocks, kind=KIND)


def parse_markdown(text: str, title: str | None = None) -> tuple[str, list[Block]]:
    """(title, blocks) of a Markdown text. The title is the given one, else the front matter's
    `title:`, else the first level-1 heading, else ""."""
    text = text.replace("\r\n", "\n")
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
    tokens = _parser.parse(text)
    if title is None:
        found = _FRONT_TITLE.search(front.group(1)) if front else None
        title = found.group(1).strip("'\"") if found else _first_h1(tokens)
    return title, _blocks(tokens, HeadingTrail(title))


def markdown_title(text: str, fallback: str) -> str:
    title, _ = parse_markdown(text)
    return title or fallback


def _first_h1(tokens: Sequence[Token]) -> str:
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h1" and token.level == 0:
            return _inline_text(tokens[i + 1])
    return ""


def _blocks(tokens: Sequence[Token], trail: HeadingTrail) -> list[Block]:
    blocks: list[Block] = []
    start = 0
    while start < len(tokens):
        end = _block_end(tokens, start)
        token = tokens[start]
        if token.type == "heading_open":
            heading = _inline_text(tokens[start + 1])
            if heading:
                trail.enter(int(token.tag[1:]), heading)
        else:
            text = clean_lines(_render(tokens[start:end]))
            if text:
                blocks.append(trail.block(text))
        start = end
    return blocks


def _block_end(tokens: Sequence[Token], start: int) -> int:
    """Index just past the top-level block that starts at `start` (its matching close token)."""
    if tokens[start].nesting != 1:
        return start + 1
    depth = 0
    for i in range(start, len(tokens)):
        depth += tokens[i].nesting
        if depth == 0:
            return i + 1
    return len(tokens)


def _render(tokens: Sequence[Token]) -> str:
    """Plain text of a block: list items as "- " lines, table rows as "a | b", code verbatim."""
    lines: list[str] = []
    lists: list[str] = []  # "ul"/"ol" for each open list, to indent and mark items
    prefix = ""
    cells: list[str] | None = None
    for token in tokens:
        if token.type in ("bullet_list_open", "ordered_list_open"):
            lists.append(token.tag)
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif token.type == "list_item_open":
            marker = f"{token.info}." if lists and lists[-1] == "ol" and token.info else "-"
            prefix = "  " * (len(lists) - 1) + marker + " "
        elif token.type == "tr_open":
            cells = []
        elif token.type == "tr_close" and cells is not None:
            lines.append(" | ".join(cells))
            cells = None
        elif token.type == "inline":
            text = _inline_text(token)
            if cells is not None:
                cells.append(text)
            elif text:
                lines.append(prefix + text)
                prefix = "  " * len(lists)  # later paragraphs of the same item are indented
        elif token.type in ("fence", "code_block"):
            lines.append(token.content.rstrip("\n"))
        elif token.type == "html_block":
            lines.append(fragment_text(token.content))
    return "\n".join(lines)


def _inline_text(token: Token) -> str:
    """Text a reader sees: emphasis and link markup dropped, images by their alt text."""
    children = token.children or []
    if any(child.type == "html_inline" for child in children):
        # Raw HTML in a paragraph: render it and let the HTML cleaner drop tags and the bodies of
        # script and style elements, which token-by-token skipping would let through.
        renderer = _parser.renderer
        assert isinstance(renderer, RendererHTML)  # MarkdownIt's default renderer
        return fragment_text(renderer.renderInline(children, _parser.options, {})).strip()
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts).strip()

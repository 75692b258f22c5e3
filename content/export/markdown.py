"""The article as Markdown: the body with its H1, images and FAQ (`article_markdown`, which the
HTML page renders too), with YAML front matter (`to_markdown`), and the FAQ as schema.org
FAQPage JSON-LD with plain-text answers (`faq_jsonld`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import frontmatter
import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from content.export.png import image_src, item_images

# CommonMark with raw HTML off, so HTML typed into the Markdown comes out as text; tables and
# strikethrough because generated articles use them. markdown-it also refuses javascript:,
# vbscript: and file: links; nh3 (content/export/page.py) is the second line of defence.
md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_FAQ_HEADING = re.compile(r"(faqs?|frequently asked questions)\b", re.IGNORECASE)
# Characters that start inline Markdown (emphasis, code, links, entities, autolinks, tables,
# a heading's closing #s). Escaping only these keeps the exported text readable.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<&~#|])")


def faq_jsonld(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema.org FAQPage for the item's FAQ, or None when it has none (an FAQPage without
    questions is invalid, so nothing is better than an empty one). Answers are plain text: the
    Markdown is reduced to its words."""
    entries = [
        {
            "@type": "Question",
            "name": one_line(entry["question"]),
            "acceptedAnswer": {"@type": "Answer", "text": plain_text(entry["answer"])},
        }
        for entry in item.get("faq") or []
        if one_line(entry["question"])
    ]
    if not entries:
        return None
    return {"@context": "https://schema.org", "@type": "FAQPage", "mainEntity": entries}


def to_markdown(item: Mapping[str, Any]) -> str:
    """Markdown with YAML front matter: the article, its images after the H1 and its FAQ."""
    meta = {
        "title": one_line(item["title"]),
        "meta_title": one_line(item.get("meta_title") or item["title"]),
        "description": one_line(item.get("meta_description")),
        "slug": as_text(item["slug"]),
        "lang": as_text(item.get("language") or "en"),
        "keyphrase": one_line(item.get("keyphrase")),
        "images": [
            {"filename": image["filename"], "alt": one_line(image.get("alt")), "ai_generated": True}
            for image in item_images(item)
        ],
        "generated_with": {
            "model_version": as_text(item.get("model_version")),
            "prompt_template": as_text(item.get("prompt_template")),
        },
        "approved_by": item.get("approved_by"),
        "approved_at": item.get("approved_at"),
        "revision": int(item.get("revision") or 0),
    }
    # The pure-Python dumper: libyaml's, frontmatter's default, writes emoji as "\U0001F389".
    post = frontmatter.Post(article_markdown(item), **meta)
    return frontmatter.dumps(post, Dumper=yaml.SafeDumper, sort_keys=False) + "\n"


def article_markdown(item: Mapping[str, Any]) -> str:
    """The body with an H1 (the title, if the body has none), the images it does not reference
    yet as paragraphs of their own after the H1, and the FAQ unless it has an FAQ section."""
    body = as_text(item["body"]).replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    tokens = md.parse(body)
    lines = body.split("\n") if body else []
    h1 = next((t for t in tokens if t.type == "heading_open" and t.tag == "h1" and t.level == 0), None)
    if h1 is None or h1.map is None:
        lines[:0] = [f"# {_md_escape(one_line(item['title']))}", ""]
        after_h1 = 1
    else:
        after_h1 = h1.map[1]
    referenced = _referenced_images(tokens)
    missing = [image for image in item_images(item) if image["filename"] not in referenced]
    parts = ["\n".join(lines[:after_h1]).rstrip("\n")]
    parts += [f"![{_md_escape(one_line(image.get('alt')))}]({image_src(image)})" for image in missing]
    rest = "\n".join(lines[after_h1:]).strip("\n")
    if rest:
        parts.append(rest)
    faq = [entry for entry in item.get("faq") or [] if one_line(entry["question"])]
    if faq and not _has_faq_section(tokens):
        parts.append("## FAQ")
        for entry in faq:
            parts += [f"### {_md_escape(one_line(entry['question']))}", as_text(entry["answer"]).strip()]
    return "\n\n".join(parts) + "\n"


def _referenced_images(tokens: Sequence[Token]) -> set[str]:
    """Filenames of the relative images the Markdown shows, whatever folder it puts them in."""
    names = set()
    for token in _walk(tokens):
        if token.type == "image":
            src = str(token.attrs.get("src", ""))
            if not urlsplit(src).scheme:
                names.add(unquote(src).rsplit("/", 1)[-1])
    return names


def _has_faq_section(tokens: Sequence[Token]) -> bool:
    return any(
        token.type == "heading_open"
        and token.tag != "h1"
        and _FAQ_HEADING.match(_inline_text(tokens[index + 1].children or []).strip())
        for index, token in enumerate(tokens)
    )


def plain_text(markdown: str) -> str:
    """The words of a Markdown snippet, without its markup."""
    words = []
    for token in md.parse(as_text(markdown)):
        if token.type == "inline":
            words.append(_inline_text(token.children or []))
        elif token.type in {"fence", "code_block"}:
            words.append(token.content)
    return one_line(" ".join(words))


def _inline_text(children: Sequence[Token]) -> str:
    out = []
    for child in children:
        if child.type in {"text", "code_inline"}:
            out.append(child.content)
        elif child.type in {"softbreak", "hardbreak"}:
            out.append(" ")
        elif child.type == "image":
            out.append(_inline_text(child.children or []))
    return "".join(out)


def _walk(tokens: Sequence[Token]) -> Any:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


def _md_escape(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def one_line(value: Any) -> str:
    """Titles, descriptions, questions and alt text are one line: a newline in them would end a
    Markdown heading or break a YAML or HTML attribute's meaning."""
    return " ".join(as_text(value).split())

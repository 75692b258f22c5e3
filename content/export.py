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

import html
import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import frontmatter
import nh3
import yaml
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from PIL import Image

IMAGE_DIR = "images/"
AI_CAPTION = "AI-generated image"
PLACEHOLDER_NOTE = "placeholder from the built-in offline model: not a real picture"
EXPORT_VERSION = 1  # bump when article.json changes shape, so consumers can tell

# CommonMark with raw HTML off, so HTML typed into the Markdown comes out as text; tables and
# strikethrough because generated articles use them. markdown-it also refuses javascript:,
# vbscript: and file: links; nh3 below is the second line of defence, not the first.
_md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])

_ALLOWED_TAGS = {
    *(f"h{level}" for level in range(1, 7)),
    *("p", "br", "hr", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li"),
    *("a", "img", "figure", "figcaption", "small", "table", "thead", "tbody", "tr", "th", "td"),
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}, "ol": {"start"}}
_FAQ_HEADING = re.compile(r"(faqs?|frequently asked questions)\b", re.IGNORECASE)
# Characters that start inline Markdown (emphasis, code, links, entities, autolinks, tables,
# a heading's closing #s). Escaping only these keeps the exported text readable.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<&~#|])")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class ExportError(ValueError):
    """An item that cannot be exported safely; `message` can be shown to the editor."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- public API ----------------------------------------------------------------------------


def faq_jsonld(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema.org FAQPage for the item's FAQ, or None when it has none (an FAQPage without
    questions is invalid, so nothing is better than an empty one). Answers are plain text: the
    Markdown is reduced to its words."""
    entries = [
        {
            "@type": "Question",
            "name": _one_line(entry["question"]),
            "acceptedAnswer": {"@type": "Answer", "text": _plain_text(entry["answer"])},
        }
        for entry in item.get("faq") or []
        if _one_line(entry["question"])
    ]
    if not entries:
        return None
    return {"@context": "https://schema.org", "@type": "FAQPage", "mainEntity": entries}


def to_markdown(item: Mapping[str, Any]) -> str:
    """Markdown with YAML front matter: the article, its images after the H1 and its FAQ."""
    meta = {
        "title": _one_line(item["title"]),
        "meta_title": _one_line(item.get("meta_title") or item["title"]),
        "description": _one_line(item.get("meta_description")),
        "slug": _text(item["slug"]),
        "lang": _text(item.get("language") or "en"),
        "keyphrase": _one_line(item.get("keyphrase")),
        "images": [
            {"filename": image["filename"], "alt": _one_line(image.get("alt")), "ai_generated": True}
            for image in _images(item)
        ],
        "generated_with": {
            "model_version": _text(item.get("model_version")),
            "prompt_template": _text(item.get("prompt_template")),
        },
        "approved_by": item.get("approved_by"),
        "approved_at": item.get("approved_at"),
        "revision": int(item.get("revision") or 0),
    }
    # The pure-Python dumper: libyaml's, frontmatter's default, writes emoji as "\U0001F389".
    post = frontmatter.Post(_article_markdown(item), **meta)
    return frontmatter.dumps(post, Dumper=yaml.SafeDumper, sort_keys=False) + "\n"


def to_html(item: Mapping[str, Any], base_url: str | None = None) -> str:
    """A complete HTML5 page. Every string from the item is escaped or sanitised; the only
    script is the FAQPage JSON-LD, whose JSON cannot close its <script> element."""
    images = {image["filename"]: image for image in _images(item)}
    body = nh3.clean(
        _render_markdown(_article_markdown(item), images),
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https"},  # relative URLs are kept as well
        link_rel="noopener",
    )
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(_one_line(item.get('meta_title') or item['title']))}</title>",
        f'<meta name="description" content="{_esc(_one_line(item.get("meta_description")))}">',
    ]
    if base_url is not None:
        head.append(f'<link rel="canonical" href="{_esc(_canonical_url(base_url, _text(item["slug"])))}">')
    jsonld = faq_jsonld(item)
    if jsonld is not None:
        head.append(f'<script type="application/ld+json">{_script_json(jsonld)}</script>')
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{_esc(_text(item.get("language") or "en"))}">',
            "<head>",
            *head,
            "</head>",
            "<body>",
            "<article>",
            body,
            "</article>",
            "</body>",
            "</html>",
            "",
        ]
    )


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
            "caption": _caption(image),
        }
        for image in _images(item)
    ]
    data["faq_jsonld"] = faq_jsonld(item)
    data["export_version"] = EXPORT_VERSION
    return data


def image_bytes(image: Mapping[str, Any], *, strip_metadata: bool) -> bytes:
    """The image's PNG as stored, or re-encoded from its pixels alone (no parley:* text chunks,
    no EXIF, ICC or other ancillary chunks) when `strip_metadata` is True. Re-encoding costs one
    PNG decode and encode: tens of milliseconds for a 1024x1024 picture."""
    png = _png(image)
    if not strip_metadata:
        return png
    with _open_png(png) as source:
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
    with _open_png(png) as image:
        text = dict(getattr(image, "text", {}))
    return {key.removeprefix("parley:"): value for key, value in text.items() if key.startswith("parley:")}


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
        for image in _images(item):
            # PNG is compressed already; deflating it again only costs time.
            add(
                IMAGE_DIR + image["filename"],
                image_bytes(image, strip_metadata=strip_metadata),
                zipfile.ZIP_STORED,
            )
    return buffer.getvalue()


# --- Markdown -------------------------------------------------------------------------------


def _article_markdown(item: Mapping[str, Any]) -> str:
    """The body with an H1 (the title, if the body has none), the images it does not reference
    yet as paragraphs of their own after the H1, and the FAQ unless it has an FAQ section."""
    body = _text(item["body"]).replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    tokens = _md.parse(body)
    lines = body.split("\n") if body else []
    h1 = next((t for t in tokens if t.type == "heading_open" and t.tag == "h1" and t.level == 0), None)
    if h1 is None or h1.map is None:
        lines[:0] = [f"# {_md_escape(_one_line(item['title']))}", ""]
        after_h1 = 1
    else:
        after_h1 = h1.map[1]
    referenced = _referenced_images(tokens)
    missing = [image for image in _images(item) if image["filename"] not in referenced]
    parts = ["\n".join(lines[:after_h1]).rstrip("\n")]
    parts += [f"![{_md_escape(_one_line(image.get('alt')))}]({_image_src(image)})" for image in missing]
    rest = "\n".join(lines[after_h1:]).strip("\n")
    if rest:
        parts.append(rest)
    faq = [entry for entry in item.get("faq") or [] if _one_line(entry["question"])]
    if faq and not _has_faq_section(tokens):
        parts.append("## FAQ")
        for entry in faq:
            parts += [f"### {_md_escape(_one_line(entry['question']))}", _text(entry["answer"]).strip()]
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


def _plain_text(markdown: str) -> str:
    """The words of a Markdown snippet, without its markup."""
    words = []
    for token in _md.parse(_text(markdown)):
        if token.type == "inline":
            words.append(_inline_text(token.children or []))
        elif token.type in {"fence", "code_block"}:
            words.append(token.content)
    return _one_line(" ".join(words))


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


# --- HTML -----------------------------------------------------------------------------------


def _render_markdown(markdown: str, images: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown to HTML, with the item's images as captioned figures and one H1 at most."""
    tokens = _md.parse(markdown)
    out: list[Token] = []
    seen_h1 = False
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type == "heading_open" and token.tag == "h1":
            if seen_h1:  # a second H1 in generated text is a section heading gone wrong
                token.tag = tokens[index + 2].tag = "h2"
            seen_h1 = True
        if token.type == "paragraph_open" and index + 2 < len(tokens):
            shown = _standalone_images(tokens[index + 1], images)
            if shown:
                figures = "".join(_figure_html(image) for image in shown)
                out.append(Token("html_block", "", 0, content=figures + "\n"))
                index += 3
                continue
        out.append(token)
        index += 1
    return _md.renderer.render(out, _md.options, {"parley_images": images})


def _standalone_images(inline: Token, images: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The item's images, when a paragraph holds nothing else."""
    shown = []
    for child in inline.children or []:
        if child.type == "image" and (image := _item_image(child, images)) is not None:
            shown.append(image)
        elif not (
            child.type in {"softbreak", "hardbreak"} or (child.type == "text" and not child.content.strip())
        ):
            return []
    return shown


def _item_image(token: Token, images: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    src = str(token.attrs.get("src", ""))
    if urlsplit(src).scheme:
        return None
    return images.get(unquote(src).rsplit("/", 1)[-1])


def _render_image(self: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An item image inside running text: the picture and its caption inline."""
    image = _item_image(tokens[idx], env.get("parley_images", {}))
    if image is None:
        return RendererHTML.image(self, tokens, idx, options, env)
    return f"{_img_html(image)} <small>({_esc(_caption(image))})</small>"


_md.add_render_rule("image", _render_image)


def _figure_html(image: Mapping[str, Any]) -> str:
    return f"<figure>{_img_html(image)}<figcaption>{_esc(_caption(image))}</figcaption></figure>"


def _img_html(image: Mapping[str, Any]) -> str:
    size = "".join(
        f' {name}="{int(image[name])}"' for name in ("width", "height") if image.get(name) is not None
    )
    return f'<img src="{_esc(_image_src(image))}" alt="{_esc(_one_line(image.get("alt")))}"{size}>'


def _caption(image: Mapping[str, Any]) -> str:
    if image.get("meaningful", True):
        return AI_CAPTION
    return f"{AI_CAPTION}: {PLACEHOLDER_NOTE}"


def _script_json(data: Any) -> str:
    """JSON for a <script> element. `<`, `>` and `&` become \\u escapes, so no `</script>` or
    `<!--` can appear; U+2028/9 too, for older JavaScript parsers. JSON parsers read it unchanged."""
    text = json.dumps(data, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _canonical_url(base_url: str, slug: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ExportError("bad_base_url", "The base URL must be an http or https address.")
    return f"{base_url.rstrip('/')}/{quote(slug, safe='')}"


# --- images and small helpers ---------------------------------------------------------------


def _images(item: Mapping[str, Any]) -> list[Mapping[str, Any]]:
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


def _open_png(png: bytes) -> Image.Image:
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


def _image_src(image: Mapping[str, Any]) -> str:
    return IMAGE_DIR + quote(image["filename"])


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


def _md_escape(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _one_line(value: Any) -> str:
    """Titles, descriptions, questions and alt text are one line: a newline in them would end a
    Markdown heading or break a YAML or HTML attribute's meaning."""
    return " ".join(_text(value).split())


def _esc(text: str) -> str:
    return html.escape(text, quote=True)

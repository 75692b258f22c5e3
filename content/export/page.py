"""The article as a standalone HTML5 page: the Markdown rendered with the item's images as
captioned figures, then sanitised (nh3) to the tags an article needs; the FAQPage JSON-LD is the
only script."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import nh3
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token

from content.errors import ExportError
from content.export.markdown import article_markdown, as_text, faq_jsonld, md, one_line
from content.export.png import caption, image_src, item_images

_ALLOWED_TAGS = {
    *(f"h{level}" for level in range(1, 7)),
    *("p", "br", "hr", "strong", "em", "s", "code", "pre", "blockquote", "ul", "ol", "li"),
    *("a", "img", "figure", "figcaption", "small", "table", "thead", "tbody", "tr", "th", "td"),
}
_ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}, "ol": {"start"}}
ImageSrc = Callable[[Mapping[str, Any]], str]


def _clean(markup: str) -> str:
    return nh3.clean(
        markup,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https"},  # relative URLs are kept as well
        link_rel="noopener",
    )


def article_html(item: Mapping[str, Any], src: ImageSrc = image_src) -> str:
    """The article's body as the page below has it (H1, images as captioned figures, sections,
    FAQ), sanitised the same way, without the page around it: the studio's preview. `src` says
    where an image is loaded from (the studio's own copies; the export's images/ folder by
    default)."""
    images = {image["filename"]: image for image in item_images(item)}
    return _clean(_render_markdown(article_markdown(item), images, src=src))


def to_html(item: Mapping[str, Any], base_url: str | None = None) -> str:
    """A complete HTML5 page. Every string from the item is escaped or sanitised; the only
    script is the FAQPage JSON-LD, whose JSON cannot close its <script> element."""
    images = {image["filename"]: image for image in item_images(item)}
    body = _clean(_render_markdown(article_markdown(item), images))
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(one_line(item.get('meta_title') or item['title']))}</title>",
        f'<meta name="description" content="{_esc(one_line(item.get("meta_description")))}">',
    ]
    if base_url is not None:
        head.append(f'<link rel="canonical" href="{_esc(_canonical_url(base_url, as_text(item["slug"])))}">')
    jsonld = faq_jsonld(item)
    if jsonld is not None:
        head.append(f'<script type="application/ld+json">{_script_json(jsonld)}</script>')
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{_esc(as_text(item.get("language") or "en"))}">',
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


def _render_markdown(
    markdown: str, images: Mapping[str, Mapping[str, Any]], src: ImageSrc = image_src
) -> str:
    """Markdown to HTML, with the item's images as captioned figures and one H1 at most."""
    tokens = md.parse(markdown)
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
                figures = "".join(_figure_html(image, src) for image in shown)
                out.append(Token("html_block", "", 0, content=figures + "\n"))
                index += 3
                continue
        out.append(token)
        index += 1
    return md.renderer.render(out, md.options, {"parley_images": images, "parley_src": src})


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
    return f"{_img_html(image, env.get('parley_src', image_src))} <small>({_esc(caption(image))})</small>"


md.add_render_rule("image", _render_image)


def _figure_html(image: Mapping[str, Any], src: ImageSrc) -> str:
    return f"<figure>{_img_html(image, src)}<figcaption>{_esc(caption(image))}</figcaption></figure>"


def _img_html(image: Mapping[str, Any], src: ImageSrc) -> str:
    size = "".join(
        f' {name}="{int(image[name])}"' for name in ("width", "height") if image.get(name) is not None
    )
    return f'<img src="{_esc(src(image))}" alt="{_esc(one_line(image.get("alt")))}"{size}>'


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


def _esc(text: str) -> str:
    return html.escape(text, quote=True)

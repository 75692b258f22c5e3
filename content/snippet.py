"""The search-result snippet of an item, as a search engine shows it: the site and the page's
address, the meta title and the meta description, each cut where Google cuts them. The studio
shows it beside the meta fields; static/parley/studio.js redraws it as the editor types, with the
same limits (and, for the title, its width in pixels, which a browser can measure and we cannot).

Google cuts titles at about 580 px (roughly 60 characters of 20 px Arial) and descriptions at
about 155-160 characters (920 px), at a word boundary, with "…". These are observed limits, not a
contract: the preview is a guide for editors, not a promise."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

TITLE_CHARS = 60
TITLE_PX = 580  # at 20px Arial, measured by studio.js
DESCRIPTION_CHARS = 158
ELLIPSIS = "…"
PLACEHOLDER_SITE = "https://www.example.com"
_TRAILING = " ,;:.-–—|·/"


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def truncate(text: str | None, limit: int) -> str:
    """`text` on one line and, when longer than `limit` characters, cut to at most `limit`
    with the "…": after the last whole word that fits (mid-word only when one word fills it),
    without a dangling comma, dash or separator."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(_TRAILING) + ELLIPSIS


def address(site_url: str, slug: str) -> str:
    """The address line: "https://www.example.com › blog › slow-wifi" (the site's own path, then
    the slug), as Google shows a page's breadcrumbs."""
    parts = urlsplit(site_url or PLACEHOLDER_SITE)
    crumbs = [segment for segment in parts.path.split("/") if segment]
    if slug:
        crumbs.append(slug)
    return " › ".join([f"{parts.scheme}://{parts.netloc}", *crumbs])


@dataclass(frozen=True)
class Snippet:
    site_name: str
    url: str
    title: str
    title_chars: int
    title_cut: bool
    description: str
    description_chars: int
    description_cut: bool


def snippet(
    *, title: str, meta_title: str, meta_description: str, slug: str, site_name: str, site_url: str
) -> Snippet:
    """The snippet of an item's fields. No meta title: search engines show the page's title."""
    shown_title = one_line(meta_title) or one_line(title)
    description = one_line(meta_description)
    return Snippet(
        site_name=one_line(site_name),
        url=address(site_url, slug),
        title=truncate(shown_title, TITLE_CHARS),
        title_chars=len(shown_title),
        title_cut=len(shown_title) > TITLE_CHARS,
        description=truncate(description, DESCRIPTION_CHARS),
        description_chars=len(description),
        description_cut=len(description) > DESCRIPTION_CHARS,
    )

"""Fetching documents and sitemaps over HTTP for ingestion, with hard limits on size and time.

    fetched = fetch("https://example.com/sitemap.xml", max_bytes=settings.INGEST_MAX_FILE_BYTES)
    if is_sitemap(fetched):
        urls = sitemap_urls(fetched)      # pages, or child sitemaps for a <sitemapindex>
    else:
        doc = parse(fetched.data, filename=filename_for(fetched), content_type=fetched.content_type)

Any http(s) host is fetched, private ones included (an intranet is a fair source for a knowledge
base); a caller taking URLs from untrusted users must vet the host itself.
"""

from __future__ import annotations

import re
import time
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element

import httpx
from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from retrieval.errors import IngestError
from retrieval.loaders import SUPPORTED_SUFFIXES, suffix_for_content_type

MAX_REDIRECTS = 5
USER_AGENT = "Parley-ingest/0.1 (knowledge base)"
# sitemaps.org caps a sitemap at 50 MB uncompressed: more is not a sitemap.
SITEMAP_MAX_BYTES = 50 * 1024 * 1024
_SITEMAP_ROOT = re.compile(rb"<(?:[\w.-]+:)?(urlset|sitemapindex)[\s>]")
_GZIP_MAGIC = b"\x1f\x8b"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    data: bytes
    content_type: str  # the header as sent, parameters included ("" if none)


def fetch(url: str, *, max_bytes: int, timeout: float = 20.0) -> Fetched:
    """GET an http(s) URL. Stops reading past `max_bytes` (too_large) or `timeout` seconds in
    all (a server dripping bytes cannot hold a worker); follows up to 5 redirects; any other
    failure, a non-2xx answer included, is IngestError(code="fetch_failed")."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise IngestError(f"{url} is not an http(s) URL", code="fetch_failed")
    deadline = time.monotonic() + timeout
    try:
        with (
            httpx.Client(
                follow_redirects=True,
                max_redirects=MAX_REDIRECTS,
                timeout=timeout,
                headers={"User-Agent": USER_AGENT},
            ) as client,
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                raise IngestError(f"{url} answered HTTP {response.status_code}", code="fetch_failed")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise IngestError(f"{url} is {declared} bytes; the limit is {max_bytes}", code="too_large")
            data = _read_limited(response, url, max_bytes, deadline)
            return Fetched(str(response.url), data, response.headers.get("content-type", ""))
    except httpx.TooManyRedirects as exc:
        raise IngestError(f"{url} redirects more than {MAX_REDIRECTS} times", code="fetch_failed") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise IngestError(
            f"{url} could not be fetched ({exc.__class__.__name__})", code="fetch_failed"
        ) from exc


def _read_limited(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    # Counted after content decoding, so a gzip-encoded body cannot expand past the limit either.
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > max_bytes:
            raise IngestError(f"{url} is larger than the limit of {max_bytes} bytes", code="too_large")
        if time.monotonic() > deadline:
            raise IngestError(f"{url} took too long to download", code="fetch_failed")
        chunks.append(chunk)
    return b"".join(chunks)


def is_sitemap(fetched: Fetched) -> bool:
    """Whether the body is an XML sitemap (<urlset>) or sitemap index (<sitemapindex>)."""
    if fetched.content_type.split(";", 1)[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return False  # a page about sitemaps, perhaps, but a page
    head = fetched.data[:4096]
    if head.startswith(_GZIP_MAGIC):
        try:
            head = zlib.decompressobj(wbits=31).decompress(head, 4096)
        except zlib.error:
            return False
    return bool(_SITEMAP_ROOT.search(head))


def sitemap_urls(fetched: Fetched, *, limit: int = 1000) -> list[str]:
    """The http(s) URLs a sitemap lists, in order, without repeats, at most `limit`. For a sitemap
    index these are the child sitemaps: fetch each and call this again (bounding the total)."""
    root = _parse_xml(_sitemap_bytes(fetched), fetched.url)
    kind = _local_name(root.tag)
    if kind not in ("urlset", "sitemapindex"):
        raise IngestError(f"{fetched.url} is not a sitemap (its root element is <{kind}>)", code="malformed")
    entry = "url" if kind == "urlset" else "sitemap"
    urls: dict[str, None] = {}  # an ordered set
    for element in root:
        if _local_name(element.tag) != entry:
            continue
        loc = next((child.text for child in element if _local_name(child.tag) == "loc"), None)
        url = (loc or "").strip()
        if urlsplit(url).scheme.lower() in ("http", "https"):
            urls[url] = None
            if len(urls) >= limit:
                break
    return list(urls)


def _sitemap_bytes(fetched: Fetched) -> bytes:
    if not fetched.data.startswith(_GZIP_MAGIC):
        return fetched.data
    # A sitemap.xml.gz: inflate at most the spec's limit, never the whole of whatever it claims.
    try:
        inflater = zlib.decompressobj(wbits=31)
        data = inflater.decompress(fetched.data, SITEMAP_MAX_BYTES + 1)
    except zlib.error as exc:
        raise IngestError(f"{fetched.url} is a damaged gzip file", code="malformed") from exc
    if len(data) > SITEMAP_MAX_BYTES:
        raise IngestError(f"{fetched.url} expands past {SITEMAP_MAX_BYTES} bytes", code="zip_bomb")
    return data


def _parse_xml(data: bytes, url: str) -> Element:
    # defusedxml refuses DTDs with entities and external references: no billion laughs, no XXE.
    try:
        return SafeElementTree.fromstring(data, forbid_dtd=False)
    except DefusedXmlException as exc:
        raise IngestError(f"{url} uses XML entities, which sitemaps never need", code="malformed") from exc
    except SafeElementTree.ParseError as exc:
        raise IngestError(f"{url} is not well-formed XML ({exc})", code="malformed") from exc


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def filename_for(fetched: Fetched) -> str:
    """A file name for the fetched body that parse() understands: the URL's last path segment
    (or its host) with the suffix its Content-Type names, or the URL's own suffix when the
    Content-Type is missing, generic or text/plain (servers send .md and .csv files so)."""
    parts = urlsplit(fetched.url)
    path = PurePosixPath(unquote(parts.path))
    stem = _UNSAFE_NAME.sub("-", path.stem if path.name else (parts.hostname or "document")).strip("-.")
    stem = stem[:100] or "document"
    url_suffix = path.suffix.lower()
    by_type = suffix_for_content_type(fetched.content_type)
    if url_suffix in SUPPORTED_SUFFIXES and (by_type is None or by_type == ".txt"):
        return f"{stem}{url_suffix}"
    if by_type:
        return f"{stem}{by_type}"
    return f"{stem}{_UNSAFE_NAME.sub('', url_suffix)}"

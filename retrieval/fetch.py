"""Fetching documents and sitemaps over HTTP for ingestion, with hard limits on size and time.

    fetched = fetch("https://example.com/sitemap.xml", max_bytes=settings.INGEST_MAX_FILE_BYTES)
    if is_sitemap(fetched):
        urls = sitemap_urls(fetched)      # pages, or child sitemaps for a <sitemapindex>
    else:
        doc = parse(fetched.data, filename=filename_for(fetched), content_type=fetched.content_type)

Only public addresses are fetched (server-side request forgery: a URL, a redirect or a sitemap
entry must not make the server read its own admin pages, the intranet or the cloud's instance
metadata and publish what it got at /kb/<id>/). Every hop is checked where it connects: the host
is resolved once, every address it resolves to is checked (`address_refused`: loopback, private,
link-local, shared 100.64/10, multicast, reserved, unspecified, and those hidden in IPv4-mapped,
NAT64, 6to4 and Teredo IPv6 addresses), and the connection goes to the checked address, so a
name that answers differently the second time (DNS rebinding) gains nothing; the request keeps
the host's name (Host header, TLS SNI and certificate check). Redirects are followed one hop at a
time, each through the same check. Proxies from the environment are not used: a proxy resolves
names itself, so nothing could be checked. An intranet that is a fair source for the knowledge
base is allowed by name or network in INGEST_ALLOWED_HOSTS (see `host_allowed`).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element

import httpcore
import httpx
from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http.request import validate_host

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


def fetch(
    url: str, *, max_bytes: int, timeout: float = 20.0, allowed: Sequence[str] | None = None
) -> Fetched:
    """GET an http(s) URL from a public address (see the module docstring). Stops reading past
    `max_bytes` (too_large) or `timeout` seconds in all (a server dripping bytes cannot hold a
    worker); follows up to 5 redirects, each checked; a host at a refused address is
    IngestError(code="blocked_address"); any other failure, a non-2xx answer included, is
    IngestError(code="fetch_failed"). `allowed`: hosts and networks fetched even if private
    (default: the INGEST_ALLOWED_HOSTS setting)."""
    allowed = tuple(settings.INGEST_ALLOWED_HOSTS if allowed is None else allowed)
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(
            transport=CheckedTransport(allowed),
            follow_redirects=False,
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        ) as client:
            request = client.build_request("GET", url)
            for _ in range(MAX_REDIRECTS + 1):
                if request.url.scheme not in ("http", "https"):
                    raise IngestError(f"{request.url} is not an http(s) URL", code="fetch_failed")
                response = client.send(request, stream=True)
                try:
                    if response.next_request is None:
                        return _body(response, url, max_bytes, deadline)
                    request = response.next_request  # the Location, resolved against this URL
                finally:
                    response.close()
            raise IngestError(f"{url} redirects more than {MAX_REDIRECTS} times", code="fetch_failed")
    except (httpx.HTTPError, httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise IngestError(
            f"{url} could not be fetched ({exc.__class__.__name__})", code="fetch_failed"
        ) from exc


def _body(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> Fetched:
    if not response.is_success:
        raise IngestError(f"{url} answered HTTP {response.status_code}", code="fetch_failed")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise IngestError(f"{url} is {declared} bytes; the limit is {max_bytes}", code="too_large")
    data = _read_limited(response, url, max_bytes, deadline)
    return Fetched(str(response.url), data, response.headers.get("content-type", ""))


# --- Which addresses may be fetched ---------------------------------------------------------------

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; Alibaba's metadata service
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(allowed: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for entry in allowed:
        try:
            networks.append(ipaddress.ip_network(entry.strip().strip("[]"), strict=False))
        except ValueError as exc:
            if "/" in entry or entry.replace(".", "").isdigit():
                raise ImproperlyConfigured(f"INGEST_ALLOWED_HOSTS: {entry!r} is not a network") from exc
    return networks


def _is_public(ip: IPAddress) -> bool:
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
        or ip in _SHARED
    )


def _unwrap(ip: IPAddress) -> list[IPAddress]:
    """The address and the IPv4 address it carries, if any; for IPv4-mapped and NAT64 only the
    IPv4 one (the wrapper ranges are themselves "reserved", which would refuse every site)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip, ip.sixtofour]
    if ip.teredo is not None:
        return [ip, ip.teredo[1]]
    return [ip]


def address_refused(address: str | IPAddress, *, allowed: Iterable[str]) -> bool:
    """Whether a connection to `address` is refused: not a public unicast address, and not in a
    network of `allowed` (entries that are not networks, host names, are ignored here)."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    networks = _networks(allowed)
    forms = _unwrap(ip)
    if any(form in network for form in forms for network in networks if form.version == network.version):
        return False
    return not all(_is_public(form) for form in forms)


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Whether `host` (a name) is on the allow-list, read as Django reads ALLOWED_HOSTS
    (`validate_host`): named exactly, or below an entry that starts with a dot (".corp.example"
    admits "corp.example" and "wiki.corp.example"); case, spaces and a final dot aside. Except
    that "*" admits no host: a wildcard would switch the check off for every name."""
    patterns = (entry.strip().rstrip(".") for entry in allowed)
    return validate_host(host.lower().rstrip("."), [p for p in patterns if p != "*"])


def _blocked(host: str) -> IngestError:
    return IngestError(
        f"{host} is a loopback, private, link-local or reserved address: ingestion fetches public "
        "addresses only. An intranet host can be allowed in INGEST_ALLOWED_HOSTS.",
        code="blocked_address",
    )


def checked_addresses(host: str, port: int, allowed: Sequence[str]) -> list[str]:
    """Resolve `host` once and return its addresses, in the resolver's order, when each may be
    connected to; IngestError("blocked_address") when any may not (a name answering both a
    public and a private address is refused: which one a client would use is not ours to say)."""
    name = host.strip("[]")
    try:
        literal: IPAddress | None = ipaddress.ip_address(name)
    except ValueError:
        literal = None
    if literal is not None:
        if address_refused(literal, allowed=allowed):
            raise _blocked(name)
        return [str(literal)]
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpcore.ConnectError(f"{name} could not be resolved") from exc
    addresses = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not addresses:
        raise httpcore.ConnectError(f"{name} has no address")
    if not host_allowed(name, allowed) and any(address_refused(a, allowed=allowed) for a in addresses):
        raise _blocked(name)
    return addresses


class _CheckedBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses `checked_addresses` let through.
    httpcore hands it the URL's host; TLS is started later with that host name as SNI."""

    def __init__(self, allowed: Sequence[str]) -> None:
        self.allowed = allowed

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port, self.allowed)
        for address in addresses[:-1]:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next of the host's checked addresses, as socket.create_connection does
        return super().connect_tcp(addresses[-1], port, timeout, local_address, socket_options)


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport over `_CheckedBackend`. httpx has no parameter for the network backend,
    so the connection pool it built is replaced by one that uses ours (same TLS defaults). Also
    the transport of actions' calls (answers/lookups/http.py), with their own exemptions."""

    def __init__(self, allowed: Sequence[str]) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_CheckedBackend(allowed),
        )


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
        root: Element = SafeElementTree.fromstring(data, forbid_dtd=False)  # defusedxml is untyped
        return root
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

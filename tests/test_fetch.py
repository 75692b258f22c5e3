"""Fetching against a real HTTP server on 127.0.0.1: pages, sitemaps, errors, limits, redirects.
Loopback is refused unless allowed (test_ssrf.py), so these tests allow 127.0.0.1 as an admin
allows an intranet host."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from retrieval.errors import IngestError
from retrieval.fetch import Fetched, fetch, filename_for, is_sitemap, sitemap_urls
from retrieval.loaders import parse

PAGE = b"""<html><head><title>Returns policy</title></head><body><nav>Home | Shop</nav>
<article><h1>Returns policy</h1><p>You can return any item within 30 days of delivery for a full
refund, as long as it is unused and in its original packaging.</p></article></body></html>"""

SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.com/returns</loc><lastmod>2024-01-01</lastmod></url>
  <url><loc> https://example.com/shipping </loc></url>
  <url><loc>https://example.com/returns</loc></url>
  <url><loc>ftp://example.com/file</loc></url>
  <url><loc>https://example.com/contact</loc></url>
</urlset>"""

SITEMAP_INDEX = b"""<?xml version="1.0" encoding="UTF-8"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://example.com/sitemap-help.xml</loc></sitemap>
  <sitemap><loc>https://example.com/sitemap-blog.xml.gz</loc></sitemap>
</sitemapindex>"""

ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE urlset [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<urlset><url><loc>https://example.com/&b;</loc></url></urlset>"""

BIG = b"x" * 200_000

# path -> (status, content type, body, extra headers)
ROUTES: dict[str, tuple[int, str, bytes, dict[str, str]]] = {
    "/help/returns": (200, "text/html; charset=utf-8", PAGE, {}),
    "/sitemap.xml": (200, "application/xml", SITEMAP, {}),
    "/sitemap_index.xml": (200, "text/xml", SITEMAP_INDEX, {}),
    "/sitemap.xml.gz": (200, "application/gzip", gzip.compress(SITEMAP), {}),
    "/bomb.xml": (200, "application/xml", ENTITY_BOMB, {}),
    "/big": (200, "text/plain", BIG, {}),
    "/faq.md": (200, "text/plain; charset=utf-8", b"# FAQ\n\nAsk us anything.", {}),
    "/moved": (301, "text/plain", b"", {"Location": "/help/returns"}),
    "/loop": (302, "text/plain", b"", {"Location": "/loop"}),
    "/broken": (500, "text/plain", b"oops", {}),
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path == "/big-undeclared":  # no Content-Length: the reader must stop by itself
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"y" * 10_000)
            return
        if self.path == "/slow":  # drips bytes: each read is quick, the whole is too slow
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for _ in range(30):
                self.wfile.write(b"z" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return
        status, content_type, body, headers = ROUTES.get(self.path, (404, "text/plain", b"not found", {}))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(autouse=True)
def loopback_allowed() -> Iterator[None]:
    with override_settings(INGEST_ALLOWED_HOSTS=["127.0.0.1"]):
        yield


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetched_page_parses_as_html(server):
    fetched = fetch(f"{server}/help/returns", max_bytes=100_000)
    assert fetched.data == PAGE and fetched.content_type.startswith("text/html")
    assert not is_sitemap(fetched)
    name = filename_for(fetched)
    assert name == "returns.html"
    doc = parse(fetched.data, filename=name, content_type=fetched.content_type)
    assert doc.title == "Returns policy" and "30 days" in doc.blocks[0].text


def test_redirects_are_followed_and_the_final_url_kept(server):
    fetched = fetch(f"{server}/moved", max_bytes=100_000)
    assert fetched.url == f"{server}/help/returns"


def test_redirect_loops_fail(server):
    with pytest.raises(IngestError) as caught:
        fetch(f"{server}/loop", max_bytes=100_000)
    assert caught.value.code == "fetch_failed" and "redirects" in caught.value.message


@pytest.mark.parametrize("path", ["/missing", "/broken"])
def test_error_statuses_fail_with_the_status(server, path):
    with pytest.raises(IngestError) as caught:
        fetch(f"{server}{path}", max_bytes=100_000)
    assert caught.value.code == "fetch_failed" and path in caught.value.message


@pytest.mark.parametrize("path", ["/big", "/big-undeclared"])
def test_bodies_past_the_limit_are_too_large(server, path):
    with pytest.raises(IngestError) as caught:
        fetch(f"{server}{path}", max_bytes=100_000)
    assert caught.value.code == "too_large"


def test_a_server_that_drips_bytes_runs_into_the_timeout(server):
    started = time.monotonic()
    with pytest.raises(IngestError) as caught:
        fetch(f"{server}/slow", max_bytes=100_000, timeout=1.0)
    assert caught.value.code == "fetch_failed"
    assert time.monotonic() - started < 2.5


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "not a url"])
def test_only_http_urls_are_fetched(url):
    with pytest.raises(IngestError) as caught:
        fetch(url, max_bytes=100)
    assert caught.value.code == "fetch_failed"


def test_unreachable_host_fails_cleanly():
    from tests.conftest import free_port

    with pytest.raises(IngestError) as caught:
        fetch(f"http://127.0.0.1:{free_port()}/", max_bytes=100, timeout=2)
    assert caught.value.code == "fetch_failed"


def test_sitemap_lists_its_http_urls_in_order_without_repeats(server):
    fetched = fetch(f"{server}/sitemap.xml", max_bytes=100_000)
    assert is_sitemap(fetched)
    assert sitemap_urls(fetched) == [
        "https://example.com/returns",
        "https://example.com/shipping",
        "https://example.com/contact",
    ]
    assert sitemap_urls(fetched, limit=2) == ["https://example.com/returns", "https://example.com/shipping"]


def test_sitemap_index_lists_its_child_sitemaps(server):
    fetched = fetch(f"{server}/sitemap_index.xml", max_bytes=100_000)
    assert is_sitemap(fetched)
    assert sitemap_urls(fetched) == [
        "https://example.com/sitemap-help.xml",
        "https://example.com/sitemap-blog.xml.gz",
    ]


def test_gzipped_sitemap_is_read(server):
    fetched = fetch(f"{server}/sitemap.xml.gz", max_bytes=100_000)
    assert is_sitemap(fetched)
    assert len(sitemap_urls(fetched)) == 3


def test_sitemap_with_entities_is_refused(server):
    fetched = fetch(f"{server}/bomb.xml", max_bytes=100_000)
    with pytest.raises(IngestError) as caught:
        sitemap_urls(fetched)
    assert caught.value.code == "malformed"


def test_broken_xml_is_malformed():
    with pytest.raises(IngestError) as caught:
        sitemap_urls(Fetched("https://example.com/sitemap.xml", b"<urlset><url>", "application/xml"))
    assert caught.value.code == "malformed"


@pytest.mark.parametrize(
    ("url", "content_type", "name"),
    [
        ("https://example.com/help/returns", "text/html; charset=utf-8", "returns.html"),
        ("https://example.com/", "text/html", "example.com.html"),
        ("https://example.com/files/Price%20List.pdf", "application/pdf", "Price-List.pdf"),
        ("https://example.com/files/guide.pdf", "application/octet-stream", "guide.pdf"),
        ("https://example.com/faq.md", "text/plain", "faq.md"),
        ("https://example.com/export?format=csv", "text/csv", "export.csv"),
        ("https://example.com/download", "", "download"),
        ("https://example.com/a/../../etc/passwd.txt", "text/plain", "passwd.txt"),
    ],
)
def test_filename_for_gives_a_suffix_parse_understands(url, content_type, name):
    assert filename_for(Fetched(url, b"", content_type)) == name


def test_text_plain_markdown_is_parsed_as_markdown(server):
    fetched = fetch(f"{server}/faq.md", max_bytes=100_000)
    doc = parse(fetched.data, filename=filename_for(fetched), content_type=fetched.content_type)
    assert (doc.kind, doc.title) == ("markdown", "FAQ")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_ingest_command_takes_a_sitemap_url_and_ingests_each_page(tmp_path, embedder, isolated_index):
    """`manage.py ingest URL` against a real local HTTP server: a sitemap fans out into pages."""
    import functools
    import io
    import threading
    from http.server import SimpleHTTPRequestHandler

    from django.core.management import call_command

    from retrieval.models import Document

    (tmp_path / "returns.html").write_bytes(PAGE)
    (tmp_path / "shipping.html").write_text(
        "<html><head><title>Shipping</title></head><body><article><h1>Shipping</h1><p>Orders ship "
        "within two working days by tracked courier, free above 40 pounds.</p></article></body></html>"
    )
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    )
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    (tmp_path / "sitemap.xml").write_text(
        '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{base}/returns.html</loc></url><url><loc>{base}/shipping.html</loc></url>"
        f"<url><loc>{base}/missing.html</loc></url></urlset>"
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        # One listed page is missing: it fails on its own document; the others still ingest.
        call_command("ingest", f"{base}/sitemap.xml", "--collection", "web", stdout=io.StringIO())
    finally:
        httpd.shutdown()
    pages = {d.source.rsplit("/", 1)[-1]: d for d in Document.objects.filter(collection="web")}
    assert pages["sitemap.xml"].kind == "sitemap" and pages["sitemap.xml"].status == "ready"
    assert pages["returns.html"].status == "ready" and pages["returns.html"].chunks.exists()
    assert pages["shipping.html"].status == "ready"
    assert pages["missing.html"].status == "failed" and pages["missing.html"].error_code == "fetch_failed"

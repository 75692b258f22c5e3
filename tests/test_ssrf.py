"""Server-side request forgery through URL and sitemap ingestion: loopback, private, link-local,
shared and cloud-metadata addresses are refused at every hop (the first URL, each redirect, each
sitemap entry), the address checked is the one connected to, and INGEST_ALLOWED_HOSTS admits an
intranet by name or network.

A real HTTP server on 127.0.0.1 plays every site. Other names resolve through a stand-in for the
system resolver (`dns`, patching socket.getaddrinfo: the test is about what the fetcher does with
an answer, not about DNS), and a stand-in for socket.create_connection (`connections`) records
every connection attempt and refuses any to an address other than 127.0.0.1 without touching the
network: nothing here ever sends a packet to 169.254.169.254, 10.x or any other real address,
even when the code under test is wrong."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from retrieval.errors import IngestError
from retrieval.fetch import address_refused, fetch, host_allowed

PAGE = (
    b"<html><head><title>Returns</title></head><body><article><h1>Returns</h1><p>Return any item "
    b"within 30 days of delivery for a full refund.</p></article></body></html>"
)
METADATA = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


class Site:
    """The local server: `routes` maps a path to (status, headers, body); `requests` lists the
    paths asked for, with the Host header, in order."""

    def __init__(self) -> None:
        site = self
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                site.requests.append((self.path, self.headers.get("Host", "")))
                status, headers, body = site.routes.get(self.path, (404, {}, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                for name, value in {"Content-Type": "text/html", **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, host: str, path: str) -> str:
        return f"http://{host}:{self.port}{path}"

    def redirect(self, path: str, location: str) -> None:
        self.routes[path] = (302, {"Location": location}, b"")

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site()
    server.routes["/page"] = (200, {}, PAGE)
    server.routes["/secret"] = (200, {"Content-Type": "text/plain"}, b"root:x:0:0")
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def dns(monkeypatch) -> dict[str, list[str]]:
    """Names the tests make up (name -> addresses, in order; a list of lists answers each lookup
    in turn); anything else goes to the real resolver (IP literals, localhost)."""
    names: dict[str, list] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's names
        key = host.decode() if isinstance(host, bytes) else host
        if key in names:
            answers = names[key]
            if answers and isinstance(answers[0], list):  # one answer per lookup
                answers = answers.pop(0) if len(answers) > 1 else answers[0]
            out = []
            for address in answers:
                family_ = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, int(port or 0), 0, 0) if ":" in address else (address, int(port or 0))
                out.append((family_, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return names


@pytest.fixture
def connections(monkeypatch) -> list[tuple[str, int]]:
    """Every address a connection was attempted to; only 127.0.0.1 is really connected."""
    attempts: list[tuple[str, int]] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        attempts.append((address[0], address[1]))
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(f"the test network only has 127.0.0.1, not {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return attempts


def _refused(url: str) -> IngestError:
    with pytest.raises(IngestError) as caught:
        fetch(url, max_bytes=100_000, timeout=5)
    return caught.value


# --- What counts as private --------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # AWS, GCP, Azure instance metadata
        "100.100.100.200",  # Alibaba's metadata, in the shared (CGNAT) 100.64/10
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: its client address is 192.0.2.45
    ],
)
def test_loopback_private_link_local_and_metadata_addresses_are_refused(address):
    assert address_refused(address, allowed=())


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_not_refused(address):
    assert not address_refused(address, allowed=())


def test_allowed_networks_are_not_refused():
    assert not address_refused("10.1.2.3", allowed=("10.0.0.0/8",))
    assert not address_refused("::ffff:10.1.2.3", allowed=("10.0.0.0/8",))
    assert address_refused("10.1.2.3", allowed=("192.168.0.0/16", "wiki.corp.test"))


def test_allowed_names_are_read_as_django_reads_allowed_hosts_but_a_star_admits_none():
    allowed = ("Wiki.Corp.Test.", " .docs.test ", "*")
    assert host_allowed("wiki.corp.test", allowed) and host_allowed("WIKI.corp.test.", allowed)
    assert host_allowed("docs.test", allowed) and host_allowed("a.b.docs.test", allowed)
    assert not host_allowed("evildocs.test", allowed) and not host_allowed("corp.test", allowed)
    assert not host_allowed("metadata.google.internal", ("*",))


# --- The first hop, redirects, DNS --------------------------------------------------------------


@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_a_loopback_url_is_refused_before_any_request(site, connections):
    error = _refused(site.url("127.0.0.1", "/page"))
    assert error.code == "blocked_address" and "INGEST_ALLOWED_HOSTS" in error.message
    assert site.requests == [] and connections == []


@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_a_name_that_resolves_to_a_private_address_is_refused(site, dns, connections):
    dns["wiki.intranet.test"] = ["127.0.0.1"]
    assert _refused(site.url("wiki.intranet.test", "/page")).code == "blocked_address"
    assert site.requests == [] and connections == []


@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_a_name_with_any_private_address_among_its_answers_is_refused(site, dns, connections):
    dns["mixed.test"] = ["93.184.216.34", "10.0.0.7"]
    assert _refused(site.url("mixed.test", "/page")).code == "blocked_address"
    assert connections == []


@override_settings(INGEST_ALLOWED_HOSTS=["docs.site.test"])
@pytest.mark.parametrize(
    "target",
    [
        "http://internal.test:{port}/secret",  # resolves to 127.0.0.1, not on the allow-list
        "http://127.0.0.1:{port}/secret",
        "http://localhost:{port}/secret",
        "http://[::ffff:127.0.0.1]:{port}/secret",
        "http://0.0.0.0:{port}/secret",
        "http://10.0.0.1:{port}/secret",
        "http://100.64.0.1/secret",
        "http://[fd00:ec2::254]/latest/meta-data/",
        METADATA,
    ],
)
def test_a_redirect_to_a_private_address_is_refused_at_that_hop(site, dns, connections, target):
    dns["docs.site.test"] = ["127.0.0.1"]
    dns["internal.test"] = ["127.0.0.1"]
    site.redirect("/moved", target.format(port=site.port))
    assert _refused(site.url("docs.site.test", "/moved")).code == "blocked_address"
    assert site.paths == ["/moved"]  # the first hop was asked; the target never was
    assert {address for address, _ in connections} == {"127.0.0.1"}


@override_settings(INGEST_ALLOWED_HOSTS=["docs.site.test"])
def test_each_hop_of_a_redirect_chain_is_checked(site, dns, connections):
    dns["docs.site.test"] = ["127.0.0.1"]
    site.redirect("/a", "/b")
    site.redirect("/b", site.url("docs.site.test", "/page"))
    fetched = fetch(site.url("docs.site.test", "/a"), max_bytes=100_000)
    assert fetched.data == PAGE and fetched.url == site.url("docs.site.test", "/page")
    site.redirect("/c", METADATA)
    site.redirect("/b", "/c")
    assert _refused(site.url("docs.site.test", "/a")).code == "blocked_address"
    assert all(address == "127.0.0.1" for address, _ in connections)


@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_the_checked_address_is_the_one_connected_to(site, dns, connections):
    # DNS rebinding: the name answers a public address first and loopback after. The fetcher
    # resolves once, checks, and connects to that address; it never looks the name up again.
    dns["rebind.test"] = [["93.184.216.34"], ["127.0.0.1"]]
    error = _refused(site.url("rebind.test", "/secret"))
    assert error.code == "fetch_failed"  # 93.184.216.34 cannot be reached from the test network
    assert [address for address, _ in connections] == ["93.184.216.34"]
    assert site.requests == []


@override_settings(INGEST_ALLOWED_HOSTS=["docs.site.test"])
def test_the_server_sees_the_host_name_not_the_address(site, dns):
    dns["docs.site.test"] = ["127.0.0.1"]
    fetch(site.url("docs.site.test", "/page"), max_bytes=100_000)
    assert site.requests == [("/page", f"docs.site.test:{site.port}")]


@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_proxies_from_the_environment_are_not_a_way_around_the_check(site, connections, monkeypatch):
    # A proxy resolves names itself, so nothing could be checked: fetches never use one.
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, site.url("127.0.0.1", ""))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert _refused("http://10.20.30.40/admin").code == "blocked_address"
    assert site.requests == [] and connections == []


# --- The allow-list ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["127.0.0.0/8"], "127.0.0.1"),
        (["wiki.corp.test"], "wiki.corp.test"),
        (["WIKI.corp.test"], "wiki.CORP.test"),
        ([".corp.test"], "wiki.corp.test"),  # a leading dot: the domain and every name below it
    ],
)
def test_the_allow_list_admits_intranet_hosts_by_name_or_network(site, dns, allowed, host):
    dns["wiki.corp.test"] = ["127.0.0.1"]
    with override_settings(INGEST_ALLOWED_HOSTS=allowed):
        assert fetch(site.url(host, "/page"), max_bytes=100_000).data == PAGE


@override_settings(INGEST_ALLOWED_HOSTS=[".corp.test"])
def test_an_allowed_domain_does_not_admit_look_alike_names(site, dns, connections):
    dns["evilcorp.test"] = ["127.0.0.1"]
    dns["corp.test.evil.example"] = ["127.0.0.1"]
    for host in ("evilcorp.test", "corp.test.evil.example"):
        assert _refused(site.url(host, "/page")).code == "blocked_address"
    assert site.requests == []


# --- Through ingestion: sitemaps, the command, the API ------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@override_settings(INGEST_ALLOWED_HOSTS=["docs.site.test"])
def test_sitemap_entries_pointing_at_private_addresses_are_refused(site, dns, connections, isolated_index):
    from retrieval.models import Document

    dns["docs.site.test"] = ["127.0.0.1"]
    site.routes["/sitemap.xml"] = (
        200,
        {"Content-Type": "application/xml"},
        (
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{site.url('docs.site.test', '/page')}</loc></url>"
            f"<url><loc>{site.url('127.0.0.1', '/secret')}</loc></url>"
            f"<url><loc>{METADATA}</loc></url></urlset>"
        ).encode(),
    )
    call_command(
        "ingest", site.url("docs.site.test", "/sitemap.xml"), "--collection", "web", stdout=io.StringIO()
    )
    documents = {d.source: d for d in Document.objects.filter(collection="web")}
    assert documents[site.url("docs.site.test", "/page")].status == "ready"
    for refused in (site.url("127.0.0.1", "/secret"), METADATA):
        assert documents[refused].status == "failed" and documents[refused].error_code == "blocked_address"
    assert "/secret" not in site.paths
    assert {address for address, _ in connections} == {"127.0.0.1"}


@pytest.mark.django_db
@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_the_ingest_command_refuses_private_addresses_and_says_how_to_allow_them(site, connections):
    stderr = io.StringIO()
    with pytest.raises(CommandError):
        call_command("ingest", site.url("127.0.0.1", "/page"), stdout=io.StringIO(), stderr=stderr)
    assert "INGEST_ALLOWED_HOSTS" in stderr.getvalue()
    assert site.requests == [] and connections == []


@pytest.mark.django_db
@override_settings(INGEST_ALLOWED_HOSTS=[])
def test_a_url_sent_to_the_api_is_refused_when_it_is_processed(client, knowledge_manager, connections):
    from retrieval.actions.ingest import process_document
    from retrieval.models import Document
    from tests.conftest import bearer

    response = client.post(
        "/api/documents", {"url": METADATA}, content_type="application/json", **bearer(knowledge_manager)
    )
    assert response.status_code == 202
    document = Document.objects.get(pk=response.json()["id"])
    with pytest.raises(IngestError):
        process_document(document)
    document.refresh_from_db()
    assert document.status == "failed" and document.error_code == "blocked_address"
    assert client.get(f"/api/documents/{document.pk}", **bearer(knowledge_manager)).json()["error_code"] == (
        "blocked_address"
    )
    assert connections == []

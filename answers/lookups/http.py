"""Calling an action's HTTP endpoint, under the SSRF rules ingestion follows (retrieval/fetch.py).

- HTTPS only, except for hosts in ACTIONS_HTTP_HOSTS (a local test service, an intranet system
  behind its own network);
- only hosts on the allow-list ACTIONS_ALLOWED_HOSTS are called at all (names, or ".suffix"
  for a domain: the company's own systems);
- the host is resolved once and every address checked (loopback, private, link-local, reserved
  and the rest are refused unless the host is also in ACTIONS_PRIVATE_HOSTS), and the
  connection goes to the checked address (DNS rebinding gains nothing): retrieval.fetch's
  `checked_addresses` does the check;
- redirects are not followed: a system of record that answers a lookup with a redirect is
  misconfigured or being abused, and following it is how an allowed host leads elsewhere;
- the body is read streaming and dropped past ACTIONS_MAX_RESPONSE_BYTES; it must be JSON, and
  is parsed as data only, at most MAX_DEPTH levels deep;
- one timeout (the action's, at most ACTIONS_MAX_TIMEOUT_SECONDS) for the whole call.

Answers 404, 403 and 410 are "not found": the system refuses to show that record to this
customer, which is what guessing someone else's order number must get.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from answers.lookups.params import fill_header, fill_url
from retrieval.errors import IngestError
from retrieval.fetch import CheckedTransport, host_allowed

USER_AGENT = "Parley-actions/0.1"
MAX_DEPTH = 32
NOT_FOUND = (403, 404, 410)


@dataclass(frozen=True)
class Outcome:
    status: str  # ok, not_found, failed, timeout, refused (answers.models.ActionCall.Status)
    http_status: int | None = None
    data: Any = field(default=None)
    error: str = ""  # for admins and agents; never shown to a customer as it is


def endpoint_refusal(url: str) -> str | None:
    """Why `url` may not be called at all (before any connection), or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "The endpoint is not a valid URL."
    if parts.scheme not in ("https", "http") or not host:
        return "The endpoint must be an https:// URL."
    if parts.username or parts.password:
        return "The endpoint may not carry a user name or password; use the secret instead."
    if not host_allowed(host, settings.ACTIONS_ALLOWED_HOSTS):
        return f"{host} is not on the allow-list of systems actions may call (ACTIONS_ALLOWED_HOSTS)."
    if parts.scheme == "http" and not host_allowed(host, settings.ACTIONS_HTTP_HOSTS):
        return f"{host} may only be called over HTTPS (plain http is for hosts in ACTIONS_HTTP_HOSTS)."
    return None


def call_http(
    *,
    url_template: str,
    method: str,
    headers: Mapping[str, str],
    values: Mapping[str, str],
    secret: str,
    visitor: str,
    timeout: float,
) -> Outcome:
    url = fill_url(url_template, values)
    refusal = endpoint_refusal(url)
    if refusal is not None:
        return Outcome("refused", error=refusal)
    filled = {"secret": secret, "visitor": visitor}
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    sent.update({name: fill_header(value, filled) for name, value in headers.items()})
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(
            transport=CheckedTransport(tuple(settings.ACTIONS_PRIVATE_HOSTS)),
            follow_redirects=False,
            timeout=timeout,
            trust_env=False,
        ) as client:
            body = dict(values) if method == "POST" else None
            with client.stream(method, url, headers=sent, json=body) as response:
                return _outcome(response, deadline)
    except IngestError:  # a refused address (retrieval.fetch.checked_addresses)
        host = urlsplit(url).hostname
        return Outcome(
            "refused",
            error=f"{host} is a loopback, private, link-local or reserved address: actions call public "
            "addresses only (an internal system can be allowed in ACTIONS_PRIVATE_HOSTS).",
        )
    except httpx.TimeoutException:
        return Outcome("timeout", error=f"The system did not answer within {timeout:g} seconds.")
    except (httpx.HTTPError, httpx.InvalidURL, httpcore.ConnectError) as exc:
        return Outcome("failed", error=f"The system could not be reached ({type(exc).__name__}).")
    except _TooSlow:
        return Outcome("timeout", error=f"The system did not finish its answer within {timeout:g} seconds.")


class _TooSlow(Exception):
    pass


def _outcome(response: httpx.Response, deadline: float) -> Outcome:
    status = response.status_code
    if response.is_redirect or 300 <= status < 400:
        return Outcome(
            "refused", status, error="The system answered with a redirect; actions do not follow them."
        )
    if status in NOT_FOUND:
        return Outcome("not_found", status, data={})
    if not response.is_success:
        return Outcome("failed", status, error=f"The system answered HTTP {status}.")
    limit = settings.ACTIONS_MAX_RESPONSE_BYTES
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return Outcome("failed", status, error=f"The system's answer is over the limit of {limit} bytes.")
    chunks: list[bytes] = []
    received = 0
    for chunk in response.iter_bytes():  # after content decoding: a gzip bomb stops here too
        received += len(chunk)
        if received > limit:
            return Outcome("failed", status, error=f"The system's answer is over the limit of {limit} bytes.")
        if time.monotonic() > deadline:
            raise _TooSlow
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):
        return Outcome("failed", status, error="The system's answer is not JSON.")
    if _depth(data) > MAX_DEPTH:
        return Outcome(
            "failed", status, error=f"The system's answer is nested more than {MAX_DEPTH} levels deep."
        )
    return Outcome("ok", status, data=data)


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest

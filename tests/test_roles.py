"""Least privilege, checked everywhere: every URL of the project and every operation of the JSON
API is in the policy tables below, and each is exercised as every persona:

- anonymous: staff pages send to the login page, API operations answer 401;
- a signed-in staff member with no role, or with only a role the entry does not name: 403;
- a person with a named role, and a superuser: neither 401 nor 403 (404, 405, 400 or 422 for the
  dummy ids and bodies are fine: the role check passed).

The tables are explicit on purpose: an endpoint added without an entry fails
`test_every_url_has_a_policy` / `test_every_api_operation_has_a_policy`, so whoever adds one
decides who may use it. Public endpoints are listed as such; "own check" marks public routes that
guard themselves (a token, a signature, loopback) and are checked on their own below.

Roles (core/roles.py): knowledge (knowledge base), agent (live chats, email desk), editor
(studio), admin (governance, erasure, model versions), auditor (read only: audit log, model
records). The Django admin (/admin/) is Django's own: is_staff plus model permissions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from config.api import api
from core.models import ApiToken
from core.roles import ADMIN, AGENT, ALL_ROLES, AUDITOR, EDITOR, KNOWLEDGE

pytestmark = pytest.mark.django_db

PUBLIC = "public"
OWN_CHECK = "public, own check"
DJANGO_ADMIN = "django admin"
API_ROUTES = "the API table"


@dataclass(frozen=True)
class Policy:
    method: str
    roles: frozenset[str] | str  # who may: a set of roles, or PUBLIC / OWN_CHECK
    data: dict[str, Any] = field(default_factory=dict)  # a form that keeps the call cheap


def allow(method: str, *roles: str, **data: Any) -> Policy:
    return Policy(method, frozenset(roles), data)


# --- Pages: URL name → the method exercised and who may use it --------------------------------
PAGES: dict[str, Policy | str] = {
    "demo-site": Policy("GET", PUBLIC),  # the demo company site with the widget
    "health": Policy("GET", PUBLIC),
    "health-ready": Policy("GET", PUBLIC),  # readiness for a load balancer: 503 while warming
    "metrics": Policy("GET", OWN_CHECK),  # METRICS_TOKEN, else loopback or admin/auditor session
    "kb-document": Policy("GET", PUBLIC),  # public documents cited in answers (private: 404)
    "favicon": Policy("GET", PUBLIC),  # a redirect to the static icon
    # Getting in (core/signin.py): signing in and out, and the first-run page, which makes the
    # first administrator only while nobody has an account (tests/test_first_run.py).
    "signin": Policy("GET", PUBLIC),
    "signout": Policy("POST", PUBLIC),
    "setup": Policy("GET", PUBLIC),
    # Agents: live chats, analytics, the email desk.
    "console": allow("GET", AGENT),
    "console-analytics": allow("GET", AGENT),
    "console-export": allow("GET", AGENT),
    "desk": allow("GET", AGENT),
    "desk-ticket": allow("GET", AGENT),
    "desk-approve": allow("POST", AGENT),
    "desk-edit": allow("POST", AGENT),
    "desk-reject": allow("POST", AGENT),
    "desk-regenerate": allow("POST", AGENT),
    "desk-reassign": allow("POST", AGENT),
    "desk-suggest": allow("POST", AGENT),  # the copilot's suggested reply (JSON)
    # Governance: settings for admins; the audit log for admins and auditors.
    "governance": allow("GET", ADMIN),
    "audit": allow("GET", ADMIN, AUDITOR),
    "audit-csv": allow("GET", ADMIN, AUDITOR),
    "audit-json": allow("GET", ADMIN, AUDITOR),
    # Model versions: auditors read, admins change.
    "console-models": allow("GET", ADMIN, AUDITOR),
    "console-model": allow("GET", ADMIN, AUDITOR),
    "console-model-activate": allow("POST", ADMIN),
    "console-model-rollback": allow("POST", ADMIN),
    "console-finetune": allow("POST", ADMIN, max_steps="99999"),  # refused as out of range: nothing queued
    # Editors: the content studio.
    "studio": allow("GET", EDITOR),
    "studio-brief": allow("POST", EDITOR),
    "studio-item": allow("GET", EDITOR),
    "studio-save": allow("POST", EDITOR),
    "studio-regenerate": allow("POST", EDITOR),
    "studio-transition": allow("POST", EDITOR),
    "studio-comment": allow("POST", EDITOR),
    "studio-assign": allow("POST", EDITOR),
    "studio-more-images": allow("POST", EDITOR),
    "studio-image": allow("POST", EDITOR),
    # The API's own pages: the schema is part of the contract (ARCHITECTURE.md).
    "api:openapi-json": Policy("GET", PUBLIC),
    "api:openapi-view": Policy("GET", PUBLIC),
    "api:api-root": Policy("GET", PUBLIC),
}
# Everything under these prefixes is governed elsewhere.
PREFIXES = {
    "admin/": DJANGO_ADMIN,  # Django's admin: is_staff and model permissions, its own login
    "api/": API_ROUTES,  # operations: the API table below (checked against the URL patterns too)
}

# --- API operations: (method, path as in /api/openapi.json) → who may use it -------------------
API: dict[tuple[str, str], Policy] = {
    # Knowledge base: knowledge managers write; agents and editors search and read.
    ("POST", "/api/documents"): allow("POST", KNOWLEDGE),
    ("GET", "/api/documents/{document_id}"): allow("GET", KNOWLEDGE, AGENT, EDITOR),
    ("DELETE", "/api/documents/{document_id}"): allow("DELETE", KNOWLEDGE),
    ("GET", "/api/search"): allow("GET", KNOWLEDGE, AGENT, EDITOR, q=" "),  # refused as empty: no model load
    # Website assistant: agents.
    ("GET", "/api/conversations/{conversation_id}"): allow("GET", AGENT),
    ("POST", "/api/messages/{message_id}/correct"): allow("POST", AGENT),
    ("GET", "/api/visitors/{visitor}/export"): allow("GET", AGENT),
    ("DELETE", "/api/visitors/{visitor}"): allow("DELETE", AGENT),
    ("POST", "/api/inbound/mail"): Policy("POST", OWN_CHECK),  # HMAC signature of the body
    # Email desk: agents.
    ("GET", "/api/tickets"): allow("GET", AGENT),
    ("GET", "/api/tickets/{ticket_id}"): allow("GET", AGENT),
    ("POST", "/api/tickets/{ticket_id}/approve"): allow("POST", AGENT),
    ("POST", "/api/tickets/{ticket_id}/reject"): allow("POST", AGENT),
    ("POST", "/api/tickets/{ticket_id}/draft"): allow("POST", AGENT),
    ("POST", "/api/tickets/{ticket_id}/regenerate"): allow("POST", AGENT),
    ("POST", "/api/tickets/{ticket_id}/reassign"): allow("POST", AGENT),
    # A person's data across the product (GDPR access and erasure): admins.
    ("GET", "/api/people/{email}/export"): allow("GET", ADMIN),
    ("DELETE", "/api/people/{email}"): allow("DELETE", ADMIN),
    # Canned replies (the agent copilot): admins manage them; agents insert them in the console.
    ("GET", "/api/actions"): allow("GET", ADMIN),
    ("POST", "/api/actions"): allow("POST", ADMIN),
    ("GET", "/api/actions/calls"): allow("GET", ADMIN),
    ("GET", "/api/actions/{action_id}"): allow("GET", ADMIN),
    ("PATCH", "/api/actions/{action_id}"): allow("PATCH", ADMIN),
    ("DELETE", "/api/actions/{action_id}"): allow("DELETE", ADMIN),
    ("POST", "/api/actions/{action_id}/test"): allow("POST", ADMIN),
    ("GET", "/api/macros"): allow("GET", ADMIN),
    ("POST", "/api/macros"): allow("POST", ADMIN),
    ("GET", "/api/macros/{macro_id}"): allow("GET", ADMIN),
    ("PATCH", "/api/macros/{macro_id}"): allow("PATCH", ADMIN),
    ("DELETE", "/api/macros/{macro_id}"): allow("DELETE", ADMIN),
    # Content studio: editors.
    ("POST", "/api/content/briefs"): allow("POST", EDITOR),
    ("GET", "/api/content/items"): allow("GET", EDITOR),
    ("GET", "/api/content/items/{item_id}"): allow("GET", EDITOR),
    ("PATCH", "/api/content/items/{item_id}"): allow("PATCH", EDITOR),
    ("POST", "/api/content/items/{item_id}/transition"): allow("POST", EDITOR),
    ("POST", "/api/content/items/{item_id}/regenerate"): allow("POST", EDITOR),
    ("POST", "/api/content/items/{item_id}/comments"): allow("POST", EDITOR),
    ("POST", "/api/content/items/{item_id}/assign"): allow("POST", EDITOR),
    ("POST", "/api/content/items/{item_id}/comments/{comment_id}/resolve"): allow("POST", EDITOR),
    ("GET", "/api/content/items/{item_id}/export"): allow("GET", EDITOR),
    ("POST", "/api/content/items/{item_id}/images"): allow("POST", EDITOR),
    ("POST", "/api/content/images/{image_id}/{action}"): allow("POST", EDITOR),
    ("GET", "/api/content/images/{image_id}.png"): allow("GET", EDITOR),
    ("POST", "/api/content/deliveries/{delivery_id}/retry"): allow("POST", EDITOR),
    ("GET", "/api/content/images/{image_id}/preview.png"): allow("GET", EDITOR),
    # Governance: the audit log, read only.
    ("GET", "/api/audit"): allow("GET", ADMIN, AUDITOR),
}

# --- Websockets (config/asgi.py): listed so a new route needs a decision too --------------------
WEBSOCKETS = {
    "ws/chat/": PUBLIC,  # the widget; it checks the Origin per site itself
    "ws/console/": frozenset({AGENT}),  # ConsoleConsumer refuses anyone else before accepting
}


# --- Walking the project ----------------------------------------------------------------------


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), (namespace + pattern.name) if pattern.name else None


def project_urls() -> list[tuple[str, str | None]]:
    return list(_walk(get_resolver().url_patterns))


def _schema() -> dict[str, Any]:
    return api.get_openapi_schema()


def api_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in _schema()["paths"].items() for method in ops}


def test_every_url_has_a_policy():
    missing, seen = [], set()
    for route, name in project_urls():
        if any(route.startswith(prefix) for prefix in PREFIXES) and name not in PAGES:
            continue
        seen.add(name)
        if name not in PAGES:
            missing.append(f"/{route} (name {name!r})")
    assert not missing, "Add these to PAGES in tests/test_roles.py (who may use them?): " + ", ".join(missing)
    assert not set(PAGES) - seen, f"PAGES names URLs that no longer exist: {set(PAGES) - seen}"


def test_every_api_operation_has_a_policy():
    operations = api_operations()
    missing = sorted(operations - set(API))
    assert not missing, f"Add these to API in tests/test_roles.py (who may use them?): {missing}"
    assert not set(API) - operations, f"API names operations that no longer exist: {set(API) - operations}"
    # Every operation's route is an API URL pattern, and the API holds no route outside the schema.
    routes = {"/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route) for route, _ in project_urls()}
    api_routes = {r for r in routes if r.startswith("/api/")} - {"/api/", "/api/openapi.json", "/api/docs"}
    assert api_routes == {path for _, path in operations}


def test_every_websocket_route_has_a_policy():
    from assistant.chat.routing import websocket_urlpatterns

    assert {str(p.pattern) for p in websocket_urlpatterns} == set(WEBSOCKETS)


# --- Personas ---------------------------------------------------------------------------------


def _person(username: str, *roles: str, superuser: bool = False) -> User:
    """A staff member signed in with force_login (tests/conftest.py's `_user` hashes a password:
    ~0.3 s each, and this module makes seven people per endpoint)."""
    user = User.objects.create(username=username, is_staff=True, is_superuser=superuser)
    user.groups.add(*(Group.objects.get_or_create(name=role)[0] for role in roles))
    return user


@pytest.fixture
def people() -> dict[str, User]:
    """Nobody (staff, no role), one person per role, and a superuser."""
    crowd = {"nobody": _person("nobody"), "superuser": _person("root", superuser=True)}
    crowd |= {role: _person(f"only-{role}", role) for role in ALL_ROLES}
    return crowd


def _who_must_be_refused(roles: frozenset[str]) -> list[str]:
    return ["nobody", *(role for role in ALL_ROLES if role not in roles)]


def _who_must_get_in(roles: frozenset[str]) -> list[str]:
    return [*sorted(roles), "superuser"]


# --- Pages ------------------------------------------------------------------------------------


def _page_url(name: str) -> str:
    """The page's URL with dummy arguments: 999999 for ids, "x" for text."""
    for route, route_name in project_urls():
        if route_name == name:
            path = re.sub(r"<int:\w+>", "999999", route)
            return "/" + re.sub(r"<(?:\w+:)?\w+>", "x", path)
    raise AssertionError(f"No URL named {name}")


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/accounts/login/")


STAFF_PAGES = sorted(name for name, policy in PAGES.items() if isinstance(policy.roles, frozenset))


@pytest.mark.parametrize("name", STAFF_PAGES)
def test_staff_page_lets_in_only_its_roles(name, people):
    policy, url, client = PAGES[name], _page_url(name), Client()

    def call():
        return client.generic(policy.method, url, data=_form(policy.data), content_type=FORM)

    assert _is_login_redirect(call()), f"anonymous {policy.method} {url}"
    for who in _who_must_be_refused(policy.roles):
        client.force_login(people[who])
        assert call().status_code == 403, f"{who} {policy.method} {url}"
    for who in _who_must_get_in(policy.roles):
        client.force_login(people[who])
        response = call()
        assert response.status_code not in (401, 403) and not _is_login_redirect(response), (
            f"{who} {policy.method} {url}: {response.status_code}"
        )


FORM = "application/x-www-form-urlencoded"


def _form(data: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode(data)


@pytest.mark.parametrize("name", sorted(n for n, p in PAGES.items() if p.roles == PUBLIC))
def test_public_page_needs_no_sign_in(name):
    response = Client().get(_page_url(name))
    assert response.status_code not in (401, 403) and not _is_login_redirect(response)


# --- API --------------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _sample(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    """The smallest value the schema accepts: a body or parameter that passes validation, so the
    role check (which runs in the operation) is what answers."""
    node = _resolve(schema, node)
    if "enum" in node:
        return node["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            options = [o for o in node[key] if _resolve(schema, o).get("type") != "null"]
            return _sample(schema, options[0])
    kind = node.get("type", "string")
    if kind == "object":
        return {name: _sample(schema, node["properties"][name]) for name in node.get("required", [])}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 999999
    if kind == "boolean":
        return False
    return {"date": "2030-01-01", "date-time": "2030-01-01T00:00:00Z"}.get(node.get("format"), "999999")


def _api_call(method: str, path: str, policy: Policy) -> tuple[str, dict[str, Any], Any]:
    """URL, query and JSON body for one operation, with dummy ids and the smallest valid body."""
    schema = _schema()
    operation = schema["paths"][path][method.lower()]
    url, query = path, {}
    for param in operation.get("parameters", []):
        value = _sample(schema, param.get("schema", {}))
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", str(value))
        elif param["in"] == "query" and param.get("required"):
            query[param["name"]] = value
    query |= policy.data
    body = None
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content and method != "GET":
        body = _sample(schema, content["application/json"].get("schema", {}))
    return url, query, body


def _bearer(user: User) -> dict[str, str]:
    _, raw = ApiToken.issue(user, name="roles test")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


STAFF_OPERATIONS = sorted(key for key, policy in API.items() if isinstance(policy.roles, frozenset))


@pytest.mark.parametrize("method,path", STAFF_OPERATIONS, ids=[f"{m} {p}" for m, p in STAFF_OPERATIONS])
def test_api_operation_lets_in_only_its_roles(method, path, people):
    from urllib.parse import urlencode

    policy = API[(method, path)]
    url, query, body = _api_call(method, path, policy)
    if query:
        url += "?" + urlencode(query)
    client = Client()

    def call(**headers: str):
        if body is None:
            return client.generic(method, url, **headers)
        import json

        return client.generic(method, url, json.dumps(body), content_type="application/json", **headers)

    assert call().status_code == 401, f"anonymous {method} {url}"
    for who in _who_must_be_refused(policy.roles):
        response = call(**_bearer(people[who]))
        assert response.status_code == 403, (
            f"{who} {method} {url}: {response.status_code} {response.content[:200]}"
        )
        client.force_login(people[who])  # a staff session is held to the same roles
        assert call().status_code == 403, f"{who} (session) {method} {url}"
        client.logout()
    for who in _who_must_get_in(policy.roles):
        response = call(**_bearer(people[who]))
        assert response.status_code not in (401, 403), f"{who} {method} {url}: {response.status_code}"


# --- Public routes with their own check -------------------------------------------------------


def test_the_inbound_mail_webhook_refuses_unsigned_mail(client, settings):
    settings.MAIL_INBOUND_SECRET = ""
    assert client.post("/api/inbound/mail", b"x", content_type="message/rfc822").status_code == 404
    settings.MAIL_INBOUND_SECRET = "s3cret"
    response = client.post("/api/inbound/mail", b"Subject: hi\r\n\r\nhi", content_type="message/rfc822")
    assert response.status_code == 401 and response.json()["error"]["code"] == "bad_signature"


def test_metrics_with_a_token_refuses_anyone_without_it(client, settings, people):
    settings.METRICS_TOKEN = "metrics-token"
    assert client.get("/metrics").status_code in (401, 403)
    client.force_login(people[AGENT])
    assert client.get("/metrics").status_code in (401, 403)
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token").status_code == 200

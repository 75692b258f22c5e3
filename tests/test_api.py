"""The JSON API: authentication, roles, error shapes, and the knowledge-base resources."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import call_command
from django.test import Client

from core.models import ApiToken
from retrieval.models import Chunk, Document
from tests.conftest import DEMO_DIR, bearer

pytestmark = pytest.mark.django_db


def test_openapi_schema_lists_the_contract_resources(client):
    schema = client.get("/api/openapi.json").json()
    for path in ("/api/documents", "/api/documents/{document_id}", "/api/search"):
        assert path in schema["paths"], path


def test_anonymous_requests_get_a_json_401(client):
    response = client.get("/api/search", {"q": "router"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_an_unknown_or_revoked_token_is_refused(client, knowledge_manager):
    headers = bearer(knowledge_manager)
    ApiToken.objects.update(revoked_at="2026-01-01T00:00:00Z")
    assert client.get("/api/search", {"q": "x"}, **headers).status_code == 401
    assert client.get("/api/search", {"q": "x"}, HTTP_AUTHORIZATION="Bearer prl_nope").status_code == 401


def test_create_api_token_prints_a_token_once_and_stores_only_its_hash(knowledge_manager):
    out = io.StringIO()
    call_command("create_api_token", "kim", stdout=out)
    raw = out.getvalue().strip()
    assert raw.startswith("prl_") and len(raw) > 40
    token = ApiToken.objects.get(user=knowledge_manager)
    assert raw not in (token.token_hash, token.prefix) and token.prefix == raw[:12]


def test_it_validates_ownership_roles_decide_what_a_token_may_do(client, outsider, agent, demo_kb):
    doc = Document.objects.first()
    assert client.get(f"/api/documents/{doc.pk}", **bearer(outsider)).status_code == 403
    assert client.get(f"/api/documents/{doc.pk}", **bearer(agent)).status_code == 200
    response = client.delete(f"/api/documents/{doc.pk}", **bearer(agent))
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert Document.objects.filter(pk=doc.pk).exists()


def test_session_writes_need_csrf(knowledge_manager, demo_kb):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(knowledge_manager)
    doc = Document.objects.first()
    assert browser.get(f"/api/documents/{doc.pk}").status_code == 200
    assert browser.delete(f"/api/documents/{doc.pk}").status_code in (401, 403)
    assert Document.objects.filter(pk=doc.pk).exists()


def test_search_returns_hits_with_scores_and_sources(client, agent, demo_kb):
    response = client.get("/api/search", {"q": "factory reset the router", "k": 3}, **bearer(agent))
    assert response.status_code == 200
    hits = response.json()
    assert len(hits) == 3 and "reset" in hits[0]["title"].lower()
    assert all(isinstance(h["score"], float) and h["url"] for h in hits)
    assert all(h["fused_score"] == h["score"] and h["language"] == "en" for h in hits)


def test_search_mode_picks_the_retriever(client, agent, demo_kb):
    response = client.get("/api/search", {"q": "factory reset the router", "mode": "bm25"}, **bearer(agent))
    assert response.status_code == 200
    hits = response.json()
    assert hits and all(h["dense_score"] is None and h["bm25_score"] > 0 for h in hits)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"q": ""}, "bad_query"),
        ({"q": "x", "k": 0}, "bad_k"),
        ({"q": "x", "k": "many"}, "invalid_request"),
        ({"q": "x", "collection": "../etc"}, "bad_collection"),
        ({"q": "x", "mode": "fuzzy"}, "bad_mode"),
        ({}, "invalid_request"),
    ],
)
def test_bad_search_requests_get_a_clear_4xx(client, agent, params, code):
    response = client.get("/api/search", params, **bearer(agent))
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] == code


def test_unknown_document_is_a_json_404(client, knowledge_manager):
    response = client.get("/api/documents/999999", **bearer(knowledge_manager))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert client.delete("/api/documents/999999", **bearer(knowledge_manager)).status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_upload_is_processed_by_the_task_and_delete_removes_its_vectors(
    client, knowledge_manager, embedder, settings, isolated_index
):
    settings.CELERY_TASK_ALWAYS_EAGER = True  # the task body runs here; serve's worker is tested elsewhere
    from config.celery import app

    app.conf.task_always_eager = True
    try:
        upload = io.BytesIO((DEMO_DIR / "refunds.md").read_bytes())
        upload.name = "refunds.md"
        response = client.post(
            "/api/documents", {"file": upload, "collection": "apitest"}, **bearer(knowledge_manager)
        )
        assert response.status_code == 202, response.content
        doc_id = response.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = client.get(f"/api/documents/{doc_id}", **bearer(knowledge_manager)).json()
            if state["status"] in ("ready", "failed"):
                break
            time.sleep(0.2)
        assert state["status"] == "ready" and state["progress"] == 100 and state["chunks"] > 0, state
        assert state["kind"] == "markdown"
        from retrieval.index import get_index

        index = get_index("apitest", embedder.dim)
        assert len(index) == state["chunks"]
        assert client.delete(f"/api/documents/{doc_id}", **bearer(knowledge_manager)).status_code == 204
        assert len(index) == 0 and not Chunk.objects.filter(document_id=doc_id).exists()
    finally:
        app.conf.task_always_eager = False


def test_bad_upload_requests_are_refused_clearly(client, knowledge_manager):
    headers = bearer(knowledge_manager)
    response = client.post("/api/documents", data=b"{not json", content_type="application/json", **headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
    response = client.post(
        "/api/documents", {"url": "ftp://example.com/x"}, content_type="application/json", **headers
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_url"
    response = client.post("/api/documents", {"other": "field"}, **headers)  # multipart without a file
    assert response.status_code == 400 and response.json()["error"]["code"] == "missing_file"

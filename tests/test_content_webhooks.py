"""Publishing to a CMS: a published item is posted, signed, to a real local HTTP receiver; failures
are retried, timeouts are cut and logged, and a refusal fails at once. Items are made with the
ORM (the model-driven generation is tested in test_content_studio.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from content import review, webhooks
from content.models import Brief, ContentItem, WebhookDelivery
from core.roles import EDITOR
from tests.conftest import _user, bearer

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "cms-shared-secret"


class Receiver:
    """A CMS endpoint: answers each request with the next planned (status, delay)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.plan: list[tuple[int, float]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's hook name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status, delay = receiver.plan.pop(0) if receiver.plan else (200, 0)
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timeout)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/parley"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def cms(settings, tmp_path):
    receiver = Receiver()
    settings.DATA_DIR = tmp_path
    settings.CONTENT_WEBHOOK_URL = receiver.url
    settings.CONTENT_WEBHOOK_SECRET = SECRET
    settings.CONTENT_WEBHOOK_TIMEOUT = 1.0
    settings.CONTENT_WEBHOOK_BACKOFF_SECONDS = 0
    settings.CONTENT_WEBHOOK_ATTEMPTS = 3
    yield receiver
    receiver.server.shutdown()


@pytest.fixture
def approved(db):
    editor = _user("edna", EDITOR)
    brief = Brief.objects.create(topic="Router <script>x</script>", keyphrase="router", created_by=editor)
    item = ContentItem.objects.create(
        brief=brief,
        state="approved",
        generation="done",
        title="Router tips",
        slug="router-tips",
        meta_title="Router tips",
        meta_description="Router tips for everyone.",
        intro="A router intro.",
        sections=[{"id": "s1", "heading": "Restart", "text": "Restart the router."}],
        faq=[{"question": "Why restart?", "answer": "It clears faults."}],
    )
    return item, editor


def publish(item, editor) -> WebhookDelivery:
    review.transition(item, "published", user=editor)
    return WebhookDelivery.objects.get(item=item)


def test_a_published_item_is_posted_signed_to_the_cms(cms, approved):
    item, editor = approved
    delivery = publish(item, editor)
    assert webhooks.deliver(delivery.pk) == "delivered"
    assert webhooks.deliver(delivery.pk) == "delivered"  # a redelivered task posts nothing more
    assert len(cms.requests) == 1
    headers, body = cms.requests[0]
    stamp, signature = (part.split("=", 1)[1] for part in headers["X-Parley-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected) and abs(time.time() - int(stamp)) < 60
    assert headers["X-Parley-Delivery"] == str(delivery.pk) and headers["X-Parley-Event"] == "item.published"
    payload = json.loads(body)
    assert payload["item"]["slug"] == "router-tips" and payload["item"]["faq_jsonld"]["@type"] == "FAQPage"
    delivery.refresh_from_db()
    assert delivery.log[0]["status_code"] == 200 and delivery.delivered_at


def test_server_errors_and_timeouts_are_retried_and_logged(cms, approved):
    item, editor = approved
    cms.plan = [(503, 0), (200, 1.5), (200, 0)]  # an outage, then a reply slower than the timeout
    delivery = publish(item, editor)
    assert webhooks.deliver(delivery.pk) == "retry"
    assert webhooks.deliver(delivery.pk) == "retry"
    assert webhooks.deliver(delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert [entry["status_code"] for entry in delivery.log] == [503, None, 200]
    assert "timed out" in delivery.log[1]["error"] and delivery.attempts == 3
    # Every attempt sent the same body (the receiver can drop duplicates by delivery id).
    assert len({body for _, body in cms.requests}) == 1


def test_a_refusal_fails_at_once_and_an_editor_can_send_it_again(cms, approved, client, settings):
    item, editor = approved
    cms.plan = [(400, 0)]
    delivery = publish(item, editor)
    assert webhooks.deliver(delivery.pk) == "failed"
    data = client.get(f"/api/content/items/{item.pk}", **bearer(editor)).json()
    assert data["deliveries"][0]["status"] == "failed" and "HTTP 400" in data["deliveries"][0]["last_error"]
    response = client.post(f"/api/content/deliveries/{delivery.pk}/retry", **bearer(editor))
    assert response.status_code == 200 and response.json()["status"] == "retry"
    assert client.post(f"/api/content/deliveries/{delivery.pk}/retry", **bearer(editor)).status_code == 409
    assert webhooks.deliver(delivery.pk) == "delivered"


def test_an_unreachable_cms_fails_after_the_last_attempt_and_due_retries_are_swept(cms, approved, settings):
    item, editor = approved
    settings.CONTENT_WEBHOOK_URL = "http://127.0.0.1:9/unreachable"
    settings.CONTENT_WEBHOOK_BACKOFF_SECONDS = 60
    delivery = publish(item, editor)
    assert webhooks.deliver(delivery.pk) == "retry"
    assert webhooks.deliver_due() == 0  # not due yet
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert webhooks.deliver_due() == 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert webhooks.deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 3 and "ConnectError" in delivery.last_error


def test_a_delivery_left_sending_by_a_killed_worker_is_sent_again_once_its_claim_expires(cms, approved):
    item, editor = approved
    delivery = publish(item, editor)
    # A worker claimed the delivery and was killed before it could record the outcome.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.SENDING,
        attempts=1,
        next_attempt_at=timezone.now() + timedelta(seconds=600),
    )
    assert webhooks.deliver_due() == 0  # still claimed: maybe a slow receiver, not a dead worker
    assert webhooks.deliver(delivery.pk) == "sending"  # a second worker never posts it twice
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert webhooks.deliver_due() == 1
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 2 and len(cms.requests) == 1
    assert "interrupted" in delivery.log[0]["error"] and delivery.log[1]["status_code"] == 200


def test_a_claimed_delivery_holds_its_claim_for_the_timeout_and_a_margin(cms, approved, settings):
    item, editor = approved
    cms.plan = [(200, 0.3)]
    delivery = publish(item, editor)
    seen = {}

    def watch():
        time.sleep(0.15)
        seen.update(WebhookDelivery.objects.filter(pk=delivery.pk).values("status", "next_attempt_at")[0])
        seen["at"] = timezone.now()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert webhooks.deliver(delivery.pk) == "delivered"
    watcher.join()
    assert seen["status"] == "sending"
    assert seen["next_attempt_at"] > seen["at"] + timedelta(seconds=settings.CONTENT_WEBHOOK_TIMEOUT)


def test_without_a_configured_cms_publishing_posts_nothing(approved, settings):
    item, editor = approved
    settings.CONTENT_WEBHOOK_URL = ""
    review.transition(item, "published", user=editor)
    assert not WebhookDelivery.objects.exists() and ContentItem.objects.get().state == "published"

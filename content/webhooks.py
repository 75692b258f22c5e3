"""Publishing to a CMS: a published item is posted as JSON to CONTENT_WEBHOOK_URL, signed, with
retries and a delivery log the studio shows.

Signature (verify on the receiving side): header `X-Parley-Signature: t=<unix seconds>,v1=<hex>`
where hex is HMAC-SHA256 under CONTENT_WEBHOOK_SECRET of `<t>.<body>`; reject old timestamps to
stop replays. `X-Parley-Delivery` is the delivery id: the same on every retry, so a receiver can
drop a duplicate. A 2xx answer is delivered; 408, 429, 5xx, timeouts and connection errors are
retried with a doubling delay (CONTENT_WEBHOOK_ATTEMPTS, CONTENT_WEBHOOK_BACKOFF_SECONDS); any
other 4xx fails at once (the receiver refused this body; retrying sends the same body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from content import export
from content.models import ContentItem, WebhookDelivery
from content.present import export_item
from core import jobs

log = logging.getLogger(__name__)
RETRYABLE = {408, 425, 429}


def sign(body: bytes, timestamp: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def queue_delivery(item: ContentItem) -> WebhookDelivery | None:
    """A delivery of the item as it is now (call inside the publishing transaction)."""
    if not settings.CONTENT_WEBHOOK_URL:
        return None
    payload = {"event": "item.published", "item": export.to_json(export_item(item, with_png=False))}
    delivery = WebhookDelivery.objects.create(
        item=item,
        url=settings.CONTENT_WEBHOOK_URL,
        body=json.dumps(payload, ensure_ascii=False, sort_keys=True),
    )
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(pk: int, countdown: float = 0) -> None:
    jobs.enqueue("content.deliver_webhook", pk, countdown=countdown)


def retry(delivery: WebhookDelivery) -> WebhookDelivery:
    """An editor sends a failed delivery again (the same body, fresh attempts)."""
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.FAILED).update(
        status=WebhookDelivery.Status.RETRY, attempts=0, next_attempt_at=timezone.now()
    )
    delivery.refresh_from_db()
    transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def claim_seconds() -> float:
    """How long an attempt holds its claim: the request's timeout and a margin. A claim older
    than this belongs to a worker that was killed mid-attempt, and the delivery is due again
    (receivers drop a repeat by X-Parley-Delivery, so a second post is safe, unlike a mail)."""
    return settings.CONTENT_WEBHOOK_TIMEOUT + 60


_DUE = [WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRY, WebhookDelivery.Status.SENDING]


def deliver(pk: int) -> str:
    """One attempt (claimed first, so two workers never post it at once); returns the status."""
    now = timezone.now()
    before = WebhookDelivery.objects.filter(pk=pk).values_list("status", flat=True).first()
    # While sending, next_attempt_at is the claim's expiry: a due "sending" row is an attempt
    # whose worker died (the claim is taken over conditionally, so only one worker wins it).
    claimed = WebhookDelivery.objects.filter(pk=pk, status__in=_DUE, next_attempt_at__lte=now).update(
        status=WebhookDelivery.Status.SENDING,
        attempts=F("attempts") + 1,
        next_attempt_at=now + timedelta(seconds=claim_seconds()),
    )
    if not claimed:
        return WebhookDelivery.objects.filter(pk=pk).values_list("status", flat=True).first() or "missing"
    delivery = WebhookDelivery.objects.get(pk=pk)
    if before == WebhookDelivery.Status.SENDING:
        interrupted = {"at": now.isoformat(), "status_code": None, "seconds": None}
        delivery.log = [*delivery.log, interrupted | {"error": "attempt interrupted (the worker stopped)"}]
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Parley-Webhook/1",
        "X-Parley-Event": delivery.event,
        "X-Parley-Delivery": str(delivery.pk),
    }
    if settings.CONTENT_WEBHOOK_SECRET:
        headers["X-Parley-Signature"] = sign(body, int(time.time()), settings.CONTENT_WEBHOOK_SECRET)
    started = time.perf_counter()
    code, error = None, ""
    try:
        response = httpx.post(
            delivery.url,
            content=body,
            headers=headers,
            timeout=settings.CONTENT_WEBHOOK_TIMEOUT,
            follow_redirects=False,
        )
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:300]}"
    except httpx.TimeoutException:
        error = f"timed out after {settings.CONTENT_WEBHOOK_TIMEOUT:g} s"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    entry = {
        "at": now.isoformat(),
        "status_code": code,
        "error": error or None,
        "seconds": round(time.perf_counter() - started, 3),
    }
    fields = {"last_status_code": code, "last_error": error, "log": [*delivery.log, entry][-50:]}
    if not error:
        fields |= {"status": WebhookDelivery.Status.DELIVERED, "delivered_at": timezone.now()}
    elif (
        code is None or code >= 500 or code in RETRYABLE
    ) and delivery.attempts < settings.CONTENT_WEBHOOK_ATTEMPTS:
        delay = settings.CONTENT_WEBHOOK_BACKOFF_SECONDS * 2 ** (delivery.attempts - 1)
        fields |= {
            "status": WebhookDelivery.Status.RETRY,
            "next_attempt_at": timezone.now() + timedelta(seconds=delay),
        }
        transaction.on_commit(lambda: _enqueue(pk, countdown=delay))
    else:
        fields |= {"status": WebhookDelivery.Status.FAILED}
    WebhookDelivery.objects.filter(pk=pk).update(**fields)
    log.info(
        "event=webhook_attempt delivery=%s status=%s code=%s error=%s", pk, fields.get("status"), code, error
    )
    return fields["status"]


def deliver_due() -> int:
    """Deliveries whose retry is due (a lost task, a restart) and attempts whose worker was
    killed (claim expired): the beat schedule runs this."""
    due = list(
        WebhookDelivery.objects.filter(status__in=_DUE, next_attempt_at__lte=timezone.now()).values_list(
            "pk", flat=True
        )
    )
    for pk in due:
        deliver(pk)
    return len(due)

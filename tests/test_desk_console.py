"""The email desk's review queue in the staff console: the list, one ticket's page and the decision
forms, driven through Django's test client as an agent's browser would (no JavaScript).

Tickets, mails and drafts are made directly with the ORM: the language model is not run here.
The model-driven flow (triage, a grounded draft, the API's decisions, real SMTP) is tested in
tests/test_desk_review.py. Approving only queues the reply (the Celery broker in tests is an
in-memory one nobody consumes), so the approve test calls outbound.deliver itself, with the
locmem email backend.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from assistant.desk import outbound
from assistant.models import (
    Draft,
    MailMessage,
    OutboundMail,
    Ticket,
    TicketEvent,
    TrainingExample,
    TriageLabel,
)
from core.roles import AGENT
from tests.conftest import _user

pytestmark = pytest.mark.django_db

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@pytest.fixture(autouse=True)
def locmem_mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DESK_FROM_EMAIL = "support@brightline.example"


@pytest.fixture
def priorities(db):
    """Ranks as the queue orders them (the seeded labels, pinned here so the test says them)."""
    for rank, name in enumerate(["urgent", "normal"]):
        TriageLabel.objects.update_or_create(
            kind=TriageLabel.Kind.PRIORITY, name=name, defaults={"examples": "x", "rank": rank}
        )


@pytest.fixture
def signed_in(agent):
    client = Client()
    client.force_login(agent)
    return client


def make_ticket(
    subject="Wifi keeps dropping",
    *,
    status=Ticket.Status.NEEDS_REVIEW,
    priority="",
    age_hours=1,
    body="My wifi drops every evening. How do I fix it?",
    draft="Restart the router from Settings > Network [1].",
    **fields,
) -> Ticket:
    ticket = Ticket.objects.create(
        subject=subject,
        customer_email="ana@example.com",
        customer_name="Ana Example",
        status=status,
        priority=priority,
        priority_confidence=0.8 if priority else None,
        **fields,
    )
    Ticket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(hours=age_hours))
    question = MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id=f"<{ticket.reference}@example.com>",
        from_email="ana@example.com",
        from_name="Ana Example",
        subject=subject,
        text=body,
        reply_text=body,
    )
    if draft is not None:
        Draft.objects.create(
            ticket=ticket,
            version=1,
            body=draft,
            replying_to=question,
            citations=[
                {
                    "n": 1,
                    "title": "Router guide",
                    "url": "https://help.example.com/router",
                    "section": "Restarting",
                    "snippet": "Hold the power button for ten seconds.",
                }
            ],
        )
    return ticket


def detail_url(ticket: Ticket, action: str = "") -> str:
    if action:
        return reverse(f"desk-{action}", args=[ticket.pk])
    return reverse("desk-ticket", args=[ticket.pk])


# --- Who gets in ------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    ticket = make_ticket()
    for url in (reverse("desk"), detail_url(ticket)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("signin"))
    assert client.post(detail_url(ticket, "approve")).status_code == 302
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW


def test_it_validates_the_agent_role(client, outsider):
    ticket = make_ticket()
    client.force_login(outsider)
    assert client.get(reverse("desk")).status_code == 403
    assert client.get(detail_url(ticket)).status_code == 403
    for action in ("approve", "edit", "reject", "regenerate", "reassign"):
        assert client.post(detail_url(ticket, action), {"reason": "no", "body": "x"}).status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW
    assert not OutboundMail.objects.exists()


def test_agents_see_the_queue_and_the_console_links_to_it(signed_in):
    assert signed_in.get(reverse("desk")).status_code == 200
    assert reverse("desk") in signed_in.get(reverse("console")).content.decode()


def test_a_post_without_the_csrf_token_is_refused(agent):
    ticket = make_ticket()
    client = Client(enforce_csrf_checks=True)
    client.force_login(agent)
    response = client.post(detail_url(ticket, "approve"), {"body": "Hello", "version": "1"})
    assert response.status_code == 403
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW
    assert not OutboundMail.objects.exists()


def test_an_unknown_ticket_is_404(signed_in):
    assert signed_in.get(reverse("desk-ticket", args=[999999])).status_code == 404
    assert signed_in.post(reverse("desk-approve", args=[999999]), {"body": "x"}).status_code == 404


def test_an_unknown_status_filter_is_a_bad_request(signed_in):
    assert signed_in.get(reverse("desk"), {"status": "bogus"}).status_code == 400


# --- The queue ----------------------------------------------------------------------------------------


def test_the_queue_lists_by_priority_then_oldest_first(signed_in, priorities):
    normal_old = make_ticket("normal old", priority="normal", age_hours=50)
    urgent_new = make_ticket("urgent new", priority="urgent", age_hours=1)
    urgent_old = make_ticket("urgent old", priority="urgent", age_hours=30)
    untriaged = make_ticket("untriaged", age_hours=100)

    page = signed_in.get(reverse("desk")).content.decode()

    positions = [page.index(t.reference) for t in (urgent_old, urgent_new, normal_old, untriaged)]
    assert positions == sorted(positions)
    assert 'urgent <span class="conf">80%</span>' in page


def test_the_status_tabs_filter_and_count(signed_in):
    waiting = make_ticket("waiting")
    make_ticket("also waiting")
    done = make_ticket("done", status=Ticket.Status.SENT)

    page = signed_in.get(reverse("desk")).content.decode()
    assert waiting.reference in page and done.reference not in page
    assert "needs review (2)" in page and "sent (1)" in page
    assert page.index("needs review (2)") < page.index("new (0)")  # what waits for an agent first

    sent_page = signed_in.get(reverse("desk"), {"status": "sent"}).content.decode()
    assert done.reference in sent_page and waiting.reference not in sent_page


def test_the_queue_marks_tickets_whose_current_draft_is_low_confidence(signed_in):
    unsure = make_ticket("unsure")
    sure = make_ticket("sure")
    Draft.objects.create(ticket=unsure, version=2, body="Maybe?", low_confidence=True, flags=["weak"])

    page = signed_in.get(reverse("desk")).content.decode()
    row = page[page.index(unsure.reference) : page.index("</tr>", page.index(unsure.reference))]
    assert "low confidence" in row
    row = page[page.index(sure.reference) : page.index("</tr>", page.index(sure.reference))]
    assert "low confidence" not in row


# --- One ticket -----------------------------------------------------------------------------------------


def test_the_ticket_page_shows_thread_draft_flags_citations_and_why(signed_in):
    ticket = make_ticket(
        category="connectivity",
        category_confidence=0.91,
        triage={
            "category": {
                "scores": {"connectivity": 0.62, "billing": 0.1},
                "nearest": [
                    {"label": "connectivity", "text": "My internet keeps cutting out", "score": 0.71}
                ],
            }
        },
    )
    Draft.objects.filter(ticket=ticket).update(
        low_confidence=True, flags=["The best source is only weakly related (similarity 0.31)."]
    )
    skipped = MailMessage.objects.create(
        ticket=ticket,
        direction=MailMessage.Direction.IN,
        message_id="<auto@example.com>",
        from_email="mailer-daemon@example.com",
        text="I am out of office.",
        automated="auto-reply",
        defects="missing Date header",
    )
    skipped.attachments.create(
        filename="huge.iso", content_type="application/x-iso", size=10**9, skipped="too large"
    )

    page = signed_in.get(detail_url(ticket)).content.decode()

    assert "My wifi drops every evening. How do I fix it?" in page
    assert "automated: auto-reply" in page and "missing Date header" in page
    assert "huge.iso" in page and "not kept: too large" in page
    assert "Restart the router from Settings &gt; Network [1]." in page  # in the approve textarea
    assert 'name="version" value="1"' in page
    assert "Low confidence" in page and "only weakly related (similarity 0.31)" in page
    assert '<a href="https://help.example.com/router"' in page
    assert "Restarting" in page and "Hold the power button for ten seconds." in page
    assert "connectivity" in page and "91%" in page
    assert "My internet keeps cutting out" in page
    assert "<style" not in page and 'style="' not in page  # the site's CSP: styles from a file


def test_a_ticket_without_a_draft_yet_says_so_and_offers_no_approval(signed_in):
    ticket = make_ticket(status=Ticket.Status.NEW, draft=None, triage={"date": "not a date", "category": []})

    page = signed_in.get(detail_url(ticket)).content.decode()

    assert "No draft yet" in page and "The model is writing one." in page
    assert detail_url(ticket, "approve") not in page
    assert detail_url(ticket, "reject") in page and detail_url(ticket, "regenerate") in page


def test_customer_and_model_text_is_shown_as_text(signed_in):
    ticket = make_ticket(subject=f"Help {HOSTILE}", body=f"Hi {HOSTILE}", draft=f"Sure {HOSTILE}")
    Draft.objects.filter(ticket=ticket).update(
        low_confidence=True,
        flags=[f"flag {HOSTILE}"],
        citations=[{"n": 1, "title": HOSTILE, "url": "javascript:alert(1)", "snippet": HOSTILE}],
    )
    Ticket.objects.filter(pk=ticket.pk).update(customer_name=HOSTILE)

    for url in (reverse("desk"), detail_url(ticket)):
        page = signed_in.get(url).content.decode()
        assert "<script>" not in page  # the hostile tag; the page's own script has a src
        assert ESCAPED in page
    assert 'href="javascript:' not in page


def test_the_ticket_page_lists_versions_sends_and_events(signed_in, agent):
    ticket = make_ticket(status=Ticket.Status.FAILED)
    draft = Draft.objects.get(ticket=ticket)
    Draft.objects.create(ticket=ticket, version=2, body="Edited by hand.", author=agent)
    OutboundMail.objects.create(
        ticket=ticket,
        draft=draft,
        message_id="<out-1@brightline.example>",
        from_email="support@brightline.example",
        to="ana@example.com",
        subject="Re: Wifi",
        text="x",
        html="x",
        status=OutboundMail.Status.UNCONFIRMED,
        attempts=1,
        last_error="The attempt was cut off.",
        approved_by=agent,
    )
    TicketEvent.objects.create(ticket=ticket, action="reject", user=agent, reason="Spam, no answer")

    page = signed_in.get(detail_url(ticket)).content.decode()

    assert "Version 2 by alex" in page and "Version 1 by the model" in page
    assert page.count("<details>") == 2
    assert "unconfirmed" in page and "may or may not have accepted it" in page
    assert "The attempt was cut off." in page
    assert "Spam, no answer" in page


# --- Decisions ------------------------------------------------------------------------------------------


def test_approving_an_edited_reply_saves_a_version_and_sends_that_text(signed_in, agent):
    ticket = make_ticket()
    edited = "Hello Ana,\r\nplease restart the router [1].\r\nBest, Alex"

    response = signed_in.post(detail_url(ticket, "approve"), {"body": edited, "version": "1"}, follow=True)

    assert response.redirect_chain == [(detail_url(ticket), 302)]
    assert "is being sent" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.status == Ticket.Status.SENDING
    version = Draft.objects.get(ticket=ticket, version=2)
    assert version.author == agent and version.body == edited.replace("\r\n", "\n")
    sending = OutboundMail.objects.get(ticket=ticket)
    assert sending.draft == version

    assert outbound.deliver(sending.pk) == OutboundMail.Status.SENT

    assert len(mail.outbox) == 1
    assert "please restart the router [1]." in mail.outbox[0].body
    assert mail.outbox[0].to == ["Ana Example <ana@example.com>"]
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.SENT


def test_approving_the_draft_untouched_makes_no_new_version(signed_in):
    ticket = make_ticket(draft="Line one.\nLine two.")

    # Browsers send a textarea's line ends as CRLF.
    signed_in.post(detail_url(ticket, "approve"), {"body": "Line one.\r\nLine two.\r\n", "version": "1"})

    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.SENDING
    assert list(Draft.objects.filter(ticket=ticket).values_list("version", flat=True)) == [1]
    assert TrainingExample.objects.get(ticket=ticket).model_draft_unchanged


def test_approving_a_draft_that_changed_meanwhile_is_refused_and_sends_nothing(signed_in):
    ticket = make_ticket()
    Draft.objects.create(ticket=ticket, version=2, body="A newer draft from the model.")

    response = signed_in.post(
        detail_url(ticket, "approve"), {"body": "My reply to version 1", "version": "1"}, follow=True
    )

    assert response.status_code == 200
    assert "The draft changed since you opened it" in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW
    assert Draft.objects.filter(ticket=ticket).count() == 2
    assert not OutboundMail.objects.exists() and mail.outbox == []


def test_approving_twice_sends_once_and_says_why(signed_in):
    ticket = make_ticket()
    signed_in.post(detail_url(ticket, "approve"), {"body": "Once.", "version": "1"})

    response = signed_in.post(detail_url(ticket, "approve"), {"body": "Once.", "version": "2"}, follow=True)

    assert "A ticket that is sending cannot be approved." in response.content.decode()
    assert OutboundMail.objects.filter(ticket=ticket).count() == 1


def test_saving_an_edit_makes_a_version_and_sends_nothing(signed_in, agent):
    ticket = make_ticket()

    response = signed_in.post(
        detail_url(ticket, "edit"), {"body": "Better words.", "version": "1"}, follow=True
    )

    assert "Saved as version 2; nothing was sent." in response.content.decode()
    assert Draft.objects.get(ticket=ticket, version=2).author == agent
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW
    assert not OutboundMail.objects.exists()
    assert 'name="version" value="2"' in response.content.decode()


def test_saving_an_edit_of_an_outdated_draft_is_refused(signed_in):
    ticket = make_ticket()
    Draft.objects.create(ticket=ticket, version=2, body="Newer.")

    response = signed_in.post(detail_url(ticket, "edit"), {"body": "Mine.", "version": "1"}, follow=True)

    assert "The draft changed since you opened it" in response.content.decode()
    assert Draft.objects.filter(ticket=ticket).count() == 2


def test_an_empty_reply_is_refused_with_a_message(signed_in):
    ticket = make_ticket()
    response = signed_in.post(detail_url(ticket, "approve"), {"body": "  ", "version": "1"}, follow=True)
    assert "The reply must be non-empty text." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW


def test_rejecting_needs_a_reason(signed_in, agent):
    ticket = make_ticket()

    response = signed_in.post(detail_url(ticket, "reject"), {"reason": "  "}, follow=True)
    assert "a reason is required" in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.NEEDS_REVIEW

    response = signed_in.post(detail_url(ticket, "reject"), {"reason": "Spam."}, follow=True)
    assert "Rejected: no reply will be sent." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).status == Ticket.Status.REJECTED
    event = TicketEvent.objects.get(ticket=ticket, action="reject")
    assert (event.user, event.reason) == (agent, "Spam.")
    assert not OutboundMail.objects.exists()


def test_reassigning_to_an_agent_and_to_nobody(signed_in, outsider):
    colleague = _user("bo", AGENT)
    ticket = make_ticket()

    page = signed_in.get(detail_url(ticket)).content.decode()
    assert f'<option value="{colleague.pk}">bo</option>' in page
    assert f'value="{outsider.pk}"' not in page  # no role: not offered

    response = signed_in.post(detail_url(ticket, "reassign"), {"agent": str(colleague.pk)}, follow=True)
    assert "Assigned to bo." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).assigned_to == colleague

    response = signed_in.post(detail_url(ticket, "reassign"), {"agent": ""}, follow=True)
    assert "Assigned to nobody." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).assigned_to is None

    response = signed_in.post(detail_url(ticket, "reassign"), {"agent": str(outsider.pk)}, follow=True)
    assert "No such agent." in response.content.decode()
    assert Ticket.objects.get(pk=ticket.pk).assigned_to is None


def test_regenerating_queues_a_new_draft(signed_in, agent):
    ticket = make_ticket()
    with mock.patch("assistant.desk.review.enqueue", autospec=True) as enqueue:
        response = signed_in.post(detail_url(ticket, "regenerate"), follow=True)

    assert response.redirect_chain == [(detail_url(ticket), 302)]
    assert "A new draft is being written" in response.content.decode()
    enqueue.assert_called_once_with("assistant.desk_regenerate", ticket.pk, agent.pk)


def test_regenerating_a_sent_ticket_is_refused(signed_in):
    ticket = make_ticket(status=Ticket.Status.SENT)
    with mock.patch("assistant.desk.review.enqueue", autospec=True) as enqueue:
        response = signed_in.post(detail_url(ticket, "regenerate"), follow=True)

    assert "A ticket that is sent cannot get a new draft." in response.content.decode()
    enqueue.assert_not_called()

"""Verified drafts on the email desk: each sentence of a draft's body checked against the sources
the model was given, the unsupported ones flagged on the agent's review page, a flagged reply
sent only when the agent confirms they checked it, an agent's edit checked again, and the
greeting and sign-off written by the desk, not the model.

The model here is a test double (`ScriptedModel`) that writes a fixed reply: a real model cannot
be made to state a particular wrong number on cue, and these tests are about what the desk does
with what it wrote. Retrieval over the demo knowledge base, the embedder that checks the
sentences, the database, the console pages, the API and the outbound mail are real (outbound
through Django's in-memory mail backend; tests/test_desk_review.py sends through real SMTP).
"""

from __future__ import annotations

import re

import pytest
from django.core import mail as sent_mail
from django.test import Client, override_settings
from django.urls import reverse

from assistant.desk import drafting, letter, outbound, review
from assistant.desk.inbound import receive_raw
from assistant.models import Draft, MailMessage, OutboundMail, Ticket, TriageLabel
from inference.base import Generation, TextGenerator, Usage
from tests.conftest import bearer, customer_mail

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WRONG = "Press and hold the RESET pinhole with a paper clip for 45 seconds [1]."  # the source: 15
RIGHT = "The router restarts on its own, which takes up to 5 minutes [1]."
CORRECTED = "Press and hold the RESET pinhole with a paper clip for 15 seconds [1]."


class ScriptedModel(TextGenerator):
    """Writes `reply`, greeting and sign-off included, as a small model does though told not to."""

    model_version = "test-scripted"
    reply = f"Hello there,\n\n{WRONG} {RIGHT}\n\nBest regards,\nBrightline support"

    def stream(self, messages, params) -> Generation:
        generation = Generation()

        async def deltas():
            for word in re.findall(r"\S+\s*", self.reply):
                yield word
            generation.usage = Usage(
                prompt_tokens=100, completion_tokens=40, model_version=self.model_version
            )

        generation.deltas = deltas()
        return generation


@pytest.fixture
def scripted(settings, tmp_path, demo_kb):
    """Mail storage in a temporary directory, the default triage labels, outbound mail kept in
    memory, and the scripted model in place of the real one."""
    from assistant.desk.labels import seed_labels

    seed_labels(TriageLabel)
    settings.DATA_DIR = tmp_path
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DESK_FROM_EMAIL = "support@brightline.example"
    with override_settings(TEXT_GENERATOR_BACKEND=f"{__name__}.ScriptedModel"):
        yield ScriptedModel


def drafted(mail=None) -> tuple[Ticket, object]:
    """A customer's mail received and drafted by the desk's own task body."""
    mail = mail or customer_mail(subject="Factory reset", body="How do I factory reset my router?")
    receive_raw(mail.as_bytes(), source="smtp")
    ticket = Ticket.objects.get()
    draft = review.process_ticket(ticket.pk)
    ticket.refresh_from_db()
    return ticket, draft


@pytest.fixture
def signed_in(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


def page(client: Client, ticket: Ticket) -> str:
    return client.get(reverse("desk-ticket", args=[ticket.pk])).content.decode()


def test_a_sentence_stating_a_number_not_in_the_sources_is_flagged_beside_the_supported_ones_source(
    scripted, signed_in, agent, client
):
    ticket, draft = drafted()
    verdicts = {r["text"]: r for r in draft.support}
    assert set(verdicts) == {WRONG, RIGHT}  # the body's sentences only: no greeting, no sign-off
    assert verdicts[WRONG]["verdict"] == "unsupported" and verdicts[WRONG]["unknown"] == ["45"]
    assert verdicts[RIGHT]["verdict"] == "supported" and verdicts[RIGHT]["source"] == 1
    assert "5 minutes" in verdicts[RIGHT]["evidence"]
    assert draft.low_confidence and draft.confidence == 0
    assert "1 sentence is not supported by the sources: check them before sending." in draft.flags

    html = page(signed_in, ticket)
    title = next(c["title"] for c in draft.citations if c["n"] == 1)
    assert "Not found in the sources" in html and "Not in the sources or the customer's mail: 45" in html
    assert f"[1] {title}" in html and "which takes up to 5 minutes." in html  # the evidence passage
    assert 'name="confirmed"' in html and "I have checked the flagged sentences" in html
    shown = client.get(f"/api/tickets/{ticket.pk}", **bearer(agent)).json()["draft"]
    assert shown["unsupported"] == 1 and shown["support"][1]["title"] == title


def test_a_flagged_draft_is_sent_only_once_the_agent_confirms_checking_it(scripted, signed_in, agent, client):
    ticket, draft = drafted()
    approve = reverse("desk-approve", args=[ticket.pk])

    # As is, unconfirmed: refused with the reason on the page, through the console and the API.
    response = signed_in.post(approve, {"body": draft.body, "version": draft.version}, follow=True)
    assert "Not sent: 1 sentence is not found in the sources (version 1)." in response.content.decode()
    refused = client.post(
        f"/api/tickets/{ticket.pk}/approve", {"version": 1}, content_type="application/json", **bearer(agent)
    )
    assert refused.status_code == 409
    assert refused.json()["error"] | {"message": ""} == {
        "code": "unchecked_sentences",
        "message": "",
        "version": 1,
        "unsupported": 1,
    }
    assert not OutboundMail.objects.exists() and ticket.drafts.count() == 1
    assert Ticket.objects.get().status == Ticket.Status.NEEDS_REVIEW

    # Confirmed: sent, exactly once, and the approval records what the agent confirmed.
    signed_in.post(approve, {"body": draft.body, "version": draft.version, "confirmed": "1"})
    mail = OutboundMail.objects.get()
    assert outbound.deliver(mail.pk) == "sent" and outbound.deliver(mail.pk) == "sent"
    assert len(sent_mail.outbox) == 1 and WRONG in sent_mail.outbox[0].body
    event = Ticket.objects.get().events.get(action="approve")
    assert event.data == {"draft": 1, "confirmed_unsupported": 1}


def test_the_desk_greets_the_customer_by_name_and_signs_off_around_the_models_body(scripted):
    _, draft = drafted()
    assert draft.body == f"Hello Ana,\n\n{WRONG} {RIGHT}\n\nKind regards,\nThe support team"
    assert draft.prompt_template == "desk-draft-v2" and "no greeting" in draft.prompt[0]["content"]


def test_a_customer_without_a_name_gets_the_plain_greeting_in_the_tickets_language(scripted, settings):
    settings.DESK_SIGNATURE = "Brightline support"
    nameless = customer_mail(subject="Factory reset", body="How do I factory reset my router?")
    nameless.replace_header("From", "ana@example.com")
    ticket, draft = drafted(nameless)
    assert ticket.customer_name == ""
    assert draft.body.startswith("Hello,\n\n") and draft.body.endswith("Kind regards,\nBrightline support")

    ticket.language = "de"
    question = drafting.latest_question(ticket)
    assert (
        letter.letter(ticket, question, "Text.") == "Hallo,\n\nText.\n\nFreundliche Grüße\nBrightline support"
    )
    ticket.language = "xx"  # a language without its own greeting: English
    assert letter.letter(ticket, question, "Text.").startswith("Hello,")
    assert letter.letter(ticket, question, "  ") == ""  # never a greeting around nothing


def test_an_edited_version_is_checked_again_against_the_same_sources(scripted, signed_in, agent):
    ticket, draft = drafted()
    edit = reverse("desk-edit", args=[ticket.pk])

    # Saved without a change: the same verdicts, so a save cannot clear the flags.
    signed_in.post(edit, {"body": draft.body, "version": 1})
    same = ticket.drafts.get(version=2)
    assert same.support == draft.support and same.flags == draft.flags and same.low_confidence

    # The agent corrects the number: the flag goes.
    corrected = draft.body.replace(WRONG, CORRECTED)
    signed_in.post(edit, {"body": corrected, "version": 2})
    fixed = ticket.drafts.get(version=3)
    assert fixed.author == agent and fixed.retrieved == draft.retrieved
    assert {r["text"]: r["verdict"] for r in fixed.support} == {CORRECTED: "supported", RIGHT: "supported"}
    assert not fixed.low_confidence and fixed.flags == [] and fixed.confidence > 0
    assert "Not found in the sources" not in page(signed_in, ticket)

    # An edit that states a wrong fact of its own, approved in one go: kept as version 4, flagged,
    # and not sent until confirmed.
    wrong = corrected.replace(RIGHT, "The router restarts on its own within 9 minutes [1].")
    response = signed_in.post(
        reverse("desk-approve", args=[ticket.pk]), {"body": wrong, "version": 3}, follow=True
    )
    assert "Your edit was saved as version 4. Not sent" in response.content.decode()
    fourth = ticket.drafts.get(version=4)
    assert fourth.body == wrong and [r["unknown"] for r in fourth.support if r["unknown"]] == [["9"]]
    assert not OutboundMail.objects.exists()
    review.approve(Ticket.objects.get(pk=ticket.pk), agent, expected_version=4, confirmed=True)
    assert OutboundMail.objects.get().draft == fourth


def test_a_pinned_answer_is_sent_as_curated_unchecked_inside_the_desks_letter(scripted, agent):
    from answers.models import PinnedAnswer

    hours = "Our shop in Leeds is open 9:00-17:30 Monday to Saturday."
    PinnedAnswer.objects.create(question="What are your opening hours?", answer=hours)
    _, draft = drafted(customer_mail(subject="Hours", body="What are your opening hours?"))
    assert draft.prompt_template.startswith("pinned:")
    assert draft.body == f"Hello Ana,\n\n{hours}\n\nKind regards,\nThe support team"
    assert draft.support == [] and not draft.low_confidence  # a person wrote and approved it
    assert review.approve(Ticket.objects.get(), agent).draft == draft  # nothing to confirm


def test_sentences_and_their_evidence_are_shown_as_text_never_as_markup(signed_in):
    hostile = "<script>alert(1)</script>"
    ticket = Ticket.objects.create(
        subject="Router", customer_email="ana@example.com", status=Ticket.Status.NEEDS_REVIEW
    )
    question = MailMessage.objects.create(
        ticket=ticket, direction="in", message_id="<m@example.com>", from_email="ana@example.com", text="Hi"
    )
    record = {"verdict": "unsupported", "score": 0.1, "chunk": None, "source": None}
    Draft.objects.create(
        ticket=ticket,
        version=1,
        body=f"Hello,\n\nSay {hostile}.\n\nKind regards,\nThe support team",
        replying_to=question,
        support=[{**record, "text": f"Say {hostile}.", "evidence": hostile, "unknown": [hostile]}],
    )
    html = page(signed_in, ticket)
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Not found in the sources" in html


@pytest.mark.parametrize(
    "written, body",
    [
        ("Hello Ana,\n\nRestart it [1].\n\nBest regards,\nBrightline support", "Restart it [1]."),
        ("Hi Ana, restart it [1]. It takes 2 minutes.\nThanks!", "Restart it [1]. It takes 2 minutes."),
        ("Dear [NAME],\nRestart it.\nKind regards, The Team", "Restart it."),
        ("Hallo Anna,\nStarten Sie ihn neu.\nViele Grüße\nDas Team", "Starten Sie ihn neu."),
        # Not a sign-off: a sentence that goes on, or thanks that say something.
        ("Restart it. Thanks, and tell us if the light stays red.", None),
        ("Restart it.\nThank you for your patience.", None),
    ],
)
def test_the_models_own_greeting_and_sign_off_are_cut_from_the_body(written, body):
    assert letter.letter_body(written) == (body or written)

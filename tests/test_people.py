"""A person's data by email address: export and erasure through the API and the commands.
Erasure is checked where the person's words could remain: every text and JSON column of every
model, the mail files on disk, and both search indexes (BM25 and dense)."""

from __future__ import annotations

import io
import json

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import models
from django.db.models import Q

from assistant.desk.inbound import receive_raw
from assistant.desk.review import move
from assistant.models import (
    Conversation,
    Draft,
    InboundMail,
    Message,
    OutboundMail,
    Ticket,
    TrainingExample,
)
from core.audit import subject_hash
from core.models import AuditEvent
from core.roles import ADMIN
from tests.conftest import _reset_index, _user, bearer, customer_mail

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "jane.roe@example.com"
PHRASE = "zephyrine quokkamatic"  # the person's own words, found nowhere else
OTHER = "bo@example.org"


@pytest.fixture
def person(settings, tmp_path, embedder, isolated_index):
    """Jane's data everywhere Parley keeps it, next to Bo's, which must survive her erasure."""
    from retrieval import index as retrieval_index
    from retrieval.actions.ingest import do_ingest_path

    settings.DATA_DIR = tmp_path
    _reset_index(isolated_index, retrieval_index)

    # A ticket through the real inbound path, with an attachment, delivered twice.
    mail = customer_mail(
        sender=EMAIL, subject="Antenna bracket", body=f"Hello, my {PHRASE} bracket broke. Call 07700 900123."
    )
    mail.replace_header("From", f"Jane Roe <{EMAIL}>")
    mail.add_attachment(
        f"receipt for {PHRASE}".encode(), maintype="text", subtype="plain", filename="receipt.txt"
    )
    receive_raw(mail.as_bytes(), source="smtp")
    receive_raw(mail.as_bytes(), source="imap")  # the same mail again: a duplicate row
    ticket = Ticket.objects.get(customer_email=EMAIL)
    move(ticket, "reject", reason=f"{PHRASE}: handled by phone")
    draft = Draft.objects.create(
        ticket=ticket,
        version=1,
        body=f"Hello Jane, about your {PHRASE} bracket...",
        prompt=[{"role": "user", "content": f"Email from <PERSON_1>\n\nmy {PHRASE} bracket broke"}],
    )
    OutboundMail.objects.create(
        ticket=ticket, draft=draft, message_id="<out-1@parley>", from_email="support@brightline.example",
        to=EMAIL, subject="Re: Antenna bracket", text=draft.body, html=f"<p>{draft.body}</p>",
    )  # fmt: skip
    TrainingExample.objects.create(
        source="email", ticket=ticket, draft=draft, question=f"My {PHRASE} broke", answer="Sorry!",
        customer_email=EMAIL,
    )  # fmt: skip
    TrainingExample.objects.create(source="curated", question="Who asked?", answer=f"{EMAIL} about {PHRASE}")

    # Chats: she typed her address in one; her other chat (same visitor token) names no address.
    typed = Conversation.objects.create(visitor="visitor-jane")
    Message.objects.create(conversation=typed, role="user", text=f"I am {EMAIL.upper()}, any news?")
    Message.objects.create(conversation=typed, role="assistant", text="Let me check.")
    earlier = Conversation.objects.create(visitor="visitor-jane")
    Message.objects.create(conversation=earlier, role="user", text=f"Is the {PHRASE} bracket sold?")

    # A knowledge-base document that mentions her.
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "case-notes.txt").write_text(
        f"Case notes.\n\nThe customer {EMAIL} reported that the {PHRASE} bracket snapped in the cold."
    )
    (kb / "brackets.txt").write_text("Antenna brackets are made of steel and carry a two year warranty.")
    do_ingest_path(kb)

    # Bo: his ticket and chat stay; a chat answer of his that cited her chunk loses the address.
    receive_raw(
        customer_mail(sender=OTHER, subject="Invoice", body="Where is my invoice?").as_bytes(), source="smtp"
    )
    bo = Conversation.objects.create(visitor="visitor-bo")
    Message.objects.create(conversation=bo, role="user", text="Brackets?")
    Message.objects.create(
        conversation=bo, role="assistant", text="Steel [1].",
        citations=[{"n": 1, "title": "Case notes", "snippet": f"The customer {EMAIL} reported"}],
    )  # fmt: skip
    yield tmp_path
    _reset_index(isolated_index, retrieval_index)


def _admin():
    return _user("ada", ADMIN)


def _traces(needle: str) -> list[str]:
    """Every text and JSON column of every model that holds `needle` (any case)."""
    found = []
    for model in apps.get_models():
        fields = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, models.CharField | models.TextField | models.JSONField)
        ]
        if not fields:
            continue
        query = Q()
        for name in fields:
            query |= Q(**{f"{name}__icontains": needle})
        found += [
            f"{model._meta.label}#{pk}" for pk in model.objects.filter(query).values_list("pk", flat=True)
        ]
    return found


def _files_with(root, needle: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes().lower()]


def test_erasure_leaves_no_trace_in_the_database_the_files_or_the_index(person, client):
    from retrieval.search import search

    assert _traces(EMAIL) and _traces(PHRASE) and _files_with(person / "mail", EMAIL)
    assert any(PHRASE in h.text for h in search(PHRASE, mode="bm25", k=5))
    admin = _admin()

    exported = client.get(f"/api/people/{EMAIL}/export", **bearer(admin))
    assert exported.status_code == 200, exported.content
    data = exported.json()
    assert [t["subject"] for t in data["tickets"]] == ["Antenna bracket"]
    assert data["tickets"][0]["messages"][0]["attachments"] == ["receipt.txt"]
    assert PHRASE in data["tickets"][0]["drafts"][0]["body"]
    assert len(data["raw_mail"]) == 2 and len(data["conversations"]) == 2
    assert len(data["training_examples"]) == 2
    assert [c["document"] for c in data["knowledge_base"]] == ["Case notes"]

    erased = client.delete(f"/api/people/{EMAIL.upper()}", **bearer(admin))
    assert erased.status_code == 200, erased.content
    counts = erased.json()["erased"]
    assert counts["tickets"] == 1 and counts["raw_mail"] == 2 and counts["attachments"] == 1
    assert counts["conversations"] == 2 and counts["training_examples"] == 2 and counts["chunks"] == 1
    assert counts["outbound_mail"] == 1 and counts["scrubbed"] == 1 and counts["files"] == 2

    assert _traces(EMAIL) == [] and _traces(PHRASE) == []
    # Parley's mail store (kb/ holds the operator's own source files, ingested in place).
    assert _files_with(person / "mail", EMAIL) == [] and _files_with(person / "mail", PHRASE) == []
    for mode in ("bm25", "dense", "hybrid"):
        assert all(PHRASE not in h.text and EMAIL not in h.text for h in search(PHRASE, mode=mode, k=10))
    # Bo's data is all there; the rest of the knowledge base still answers.
    assert (
        Ticket.objects.filter(customer_email=OTHER).exists()
        and Conversation.objects.filter(visitor="visitor-bo").count() == 1
    )
    assert Message.objects.get(role="assistant", conversation__visitor="visitor-bo").citations[0][
        "snippet"
    ] == ("The customer [erased] reported")
    assert "steel" in search("antenna bracket warranty", mode="bm25", k=1)[0].text
    assert InboundMail.objects.count() == 1

    # The audit log says who exported and erased whom, by a hash of the address only.
    events = AuditEvent.objects.filter(target_type="person").order_by("id")
    assert [(e.action, e.target_id, e.actor) for e in events] == [
        ("person.exported", subject_hash(EMAIL), "user:ada"),
        ("person.erased", subject_hash(EMAIL), "user:ada"),
    ]
    assert events[1].data["counts"]["tickets"] == 1

    # Erasing again is harmless: nothing left, zero counts.
    again = client.delete(f"/api/people/{EMAIL}", **bearer(admin))
    assert again.status_code == 200 and not any(again.json()["erased"].values())


def test_only_admins_export_or_erase(client, agent):
    Ticket.objects.create(subject="x", customer_email=EMAIL)
    assert client.get(f"/api/people/{EMAIL}/export").status_code == 401
    assert client.delete(f"/api/people/{EMAIL}").status_code == 401
    for user in (agent, _user("aud", "auditor")):
        response = client.get(f"/api/people/{EMAIL}/export", **bearer(user))
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
        assert client.delete(f"/api/people/{EMAIL}", **bearer(user)).status_code == 403
    assert Ticket.objects.filter(customer_email=EMAIL).exists()
    assert client.get(f"/api/people/{EMAIL}/export", **bearer(_admin())).status_code == 200


def test_an_unknown_address_gives_zero_counts_and_a_malformed_one_a_400(client):
    headers = bearer(_admin())
    response = client.delete("/api/people/nobody@example.net", **headers)
    assert response.status_code == 200 and set(response.json()["erased"].values()) == {0}
    export = client.get("/api/people/nobody@example.net/export", **headers).json()
    assert export["tickets"] == [] and export["conversations"] == []
    for bad in ("not-an-address", "a@b", "jane@@example.com"):
        response = client.delete(f"/api/people/{bad}", **headers)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_email", bad
        assert client.get(f"/api/people/{bad}/export", **headers).status_code == 400


def test_the_commands_export_and_erase_and_refuse_to_erase_unasked():
    Ticket.objects.create(subject="bracket", customer_email=EMAIL, customer_name="Jane Roe")
    out = io.StringIO()
    call_command("export_person", EMAIL, stdout=out)
    assert json.loads(out.getvalue())["tickets"][0]["customer_name"] == "Jane Roe"
    with pytest.raises(CommandError, match="--yes"):
        call_command("erase_person", EMAIL)  # stdin is not a terminal here
    assert Ticket.objects.exists()
    out = io.StringIO()
    call_command("erase_person", EMAIL, "--yes", stdout=out)
    assert json.loads(out.getvalue())["tickets"] == 1 and not Ticket.objects.exists()
    with pytest.raises(CommandError, match="not a valid email"):
        call_command("export_person", "nope")
    assert AuditEvent.objects.filter(action="person.erased", actor="cli:erase_person").exists()

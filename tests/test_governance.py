"""Governance: the settings page (legal basis, redaction, retention) with every change audited,
the retention purge per class of data, and the audit log that reads every trail together. All
through the public interfaces (the console pages, the API, the command, the task body) on a real
database; the clock is passed as `now=`."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from assistant.desk.inbound import mail_dir, receive_raw
from assistant.models import (
    Attachment,
    Conversation,
    Draft,
    InboundMail,
    MailMessage,
    Message,
    OutboundMail,
    Ticket,
    TicketEvent,
)
from content.models import Brief, ContentItem, Revision, StateChange
from core.audit import record_audit
from core.models import AuditEvent, GovernanceSettings
from governance import audit_log
from governance.retention import purge_expired
from inference.models import ModelEvent, ModelVersion
from tests.conftest import _user, bearer, customer_mail

pytestmark = pytest.mark.django_db

PAGE = "/console/governance/"


def _form(current: GovernanceSettings, **changes) -> dict:
    """The settings form as a browser posts it (an unchecked box is simply absent)."""
    data = {
        "legal_basis": current.legal_basis,
        "redact_entities": "\n".join(current.redact_entities),
        "retention_messages_days": current.retention_messages_days,
        "retention_emails_days": current.retention_emails_days,
        "retention_embeddings_days": current.retention_embeddings_days,
        "retention_model_logs_days": current.retention_model_logs_days,
        **{
            name: "on"
            for name in ("redact_prompts", "redact_logs", "redact_training")
            if getattr(current, name)
        },
    }
    for name, value in changes.items():
        if value is False:
            data.pop(name, None)
        else:
            data[name] = value
    return data


# --- The settings page ------------------------------------------------------------------------


def test_an_admin_changes_settings_and_the_change_is_audited_with_before_and_after(client, administrator):
    client.force_login(administrator)
    page = client.get(PAGE)
    assert page.status_code == 200 and b"Retention" in page.content
    before = GovernanceSettings.load()

    response = client.post(
        PAGE,
        _form(before, retention_messages_days=30, redact_logs=False, redact_entities="email_address, PERSON"),
    )

    assert response.status_code == 302 and response["Location"] == PAGE
    after = GovernanceSettings.load()
    assert (after.retention_messages_days, after.redact_logs) == (30, False)
    assert after.redact_entities == ["EMAIL_ADDRESS", "PERSON"] and after.updated_by == administrator
    event = AuditEvent.objects.get(action="settings.changed")
    assert event.actor == "user:ada" and event.actor_user == administrator
    assert event.target_type == "governance"
    assert event.data["changes"] == {
        "retention_messages_days": [before.retention_messages_days, 30],
        "redact_logs": [True, False],
        "redact_entities": [[], ["EMAIL_ADDRESS", "PERSON"]],
    }
    client.post(PAGE, _form(after))  # saving without a change writes nothing
    assert AuditEvent.objects.count() == 1


def test_the_legal_basis_records_who_and_when_and_clearing_it_turns_training_off(client, administrator):
    client.force_login(administrator)
    assert not GovernanceSettings.load().personal_data_training_allowed
    client.post(PAGE, _form(GovernanceSettings.load(), legal_basis="Legitimate interest, DPIA-2026-04"))

    current = GovernanceSettings.load()
    assert current.personal_data_training_allowed
    assert current.legal_basis_recorded_by == administrator
    assert timezone.now() - current.legal_basis_recorded_at < timedelta(minutes=1)
    recorded = AuditEvent.objects.get(action="legal_basis.recorded")
    assert recorded.data["changes"] == {"legal_basis": ["", "Legitimate interest, DPIA-2026-04"]}
    page = client.get(PAGE)
    assert b"Recorded by ada" in page.content

    client.post(PAGE, _form(current, legal_basis="  "))

    current = GovernanceSettings.load()
    assert not current.personal_data_training_allowed
    assert current.legal_basis_recorded_by is None and current.legal_basis_recorded_at is None
    assert AuditEvent.objects.filter(action="legal_basis.cleared").exists()
    assert not AuditEvent.objects.filter(action="settings.changed").exists()


@pytest.mark.parametrize("days", [0, 3651, "soon"])
def test_retention_outside_one_day_to_ten_years_is_refused(client, administrator, days):
    client.force_login(administrator)
    before = GovernanceSettings.load()

    response = client.post(PAGE, _form(before, retention_emails_days=days, redact_logs=False))

    assert response.status_code == 400 and b"retention_emails_days" in response.content
    after = GovernanceSettings.load()
    assert (after.retention_emails_days, after.redact_logs) == (before.retention_emails_days, True)
    assert not AuditEvent.objects.exists()


def test_only_admins_reach_the_settings_page(client, outsider, agent, auditor, editor):
    anonymous = client.get(PAGE)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    for person in (outsider, agent, auditor, editor):
        client.force_login(person)
        assert client.get(PAGE).status_code == 403
        assert client.post(PAGE, _form(GovernanceSettings.load(), retention_emails_days=1)).status_code == 403
    assert GovernanceSettings.load().retention_emails_days != 1
    assert not AuditEvent.objects.exists()


def test_the_settings_form_needs_its_csrf_token(administrator):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(administrator)
    data = _form(GovernanceSettings.load(), retention_model_logs_days=7)

    assert browser.post(PAGE, data).status_code == 403
    assert GovernanceSettings.load().retention_model_logs_days != 7

    token = browser.get(PAGE).context["csrf_token"]
    assert browser.post(PAGE, {**data, "csrfmiddlewaretoken": str(token)}).status_code == 302
    assert GovernanceSettings.load().retention_model_logs_days == 7


def test_the_console_links_governance_pages_only_for_their_roles(client):
    from core.roles import ADMIN, AGENT

    plain_agent, admin_agent = _user("al", AGENT), _user("ad", AGENT, ADMIN)
    client.force_login(plain_agent)
    for page in ("/console/", "/console/desk/"):
        assert b"/console/governance/" not in client.get(page).content
    client.force_login(admin_agent)
    for page in ("/console/", "/console/desk/"):
        content = client.get(page).content
        assert b"/console/governance/" in content and b"/console/audit/" in content


# --- Retention --------------------------------------------------------------------------------


@pytest.fixture
def periods(settings, tmp_path):
    settings.DATA_DIR = tmp_path  # raw mail and attachments under a temporary directory
    current = GovernanceSettings.load()
    current.retention_messages_days = 30
    current.retention_emails_days = 60
    current.retention_embeddings_days = 10
    current.retention_model_logs_days = 7
    current.save()
    return current


def _ticket(subject: str, status: str, *, age_days: int, attachment: bytes = b"") -> Ticket:
    """A customer's mail received as the desk receives it, moved to `status`, last active
    `age_days` ago, with a draft (its prompt stored) and, once replied, its outbound mail."""
    mail = customer_mail(subject=subject, body=f"About {subject}.")
    if attachment:
        mail.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    receive_raw(mail.as_bytes(), source="smtp")
    ticket = MailMessage.objects.get(subject=subject).ticket
    at = timezone.now() - timedelta(days=age_days)
    draft = Draft.objects.create(
        ticket=ticket,
        version=1,
        body="Hello",
        prompt=[{"role": "user", "content": "About it"}],
        created_at=at,
    )
    if status == Ticket.Status.SENT:
        OutboundMail.objects.create(
            ticket=ticket, draft=draft, message_id=f"<{subject}@desk>", from_email="desk@x", to="ana@x",
            subject=subject, text="Hello", html="<p>Hello</p>", status="sent", next_attempt_at=at,
            sent_at=at, created_at=at,
        )  # fmt: skip
    TicketEvent.objects.create(ticket=ticket, action="reject", created_at=at)
    MailMessage.objects.filter(ticket=ticket).update(created_at=at)
    Ticket.objects.filter(pk=ticket.pk).update(status=status, updated_at=at)
    return ticket


@pytest.fixture
def expired(periods):
    """Per class, one row past its period and one within it."""
    now = timezone.now()
    old_chat = Conversation.objects.create(visitor="v-old")
    Message.objects.create(conversation=old_chat, role="user", text="my old question")
    Conversation.objects.filter(pk=old_chat.pk).update(updated_at=now - timedelta(days=31))
    Conversation.objects.create(visitor="v-new")
    old = _ticket("Old invoice", Ticket.Status.SENT, age_days=61, attachment=b"%PDF-old")
    recent = _ticket("Recent invoice", Ticket.Status.REJECTED, age_days=59)
    waiting = _ticket("Old but waiting", Ticket.Status.NEEDS_REVIEW, age_days=400)  # not final: kept
    raw_paths = [mail_dir() / p for p in InboundMail.objects.values_list("path", flat=True)]
    Draft.objects.filter(ticket=recent).update(created_at=now - timedelta(days=8))  # prompt past 7 days
    Draft.objects.create(ticket=waiting, version=2, body="Hi", prompt=[{"role": "user", "content": "x"}])
    return {"now": now, "old": old, "recent": recent, "waiting": waiting, "raw_paths": raw_paths}


def test_retention_purges_each_class_past_its_period_and_keeps_what_is_newer(
    expired, django_capture_on_commit_callbacks
):
    old_files = [mail_dir() / expired["old"].messages.get().inbound.path]
    old_files.append(mail_dir() / Attachment.objects.get(message__ticket=expired["old"]).path)
    assert all(path.exists() for path in old_files)

    with django_capture_on_commit_callbacks(execute=True):
        counts = purge_expired(now=expired["now"])

    assert counts["messages"] == 1
    assert list(Conversation.objects.values_list("visitor", flat=True)) == ["v-new"]
    assert not Message.objects.filter(text="my old question").exists()
    assert counts["emails"] == 1 and counts["emails_raw_mail"] == 1 and counts["emails_files"] == 2
    assert (counts["emails_mail"], counts["emails_drafts"], counts["emails_outbound"]) == (1, 1, 1)
    assert set(Ticket.objects.all()) == {expired["recent"], expired["waiting"]}
    assert not Attachment.objects.exists() and InboundMail.objects.count() == 2
    assert not any(path.exists() for path in old_files)
    assert sum(path.exists() for path in expired["raw_paths"]) == 2  # the kept tickets' raw mail stays
    # Model-call logs: the prompt of the 8-day-old draft is emptied, the draft itself stays.
    assert counts["model_logs"] == 2  # the recent ticket's draft and the waiting ticket's first
    assert Draft.objects.get(ticket=expired["recent"]).prompt == []
    assert Draft.objects.get(ticket=expired["waiting"], version=2).prompt != []
    assert counts["embeddings"] == 0
    event = AuditEvent.objects.get(action="retention.purged")
    assert event.actor == "system" and event.data["counts"] == counts
    assert event.data["periods_days"] == {"messages": 30, "emails": 60, "embeddings": 10, "model_logs": 7}
    assert "ana@example.com" not in json.dumps(event.data)  # counts, nothing personal
    # Nothing is left to purge.
    assert purge_expired(now=expired["now"])["emails"] == 0


def test_a_dry_run_counts_the_same_and_changes_nothing(expired):
    rows = (Conversation.objects.count(), Ticket.objects.count(), InboundMail.objects.count())

    counts = purge_expired(now=expired["now"], dry_run=True)

    assert (counts["messages"], counts["emails"], counts["emails_files"], counts["model_logs"]) == (
        1,
        1,
        2,
        2,
    )
    assert (Conversation.objects.count(), Ticket.objects.count(), InboundMail.objects.count()) == rows
    assert all(path.exists() for path in expired["raw_paths"])
    assert Draft.objects.get(ticket=expired["recent"]).prompt != []
    assert not AuditEvent.objects.exists()


def test_question_vectors_are_purged_through_the_drift_module(periods, monkeypatch):
    from assistant.insights import drift

    asked = []
    monkeypatch.setattr(drift, "purge_samples", lambda cutoff: asked.append(cutoff) or 3)
    monkeypatch.setattr(drift, "count_samples", lambda cutoff: 2)
    now = timezone.now()

    assert purge_expired(now=now)["embeddings"] == 3
    assert asked == [now - timedelta(days=10)]
    assert purge_expired(now=now, dry_run=True)["embeddings"] == 2


def test_the_command_prints_json_counts_and_the_daily_task_runs_the_same_purge(periods, settings):
    from config.celery import app
    from governance.tasks import purge_retention

    out = io.StringIO()
    call_command("purge_retention", "--dry-run", stdout=out)
    printed = json.loads(out.getvalue())
    assert printed["dry_run"] is True and {"messages", "emails", "embeddings", "model_logs"} <= set(printed)
    assert not AuditEvent.objects.exists()

    call_command("purge_retention", stdout=io.StringIO())
    assert AuditEvent.objects.get(action="retention.purged").actor.startswith("cli:")

    schedule = [
        entry for entry in settings.CELERY_BEAT_SCHEDULE.values() if entry["task"] == "config.purge_retention"
    ]
    assert schedule and schedule[0]["schedule"] == 24 * 3600
    assert "config.purge_retention" in app.tasks
    assert purge_retention()["messages"] == 0
    assert AuditEvent.objects.filter(action="retention.purged", actor="beat").exists()


# --- The audit log ----------------------------------------------------------------------------


@pytest.fixture
def trails(administrator, editor, agent):
    """One record in every trail, a minute apart (oldest first)."""
    start = timezone.now() - timedelta(hours=1)

    def at(minutes: int):
        return start + timedelta(minutes=minutes)

    version = ModelVersion.objects.create(key="chat:tiny@0123456789ab", kind="chat", name="tiny")
    event = ModelEvent.objects.create(
        version=version, action="activated", actor="cli:deploy", reason="better"
    )
    ModelEvent.objects.filter(pk=event.pk).update(created_at=at(0))
    ticket = Ticket.objects.create(subject="Router", customer_email="ana@example.com")
    Draft.objects.create(
        ticket=ticket,
        version=1,
        body="Restart it.",
        model_version=version,
        prompt_template="desk-v3",
        retrieved=[{"chunk": 11, "score": 0.9, "source": 1}, {"chunk": 12, "score": 0.8, "source": 1}],
        citations=[{"n": 1, "title": "Router guide", "url": "/kb/4/", "snippet": "..."}],
        created_at=at(1),
    )
    TicketEvent.objects.create(ticket=ticket, action="reject", user=agent, reason="Spam", created_at=at(2))
    conversation = Conversation.objects.create(visitor="v1")
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        text="Try restarting.",
        model_version=version,
        prompt_template="chat-v2",
        retrieved=[{"chunk": 21, "score": 0.7, "source": 1}],
        citations=[{"n": 1, "title": "FAQ", "url": "https://help.example/faq", "snippet": "..."}],
    )
    Message.objects.filter(pk=answer.pk).update(created_at=at(3))
    brief = Brief.objects.create(topic="Wifi", keyphrase="wifi")
    item = ContentItem.objects.create(
        brief=brief,
        model_version=version,
        prompt_template="article-v1",
        retrieved=[{"chunk": 31, "document": 7, "title": "Wifi manual", "score": 0.5}],
    )
    Revision.objects.create(item=item, number=1, fields={}, note="generated", created_at=at(4))
    StateChange.objects.create(
        item=item, action="submit", from_state="draft", to_state="in_review", user=editor, created_at=at(5)
    )
    settings_event = record_audit(administrator, "settings.changed", target_type="governance", target_id=1)
    AuditEvent.objects.filter(pk=settings_event.pk).update(created_at=at(6))
    return {"start": start, "ticket": ticket, "item": item, "conversation": conversation, "version": version}


ALL_ACTIONS = [
    "settings.changed",
    "content.submit",
    "content.generated",
    "chat.answered",
    "ticket.reject",
    "draft.generated",
    "model.activated",
]


def test_every_trail_appears_newest_first_with_its_model_version_and_sources(client, auditor, trails):
    found = audit_log.page(audit_log.AuditFilters()).entries
    assert [e.action for e in found] == ALL_ACTIONS
    by_action = {e.action: e for e in found}
    draft = by_action["draft.generated"]
    assert (draft.target_type, draft.target_id, draft.actor) == ("ticket", str(trails["ticket"].pk), "system")
    assert draft.model_version == "chat:tiny@0123456789ab"
    assert draft.sources == [{"title": "Router guide", "url": "/kb/4/", "chunks": [11, 12]}]
    answer = by_action["chat.answered"]
    assert answer.model_version == "chat:tiny@0123456789ab" and answer.target_id == str(
        trails["conversation"].pk
    )
    assert answer.sources == [{"title": "FAQ", "url": "https://help.example/faq", "chunks": [21]}]
    assert answer.data["prompt_template"] == "chat-v2" and "Try restarting" not in json.dumps(answer.data)
    generated = by_action["content.generated"]
    assert generated.model_version == "chat:tiny@0123456789ab"
    assert generated.sources == [{"title": "Wifi manual", "url": "", "chunks": [31]}]
    assert by_action["ticket.reject"].reason == "Spam" and by_action["ticket.reject"].actor == "user:alex"
    assert by_action["content.submit"].data["to_state"] == "in_review"
    assert (
        by_action["model.activated"].actor == "cli:deploy" and by_action["model.activated"].reason == "better"
    )

    client.force_login(auditor)
    page = client.get("/console/audit/")
    assert page.status_code == 200
    for action in ALL_ACTIONS:
        assert action.encode() in page.content
    assert b"Router guide" in page.content and b"chat:tiny@0123456789ab" in page.content


def test_the_log_filters_by_action_actor_target_and_dates(client, auditor, trails):
    headers = bearer(auditor)

    def actions(**params) -> list[str]:
        response = client.get("/api/audit", params, **headers)
        assert response.status_code == 200, response.content
        return [item["action"] for item in response.json()["items"]]

    assert actions(action="content.") == ["content.submit", "content.generated"]
    assert actions(action="draft.gen") == ["draft.generated"]
    assert actions(actor="alex") == ["ticket.reject"]
    assert actions(actor="user:ada") == ["settings.changed"]
    assert actions(actor="cli:deploy") == ["model.activated"]
    assert actions(target_type="ticket", target_id=str(trails["ticket"].pk)) == [
        "ticket.reject",
        "draft.generated",
    ]
    assert actions(target_type="content_item", target_id=str(trails["item"].pk)) == [
        "content.submit",
        "content.generated",
    ]
    start = trails["start"]
    since, until = (start + timedelta(minutes=2)).isoformat(), (start + timedelta(minutes=4)).isoformat()
    assert actions(since=since, until=until) == ["chat.answered", "ticket.reject"]
    assert actions(until=(start - timedelta(days=1)).date().isoformat()) == []
    assert client.get("/api/audit", {"since": "yesterday"}, **headers).status_code == 400

    # Pages, within the fixture's hour (every API read is itself recorded, as the newest entry).
    window = {"until": (start + timedelta(minutes=10)).isoformat(), "per_page": 3}
    first = client.get("/api/audit", window, **headers).json()
    second = client.get("/api/audit", {**window, "page": 2}, **headers).json()
    third = client.get("/api/audit", {**window, "page": 3}, **headers).json()
    assert first["has_next"] and [i["action"] for i in first["items"]] == ALL_ACTIONS[:3]
    assert second["has_next"] and [i["action"] for i in second["items"]] == ALL_ACTIONS[3:6]
    assert not third["has_next"] and [i["action"] for i in third["items"]] == ALL_ACTIONS[6:]
    assert AuditEvent.objects.filter(action="audit.exported", data__format="api").count() == 12


def test_downloads_as_csv_and_json_carry_the_filters_and_are_audited(client, auditor, trails):
    client.force_login(auditor)

    response = client.get("/console/audit.csv", {"action": "draft."})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["action"] for row in rows] == ["draft.generated"]
    assert rows[0]["model_version"] == "chat:tiny@0123456789ab"
    assert json.loads(rows[0]["sources"])[0]["chunks"] == [11, 12]

    response = client.get("/console/audit.json", {"actor": "alex"})
    entries = response.json()["entries"]
    assert [e["action"] for e in entries] == ["ticket.reject"] and entries[0]["reason"] == "Spam"

    exports = AuditEvent.objects.filter(action="audit.exported").order_by("created_at")
    assert [(e.actor, e.data["format"], e.data["filters"]) for e in exports] == [
        ("user:aud", "csv", {"action": "draft."}),
        ("user:aud", "json", {"actor": "alex"}),
    ]
    page = client.get("/console/audit/", {"action": "audit."})
    assert b"audit.exported" in page.content


def test_an_auditor_reads_the_log_and_an_agent_cannot(client, auditor, agent, administrator, trails):
    for path in ("/console/audit/", "/console/audit.csv", "/console/audit.json"):
        anonymous = client.get(path)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    assert client.get("/api/audit").status_code == 401
    for person, allowed in ((auditor, True), (administrator, True), (agent, False)):
        client.force_login(person)
        expected = 200 if allowed else 403
        for path in ("/console/audit/", "/console/audit.csv", "/console/audit.json"):
            assert client.get(path).status_code == expected, (person, path)
        assert client.get("/api/audit", **bearer(person)).status_code == expected
    # The auditor reads; governance settings are the admin's.
    client.force_login(auditor)
    assert client.get(PAGE).status_code == 403
    assert client.get("/console/audit/").context["page"].entries
    assert not AuditEvent.objects.filter(actor="user:alex").exists()

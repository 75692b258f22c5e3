"""The IMAP poller against a real Dovecot: mail APPENDed to the server becomes tickets once, the
mailbox is left as it was (nothing marked \\Seen), restarts and UIDVALIDITY changes neither miss
nor duplicate mail, and a broken mailbox records its error without stopping the others."""

from __future__ import annotations

import itertools

import pytest
from django.core.management import CommandError, call_command

from assistant.desk import imap
from assistant.desk.imap import poll_mailbox, poll_mailboxes
from assistant.models import InboundMail, Mailbox, MailMessage, Ticket
from tests import dovecot
from tests.conftest import customer_mail as mail
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

_folders = itertools.count(1)


@pytest.fixture(scope="module")
def server():
    if not dovecot.available():
        pytest.skip(f"no dovecot at {dovecot.DOVECOT} (`make mailserver` installs dovecot-imapd)")
    with dovecot.Dovecot(free_port()) as running:
        yield running


@pytest.fixture(autouse=True)
def mail_store(settings, tmp_path):
    """Raw mail, attachments and poll locks in this test's own directory."""
    settings.DATA_DIR = tmp_path
    return tmp_path


@pytest.fixture
def folder(server):
    """A folder of this test's own on the shared server (INBOX is kept for one test)."""
    return f"Desk{next(_folders)}"


def add_mailbox(server, folder="INBOX", name="support", password=None, **fields) -> Mailbox:
    mailbox = Mailbox(
        name=name, host=server.host, port=server.port, use_ssl=False, username=server.user, folder=folder
    )
    for field, value in fields.items():
        setattr(mailbox, field, value)
    mailbox.set_password(server.password if password is None else password)
    mailbox.save()
    return mailbox


def process_received() -> None:
    """What the Celery worker does with each mail the poller stored (the tests' broker is an
    in-memory one nobody consumes)."""
    from assistant.tasks import desk_process_inbound

    for pk in InboundMail.objects.filter(status="received").order_by("id").values_list("pk", flat=True):
        desk_process_inbound(pk)


def test_appended_mail_becomes_tickets_and_stays_unread_on_the_server(server, mail_store):
    first, second = mail(), mail(sender="bo@example.org", subject="Invoice twice")
    uids = [server.deliver(first), server.deliver(second)]
    mailbox = add_mailbox(server)

    assert poll_mailbox(mailbox) == 2
    process_received()

    ana, bo = (
        Ticket.objects.get(customer_email="ana@example.com"),
        Ticket.objects.get(customer_email="bo@example.org"),
    )
    assert ana.subject == "My router keeps rebooting" and ana.customer_name == "Ana Example"
    assert bo.subject == "Invoice twice"
    assert ana.messages.get().reply_text.startswith("Hello, it reboots.")
    inbound = InboundMail.objects.get(mailmessage__ticket=ana)
    assert inbound.source == "imap" and inbound.status == "processed"
    assert (mail_store / "mail" / inbound.path).read_bytes() == first.as_bytes()
    mailbox.refresh_from_db()
    assert mailbox.last_uid == max(uids) and mailbox.uidvalidity == server.uidvalidity("INBOX")
    assert mailbox.last_polled_at is not None and mailbox.last_error == ""
    # Read-only: a person reading the same mailbox still sees both as unread.
    assert all(b"\\Seen" not in flags for flags in server.flags("INBOX").values())

    assert poll_mailbox(mailbox) == 0
    assert InboundMail.objects.count() == 2 and Ticket.objects.count() == 2


def test_a_restart_picks_up_mail_that_came_in_meanwhile_and_stores_nothing_twice(server, folder):
    server.deliver(mail(subject="First"), folder)
    poll_mailbox(add_mailbox(server, folder))
    server.deliver(mail(sender="bo@example.org", subject="Second"), folder)
    server.deliver(mail(sender="cy@example.net", subject="Third"), folder)

    restarted = Mailbox.objects.get(name="support")  # what a new process knows: the database
    assert poll_mailbox(restarted) == 2
    process_received()

    assert sorted(Ticket.objects.values_list("subject", flat=True)) == ["First", "Second", "Third"]
    assert InboundMail.objects.count() == 3
    assert not InboundMail.objects.filter(status="duplicate").exists()


def test_a_crash_before_saving_the_position_refetches_one_message_as_a_duplicate(server, folder):
    for n in range(3):
        server.deliver(mail(subject=f"Question {n}"), folder)
    mailbox = add_mailbox(server, folder)
    poll_mailbox(mailbox)
    process_received()
    # The process died after store_raw stored the last message but before last_uid was saved.
    Mailbox.objects.filter(pk=mailbox.pk).update(last_uid=mailbox.last_uid - 1)

    assert poll_mailbox(Mailbox.objects.get(pk=mailbox.pk)) == 0

    assert Ticket.objects.count() == 3 and MailMessage.objects.count() == 3
    assert InboundMail.objects.filter(status="duplicate").count() == 1


def test_a_storage_failure_stops_at_that_message_and_the_next_poll_resumes_there(server, folder, monkeypatch):
    for n in range(3):
        server.deliver(mail(subject=f"Question {n}"), folder)
    mailbox = add_mailbox(server, folder)
    calls = []
    real_store_raw = imap.store_raw

    def disk_full_on_the_second(raw, **kwargs):
        calls.append(raw)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_store_raw(raw, **kwargs)

    monkeypatch.setattr(imap, "store_raw", disk_full_on_the_second)

    assert poll_mailbox(mailbox) == 1
    mailbox.refresh_from_db()
    assert "No space left on device" in mailbox.last_error and mailbox.last_polled_at is None

    monkeypatch.undo()
    assert poll_mailbox(mailbox) == 2
    process_received()
    mailbox.refresh_from_db()
    assert mailbox.last_error == "" and Ticket.objects.count() == 3
    assert not InboundMail.objects.filter(status="duplicate").exists()


def test_a_mail_that_cannot_be_stored_does_not_stop_the_mail_after_it(server, folder):
    # Before: the OverflowError of storing this date escaped the poll, last_uid stayed before it
    # and every later mail of the mailbox waited forever (the poller retried the same one).
    uids = [
        server.deliver(mail(subject="Odd date", Date="Fri, 31 Dec 9999 23:59:59 -1200"), folder),
        server.deliver(mail(sender="bo@example.org", subject="After it"), folder),
    ]
    mailbox = add_mailbox(server, folder)

    assert poll_mailbox(mailbox) == 2
    process_received()

    mailbox.refresh_from_db()
    assert mailbox.last_uid == max(uids) and mailbox.last_error == ""
    assert sorted(Ticket.objects.values_list("subject", flat=True)) == ["After it", "Odd date"]
    assert poll_mailbox(mailbox) == 0


def test_a_new_uidvalidity_rereads_the_folder_without_duplicate_tickets(server, folder):
    original = mail(subject="Before the migration", message_id="<kept@example.com>")
    server.deliver(original, folder)
    server.deliver(mail(sender="bo@example.org", subject="Also before"), folder)
    mailbox = add_mailbox(server, folder)
    poll_mailbox(mailbox)
    process_received()
    old_uidvalidity = Mailbox.objects.get(pk=mailbox.pk).uidvalidity

    # The folder is restored from a backup on a new server: it gets a new UIDVALIDITY and its
    # UIDs start at 1 again, so UID 2 is now a message the desk has never seen.
    server.recreate(folder)
    server.deliver(original, folder)
    server.deliver(mail(sender="cy@example.net", subject="After the migration"), folder)

    assert poll_mailbox(mailbox) == 1
    process_received()

    mailbox.refresh_from_db()
    assert mailbox.uidvalidity == server.uidvalidity(folder) != old_uidvalidity
    assert mailbox.last_uid == 2
    assert sorted(Ticket.objects.values_list("subject", flat=True)) == [
        "After the migration",
        "Also before",
        "Before the migration",
    ]
    assert MailMessage.objects.filter(message_id="<kept@example.com>").count() == 1
    assert InboundMail.objects.filter(status="duplicate").count() == 1


def test_a_message_over_the_size_limit_becomes_a_ticket_with_its_header_and_a_note(
    server, folder, settings, mail_store
):
    settings.MAIL_MAX_MESSAGE_BYTES = 4096
    huge = mail(subject="Screenshots of the error", message_id="<huge@example.com>", body="x" * 20_000)
    huge.add_attachment(b"\x89PNG" + bytes(10_000), maintype="image", subtype="png", filename="error.png")
    server.deliver(huge, folder)
    server.deliver(mail(sender="bo@example.org", subject="Small one"), folder)
    mailbox = add_mailbox(server, folder)

    assert poll_mailbox(mailbox) == 2
    process_received()

    message = MailMessage.objects.get(message_id="<huge@example.com>")
    assert message.ticket.subject == "Screenshots of the error"
    assert message.from_email == "ana@example.com"
    assert "only its header was stored" in message.text and f'folder "{folder}", UID 1' in message.text
    assert not message.attachments.exists()
    stored = (mail_store / "mail" / message.inbound.path).read_bytes()
    assert len(stored) < 4096 and b"X-Parley-Truncated:" in stored
    assert Ticket.objects.filter(subject="Small one").exists()
    mailbox.refresh_from_db()
    assert mailbox.last_uid == 2 and mailbox.last_error == ""

    # The customer's follow-up threads onto the same ticket, by the original Message-ID.
    server.deliver(mail(subject="Re: Screenshots of the error", In_Reply_To="<huge@example.com>"), folder)
    poll_mailbox(mailbox)
    process_received()
    assert message.ticket.messages.count() == 2


def test_a_wrong_password_is_recorded_and_raises_nothing(server):
    mailbox = add_mailbox(server, password="not the password")

    assert poll_mailbox(mailbox) == 0

    mailbox.refresh_from_db()
    assert mailbox.last_error.startswith("LoginError") and "not the password" not in mailbox.last_error
    assert mailbox.last_polled_at is None and mailbox.uidvalidity is None


def test_a_missing_folder_is_recorded(server):
    mailbox = add_mailbox(server, folder="No such folder")

    assert poll_mailbox(mailbox) == 0

    mailbox.refresh_from_db()
    assert "No such folder" in mailbox.last_error or "doesn't exist" in mailbox.last_error


def test_an_unreachable_server_is_recorded_and_the_other_mailboxes_are_still_polled(server, folder):
    server.deliver(mail(), folder)
    add_mailbox(server, folder, name="a-down", port=free_port())  # nothing listens there
    add_mailbox(server, folder, name="b-up")
    add_mailbox(server, folder, name="c-off", enabled=False)

    assert poll_mailboxes() == {"a-down": 0, "b-up": 1}

    down = Mailbox.objects.get(name="a-down")
    assert down.last_error.startswith("ConnectionRefusedError") and down.last_polled_at is None
    assert Mailbox.objects.get(name="b-up").last_error == ""
    assert Mailbox.objects.get(name="c-off").last_polled_at is None


def test_a_poll_already_running_for_the_mailbox_is_not_started_twice(server, folder):
    server.deliver(mail(), folder)
    mailbox = add_mailbox(server, folder)

    with imap._exclusive(mailbox) as held:
        assert held
        assert poll_mailbox(mailbox) == 0

    assert poll_mailbox(mailbox) == 1


def test_poll_mail_command_adds_a_mailbox_and_polls_it(server, folder, monkeypatch, capsys):
    monkeypatch.setenv("DESK_IMAP_PASSWORD", server.password)
    call_command(
        "poll_mail",
        "--add",
        "support",
        "--host",
        server.host,
        "--port",
        str(server.port),
        "--user",
        server.user,
        "--password-env",
        "DESK_IMAP_PASSWORD",
        "--no-ssl",
        "--folder",
        folder,
    )
    mailbox = Mailbox.objects.get(name="support")
    assert mailbox.get_password() == server.password and not mailbox.use_ssl and mailbox.folder == folder
    assert server.password not in capsys.readouterr().out

    server.deliver(mail(), folder)
    call_command("poll_mail")
    assert "support: 1 new" in capsys.readouterr().out
    server.deliver(mail(sender="bo@example.org", subject="Later"), folder)
    call_command("poll_mail")  # the next run (a cron job, say) carries on where this one stopped
    assert "support: 1 new" in capsys.readouterr().out
    call_command("poll_mail")
    assert "support: 0 new" in capsys.readouterr().out
    process_received()
    assert Ticket.objects.count() == 2 and InboundMail.objects.count() == 2

    # Pointing it at another folder starts that folder from the beginning.
    call_command("poll_mail", "--add", "support", "--folder", "INBOX")
    mailbox.refresh_from_db()
    assert mailbox.folder == "INBOX" and mailbox.uidvalidity is None and mailbox.last_uid == 0


def test_poll_mail_command_reports_a_failed_mailbox_and_exits_non_zero(server, capsys):
    add_mailbox(server, password="wrong")

    with pytest.raises(CommandError, match="1 of 1 mailboxes failed"):
        call_command("poll_mail")

    assert "support: failed: LoginError" in capsys.readouterr().out


def test_poll_mail_command_refuses_a_new_mailbox_without_a_password(server, monkeypatch):
    monkeypatch.delenv("DESK_IMAP_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DESK_IMAP_PASSWORD is not set"):
        call_command(
            "poll_mail", "--add", "support", "--host", server.host, "--user", server.user,
            "--password-env", "DESK_IMAP_PASSWORD",
        )  # fmt: skip
    with pytest.raises(CommandError, match="needs --host"):
        call_command("poll_mail", "--add", "support")
    assert not Mailbox.objects.exists()


def test_an_empty_folder_is_polled_cleanly(server, folder):
    with server.client() as client:
        client.create_folder(folder)
    mailbox = add_mailbox(server, folder)

    assert poll_mailbox(mailbox) == 0

    mailbox.refresh_from_db()
    assert mailbox.last_error == "" and mailbox.last_uid == 0 and mailbox.last_polled_at is not None

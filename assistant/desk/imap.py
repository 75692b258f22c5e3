"""The IMAP poller: new mail in each enabled Mailbox goes through `store_raw`, like SMTP's: the
poller stores and moves on, and the worker processes each mail in its own task, so a mail that
cannot be parsed or stored is marked failed on its own and never holds up the ones after it.

The mailbox is only read: the folder is selected read-only and bodies are fetched with
BODY.PEEK[], so nothing is marked \\Seen, moved or deleted, and a person can keep using the same
mailbox in a mail client. The position is the folder's UIDVALIDITY and the last UID stored
(Mailbox.uidvalidity, Mailbox.last_uid); last_uid is saved after each message is stored, so a
crash re-fetches at most the message in flight, which store_raw then settles as a duplicate (the
same bytes). A new UIDVALIDITY (the folder was recreated, restored or migrated: its UIDs mean
other messages now) starts the folder again from UID 1; mail already on a ticket comes back as a
duplicate and creates nothing.

A message over MAIL_MAX_MESSAGE_BYTES is not fetched whole: a stand-in made of its own headers
(so it threads and names its sender as the original would) and a note saying where the original
is goes through store_raw instead. The customer gets a ticket and the agent reads the rest in the
mailbox, rather than the mail vanishing from the desk or a huge body being held in memory.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.parser import BytesParser

from django.conf import settings
from django.utils import timezone
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from assistant.desk.inbound import mail_dir, store_raw
from assistant.models import InboundMail, Mailbox

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30  # connect and each read: a hung server must not hold the worker forever
BATCH_SIZE = 50  # UIDs per FETCH; each batch is also cut at MAIL_MAX_MESSAGE_BYTES of bodies
HEADER_BYTES = 64 * 1024  # of an oversized message's header, for its stand-in
_MIME_HEADERS = ("MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition")


def poll_mailboxes() -> dict[str, int]:
    """Poll every enabled mailbox once; returns new messages per mailbox name. A mailbox that
    fails records its last_error and the others are still polled."""
    results: dict[str, int] = {}
    for mailbox in Mailbox.objects.filter(enabled=True).order_by("name"):
        try:
            results[mailbox.name] = poll_mailbox(mailbox)
        except Exception as exc:  # a bug in one mailbox's poll must not starve the others
            log.exception("event=imap_poll_crashed mailbox=%s", mailbox.name)
            _record_error(mailbox, exc)
            results[mailbox.name] = 0
    return results


def poll_mailbox(mailbox: Mailbox) -> int:
    """Store the mailbox's new messages; returns how many were new to the desk (not duplicates).

    Connection, login, folder and storage failures do not raise: they are logged and kept in
    mailbox.last_error (the messages stored before the failure stay stored and counted). On
    success last_error is cleared and last_polled_at set, so a stale last_polled_at means the
    mailbox has not been read for that long."""
    with _exclusive(mailbox) as held:
        if not held:  # beat's next round came while this one is still reading
            log.info("event=imap_poll_skipped mailbox=%s reason=busy", mailbox.name)
            return 0
        new = fetched = 0
        try:
            for inbound in _store_new(mailbox):
                fetched += 1
                new += inbound.status != InboundMail.Status.DUPLICATE
        except (IMAPClientError, OSError, ValueError) as exc:
            # ValueError: the password cannot be decrypted (SECRET_KEY changed) or the server
            # sent something imapclient cannot read. OSError covers refused, timeouts and TLS.
            log.warning(
                "event=imap_poll_failed mailbox=%s new=%s error=%s", mailbox.name, new, type(exc).__name__
            )
            _record_error(mailbox, exc)
            return new
        mailbox.last_polled_at, mailbox.last_error = timezone.now(), ""
        mailbox.save(update_fields=["last_polled_at", "last_error"])
        log.info(
            "event=imap_polled mailbox=%s new=%s fetched=%s last_uid=%s",
            mailbox.name,
            new,
            fetched,
            mailbox.last_uid,
        )
        return new


def _store_new(mailbox: Mailbox) -> Iterator[InboundMail]:
    """Yield an InboundMail for each message after last_uid, in UID order, saving last_uid as
    each one is stored."""
    limit = settings.MAIL_MAX_MESSAGE_BYTES
    with IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.use_ssl, timeout=TIMEOUT_SECONDS) as client:
        client.login(mailbox.username, mailbox.get_password())
        selected = client.select_folder(mailbox.folder, readonly=True)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        if uidvalidity != mailbox.uidvalidity:
            log.log(
                logging.INFO if mailbox.uidvalidity is None else logging.WARNING,
                "event=imap_uidvalidity_changed mailbox=%s old=%s new=%s last_uid=%s",
                mailbox.name,
                mailbox.uidvalidity,
                uidvalidity,
                mailbox.last_uid,
            )
            mailbox.uidvalidity, mailbox.last_uid = uidvalidity, 0
            mailbox.save(update_fields=["uidvalidity", "last_uid"])
        # "UID n:*" always includes the newest message, even when its UID is below n (RFC 3501
        # 6.4.8), so an empty answer arrives as the last message stored: filter it out.
        found = client.search(["UID", f"{mailbox.last_uid + 1}:*"])
        uids = sorted(uid for uid in found if uid > mailbox.last_uid)
        for start in range(0, len(uids), BATCH_SIZE):
            chunk = uids[start : start + BATCH_SIZE]
            sizes = {
                uid: data.get(b"RFC822.SIZE") or 0
                for uid, data in client.fetch(chunk, ["RFC822.SIZE"]).items()
            }
            for group in _by_bytes(chunk, sizes, limit):
                small = [uid for uid in group if sizes.get(uid, 0) <= limit]
                large = [uid for uid in group if sizes.get(uid, 0) > limit]
                bodies = client.fetch(small, ["BODY.PEEK[]"]) if small else {}
                heads = client.fetch(large, [f"BODY.PEEK[HEADER]<0.{HEADER_BYTES}>"]) if large else {}
                for uid in group:
                    raw = _raw(mailbox, uid, sizes.get(uid, 0), bodies.get(uid), heads.get(uid))
                    inbound = store_raw(raw, source=InboundMail.Source.IMAP) if raw is not None else None
                    # Only now is the message safe on our side: a crash before this line fetches
                    # it again next time, and store_raw settles it as a duplicate. What happens to
                    # it next (parsing, storing the message) cannot hold the mailbox up any more.
                    mailbox.last_uid = uid
                    mailbox.save(update_fields=["last_uid"])
                    if inbound is not None:
                        yield inbound


def _by_bytes(uids: list[int], sizes: dict[int, int], budget: int) -> Iterator[list[int]]:
    """Cut UIDs into groups whose bodies together stay under `budget` bytes, so one FETCH never
    holds much more than one maximal message in memory (oversized ones count as their header)."""
    group: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        cost = HEADER_BYTES if size > budget else size
        if group and total + cost > budget:
            yield group
            group, total = [], 0
        group.append(uid)
        total += cost
    if group:
        yield group


def _raw(mailbox: Mailbox, uid: int, size: int, body: dict | None, head: dict | None) -> bytes | None:
    """The bytes to store for one UID: the message, its stand-in, or None when it is gone."""
    header = head.get(b"BODY[HEADER]<0>") if head is not None else None
    if header is not None:
        log.warning(
            "event=imap_message_too_large mailbox=%s uid=%s size=%s limit=%s",
            mailbox.name,
            uid,
            size,
            settings.MAIL_MAX_MESSAGE_BYTES,
        )
        return _stand_in(header, size, mailbox, uid)
    raw = body.get(b"BODY[]") if body is not None else None
    if raw is None:  # expunged by another client between SEARCH and FETCH: UIDs are never reused
        log.info("event=imap_message_gone mailbox=%s uid=%s", mailbox.name, uid)
    return raw


def _stand_in(header: bytes, size: int, mailbox: Mailbox, uid: int) -> bytes:
    """The oversized message's own header (Message-ID, From, Subject, References: it threads and
    answers like the original) over a short plain-text note saying where the whole message is."""
    message = BytesParser(policy=policy.compat32).parsebytes(header, headersonly=True)
    for name in _MIME_HEADERS:
        del message[name]
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = 'text/plain; charset="utf-8"'
    message["Content-Transfer-Encoding"] = "8bit"
    message["X-Parley-Truncated"] = f"over MAIL_MAX_MESSAGE_BYTES ({size} bytes)"
    head = message.as_bytes(policy=policy.compat32.clone(linesep="\r\n")).rstrip(b"\r\n")
    note = (
        f"This message is {size} bytes, more than the desk's limit of "
        f"{settings.MAIL_MAX_MESSAGE_BYTES} bytes (MAIL_MAX_MESSAGE_BYTES), so only its header was "
        f'stored. The whole message is still in the mailbox "{mailbox.name}", folder '
        f'"{mailbox.folder}", UID {uid} (UIDVALIDITY {mailbox.uidvalidity}).'
    )
    return head + b"\r\n\r\n" + note.encode() + b"\r\n"


def _record_error(mailbox: Mailbox, exc: BaseException) -> None:
    # The server's words, never the password (imapclient redacts LOGIN in its own logging too).
    mailbox.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    mailbox.save(update_fields=["last_error"])


@contextmanager
def _exclusive(mailbox: Mailbox) -> Iterator[bool]:
    """One poll per mailbox at a time on this host (beat, `manage.py poll_mail` and a slow earlier
    round would otherwise fetch the same messages twice). flock is released when the file closes,
    also when the process dies."""
    path = mail_dir() / "imap" / f"mailbox-{mailbox.pk}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True

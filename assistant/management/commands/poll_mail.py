"""Poll every enabled IMAP mailbox once and say what each stored (beat does this every
DESK_IMAP_POLL_SECONDS under `manage.py serve`). Exits non-zero when a mailbox failed.

With --add NAME, configure a mailbox instead (create it, or change the options given):
  PARLEY_IMAP_PASSWORD=... manage.py poll_mail --add support --host imap.example.com \\
      --user support@example.com --password-env PARLEY_IMAP_PASSWORD [--no-ssl] [--port 993] [--folder INBOX]
The password is read from the named environment variable, never from the command line, where
other users of the machine and the shell history would see it.
"""

from __future__ import annotations

import argparse
import os

from django.core.management.base import BaseCommand, CommandError

from assistant.desk.imap import poll_mailboxes
from assistant.models import Mailbox

# Changing any of these points the mailbox at another folder: its stored UIDs mean nothing there.
_LOCATION = ("host", "port", "username", "folder")


class Command(BaseCommand):
    help = __doc__

    def create_parser(self, *args, **kwargs):
        parser = super().create_parser(*args, **kwargs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the example's lines
        return parser

    def add_arguments(self, parser) -> None:
        parser.add_argument("--add", metavar="NAME", help="create or update the mailbox NAME, then exit")
        parser.add_argument("--host")
        parser.add_argument("--port", type=int, help="default 993 with SSL, 143 without")
        parser.add_argument("--user", help="the IMAP login")
        parser.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
        parser.add_argument("--ssl", action=argparse.BooleanOptionalAction, default=None, help="default on")
        parser.add_argument("--folder", help="default INBOX")

    def handle(self, *args, **options) -> None:
        if options["add"]:
            self.configure(options)
            return
        if not Mailbox.objects.filter(enabled=True).exists():
            self.stdout.write("no enabled mailboxes (add one with --add)")
            return
        results = poll_mailboxes()
        failed = 0
        for mailbox in Mailbox.objects.filter(name__in=results).order_by("name"):
            if mailbox.last_error:
                failed += 1
                self.stdout.write(f"{mailbox.name}: failed: {mailbox.last_error}")
            else:
                self.stdout.write(f"{mailbox.name}: {results[mailbox.name]} new")
        if failed:
            raise CommandError(f"{failed} of {len(results)} mailboxes failed")

    def configure(self, options) -> None:
        name = options["add"]
        mailbox = Mailbox.objects.filter(name=name).first()
        creating = mailbox is None
        if creating:
            needed = (("--host", "host"), ("--user", "user"), ("--password-env", "password_env"))
            missing = [flag for flag, key in needed if not options[key]]
            if missing:
                raise CommandError(f"a new mailbox needs {', '.join(missing)}")
            mailbox = Mailbox(name=name)
        before = {field: getattr(mailbox, field) for field in _LOCATION}
        if options["ssl"] is not None:
            mailbox.use_ssl = options["ssl"]
        if options["port"] is not None:
            mailbox.port = options["port"]
        elif creating:
            mailbox.port = 993 if mailbox.use_ssl else 143
        for option, field in (("host", "host"), ("user", "username"), ("folder", "folder")):
            if options[option]:
                setattr(mailbox, field, options[option])
        if options["password_env"]:
            password = os.environ.get(options["password_env"], "")
            if not password:
                raise CommandError(f"environment variable {options['password_env']} is not set or empty")
            mailbox.set_password(password)
        if not creating and any(getattr(mailbox, field) != before[field] for field in _LOCATION):
            # Start that folder from its first message; mail already on a ticket comes back as a
            # duplicate and creates nothing, where keeping the old position could skip mail.
            mailbox.uidvalidity, mailbox.last_uid = None, 0
        mailbox.enabled = True
        mailbox.full_clean()
        mailbox.save()
        where = f"{mailbox.username}@{mailbox.host}:{mailbox.port} {'ssl' if mailbox.use_ssl else 'plain'}"
        self.stdout.write(
            f"{'added' if creating else 'updated'} mailbox {name}: {where} folder {mailbox.folder}"
        )

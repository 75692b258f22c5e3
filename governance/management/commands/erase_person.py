"""Erase everything stored about a person, found by email address (GDPR erasure): tickets and
their mail, chats, training examples and knowledge-base chunks that mention the address.
Asks for confirmation; `--yes` skips the question (scripts). Without a terminal to ask on and
without `--yes`, it refuses rather than erase unasked."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from governance.people import PersonError, erase_person, normalise_email


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--yes", action="store_true", help="Erase without asking.")

    def handle(self, *args, **options) -> None:
        try:
            email = normalise_email(options["email"])
        except PersonError as exc:
            raise CommandError(exc.message) from exc
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError("Not a terminal: pass --yes to erase without confirmation.")
            answer = input(f"Erase everything stored about {email}? This cannot be undone. [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Nothing erased.")
        counts = erase_person(email, actor="cli:erase_person")
        self.stdout.write(json.dumps(counts, indent=2))

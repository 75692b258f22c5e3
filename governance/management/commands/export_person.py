"""Print everything stored about a person, found by email address, as JSON (GDPR access)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from governance.people import PersonError, export_person


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")

    def handle(self, *args, **options) -> None:
        try:
            data = export_person(options["email"], actor="cli:export_person")
        except PersonError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps(data, indent=2, ensure_ascii=False))

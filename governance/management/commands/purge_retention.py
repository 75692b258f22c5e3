"""`python manage.py purge_retention [--dry-run]`: delete what is past the governance settings'
retention periods now (beat does it daily) and print the counts as one JSON object."""

from __future__ import annotations

import getpass
import json

from django.core.management.base import BaseCommand

from governance.retention import purge_expired


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME (some containers)
        return "cli:unknown"


class Command(BaseCommand):
    help = "Purge data past its retention period (messages, emails, embeddings, model-call logs)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only count what would be purged.")

    def handle(self, *args, dry_run: bool, **options) -> None:
        counts = purge_expired(dry_run=dry_run, actor=cli_actor())
        self.stdout.write(json.dumps({"dry_run": dry_run, **counts}, sort_keys=True))

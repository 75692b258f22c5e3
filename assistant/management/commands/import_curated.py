"""`python manage.py import_curated PATH.jsonl [--collection NAME]`: staff-written Q&A pairs
(`{"question", "answer", "documents": ["refunds.md"]}` per line) become curated training
examples with the passages they cite (assistant/learning/curated.py). Safe to re-run."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from assistant.learning.curated import import_curated
from assistant.learning.dataset import DatasetError


class Command(BaseCommand):
    help = "Import curated Q&A pairs as training examples."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path")
        parser.add_argument("--collection", default="default")

    def handle(self, *args, **options) -> None:
        try:
            added = import_curated(options["path"], collection=options["collection"])
        except (DatasetError, OSError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from exc
        self.stdout.write(self.style.SUCCESS(f"imported {added} curated example(s)"))

"""`python manage.py import_curated PATH.jsonl [--collection NAME]`: staff-written Q&A pairs
(`{"question", "answer", "documents": ["refunds.md"]}` per line) become curated training
examples with the passages they cite (assistant/learning/curated.py). Safe to re-run."""

from __future__ import annotations

from pathlib import Path

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
            # import_curated read and checked every line; the non-empty ones are the examples.
            total = sum(
                1 for line in Path(options["path"]).read_text(encoding="utf-8").splitlines() if line.strip()
            )
        except (DatasetError, OSError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from exc
        self.stdout.write(self.style.SUCCESS(report(added, total)))


def report(added: int, total: int) -> str:
    """One line that reads as what happened, on a first run and on every re-run."""
    if total == 0:
        return "curated examples: the file has none"
    if added == 0:
        return f"curated examples: all {total} already imported"
    if added == total:
        return f"curated examples: imported {added}"
    return f"curated examples: imported {added} new, {total - added} already there"

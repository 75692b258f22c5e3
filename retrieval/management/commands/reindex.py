"""`python manage.py reindex [--collection NAME] [--check]`: rebuild the vector index from the
database (atomically), or with --check only report whether it is in step (exit 1 if not)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from retrieval.consistency import check_index, collections, repair


class Command(BaseCommand):
    help = "Rebuild the FAISS index from the database, or check that it is in step with it."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--collection", action="append", help="Only this collection (repeatable).")
        parser.add_argument("--check", action="store_true", help="Report only; exit 1 if out of step.")

    def handle(self, *args, collection: list[str] | None, check: bool, **options) -> None:
        names = collection or collections()
        if check:
            reports = [check_index(name) for name in names]
            self.stdout.write(json.dumps([r.as_dict() for r in reports], indent=2))
            if not all(r.ok for r in reports):
                raise CommandError("The index is out of step with the database; run `manage.py reindex`.")
            return
        for name in names:
            count, seconds = repair(name)
            self.stdout.write(f"{name}: {count} vectors in {seconds:.1f}s")

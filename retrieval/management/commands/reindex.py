"""`python manage.py reindex [--collection NAME] [--check]`: rebuild the vector index from the
database (atomically: searches keep the old file until the new one is renamed into place), or
with --check only print whether it is in step, as JSON, and exit 1 if it is not."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retrieval.consistency import check_index, collections, repair
from retrieval.models import COLLECTION_NAME


class Command(BaseCommand):
    help = "Rebuild the FAISS index from the database, or check that it is in step with it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--collection", action="append", help="Only this collection (repeatable).")
        parser.add_argument("--check", action="store_true", help="Report only; exit 1 if out of step.")

    def handle(self, *args: Any, collection: list[str] | None, check: bool, **options: Any) -> None:
        names = collection or collections()
        bad = [name for name in names if not COLLECTION_NAME.fullmatch(name)]
        if bad:
            raise CommandError(f"invalid collection name {bad[0]!r}: letters, digits, '-' and '_' only")
        if check:
            reports = [check_index(name) for name in names]
            self.stdout.write(json.dumps([r.as_dict() for r in reports], indent=2))
            if not all(r.ok for r in reports):
                raise CommandError("The index is out of step with the database; run `manage.py reindex`.")
            return
        started = time.perf_counter()
        total = 0
        for name in names:
            count, seconds = repair(name)
            total += count
            self.stdout.write(f"{name}: {count} vectors in {seconds:.1f}s")
        self.stdout.write(f"total: {total} vectors in {time.perf_counter() - started:.1f}s")

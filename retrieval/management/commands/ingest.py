"""`python manage.py ingest PATH...`: add documents to the knowledge base."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from retrieval.actions import do_ingest_file, iter_files
from retrieval.errors import IngestError
from retrieval.models import COLLECTION_NAME


class Command(BaseCommand):
    help = "Ingest files or folders (Markdown, text) into a knowledge-base collection."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--collection", default="default")
        parser.add_argument(
            "--private",
            action="store_true",
            help="Do not show these documents to website visitors in citations.",
        )
        parser.add_argument(
            "--background",
            action="store_true",
            help="Queue the work for the Celery worker instead of doing it now.",
        )

    def handle(
        self, *args, paths: list[str], collection: str, private: bool, background: bool, **options
    ) -> None:
        if not COLLECTION_NAME.fullmatch(collection):
            raise CommandError("--collection may contain only letters, digits, '-' and '_'")
        if background:
            from retrieval.tasks import ingest_path

            for raw in paths:
                result = ingest_path.delay(str(Path(raw).resolve()), collection, not private)
                self.stdout.write(f"queued {raw} as task {result.id}")
            return
        failures = 0
        for raw in paths:
            try:
                files = iter_files(Path(raw))
            except IngestError as exc:
                raise CommandError(exc.message) from exc
            for file in files:
                try:
                    result = do_ingest_file(file, collection=collection, public=not private)
                except IngestError as exc:
                    failures += 1
                    self.stderr.write(f"failed {file}: {exc.message}")
                    continue
                state = "ingested" if result.changed else "unchanged"
                self.stdout.write(f"{state} {file.name}: {result.chunks} chunks")
        if failures:
            raise CommandError(f"{failures} file(s) could not be ingested")

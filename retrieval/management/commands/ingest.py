"""`python manage.py ingest PATH...`: add documents to the knowledge base.

URLs are fetched under the same rule as the API's and the admin's: public addresses only, unless
INGEST_ALLOWED_HOSTS allows the host (retrieval/fetch.py). The command is run by an admin, but
what it fetches is not all theirs to choose: a page redirects where its server says and a sitemap
lists whatever its author wrote, and the text fetched becomes a public page at /kb/<id>/. So the
command gets no way around the check; an intranet the admin means to ingest goes on the list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core import jobs
from retrieval.actions.create import do_create_document_from_url
from retrieval.actions.ingest import do_ingest_files, iter_files, process_document
from retrieval.errors import IngestError
from retrieval.models import COLLECTION_NAME, Document


class Command(BaseCommand):
    help = "Ingest files, folders, web pages or sitemaps into a knowledge-base collection."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "paths",
            nargs="+",
            help="Files, folders, or http(s) URLs of pages and sitemaps (public addresses, or hosts "
            "in INGEST_ALLOWED_HOSTS).",
        )
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
        self, *args: Any, paths: list[str], collection: str, private: bool, background: bool, **options: Any
    ) -> None:
        if not COLLECTION_NAME.fullmatch(collection):
            raise CommandError("--collection may contain only letters, digits, '-' and '_'")
        urls = [p for p in paths if p.startswith(("http://", "https://"))]
        paths = [p for p in paths if p not in urls]
        if background:
            for raw in paths:
                result = jobs.enqueue(
                    "retrieval.ingest_path", str(Path(raw).resolve()), collection, not private
                )
                self.stdout.write(f"queued {raw} as task {result.id}")
            for url in urls:
                document = self._url_document(url, collection, not private, enqueue=True)
                self.stdout.write(f"queued {url} as document {document.pk}")
            return
        failures = 0
        for url in urls:
            document = self._url_document(url, collection, not private, enqueue=False)
            try:
                result = process_document(document, inline=True)
                state = "ingested" if result.changed else "unchanged"
                self.stdout.write(f"{state} {url}: {result.chunks} chunks")
            except IngestError as exc:
                failures += 1
                self.stderr.write(f"failed {url}: {exc.message}")
        for raw in paths:
            try:
                files = iter_files(Path(raw))
            except IngestError as exc:
                raise CommandError(exc.message) from exc
            # Files are embedded and indexed in groups (one embedder call, one index write each).
            outcomes = do_ingest_files(files, collection=collection, public=not private)
            for file, outcome in outcomes.items():
                if isinstance(outcome, IngestError):
                    failures += 1
                    self.stderr.write(f"failed {file}: {outcome.message}")
                    continue
                state = "ingested" if outcome.changed else "unchanged"
                self.stdout.write(f"{state} {file.name}: {outcome.chunks} chunks")
        if failures:
            raise CommandError(f"{failures} document(s) could not be ingested")

    def _url_document(self, url: str, collection: str, public: bool, *, enqueue: bool) -> Document:
        try:
            return do_create_document_from_url(url, collection=collection, public=public, enqueue=enqueue)
        except IngestError as exc:
            raise CommandError(exc.message) from exc

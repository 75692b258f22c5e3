"""Creating documents (from a path, an upload or a URL) and queueing their processing.

Processing is queued by task name (`core.jobs.enqueue("retrieval.process_document", pk)`), so
this module does not import `retrieval.tasks`: only the tasks import the actions.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import get_valid_filename

from core import jobs
from retrieval.errors import IngestError
from retrieval.models import COLLECTION_NAME, Document


def check_collection(collection: str) -> None:
    if not COLLECTION_NAME.fullmatch(collection):
        raise IngestError(
            "Collection names may contain only letters, digits, '-' and '_'.", code="bad_collection"
        )


def path_document(path: Path, collection: str, public: bool) -> Document:
    """An unsaved document for a resolved file path."""
    return Document(
        collection=collection,
        source=str(path),
        title=path.name,
        public=public,
        kind=path.suffix.lower().lstrip("."),
    )


def do_create_document_from_path(path: Path, *, collection: str = "default", public: bool = True) -> Document:
    check_collection(collection)
    path = Path(path).resolve()
    new = path_document(path, collection, public)
    document, _ = Document.objects.get_or_create(
        collection=collection,
        source=new.source,
        defaults={"title": new.title, "public": new.public, "kind": new.kind},
    )
    return document


def do_create_document_from_upload(
    upload: UploadedFile[bytes], *, collection: str = "default", public: bool = True
) -> Document:
    """Keep the uploaded original under the data directory, then queue its processing."""
    check_collection(collection)
    if upload.size is not None and upload.size > settings.INGEST_MAX_FILE_BYTES:
        raise IngestError(
            f"{upload.name} is {upload.size} bytes; the limit is {settings.INGEST_MAX_FILE_BYTES}.",
            code="too_large",
        )
    name = get_valid_filename(Path(upload.name or "upload").name) or "upload"
    relative = Path("documents") / uuid.uuid4().hex / name
    target = settings.DATA_DIR / "media" / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        for part in upload.chunks():
            out.write(part)
    document = Document.objects.create(
        collection=collection,
        source=f"upload:{relative.parent.name}/{name}",
        title=name,
        public=public,
        original=str(relative),
        size_bytes=target.stat().st_size,
        kind=Path(name).suffix.lower().lstrip("."),
    )
    do_queue_processing(document)
    return document


def do_create_document_from_url(
    url: str, *, collection: str = "default", public: bool = True, enqueue: bool = True
) -> Document:
    """A document for a web page or sitemap, its processing queued unless `enqueue` is false
    (the `ingest` command processes it inline)."""
    check_collection(collection)
    if not url.startswith(("http://", "https://")) or len(url) > 1000:
        raise IngestError(
            "Only http:// and https:// URLs (up to 1000 characters) can be fetched.", code="bad_url"
        )
    document, _ = Document.objects.get_or_create(
        collection=collection,
        source=url,
        defaults={"title": url, "url": url, "public": public},
    )
    if enqueue:
        do_queue_processing(document)
    return document


def do_queue_processing(document: Document) -> None:
    """Show the document as pending and queue its processing for the worker."""
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PENDING, progress=0)
    # Only announce a document that was committed (the worker would not find it otherwise).
    transaction.on_commit(lambda: jobs.enqueue("retrieval.process_document", document.pk))


def do_requeue_unfinished() -> int:
    """Queue again the documents a crash or kill left pending or processing (run at start-up)."""
    stuck = list(
        Document.objects.filter(status__in=[Document.Status.PENDING, Document.Status.PROCESSING]).exclude(
            original="", url=""
        )
    )
    for document in stuck:
        do_queue_processing(document)
    return len(stuck)

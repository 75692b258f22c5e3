"""Every write to the knowledge base: creating, processing and deleting documents.

A document is created first (pending) from a path, an upload or a URL, then processed: its
original is read, parsed by a loader, chunked along its structure, embedded in batches (progress
is saved as it goes), and its chunks and vectors replace the old ones in one step. Processing runs
in a Celery task for uploads and URLs, inline for `manage.py ingest`. Any failure is recorded on
the document (status, error code, message) and never affects other documents.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import get_valid_filename

from inference.services import get_embedder
from retrieval.chunking import chunk_document
from retrieval.errors import IngestError
from retrieval.fetch import fetch, filename_for, is_sitemap, sitemap_urls
from retrieval.index import get_index
from retrieval.loaders import SUPPORTED_SUFFIXES, parse
from retrieval.models import COLLECTION_NAME, Chunk, Document

log = logging.getLogger(__name__)

EMBED_BATCH = 64


@dataclass(frozen=True)
class IngestResult:
    document: Document
    changed: bool
    chunks: int


def _check_collection(collection: str) -> None:
    if not COLLECTION_NAME.fullmatch(collection):
        raise IngestError(
            "Collection names may contain only letters, digits, '-' and '_'.", code="bad_collection"
        )


def iter_files(path: Path) -> list[Path]:
    """A file, or every supported file below a folder (sorted, hidden files skipped)."""
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in SUPPORTED_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    if path.is_file():
        return [path]
    raise IngestError(f"No such file or folder: {path}", code="not_found")


# --- Creating documents -------------------------------------------------------------------------


def do_create_document_from_path(path: Path, *, collection: str = "default", public: bool = True) -> Document:
    _check_collection(collection)
    path = Path(path).resolve()
    document, _ = Document.objects.get_or_create(
        collection=collection,
        source=str(path),
        defaults={"title": path.name, "public": public, "kind": path.suffix.lower().lstrip(".")},
    )
    return document


def do_create_document_from_upload(
    upload: UploadedFile, *, collection: str = "default", public: bool = True
) -> Document:
    """Keep the uploaded original under the data directory, then queue its processing."""
    _check_collection(collection)
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
    _enqueue(document)
    return document


def do_create_document_from_url(
    url: str, *, collection: str = "default", public: bool = True, enqueue: bool = True
) -> Document:
    _check_collection(collection)
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
        _enqueue(document)
    return document


def _enqueue(document: Document) -> None:
    from retrieval.tasks import process_document_task

    Document.objects.filter(pk=document.pk).update(status=Document.Status.PENDING, progress=0)
    # Only announce a document that was committed (the worker would not find it otherwise).
    transaction.on_commit(lambda: process_document_task.delay(document.pk))


# --- Processing -----------------------------------------------------------------------------------


def do_ingest_path(path: Path, *, collection: str = "default", public: bool = True) -> list[IngestResult]:
    """Ingest a file or folder inline; raises the first failure after trying every file."""
    results, failures = [], []
    for file in iter_files(Path(path)):
        try:
            results.append(do_ingest_file(file, collection=collection, public=public))
        except IngestError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
    return results


def do_ingest_file(path: Path, *, collection: str = "default", public: bool = True) -> IngestResult:
    document = do_create_document_from_path(path, collection=collection, public=public)
    if document.public != public:
        Document.objects.filter(pk=document.pk).update(public=public)
        document.public = public
    return process_document(document)


def process_document(document: Document, *, inline: bool = False) -> IngestResult:
    """Read, parse, chunk, embed and index one document; record any failure on it and raise."""
    try:
        return _process(document, inline)
    except IngestError as exc:
        _fail(document, exc.code, exc.message)
        raise
    except Exception as exc:
        log.exception("event=ingest_failed document=%s", document.pk)
        _fail(document, "internal", f"Internal error while ingesting ({exc.__class__.__name__}).")
        raise IngestError(
            f"{document.title} could not be ingested ({exc.__class__.__name__})", code="internal"
        ) from exc


def _fail(document: Document, code: str, message: str) -> None:
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.FAILED, error_code=code[:32], error=message, progress=0
    )


def _progress(document: Document, percent: int) -> None:
    Document.objects.filter(pk=document.pk).update(progress=max(0, min(100, percent)))


def _read_original(document: Document) -> tuple[bytes, str, str]:
    """(bytes, file name, content type) of the document's original."""
    limit = settings.INGEST_MAX_FILE_BYTES
    path = settings.DATA_DIR / "media" / document.original if document.original else Path(document.source)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IngestError(f"{path.name} cannot be read: {exc.strerror}", code="not_found") from exc
    if size > limit:  # checked before reading: a 500 MB file is never loaded into memory
        raise IngestError(f"{path.name} is {size} bytes; the limit is {limit}.", code="too_large")
    return path.read_bytes(), path.name, ""


def _process(document: Document, inline: bool) -> IngestResult:
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING, progress=1)
    if document.source.startswith(("http://", "https://")) and not document.original:
        fetched = fetch(document.source, max_bytes=settings.INGEST_MAX_FILE_BYTES)
        if is_sitemap(fetched):
            return _expand_sitemap(document, fetched, inline)
        data, filename, content_type = fetched.data, filename_for(fetched), fetched.content_type
    else:
        data, filename, content_type = _read_original(document)
    digest = hashlib.sha256(data).hexdigest()
    document.refresh_from_db()
    if document.content_hash == digest and document.chunks.exists():
        Document.objects.filter(pk=document.pk).update(
            status=Document.Status.READY, progress=100, error="", error_code=""
        )
        return IngestResult(document, changed=False, chunks=document.chunks.count())

    parsed = parse(
        data, filename=filename, content_type=content_type, max_bytes=settings.INGEST_MAX_FILE_BYTES
    )
    embedder = get_embedder()
    drafts = chunk_document(
        parsed,
        size=settings.CHUNK_TOKENS,
        overlap=settings.CHUNK_OVERLAP_TOKENS,
        count_tokens=embedder.count_tokens,
    )
    if not drafts:
        raise IngestError(f"{filename} has no text to index.", code="empty")
    _progress(document, 10)
    parts = []
    for start in range(0, len(drafts), EMBED_BATCH):
        parts.append(embedder.embed([d.text for d in drafts[start : start + EMBED_BATCH]]))
        _progress(document, 10 + 85 * min(len(drafts), start + EMBED_BATCH) // len(drafts))
    vectors = np.concatenate(parts).astype(np.float32)  # (n_chunks, dim)

    index = get_index(document.collection, embedder.dim)
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        old_ids = list(document.chunks.values_list("id", flat=True))
        document.chunks.all().delete()
        chunks = Chunk.objects.bulk_create(
            Chunk(
                document=document,
                ordinal=i,
                text=d.text,
                section=d.section[:500],
                anchor=d.anchor[:200],
                page=d.page,
                kind=d.kind,
                token_count=d.token_count,
                embedding=vector.tobytes(),
            )
            for i, (d, vector) in enumerate(zip(drafts, vectors, strict=True))
        )
        document.title = (parsed.title or filename)[:300]
        document.kind, document.language = parsed.kind, parsed.language or document.language
        document.content_hash, document.size_bytes = digest, len(data)
        document.status, document.progress = Document.Status.READY, 100
        document.error, document.error_code = "", ""
        document.save()
        # Inside the transaction: if the index write fails, the chunk rows roll back with it.
        index.replace(old_ids, [c.id for c in chunks], vectors)
    log.info("event=document_ingested document=%s kind=%s chunks=%d", document.pk, parsed.kind, len(chunks))
    return IngestResult(document, changed=True, chunks=len(chunks))


def _expand_sitemap(document: Document, fetched, inline: bool) -> IngestResult:
    """A sitemap becomes one document per listed page, each processed on its own: by the worker,
    or here when `inline` (the `ingest` command); a failing page is recorded on its document."""
    urls = sitemap_urls(fetched)
    for url in urls:
        child = do_create_document_from_url(
            url, collection=document.collection, public=document.public, enqueue=not inline
        )
        if inline:
            try:
                process_document(child, inline=True)
            except IngestError:
                pass  # recorded on the child document; the other pages go on
    Document.objects.filter(pk=document.pk).update(
        status=Document.Status.READY,
        progress=100,
        kind="sitemap",
        title=f"Sitemap ({len(urls)} pages)",
        error="",
        error_code="",
    )
    document.refresh_from_db()
    return IngestResult(document, changed=True, chunks=0)


# --- Deleting and recovering ----------------------------------------------------------------------


def do_delete_document(document: Document) -> None:
    """Remove a document, its chunks and their vectors (and its stored original)."""
    ids = list(document.chunks.values_list("id", flat=True))
    with transaction.atomic():
        document.delete()
        if ids:
            embedder_dim = _dimension_of(ids[0])
            if embedder_dim:
                get_index(document.collection, embedder_dim).replace(ids, [], np.zeros((0, embedder_dim)))
    if document.original:
        original = settings.DATA_DIR / "media" / document.original
        original.unlink(missing_ok=True)
        try:
            original.parent.rmdir()
        except OSError:
            pass


def _dimension_of(chunk_id: int) -> int:
    """The vector dimension of the index holding a chunk, without loading the embedder."""
    row = Chunk.objects.filter(pk=chunk_id).values_list("embedding", flat=True).first()
    return len(bytes(row)) // 4 if row else get_embedder().dim


def do_requeue_unfinished() -> int:
    """Queue again the documents a crash or kill left pending or processing (run at start-up)."""
    stuck = list(
        Document.objects.filter(status__in=[Document.Status.PENDING, Document.Status.PROCESSING]).exclude(
            original="", url=""
        )
    )
    for document in stuck:
        _enqueue(document)
    return len(stuck)

"""Every write to the knowledge base: ingesting and removing documents."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from inference.services import get_embedder
from retrieval.chunking import chunk_markdown, markdown_title
from retrieval.errors import IngestError
from retrieval.index import get_index
from retrieval.models import Chunk, Document

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {".md", ".markdown", ".txt"}


@dataclass(frozen=True)
class IngestResult:
    document: Document
    changed: bool
    chunks: int


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


def do_ingest_path(path: Path, *, collection: str = "default", public: bool = True) -> list[IngestResult]:
    return [do_ingest_file(file, collection=collection, public=public) for file in iter_files(path)]


def _read_text(path: Path) -> str:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise IngestError(f"Unsupported file type {path.suffix!r} ({path.name})", code="unsupported_type")
    size = path.stat().st_size
    if size > settings.INGEST_MAX_FILE_BYTES:
        raise IngestError(
            f"{path.name} is {size} bytes; the limit is {settings.INGEST_MAX_FILE_BYTES}", code="too_large"
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngestError(f"{path.name} is not valid UTF-8 text", code="bad_encoding") from exc


def do_ingest_file(path: Path, *, collection: str = "default", public: bool = True) -> IngestResult:
    """Add or refresh one document. Unchanged content does nothing; changed content replaces the
    document's chunks and vectors; a failure is recorded on the document and raised."""
    path = Path(path).resolve()
    try:
        return _ingest(path, collection, public)
    except IngestError as exc:
        _record_failure(path, collection, exc.message)
        raise
    except Exception as exc:
        log.exception("event=ingest_failed path=%s", path.name)
        _record_failure(path, collection, f"Internal error: {exc.__class__.__name__}")
        raise IngestError(f"{path.name} could not be ingested ({exc.__class__.__name__})") from exc


def _record_failure(path: Path, collection: str, message: str) -> None:
    Document.objects.update_or_create(
        collection=collection,
        source=str(path),
        defaults={"status": Document.Status.FAILED, "error": message},
        create_defaults={"title": path.name, "status": Document.Status.FAILED, "error": message},
    )


def _ingest(path: Path, collection: str, public: bool) -> IngestResult:
    source = str(path)
    text = _read_text(path)
    digest = hashlib.sha256(text.encode()).hexdigest()
    title = markdown_title(text, fallback=path.stem.replace("-", " ").capitalize())
    document, _ = Document.objects.get_or_create(
        collection=collection, source=source, defaults={"title": title, "public": public}
    )
    if document.content_hash == digest and document.status == Document.Status.READY:
        return IngestResult(document, changed=False, chunks=document.chunks.count())

    drafts = chunk_markdown(text, title, size=settings.CHUNK_TOKENS, overlap=settings.CHUNK_OVERLAP_TOKENS)
    if not drafts:
        raise IngestError(f"{path.name} has no text to index", code="empty")
    embedder = get_embedder()
    vectors = embedder.embed([d.text for d in drafts])  # (n_chunks, dim)
    index = get_index(collection, embedder.dim)
    with transaction.atomic():
        old_ids = list(document.chunks.values_list("id", flat=True))
        document.chunks.all().delete()
        chunks = Chunk.objects.bulk_create(
            Chunk(
                document=document,
                ordinal=i,
                text=d.text,
                section=d.section,
                anchor=d.anchor,
                token_count=d.token_count,
                embedding=vector.tobytes(),
            )
            for i, (d, vector) in enumerate(zip(drafts, vectors, strict=True))
        )
        document.title, document.content_hash, document.public = title, digest, public
        document.status, document.error = Document.Status.READY, ""
        document.save(update_fields=["title", "content_hash", "public", "status", "error", "updated_at"])
        # Inside the transaction: if the index write fails, the chunk rows roll back with it.
        index.replace(old_ids, [c.id for c in chunks], vectors)
    log.info("event=document_ingested document=%s chunks=%d", document.pk, len(chunks))
    return IngestResult(document, changed=True, chunks=len(chunks))

"""Every write to the knowledge base: creating, processing and deleting documents.

A document is created first (pending) from a path, an upload or a URL, then processed in three
stages: prepare (its original is read, hashed, parsed by a loader and chunked along its
structure), embed, and store (its chunks and vectors replace the old ones in one transaction and
one index write). Processing runs in a Celery task for uploads and URLs, one document at a time
with its progress saved as it goes; `manage.py ingest` and `do_ingest_path` run it inline on
groups of documents (one embedder call and one index write per group, see do_ingest_files). Any
failure is recorded on the document (status, error code, message) and never affects other
documents, except a failure to embed or store a group, which fails that group's documents.
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
from django.db.models import Count
from django.utils.text import get_valid_filename

from inference.base import Embedder
from inference.services import get_embedder
from retrieval.chunking import ChunkDraft, chunk_document
from retrieval.errors import IngestError
from retrieval.fetch import fetch, filename_for, is_sitemap, sitemap_urls
from retrieval.index import get_index
from retrieval.loaders import SUPPORTED_SUFFIXES, parse
from retrieval.models import COLLECTION_NAME, Chunk, Document

log = logging.getLogger(__name__)

# Chunks per embedder call while a single document shows its progress.
EMBED_BATCH = 64
# Folder ingestion works in groups of at most this many documents and about this many chunks
# (see do_ingest_files for what each costs). The embedder sorts one call's texts by length, so a
# larger group pads less: over the 3,946 evaluation passages, groups of 64 padded 7.9% more
# tokens than one sorted call, 256 2.9%, 512 1.8%.
GROUP_DOCUMENTS = 256
GROUP_CHUNKS = 512


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
    new = _path_document(path, collection, public)
    document, _ = Document.objects.get_or_create(
        collection=collection,
        source=new.source,
        defaults={"title": new.title, "public": new.public, "kind": new.kind},
    )
    return document


def _path_document(path: Path, collection: str, public: bool) -> Document:
    """An unsaved document for a resolved file path."""
    return Document(
        collection=collection,
        source=str(path),
        title=path.name,
        public=public,
        kind=path.suffix.lower().lstrip("."),
    )


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
#
# Three stages, shared by single documents and folders: prepare (read, hash, parse, chunk: one
# document at a time, a failure marks only that document), embed (one embedder call for a whole
# group), store (one transaction and one index write for a whole group).


@dataclass
class _Prepared:
    """A changed document, parsed and chunked, waiting to be embedded and stored."""

    document: Document
    digest: str
    size_bytes: int
    title: str
    kind: str
    language: str
    drafts: list[ChunkDraft]


def do_ingest_path(path: Path, *, collection: str = "default", public: bool = True) -> list[IngestResult]:
    """Ingest a file or folder inline; raises the first failure after trying every file."""
    outcomes = do_ingest_files(iter_files(Path(path)), collection=collection, public=public).values()
    failures = [o for o in outcomes if isinstance(o, IngestError)]
    if failures:
        raise failures[0]
    return [o for o in outcomes if isinstance(o, IngestResult)]


def do_ingest_files(
    files: list[Path], *, collection: str = "default", public: bool = True
) -> dict[Path, IngestResult | IngestError]:
    """Ingest files inline, in groups; returns each file's outcome by its resolved path, in order
    (a failure is recorded on its document and returned, never raised).

    Files are taken GROUP_DOCUMENTS at a time; changed ones are embedded with one embedder call
    and stored with one transaction and one index write per group of at most GROUP_DOCUMENTS
    documents and about GROUP_CHUNKS chunks, so a crash leaves each group wholly stored and
    indexed or not at all. Larger groups pad fewer embedder batches and rewrite the index file
    less often (each write rewrites the whole file), but hold more chunks in memory and lose
    more work to a crash. A document of GROUP_CHUNKS chunks or more is a group of its own and
    shows its progress as it is embedded.
    """
    _check_collection(collection)
    paths = list(dict.fromkeys(Path(f).resolve() for f in files))  # a symlink is one document
    embedder = get_embedder()
    outcomes: dict[Path, IngestResult | IngestError] = {}
    for start in range(0, len(paths), GROUP_DOCUMENTS):
        batch = paths[start : start + GROUP_DOCUMENTS]
        outcomes.update(zip(batch, _ingest_batch(batch, collection, public, embedder), strict=True))
    return outcomes


def _ingest_batch(
    paths: list[Path], collection: str, public: bool, embedder: Embedder
) -> list[IngestResult | IngestError]:
    """Up to GROUP_DOCUMENTS resolved paths: prepare each, then embed and store the changed ones
    in groups of about GROUP_CHUNKS chunks."""
    documents = _documents_for_paths(paths, collection=collection, public=public)
    with_chunks = set(
        Chunk.objects.filter(document__in=documents).values_list("document_id", flat=True).distinct()
    )
    outcomes: dict[int, IngestResult | IngestError] = {}  # by document id
    unchanged: list[Document] = []
    group: list[_Prepared] = []
    group_chunks = 0
    for document in documents:
        try:
            prepared = _prepare(
                document, *_read_original(document), embedder, has_chunks=document.pk in with_chunks
            )
        except Exception as exc:
            outcomes[document.pk] = _record_failure([document], exc)[0]
            continue
        if prepared is None:
            unchanged.append(document)
            continue
        if group and group_chunks + len(prepared.drafts) > GROUP_CHUNKS:
            outcomes.update(_embed_and_store(collection, group, embedder))
            group, group_chunks = [], 0
        group.append(prepared)
        group_chunks += len(prepared.drafts)
    if group:
        outcomes.update(_embed_and_store(collection, group, embedder))
    outcomes.update((r.document.pk, r) for r in _unchanged(unchanged))
    return [outcomes[document.pk] for document in documents]


def do_ingest_file(path: Path, *, collection: str = "default", public: bool = True) -> IngestResult:
    document = do_create_document_from_path(path, collection=collection, public=public)
    if document.public != public:
        Document.objects.filter(pk=document.pk).update(public=public)
        document.public = public
    return process_document(document)


def _documents_for_paths(paths: list[Path], *, collection: str, public: bool) -> list[Document]:
    """The documents of these resolved paths, created where missing, with `public` set: a few
    queries for the whole batch rather than a get_or_create per file."""
    sources = [str(path) for path in paths]
    existing = {d.source: d for d in Document.objects.filter(collection=collection, source__in=sources)}
    missing = [_path_document(path, collection, public) for path in paths if str(path) not in existing]
    if missing:
        # ignore_conflicts: another process may create the same source meanwhile; read back below.
        Document.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {d.source: d for d in Document.objects.filter(collection=collection, source__in=sources)}
    flipped = [d for d in existing.values() if d.public != public]
    if flipped:
        Document.objects.filter(pk__in=[d.pk for d in flipped]).update(public=public)
        for document in flipped:
            document.public = public
    return [existing[source] for source in sources]


def process_document(document: Document, *, inline: bool = False) -> IngestResult:
    """Read, parse, chunk, embed and index one document, showing its progress; record any
    failure on it and raise."""
    try:
        return _process(document, inline)
    except Exception as exc:
        error = _record_failure([document], exc)[0]
        if error is exc:
            raise
        raise error from exc


def _process(document: Document, inline: bool) -> IngestResult:
    Document.objects.filter(pk=document.pk).update(status=Document.Status.PROCESSING, progress=1)
    if document.source.startswith(("http://", "https://")) and not document.original:
        fetched = fetch(document.source, max_bytes=settings.INGEST_MAX_FILE_BYTES)
        if is_sitemap(fetched):
            return _expand_sitemap(document, fetched, inline)
        data, filename, content_type = fetched.data, filename_for(fetched), fetched.content_type
    else:
        data, filename, content_type = _read_original(document)
    document.refresh_from_db()
    embedder = get_embedder()
    prepared = _prepare(document, data, filename, content_type, embedder, has_chunks=document.chunks.exists())
    if prepared is None:
        return _unchanged([document])[0]
    result = _embed_and_store(document.collection, [prepared], embedder, progress=True)[document.pk]
    if isinstance(result, IngestError):
        raise result
    return result


def _record_failure(documents: list[Document], exc: Exception) -> list[IngestError]:
    """Record `exc` on each document (status failed, code, message) and return the error to
    report for each: an IngestError as it is, anything else as code "internal"."""
    if isinstance(exc, IngestError):
        _fail(documents, exc.code, exc.message)
        return [exc] * len(documents)
    log.error("event=ingest_failed documents=%s", ",".join(str(d.pk) for d in documents), exc_info=exc)
    _fail(documents, "internal", f"Internal error while ingesting ({exc.__class__.__name__}).")
    errors = []
    for document in documents:
        error = IngestError(
            f"{document.title} could not be ingested ({exc.__class__.__name__})", code="internal"
        )
        error.__cause__ = exc
        errors.append(error)
    return errors


def _fail(documents: list[Document], code: str, message: str) -> None:
    Document.objects.filter(pk__in=[d.pk for d in documents]).update(
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


def _prepare(
    document: Document,
    data: bytes,
    filename: str,
    content_type: str,
    embedder: Embedder,
    *,
    has_chunks: bool,
) -> _Prepared | None:
    """Stage 1, no writes: hash, parse and chunk the document's bytes. None when the content is
    what is already stored (same hash, chunks present)."""
    digest = hashlib.sha256(data).hexdigest()
    if document.content_hash == digest and has_chunks:
        return None
    parsed = parse(
        data, filename=filename, content_type=content_type, max_bytes=settings.INGEST_MAX_FILE_BYTES
    )
    drafts = chunk_document(
        parsed,
        size=settings.CHUNK_TOKENS,
        overlap=settings.CHUNK_OVERLAP_TOKENS,
        count_tokens=embedder.count_tokens,
    )
    if not drafts:
        raise IngestError(f"{filename} has no text to index.", code="empty")
    return _Prepared(
        document=document,
        digest=digest,
        size_bytes=len(data),
        title=(parsed.title or filename)[:300],
        kind=parsed.kind,
        language=parsed.language or document.language,
        drafts=drafts,
    )


def _unchanged(documents: list[Document]) -> list[IngestResult]:
    """Results for documents whose stored chunks are current; only those not already shown as
    ready are written (re-ingesting an unchanged folder writes nothing)."""
    if not documents:
        return []
    ids = [d.pk for d in documents]
    Document.objects.filter(pk__in=ids).exclude(
        status=Document.Status.READY, progress=100, error="", error_code=""
    ).update(status=Document.Status.READY, progress=100, error="", error_code="")
    counts = dict(
        Chunk.objects.filter(document_id__in=ids).values_list("document_id").annotate(n=Count("id"))
    )
    results = []
    for document in documents:
        document.status, document.progress = Document.Status.READY, 100
        document.error, document.error_code = "", ""
        results.append(IngestResult(document, changed=False, chunks=counts.get(document.pk, 0)))
    return results


def _embed_and_store(
    collection: str, group: list[_Prepared], embedder: Embedder, *, progress: bool | None = None
) -> dict[int, IngestResult | IngestError]:
    """Stages 2 and 3 for a group of prepared documents of one collection: one embedder call,
    then one transaction and one index write. A failure here fails the whole group (recorded on
    each of its documents); nothing of it is stored. `progress` (default: for a group of one)
    embeds in EMBED_BATCH pieces and saves the document's progress after each. Returns each
    document's outcome by document id."""
    documents = [p.document for p in group]
    show = progress if progress is not None else len(group) == 1
    try:
        Document.objects.filter(pk__in=[d.pk for d in documents]).update(
            status=Document.Status.PROCESSING, progress=10 if show else 1
        )
        texts = [d.text for p in group for d in p.drafts]
        vectors = _embed(texts, embedder, progress_of=documents[0] if show else None)
        return _store(collection, group, vectors, embedder.dim)
    except Exception as exc:
        return {d.pk: e for d, e in zip(documents, _record_failure(documents, exc), strict=True)}


def _embed(texts: list[str], embedder: Embedder, *, progress_of: Document | None) -> np.ndarray:
    """(len(texts), dim) float32. One call unless progress is shown: the embedder sorts the
    texts by length and batches them itself, and a larger call pads less."""
    if progress_of is None:
        return np.asarray(embedder.embed(texts), dtype=np.float32)
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.embed(texts[start : start + EMBED_BATCH]))
        _progress(progress_of, 10 + 85 * min(len(texts), start + EMBED_BATCH) // len(texts))
    return np.concatenate(parts).astype(np.float32)


# The document fields stage 3 writes (the others, e.g. `public`, may be changed meanwhile).
_STORED_FIELDS = [
    "title",
    "kind",
    "language",
    "content_hash",
    "size_bytes",
    "status",
    "progress",
    "error",
    "error_code",
    "updated_at",
]


def _store(
    collection: str, group: list[_Prepared], vectors: np.ndarray, dim: int
) -> dict[int, IngestResult | IngestError]:
    """Stage 3: replace the group's chunks and vectors in one transaction and one index write.
    vectors: (total drafts of the group, dim), in group order."""
    index = get_index(collection, dim)
    ends = np.cumsum([len(p.drafts) for p in group])  # (len(group),)
    per_document = np.split(vectors, ends[:-1])
    with transaction.atomic():
        present = set(
            Document.objects.select_for_update()
            .filter(pk__in=[p.document.pk for p in group])
            .values_list("pk", flat=True)
        )
        kept = [(p, v) for p, v in zip(group, per_document, strict=True) if p.document.pk in present]
        ids = [p.document.pk for p, _ in kept]
        old_ids = list(Chunk.objects.filter(document_id__in=ids).values_list("id", flat=True))
        Chunk.objects.filter(document_id__in=ids).delete()
        chunks = Chunk.objects.bulk_create(
            Chunk(
                document=p.document,
                ordinal=i,
                text=d.text,
                section=d.section[:500],
                anchor=d.anchor[:200],
                page=d.page,
                kind=d.kind,
                token_count=d.token_count,
                embedding=vector.tobytes(),
            )
            for p, doc_vectors in kept
            for i, (d, vector) in enumerate(zip(p.drafts, doc_vectors, strict=True))
        )
        for p, _ in kept:
            document = p.document
            document.title, document.kind, document.language = p.title, p.kind, p.language
            document.content_hash, document.size_bytes = p.digest, p.size_bytes
            document.status, document.progress = Document.Status.READY, 100
            document.error, document.error_code = "", ""
            # One UPDATE per document: its own values. (bulk_update's CASE per field cost
            # ~7 ms per document to compile, more than the plain statements.)
            document.save(update_fields=_STORED_FIELDS)
        if kept:
            # Inside the transaction: if the index write fails, the chunk rows roll back with it.
            index.replace(old_ids, [c.id for c in chunks], np.concatenate([v for _, v in kept]))
    results: dict[int, IngestResult | IngestError] = {}
    for p, doc_vectors in zip(group, per_document, strict=True):
        if p.document.pk not in present:
            results[p.document.pk] = IngestError(
                f"{p.document.title} was deleted while it was ingested.", code="deleted"
            )
            continue
        log.info(
            "event=document_ingested document=%s kind=%s chunks=%d", p.document.pk, p.kind, len(doc_vectors)
        )
        results[p.document.pk] = IngestResult(p.document, changed=True, chunks=len(doc_vectors))
    return results


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

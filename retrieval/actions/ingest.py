"""Processing documents into chunks and vectors: one at a time with its progress shown
(`process_document`, run by the worker's task and by `manage.py ingest` for URLs), or files in
groups (`do_ingest_files`, `do_ingest_path`).

Three stages, shared by single documents and folders: prepare (read, hash, parse, chunk: one
document at a time, a failure marks only that document; here), embed (one embedder call for a
whole group) and store (one transaction and one index write for a whole group), both in
`retrieval.actions.store`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings
from django.db.models import Count

from inference.base import Embedder
from inference.services import get_embedder
from retrieval.actions.create import (
    check_collection,
    do_create_document_from_path,
    do_create_document_from_url,
    path_document,
)
from retrieval.actions.store import IngestResult, Prepared, embed_and_store, record_failure
from retrieval.chunking import chunk_document
from retrieval.errors import IngestError
from retrieval.fetch import Fetched, fetch, filename_for, is_sitemap, sitemap_urls
from retrieval.loaders import SUPPORTED_SUFFIXES, parse
from retrieval.models import Chunk, Document

# Folder ingestion works in groups of at most this many documents and about this many chunks
# (see do_ingest_files for what each costs). The embedder sorts one call's texts by length, so a
# larger group pads less: over the 3,946 evaluation passages, groups of 64 padded 7.9% more
# tokens than one sorted call, 256 2.9%, 512 1.8%.
GROUP_DOCUMENTS = 256
GROUP_CHUNKS = 512


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
    check_collection(collection)
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
    group: list[Prepared] = []
    group_chunks = 0
    for document in documents:
        try:
            prepared = _prepare(
                document, *_read_original(document), embedder, has_chunks=document.pk in with_chunks
            )
        except Exception as exc:
            outcomes[document.pk] = record_failure([document], exc)[0]
            continue
        if prepared is None:
            unchanged.append(document)
            continue
        if group and group_chunks + len(prepared.drafts) > GROUP_CHUNKS:
            outcomes.update(embed_and_store(collection, group, embedder))
            group, group_chunks = [], 0
        group.append(prepared)
        group_chunks += len(prepared.drafts)
    if group:
        outcomes.update(embed_and_store(collection, group, embedder))
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
    missing = [path_document(path, collection, public) for path in paths if str(path) not in existing]
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
        error = record_failure([document], exc)[0]
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
    result = embed_and_store(document.collection, [prepared], embedder, progress=True)[document.pk]
    if isinstance(result, IngestError):
        raise result
    return result


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
) -> Prepared | None:
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
    return Prepared(
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


def _expand_sitemap(document: Document, fetched: Fetched, inline: bool) -> IngestResult:
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

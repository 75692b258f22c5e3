"""Knowledge-base API: documents (upload, URL, status, delete) and search."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection
from datetime import datetime
from types import GenericAlias
from typing import Any, get_type_hints

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import create_model

from core.auth import require_api_role
from core.errors import DomainError
from core.roles import AGENT, EDITOR, KNOWLEDGE
from retrieval.actions.create import do_create_document_from_upload, do_create_document_from_url
from retrieval.actions.delete import do_delete_document
from retrieval.models import COLLECTION_NAME, Document
from retrieval.search import MODES, Hit, search

router = Router(tags=["knowledge base"])


class DocumentOut(Schema):
    id: int
    collection: str
    title: str
    source: str
    url: str
    kind: str
    language: str
    status: str
    progress: int
    error_code: str
    error: str
    chunks: int
    size_bytes: int
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_chunks(document: Document) -> int:
        return document.chunks.count()


class UrlIn(Schema):
    url: str
    collection: str = "default"
    public: bool = True


def _schema_of(cls: type[Any], name: str, doc: str, *, leave_out: Collection[str]) -> type[Schema]:
    """A response schema with a dataclass's fields (their types and defaults) but `leave_out`,
    read from an instance's attributes: what the API shows of it is declared once, there."""
    hints = get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], ... if f.default is dataclasses.MISSING else f.default)
        for f in dataclasses.fields(cls)
        if f.name not in leave_out
    }
    return create_model(name, __base__=Schema, __doc__=doc, **fields)


# A search.Hit less its anchor and ranks. (`list[HitOut]` is written `GenericAlias(list, (HitOut,))`
# below: a class built at run time is no type for the type checker.)
HitOut = _schema_of(
    Hit, "HitOut", "A search.Hit, read from its attributes.", leave_out=("anchor", "rank_dense", "rank_bm25")
)


def access_document(document_id: int) -> Document:
    try:
        return Document.objects.get(pk=document_id)
    except Document.DoesNotExist as exc:
        raise DomainError("not_found", "No such document.", 404) from exc


def _out(document: Document) -> DocumentOut:
    return DocumentOut.model_validate(document)  # fields read from its attributes


@router.post(
    "/documents",
    response={202: DocumentOut},
    summary="Add a document (file upload or URL)",
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "collection": {"type": "string"},
                            "public": {"type": "boolean"},
                        },
                    }
                },
                "application/json": {"schema": UrlIn.model_json_schema()},
            }
        }
    },
)
def create_document(request: HttpRequest) -> Status[DocumentOut]:
    """Multipart `file` (with optional `collection`, `public`) or JSON `{"url": ...}`. Returns at
    once with status `pending`; poll `GET /api/documents/{id}` for progress."""
    require_api_role(request, KNOWLEDGE)
    # An IngestError (a bad collection or URL, a file over the limit) is answered as raised.
    if request.content_type == "multipart/form-data":
        upload = request.FILES.get("file")
        if upload is None:
            raise DomainError("missing_file", "Send the document as the multipart field 'file'.", 400)
        document = do_create_document_from_upload(
            upload,
            collection=request.POST.get("collection", "default"),
            public=request.POST.get("public", "true").lower() not in ("0", "false", "no"),
        )
    else:
        try:
            body = UrlIn.model_validate(json.loads(request.body or b"null"))
        except ValueError as exc:
            raise DomainError(
                "invalid_request",
                'Send multipart form data with a file, or JSON {"url": "https://..."}.',
                400,
            ) from exc
        document = do_create_document_from_url(body.url, collection=body.collection, public=body.public)
    return Status(202, _out(document))


@router.get("/documents/{document_id}", response=DocumentOut, summary="A document's status")
def get_document(request: HttpRequest, document_id: int) -> DocumentOut:
    require_api_role(request, KNOWLEDGE, AGENT, EDITOR)
    return _out(access_document(document_id))


@router.delete("/documents/{document_id}", response={204: None}, summary="Delete a document and its vectors")
def delete_document(request: HttpRequest, document_id: int) -> Status[None]:
    require_api_role(request, KNOWLEDGE)
    do_delete_document(access_document(document_id))
    return Status(204, None)


@router.get("/search", response=GenericAlias(list, (HitOut,)), summary="Search the knowledge base")
def search_documents(
    request: HttpRequest,
    q: str,
    k: int = 5,
    collection: str = "default",
    mode: str = "hybrid",
    language: str | None = None,
    mmr: bool = False,
) -> list[Hit]:
    """Hybrid (BM25 + dense) search by default; each hit carries its per-retriever scores.
    Staff only (knowledge, agent, editor), so private documents are searched too."""
    require_api_role(request, KNOWLEDGE, AGENT, EDITOR)
    if not q.strip() or len(q) > 2000:
        raise DomainError("bad_query", "q must be 1 to 2000 characters.", 400)
    if not 1 <= k <= 50:
        raise DomainError("bad_k", "k must be between 1 and 50.", 400)
    if not COLLECTION_NAME.fullmatch(collection):
        raise DomainError("bad_collection", "No such collection.", 400)
    if mode not in MODES:
        raise DomainError("bad_mode", f"mode must be one of: {', '.join(MODES)}.", 400)
    # Each Hit is read into HitOut by its attributes.
    return search(
        q, collection=collection, k=k, mode=mode, language=language or None, mmr=mmr, public_only=False
    )

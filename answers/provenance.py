"""What produced an output, in one shape for every caller (chat answers, desk drafts, article
sections), and the citations a reader sees.

    model_version    the registry row of the model that wrote it (ModelVersion; None: no model)
    prompt_template  the versioned prompt template (answers/prompts.py)
    retrieved        the chunks, with their scores:
                     {"chunk", "document", "title", "score", "source": n}  given to the model as
                                                                           source [n]
                     {"chunk", "document", "title", "score", "excluded": "instructions"}
                                                                           retrieved, kept out
    support          per-sentence support: which chunk backs each sentence of the output, with
                     what score, or "unsupported" (answers/support.py checks, records the
                     shape; kept in Message.support, Draft.support, ContentItem.support)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from answers.prompts import Source
from inference.actions import version_for_key
from inference.models import ModelVersion
from retrieval.models import Chunk
from retrieval.search import Hit


@dataclass(frozen=True)
class Provenance:
    model_key: str | None  # the usage record's model key; None when no model wrote it
    prompt_template: str
    retrieved: tuple[dict[str, Any], ...]

    def fields(self) -> dict[str, Any]:
        """The stored fields every output model has (model_version, prompt_template, retrieved).
        Resolves the model key to its registry row: a database write for a model new to us."""
        return {
            "model_version": self.model_version(),
            "prompt_template": self.prompt_template,
            "retrieved": list(self.retrieved),
        }

    def model_version(self) -> ModelVersion | None:
        return version_for_key(self.model_key, "chat") if self.model_key else None


def retrieved_records(sources: Iterable[Source], excluded: Iterable[Hit] = ()) -> tuple[dict[str, Any], ...]:
    """`retrieved` in the one shape: the chunks given to the model, by source number, then the
    chunks retrieved and kept out of the prompt for carrying instructions."""
    given = [_record(hit, source=source.n) for source in sources for hit in source.hits]
    kept_out = [_record(hit, excluded="instructions") for hit in excluded]
    return tuple(given + kept_out)


def given_sources(retrieved: Sequence[Mapping[str, Any]]) -> list[Source]:
    """The passages an output's prompt carried, read back from its stored `retrieved` records
    (the inverse of `retrieved_records`, for checking an edit or a saved text against what the
    output was written from): one Source per chunk, numbered as the prompt numbered it (0 for a
    record from before the shared shape, which named no number). Records kept out of the prompt
    are skipped, and so are chunks deleted since (a re-ingested document): they support nothing
    any more."""
    given = [r for r in retrieved if isinstance(r, Mapping) and r.get("chunk") and not r.get("excluded")]
    chunks = Chunk.objects.select_related("document").in_bulk([r["chunk"] for r in given])
    sources = []
    for record in given:
        chunk = chunks.get(record["chunk"])
        if chunk is not None:
            document = chunk.document
            hit = Hit(
                chunk.pk,
                document.pk,
                document.title,
                document.url,
                chunk.section,
                chunk.anchor,
                chunk.text,
                float(record.get("score") or 0.0),
            )
            sources.append(Source(int(record.get("source") or 0), (hit,)))
    return sources


def _record(hit: Hit, **extra: Any) -> dict[str, Any]:
    return {
        "chunk": hit.chunk_id,
        "document": hit.document_id,
        "title": hit.title,
        "score": round(hit.score, 4),
        **extra,
    }


def citation_items(sources: Iterable[Source]) -> list[dict[str, Any]]:
    """The citations shown with an output: one per numbered source, its best chunk's place."""
    return [
        {
            "n": s.n,
            "title": s.best.title,
            "url": s.best.url,
            "section": s.best.section,
            "snippet": _snippet(s.best.text),
        }
        for s in sources
    ]


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"

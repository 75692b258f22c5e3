"""Answer quality on SQuAD-2.0-format data, through the real answer path (`manage.py eval_answers`).

Each paragraph is ingested as one document into a throwaway collection; each question is asked
through `stream_answer` as a new visitor would ask it (a fresh conversation, so no history); the
collection's documents, index files and conversations are removed afterwards. Metrics, each a
share in [0, 1]:

- `fact`: answerable questions whose answer contains a gold answer after SQuAD's normalisation
  (lower case; punctuation and the articles a/an/the removed; compared as whole words).
- `cite`: answerable questions whose citations include the paragraph the question was written on.
- `decline`: unanswerable questions declined (the model said it does not know, the out-of-scope
  reply, or any answer whose `done` frame offers a person).
- `false_decline`: answerable questions declined.
- `unsupported`: answers (all of them; a decline states nothing, so it counts as supported)
  stating a number or a capitalised name found in neither the sources the model was given nor the
  question. A cheap detector of invented details: it misses invented common words and flags a
  name merely spelled differently.
- `baseline_fact`: the classic one-sentence extractive baseline on the answerable questions: the
  sentence of the top search hit sharing most (stop-word-free) words with the question.

Also from the stored answers: `confidence_auc` (the answer's confidence ranking answers that hold
the gold fact above the rest), `answerable_auc` (ranking answerable questions above unanswerable
ones), `verified` (answers given whose every shown sentence was verified) and `decline_curve`
(decline and false_decline as ANSWER_MIN_CONFIDENCE moves, read off the same run).

Cost: one answer per question (CHAT_ANSWER_STYLE "quote": retrieval and one embedder batch,
~0.3 s; "model": a generation bounded by CHAT_MAX_ANSWER_TOKENS, seconds) plus one search each for
the baseline; ingestion embeds each paragraph once.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import statistics
import string
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from bm25s.stopwords import STOPWORDS_EN
from django.conf import settings
from sklearn.metrics import roc_auc_score

from answers.confidence import says_it_does_not_know
from answers.provenance import given_sources
from assistant.chat.actions import stream_answer
from assistant.chat.visitors import issue_token
from assistant.models import Conversation, Message
from core.errors import DomainError
from retrieval.actions.delete import do_delete_document
from retrieval.actions.ingest import do_ingest_files
from retrieval.models import Document
from retrieval.search import search

log = logging.getLogger(__name__)


class AnswerEvalError(DomainError):
    """Bad evaluation data (the command prints it and exits)."""


@dataclass(frozen=True)
class Question:
    text: str
    paragraph: int  # index into the paragraph list
    answers: tuple[str, ...]  # gold answers; empty for an unanswerable question

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


# --- SQuAD data and normalisation ---------------------------------------------------------------


def load_squad(path: Path, limit: int | None = None) -> tuple[list[str], list[Question]]:
    """The paragraphs and questions of a SQuAD-2.0-format file. With `limit`, the first `limit`
    answerable and the first `limit` unanswerable questions in file order (deterministic)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        articles = data["data"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AnswerEvalError("bad_file", f"{path}: not a readable SQuAD-format file ({exc})") from exc
    paragraphs: list[str] = []
    questions: list[Question] = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            paragraphs.append(paragraph["context"])
            for qa in paragraph["qas"]:
                answers = () if qa.get("is_impossible") else tuple(a["text"] for a in qa["answers"])
                questions.append(Question(qa["question"].strip(), len(paragraphs) - 1, answers))
    if limit is not None:
        answerable = [q for q in questions if q.answerable][:limit]
        unanswerable = [q for q in questions if not q.answerable][:limit]
        keep = {id(q) for q in answerable + unanswerable}
        questions = [q for q in questions if id(q) in keep]
    return paragraphs, questions


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's official normalisation: lower case, punctuation and articles removed, spaces collapsed."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def contains_gold(answer: str, golds: tuple[str, ...] | list[str]) -> bool:
    """Whether the normalised answer contains a normalised gold answer as whole words."""
    padded = f" {normalize_answer(answer)} "
    return any((gold := normalize_answer(g)) and f" {gold} " in padded for g in golds)


# --- Invented details ---------------------------------------------------------------------------

_CITATION_MARK = re.compile(r"\[\d+(?:\s*[,-]\s*\d+)*\]")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?:;])\s+|\n+")
_TERM = re.compile(r"[A-Za-z][A-Za-z'’-]*|\d+")


def _terms(text: str) -> list[str]:
    return [re.sub(r"['’]s$|['’-]+$", "", t) for t in _TERM.findall(text)]


def unsupported_terms(answer: str, sources: str, question: str) -> list[str]:
    """Numbers (digit runs) and capitalised names (a word starting upper case that does not open
    a sentence) in `answer` found, case-insensitively, in neither `sources` nor `question`.
    Citation marks like [1] are not numbers the answer states."""
    known = {t.lower() for t in _terms(f"{sources}\n{question}")}
    found: list[str] = []
    for sentence in _SENTENCE_BREAK.split(_CITATION_MARK.sub(" ", answer)):
        for position, term in enumerate(_terms(sentence)):
            stated = term.isdigit() or (position > 0 and term[:1].isupper() and term != "I")
            if stated and term.lower() not in known and term not in found:
                found.append(term)
    return found


# --- The extractive baseline --------------------------------------------------------------------

_STOP = frozenset(STOPWORDS_EN) | {
    "what",
    "which",
    "who",
    "whom",
    "how",
    "when",
    "where",
    "why",
    "does",
    "did",
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP}


def best_sentence(question: str, passage: str) -> str:
    """The sentence of `passage` sharing most content words with `question` (the first on a tie)."""
    sentences = [s for s in _SENTENCE.split(passage.strip()) if s] or [""]
    wanted = _content_words(question)
    return max(sentences, key=lambda s: len(wanted & _content_words(s)))


# --- The run ------------------------------------------------------------------------------------


@contextmanager
def throwaway_collection(paragraphs: list[str], title: str = "paragraph") -> Iterator[tuple[str, list[int]]]:
    """A new collection holding each paragraph as one document: (name, document id per paragraph).
    Its documents (with their chunks and vectors), index files and conversations are removed on exit."""

    collection = f"eval-{uuid.uuid4().hex[:12]}"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "paragraph"
    try:
        with tempfile.TemporaryDirectory() as folder:
            files = []
            for i, text in enumerate(paragraphs):
                path = Path(folder) / f"{slug}-{i + 1:03d}.txt"
                path.write_text(text + "\n", encoding="utf-8")
                files.append(path)
            outcomes = do_ingest_files(files, collection=collection)
            document_ids = [outcomes[path].document.pk for path in files]
        failed = Document.objects.filter(pk__in=document_ids).exclude(status=Document.Status.READY)
        if failed.exists():
            raise AnswerEvalError("ingest_failed", f"{failed.count()} paragraphs could not be ingested")
        yield collection, document_ids
    finally:
        for document in Document.objects.filter(collection=collection):
            do_delete_document(document)
        Conversation.objects.filter(collection=collection).delete()
        for suffix in (".faiss", ".lock"):
            (Path(settings.INDEX_DIR) / f"{collection}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(Path(settings.INDEX_DIR) / f"{collection}.bm25", ignore_errors=True)


async def _ask(text: str, collection: str) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """Ask as a new visitor would: (visible answer, citations, the done frame)."""

    visitor, _token = issue_token()
    parts: list[str] = []
    citations: list[dict[str, Any]] = []
    done: dict[str, Any] = {}
    async for event in stream_answer(text, conversation_id=None, collection=collection, visitor=visitor):
        if event.kind == "token":
            parts.append(event.data["text"])
        elif event.kind == "citations":
            citations = event.data["items"]
        elif event.kind == "done":
            done = event.data
    return "".join(parts).strip(), citations, done


def _stored(message_id: str, citations: list[dict[str, Any]]) -> dict[str, Any]:
    """What the stored answer says of itself: the chunks it was given, the documents of the cited
    sources, its finish reason ("extractive", "stop", "length", "timeout", ...), its confidence,
    whether it was verified, and the sentences its verification found unsupported."""

    message = Message.objects.get(pk=int(message_id))
    given = given_sources(message.retrieved or [])
    cited_numbers = {c.get("n") for c in citations}
    return {
        "sources": "\n".join(hit.text for source in given for hit in source.hits),
        "cited": {hit.document_id for source in given if source.n in cited_numbers for hit in source.hits},
        "finish_reason": message.finish_reason,
        "confidence": message.confidence or 0.0,
        "verified": message.verified,
        "unverified": [s["text"] for s in message.support if s.get("verdict") == "unsupported"],
    }


CURVE_THRESHOLDS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8)


def decline_curve(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trade-off as ANSWER_MIN_CONFIDENCE moves, from one run: at each threshold, an answer
    is declined when its confidence is below it or it was declined for another reason (nothing
    found, a question for a number answered without one, the model saying it does not know)."""
    minimum = settings.ANSWER_MIN_CONFIDENCE
    curve = []
    for threshold in CURVE_THRESHOLDS:
        declined = [
            r["confidence"] < threshold or (r["declined"] and r["confidence"] >= minimum) for r in rows
        ]
        curve.append(
            {
                "threshold": threshold,
                "decline": _share([d for d, r in zip(declined, rows, strict=True) if not r["answerable"]]),
                "false_decline": _share([d for d, r in zip(declined, rows, strict=True) if r["answerable"]]),
            }
        )
    return curve


def _auc(labels: list[bool], scores: list[float]) -> float | None:
    return round(float(roc_auc_score(labels, scores)), 4) if len(set(labels)) == 2 else None


def _share(hits: list[bool]) -> float | None:
    return round(sum(hits) / len(hits), 4) if hits else None


async def _ask_all(
    questions: list[Question], collection: str, document_ids: list[int]
) -> tuple[list[dict[str, Any]], float]:

    rows: list[dict[str, Any]] = []
    seconds = 0.0
    for i, question in enumerate(questions):
        started = time.perf_counter()
        answer, citations, done = await _ask(question.text, collection)
        seconds += time.perf_counter() - started
        stored = await sync_to_async(_stored)(done["message"], citations)
        declined = bool(done.get("handoff")) or not answer or says_it_does_not_know(answer)
        row = {
            "question": question.text,
            "answerable": question.answerable,
            "answer": answer,
            "declined": declined,
            "finish_reason": stored["finish_reason"],
            "cited_paragraph": document_ids[question.paragraph] in stored["cited"],
            "unsupported": unsupported_terms(answer, stored["sources"], question.text),
            "confidence": stored["confidence"],
            "verified": stored["verified"],
            "unverified": stored["unverified"],
        }
        if question.answerable:
            row["fact"] = contains_gold(answer, question.answers)
            hits = await sync_to_async(search)(
                question.text, collection=collection, k=settings.CHAT_RETRIEVAL_K
            )
            row["baseline"] = best_sentence(question.text, hits[0].text) if hits else ""
            row["baseline_fact"] = contains_gold(row["baseline"], question.answers)
            row["gold"] = list(dict.fromkeys(question.answers))
        rows.append(row)
        log.info(
            "event=eval_answer n=%s of=%s declined=%s finish=%s",
            i + 1,
            len(questions),
            declined,
            row["finish_reason"],
        )
    return rows, seconds


def evaluate(
    paragraphs: list[str], questions: list[Question], *, details: Path | None = None
) -> dict[str, Any]:
    """Run every question through the answer path and the baseline; the metrics as a dict."""
    with throwaway_collection(paragraphs) as (collection, document_ids):
        # One event loop for the whole run, as in the server: a generation cut short (timeout)
        # finishes on the loop it started on.
        rows, seconds = async_to_sync(_ask_all)(questions, collection, document_ids)
    if details is not None:
        with Path(details).open("w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    given = [r for r in rows if not r["declined"]]
    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "fact": _share([r["fact"] for r in answerable]),
        "cite": _share([r["cited_paragraph"] for r in answerable]),
        "decline": _share([r["declined"] for r in unanswerable]),
        "false_decline": _share([r["declined"] for r in answerable]),
        "unsupported": _share([bool(r["unsupported"]) for r in rows]),
        "baseline_fact": _share([r["baseline_fact"] for r in answerable]),
        # The stored confidence as a judge: how well it ranks answers that hold the gold fact
        # above those that do not, and answerable questions above unanswerable ones (ROC AUC;
        # 0.5 is chance); the share of the answers given that were verified whole.
        "confidence_auc": _auc([r["fact"] for r in answerable], [r["confidence"] for r in answerable]),
        "answerable_auc": _auc([r["answerable"] for r in rows], [r["confidence"] for r in rows]),
        "verified": _share([r["verified"] for r in given]),
        "decline_curve": decline_curve(rows),
        "median_words": statistics.median(len(r["answer"].split()) for r in given) if given else None,
        "seconds_per_answer": round(seconds / len(rows), 2) if rows else None,
        # Answers the model failed to finish in time replaced by the fallback reply (a decline).
        "fallbacks": sum(r["finish_reason"] in ("timeout", "stalled", "busy", "error") for r in rows),
        "answer_style": settings.CHAT_ANSWER_STYLE,
        "min_confidence": settings.ANSWER_MIN_CONFIDENCE,
        "max_answer_tokens": settings.CHAT_MAX_ANSWER_TOKENS,
        "retrieval_k": settings.CHAT_RETRIEVAL_K,
        "answer_timeout_seconds": settings.CHAT_ANSWER_TIMEOUT_SECONDS,
    }

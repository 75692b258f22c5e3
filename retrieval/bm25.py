"""Lexical search: BM25 (bm25s) over chunk texts, one store per collection under INDEX_DIR.

The database is the source of truth. A store is rebuilt lazily, on the first search after the
collection's ready chunks changed, detected by a cheap stamp (one aggregate query). Each build
goes to its own folder `<collection>.bm25/<stamp digest>/`, written under a temporary name and
renamed into place, so a reader in another process sees a whole store or none.

Tokenisation is per language: Snowball stemming (PyStemmer) and the bm25s stopword list for the
document's language, so "routers" matches "router". Chunks are tokenised with their document's
language; a query with its requested language, or with every language in the store when none is
given (a German query in a mixed collection then still meets German stems).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import bm25s
import numpy as np
from django.conf import settings
from django.db.models import Count, Max, Sum

from retrieval.models import COLLECTION_NAME, Chunk, Document

log = logging.getLogger(__name__)

# ISO 639-1 code -> Snowball algorithm. Other languages: no stemming, no stopwords (still a
# working, if blunter, BM25).
_ALGORITHMS = {
    "en": "english",
    "de": "german",
    "nl": "dutch",
    "fr": "french",
    "es": "spanish",
    "pt": "portuguese",
    "it": "italian",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "nb": "norwegian",
    "ru": "russian",
    "tr": "turkish",
    "fi": "finnish",
}
# The bm25s stopword list of each algorithm, by the name bm25s.tokenize knows it by: the
# algorithm's own name, but English takes the longer list and Finnish has none.
_STOPWORDS: dict[str, str | None] = {"english": "english_plus", "finnish": None}


# Part of every store's stamp: bump it when tokenisation changes, so stores built the old way
# are rebuilt rather than matched against queries tokenised the new way.
ANALYZER_VERSION = "2"


def base_language(language: str | None) -> str:
    """ "en-GB" -> "en"; empty -> "en" (the Document default)."""
    return (language or "en").split("-")[0].split("_")[0].lower()


class WordStemmer(Protocol):
    """What bm25s needs of a stemmer (PyStemmer's, whose package has no types)."""

    def stemWords(self, words: list[str]) -> list[str]: ...


@lru_cache(maxsize=32)
def _stemmer(algorithm: str) -> WordStemmer | None:
    try:
        import Stemmer  # PyStemmer: optional, BM25 works (less well) without stemming
    except ImportError:
        return None
    stemmer: WordStemmer = Stemmer.Stemmer(algorithm)  # bm25s calls its batch stemWords()
    return stemmer


# "Wi-Fi" is also written "wifi", "e-mail" "email": index both the parts and the joined word.
_HYPHENATED = re.compile(r"\b\w+(?:[-‐‑]\w+)+\b")


def _with_joined(match: re.Match[str]) -> str:
    return f"{match.group(0)} {re.sub(r'[-‐‑]', '', match.group(0))}"


def tokenize(texts: Sequence[str], language: str | None = "en") -> list[list[str]]:
    """Lowercased, stopword-free, stemmed word tokens for each text (the same for chunks and
    queries, which is what makes their terms meet)."""
    algorithm = _ALGORITHMS.get(base_language(language))
    tokens: list[list[str]] = bm25s.tokenize(
        [_HYPHENATED.sub(_with_joined, text) for text in texts],
        stopwords=_STOPWORDS.get(algorithm, algorithm) if algorithm else None,
        stemmer=_stemmer(algorithm) if algorithm else None,
        return_ids=False,
        show_progress=False,
    )
    return tokens


class BM25Index:
    """An in-memory BM25 index over (id, text, language) rows; the store and the evaluation
    command both use it, so both score exactly the same way."""

    def __init__(self, model: bm25s.BM25, ids: np.ndarray, languages: np.ndarray) -> None:
        self.model = model
        self.ids = ids  # (n,) int64: position -> chunk id
        self.languages = languages  # (n,) str: base language per row
        self._position = {int(i): p for p, i in enumerate(ids)}

    @classmethod
    def build(cls, ids: Sequence[int], texts: Sequence[str], languages: Sequence[str]) -> BM25Index:
        langs = np.asarray([base_language(x) for x in languages], dtype=object)
        tokens: list[list[str]] = [[] for _ in texts]
        for language in sorted(set(langs)):
            rows = [i for i, x in enumerate(langs) if x == language]
            for row, toks in zip(rows, tokenize([texts[i] for i in rows], language), strict=True):
                tokens[row] = toks
        model = bm25s.BM25()
        if any(tokens):  # bm25s cannot index a corpus without a single term
            model.index(tokens, show_progress=False)
        return cls(model, np.asarray(ids, dtype=np.int64), langs.astype(str))

    def __len__(self) -> int:
        return len(self.ids)

    def query_tokens(self, text: str, language: str | None = None) -> list[str]:
        languages = [base_language(language)] if language else sorted(set(self.languages.tolist())) or ["en"]
        vocab = getattr(self.model, "vocab_dict", None) or {}
        # A repeated query term counts again (as in Lucene's BM25); a term that several
        # languages' analyzers agree on counts once per occurrence, not once per analyzer.
        counts: Counter[str] = Counter()
        for lang in languages:
            counts |= Counter(tokenize([text], lang)[0])
        return [t for t in counts.elements() if t in vocab]

    def scores(self, text: str, language: str | None = None) -> np.ndarray:
        """(n,) BM25 score of every row for `text`; zeros when no query term is in the index."""
        tokens = self.query_tokens(text, language)
        if not tokens:  # also the case for an index without terms (empty vocabulary)
            return np.zeros(len(self), dtype=np.float32)
        return np.asarray(self.model.get_scores(tokens), dtype=np.float32)

    def best(self, scores: np.ndarray, n: int, language: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ids and scores of the n best rows under `scores` (from `scores()`) that have a
        positive score, best first; with `language`, only rows in that language."""
        if language:
            scores = np.where(self.languages == base_language(language), scores, 0.0)
        n = min(n, int((scores > 0).sum()))
        if n == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.ids[top], scores[top]

    def pick(self, scores: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """(len(ids),) the entries of `scores` for the given ids (0 for ids not in the index)."""
        return np.asarray(
            [scores[p] if (p := self._position.get(int(i))) is not None else 0.0 for i in ids],
            dtype=np.float64,
        )

    def save(self, directory: Path) -> None:
        if getattr(self.model, "vocab_dict", None):  # nothing to save for a collection with no terms
            self.model.save(str(directory), show_progress=False)
        np.save(directory / "ids.npy", self.ids)
        (directory / "languages.json").write_text(json.dumps(self.languages.tolist()))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        ids = np.load(directory / "ids.npy")
        indexed = (directory / "params.index.json").exists()
        model = bm25s.BM25.load(str(directory), show_progress=False) if indexed else bm25s.BM25()
        languages = np.asarray(json.loads((directory / "languages.json").read_text()), dtype=str)
        return cls(model, ids, languages)


def collection_stamp(collection: str) -> str:
    """A digest that changes whenever the collection's searchable chunks may have changed:
    chunks added or removed (count, max and sum of ids) or a document re-saved (updated_at)."""
    ready = Chunk.objects.filter(document__collection=collection, document__status=Document.Status.READY)
    row = ready.aggregate(n=Count("id"), top=Max("id"), total=Sum("id"), changed=Max("document__updated_at"))
    changed = row["changed"].isoformat() if row["changed"] else ""
    raw = f"{ANALYZER_VERSION}|{row['n']}|{row['top']}|{row['total']}|{changed}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclass
class _Loaded:
    stamp: str
    index: BM25Index


class BM25Store:
    """The BM25 index of one collection, persisted under INDEX_DIR/<collection>.bm25/."""

    def __init__(self, directory: Path, collection: str) -> None:
        self.root = Path(directory) / f"{collection}.bm25"
        self.collection = collection
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def current(self) -> BM25Index:
        """The index for the collection as the database holds it now (built if stale)."""
        stamp = collection_stamp(self.collection)
        with self._lock:
            if self._loaded is None or self._loaded.stamp != stamp:
                self._loaded = _Loaded(stamp, self._load_or_build(stamp))
            return self._loaded.index

    def _load_or_build(self, stamp: str) -> BM25Index:
        path = self.root / stamp
        if path.is_dir():
            try:
                return BM25Index.load(path)
            except (OSError, ValueError):  # removed by a newer build mid-read: build our own
                log.warning("event=bm25_reload_failed collection=%s", self.collection)
        self.root.mkdir(parents=True, exist_ok=True)
        # One builder at a time across processes; the others wait and then load its result.
        with open(self.root / "build.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                if path.is_dir():
                    return BM25Index.load(path)
                index = self._build()
                tmp = self.root / f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                tmp.mkdir()
                index.save(tmp)
                os.rename(tmp, path)
                self._remove_old(keep=path)
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        log.info("event=bm25_built collection=%s chunks=%d", self.collection, len(index))
        return index

    def _build(self) -> BM25Index:
        rows = list(
            Chunk.objects.filter(document__collection=self.collection, document__status=Document.Status.READY)
            .order_by("id")
            .values_list("id", "text", "document__language")
        )
        return BM25Index.build([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    def _remove_old(self, keep: Path) -> None:
        for child in self.root.iterdir():
            if child.is_dir() and child != keep:
                shutil.rmtree(child, ignore_errors=True)


_stores: dict[tuple[str, str], BM25Store] = {}
_stores_lock = threading.Lock()


def get_bm25(collection: str) -> BM25Store:
    if not COLLECTION_NAME.fullmatch(collection):
        raise ValueError(f"invalid collection name {collection!r}")
    key = (str(settings.INDEX_DIR), collection)  # a test's INDEX_DIR override gets its own store
    with _stores_lock:
        if key not in _stores:
            _stores[key] = BM25Store(settings.INDEX_DIR, collection)
        return _stores[key]

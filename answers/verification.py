"""Checking what an answer states against what its sources say, sentence by sentence.

A sentence is *supported* when
  1. every fact it states is in the sources or in the customer's own words: numbers (digits or
     words, "37" = "thirty-seven", "1,000" = "1000", "£50.00" = "£50", "08:00" = "8:00"), codes
     ("WX-200", "ZEPHYR") and names (a capitalised word that does not open the sentence, or one
     that does and runs on into another capitalised word: "Christopher Columbus"); and
  2. it says something the sources say: its embedding is at least `threshold` (cosine) from the
     nearest source sentence, which is also the chunk named as its support.
A sentence stating no fact and saying nothing about the sources ("I hope this helps.") is
*neutral*: it neither supports nor spoils the answer.

Fact matching is on normalised tokens, not on surface strings, so it works the same in any
language whose numbers are written in digits; number words are read in English only (the
sources' own words also count: "siebenunddreißig" in a source supports the same word in an answer).
Why our own code: fact checking of this kind (NLI cross-encoders, QAFactEval) needs models we do
not ship offline; this is the part of it that is exact, and the embedder we already load does the
rest.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from bm25s import stopwords

from retrieval.loaders.language import detect_language

Embed = Callable[[list[str]], np.ndarray]

# --- Sentences ------------------------------------------------------------------------------------

_CITATION = re.compile(r"\s*\[\d+(?:\s*[,\-–]\s*\d+)*\]")
# A break after . ! ? (and their closing quotes or brackets) before a space, or at a line break;
# not inside "e.g. this", "3.5" or "Mr. Smith".
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "mr.", "mrs.", "ms.", "dr.", "st.", "no.", "vs.", "approx.")
_BREAK = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n+")


def split_sentences(text: str) -> list[str]:
    """`text` as sentences, each stripped; citation marks stay with their sentence."""
    pieces = [p for p in _BREAK.split(text) if p and p.strip()]
    sentences: list[str] = []
    for piece in pieces:
        piece = piece.strip()
        if sentences and sentences[-1].lower().endswith(_ABBREVIATIONS):
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
    # A sentence that is only a citation mark belongs to the one before it.
    merged: list[str] = []
    for sentence in sentences:
        if merged and not _CITATION.sub("", sentence).strip():
            merged[-1] = f"{merged[-1]} {sentence}"
        else:
            merged.append(sentence)
    return merged


# --- Facts ------------------------------------------------------------------------------------

_UNITS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_ONE = {"one": 1}  # "one" only inside a compound ("twenty-one"): alone it is mostly a pronoun
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = "|".join(sorted([*_UNITS, *_ONE, *_TENS, *_SCALES], key=len, reverse=True))
_WORDS_NUMBER = re.compile(rf"\b(?:{_NUMBER_WORD})(?:[\s-]+(?:and[\s-]+)?(?:{_NUMBER_WORD}))*\b", re.I)
_DIGITS = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*(?:st|nd|rd|th)?(?![\w])|\d+")
_WORD = re.compile(r"[^\W\d_](?:[\w'’\-]*\w)?")
_CODE = re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[\w]+(?:-[\w]+)+\b|\b[^\W\d_]+\d[\w]*\b")


def _words_value(text: str) -> int | None:
    total, current = 0, 0
    for word in re.split(r"[\s-]+", text.lower()):
        if word == "and":
            continue
        if word in _UNITS or word in _ONE:
            current += _UNITS.get(word, 1)
        elif word in _TENS:
            current += _TENS[word]
        elif word in _SCALES:
            current = max(current, 1) * _SCALES[word]
            if _SCALES[word] >= 1000:
                total, current = total + current, 0
        else:
            return None
    value = total + current
    if value == 1 and text.strip().lower() == "one":
        return None
    return value


def _number_key(raw: str) -> str:
    """'1,000' and '1000' -> '1000'; '50.00' -> '50'; '08:00' -> '8:00'; '3rd' -> '3'; '3,5' -> '3.5'."""
    raw = re.sub(r"(st|nd|rd|th)$", "", raw.lower())
    if ":" in raw:
        hours, _, rest = raw.partition(":")
        return f"{hours.lstrip('0') or '0'}:{rest}"
    if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", raw):
        raw = raw.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", raw):  # 1.000,50 (German, Dutch)
        raw = raw.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"\d+,\d{1,2}", raw):  # 3,5
        raw = raw.replace(",", ".")
    if re.fullmatch(r"\d+\.\d+", raw):
        raw = raw.rstrip("0").rstrip(".")
    return raw.lstrip("0") or "0" if raw.isdigit() else raw


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return re.sub(r"'s$", "", text)


@dataclass(frozen=True)
class Fact:
    kind: str  # "number", "code" or "name"
    text: str  # as written
    key: str  # normalised: what must be found in the sources


def numbers(text: str) -> list[Fact]:
    found = [Fact("number", m.group(), _number_key(m.group())) for m in _DIGITS.finditer(text)]
    for match in _WORDS_NUMBER.finditer(text):
        value = _words_value(match.group())
        if value is not None:
            found.append(Fact("number", match.group(), str(value)))
    return found


def stated_facts(sentence: str, *, nouns_capitalised: bool = False) -> list[Fact]:
    """The numbers, codes and names `sentence` states (citation marks are not facts).
    `nouns_capitalised` (German and the like): a sentence's first word is never taken for a name."""
    sentence = _CITATION.sub(" ", sentence)
    facts = numbers(sentence)
    codes = {m.group() for m in _CODE.finditer(sentence)}
    facts += [Fact("code", code, _fold(code)) for code in codes if not code.isdigit()]
    words = list(_WORD.finditer(sentence))
    for index, match in enumerate(words):
        word = match.group()
        if word in codes or not word[:1].isupper() or word == "I" or word.lower() in _UNITS:
            continue
        opens = not sentence[: match.start()].strip(" \t\"'“‘(*-–—•:")
        if opens and nouns_capitalised:
            continue
        if opens:
            # A sentence's first word is a name only when it runs on into another capitalised
            # word ("Christopher Columbus discovered …"), not "Please call us".
            following = words[index + 1].group() if index + 1 < len(words) else ""
            between = sentence[match.end() : words[index + 1].start()] if following else ""
            if not (following[:1].isupper() and between.strip() == ""):
                continue
        if len(word) > 1 and word.isupper() and len(word) <= 5 and word in _COMMON_CAPS:
            continue
        facts.append(Fact("name", word, _fold(word)))
    return facts


_COMMON_CAPS = frozenset({"OK", "FAQ", "PS", "AM", "PM", "TV", "PC", "ID", "UK", "US", "EU"})


@dataclass
class Vocabulary:
    """What the sources and the question let an answer state: their words and their numbers."""

    words: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    _sorted: list[str] | None = None

    @classmethod
    def of(cls, *texts: str) -> Vocabulary:
        vocabulary = cls()
        for text in texts:
            vocabulary.words.update(_fold(w) for w in _WORD.findall(text))
            vocabulary.words.update(_fold(c) for c in _CODE.findall(text))
            vocabulary.numbers.update(f.key for f in numbers(text))
        return vocabulary

    def knows(self, fact: Fact, *, stems: bool = False) -> bool:
        """`stems`: a name also matches a source word sharing all but its last three letters
        (at least five): for languages that capitalise nouns and inflect them ("Lieferung" in
        the answer, "Lieferungen" in the source). Off for English, where it would let an
        invented "Columbus" pass on "column"."""
        if fact.kind == "number":
            return fact.key in self.numbers
        if fact.key in self.words:
            return True
        # "Zephyr's" / "Harderwijk-based": the name's parts.
        parts = [p for p in re.split(r"[-']", fact.key) if p]
        if len(parts) > 1 and all(p in self.words for p in parts):
            return True
        if stems and fact.kind == "name" and len(fact.key) >= 5:
            if self._sorted is None:
                self._sorted = sorted(self.words)
            prefix = fact.key[: max(5, len(fact.key) - 3)]
            at = bisect.bisect_left(self._sorted, prefix)
            return at < len(self._sorted) and self._sorted[at].startswith(prefix)
        return False


def unknown_facts(sentence: str, vocabulary: Vocabulary, *, stems: bool = False) -> list[Fact]:
    facts = stated_facts(sentence, nouns_capitalised=stems)
    return [fact for fact in facts if not vocabulary.knows(fact, stems=stems)]


# --- Verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceText:
    """A passage the answer may draw on: its chunk id and text."""

    chunk: int | None
    text: str


@dataclass(frozen=True)
class SentenceCheck:
    text: str
    verdict: str  # "supported", "unsupported" or "neutral"
    score: float  # cosine to the nearest source sentence (0 where there are no sources)
    chunk: int | None  # the chunk of that sentence
    evidence: str  # that sentence
    unknown: tuple[str, ...]  # facts found in neither the sources nor the question

    @property
    def supported(self) -> bool:
        return self.verdict != "unsupported"

    def record(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "verdict": self.verdict,
            "score": round(self.score, 4),
            "chunk": self.chunk,
            "unknown": list(self.unknown),
        }


@dataclass(frozen=True)
class Verification:
    sentences: tuple[SentenceCheck, ...]
    threshold: float = 0.0  # the similarity that counts as support

    @property
    def confidence(self) -> float:
        """The weakest stated sentence's support (a sentence supported by its words alone counts
        as `threshold`), 0 where any sentence is unsupported or nothing is stated."""
        stated = [s for s in self.sentences if s.verdict != "neutral"]
        if not stated or any(s.verdict == "unsupported" for s in stated):
            return 0.0
        return min(max(s.score, self.threshold) for s in stated)

    @property
    def all_supported(self) -> bool:
        return all(s.supported for s in self.sentences) and any(
            s.verdict == "supported" for s in self.sentences
        )

    def supported_text(self) -> str:
        return " ".join(s.text for s in self.sentences if s.supported)

    def record(self) -> list[dict[str, Any]]:
        return [s.record() for s in self.sentences]


_CONTENT = re.compile(r"[^\W\d_]{3,}")
# Words that carry no claim: a sentence made only of these (and stop words) is courtesy.
_STOP_WORDS = frozenset(
    word.lower()
    for name in ("EN", "GERMAN", "FRENCH", "SPANISH", "DUTCH", "ITALIAN", "PORTUGUESE", "DANISH", "SWEDISH")
    for word in getattr(stopwords, f"STOPWORDS_{name}")
)
_FILLER = _STOP_WORDS | frozenset(
    "please thank thanks help helps helped hope happy glad question questions let know contact "
    "team assist anything else welcome sorry great day good".split()
)


def _claim_words(sentence: str) -> list[str]:
    """The words of `sentence` that carry a claim: not courtesy, not stop words, not citations."""
    return [w for w in _CONTENT.findall(_CITATION.sub(" ", sentence)) if _fold(w) not in _FILLER]


def says_something(sentence: str) -> bool:
    """Does `sentence` make a claim (a fact, or one word that is not courtesy or a stop word)?"""
    return bool(stated_facts(sentence)) or bool(_claim_words(sentence))


def _all_words_known(sentence: str, vocabulary: Vocabulary, *, stems: bool) -> bool:
    """Every claim-bearing word of `sentence` (two at least) is a word of the sources: a second
    signal beside the embedding, which is weaker outside English with the default embedder.
    Not used for English: there it let "Turn off the router. Use a wire cutter on the cable"
    through, every word being somewhere in three chunks about routers."""
    words = _claim_words(sentence)
    return len(words) >= 2 and all(vocabulary.knows(Fact("name", w, _fold(w)), stems=stems) for w in words)


def _apart(sentence: str, chunks: Sequence[Vocabulary], asked: Vocabulary, *, stems: bool) -> tuple[str, ...]:
    """For a sentence stating a number or a code: its facts that no single source passage states
    together with the rest ("within 30 days ... Zephyr Logistics" built from another company's
    "30 days" and the question's "Zephyr"). Numbers and codes the customer wrote count as
    stated; names do not, or a question's name would license any number near it. Empty when
    one passage holds them all, or the sentence states no number or code."""
    facts = stated_facts(sentence, nouns_capitalised=stems)
    if not chunks or not any(f.kind in ("number", "code") for f in facts):
        return ()
    needed = [f for f in facts if not (f.kind != "name" and asked.knows(f))]
    missing = [[f.text for f in needed if not chunk.knows(f, stems=stems)] for chunk in chunks]
    best = min(missing, key=len)
    return tuple(dict.fromkeys(best))


def verify(
    answer: str,
    sources: Sequence[SourceText],
    *,
    question: str = "",
    embed: Embed,
    threshold: float = 0.55,
) -> Verification:
    """Each sentence of `answer` checked against `sources` (and the customer's `question`)."""
    vocabulary = Vocabulary.of(question, *(s.text for s in sources))
    evidence = [(source.chunk, sentence) for source in sources for sentence in split_sentences(source.text)]
    sentences = split_sentences(answer)
    if not sentences:
        return Verification(())
    bare = [_CITATION.sub("", s).strip() or s for s in sentences]
    if evidence:
        vectors = embed(bare + [text for _, text in evidence])
        similarity = vectors[: len(bare)] @ vectors[len(bare) :].T
    else:
        similarity = np.zeros((len(bare), 0), dtype=np.float32)
    language = detect_language(answer) or detect_language(" ".join(s.text for s in sources))
    stems = language not in ("en", "")
    evidence_numbers = [{f.key for f in numbers(text)} for _, text in evidence]
    chunk_vocabularies = [Vocabulary.of(source.text) for source in sources]
    asked = Vocabulary.of(question)
    checks = []
    for row, sentence in enumerate(sentences):
        unknown = tuple(dict.fromkeys(f.text for f in unknown_facts(sentence, vocabulary, stems=stems)))
        scores = similarity[row].copy()
        # The evidence for a sentence stating numbers is a source sentence stating them, where
        # one does: similar wording about something else must not be named as its support.
        stated = {f.key for f in stated_facts(sentence) if f.kind == "number"}
        holding = [i for i, keys in enumerate(evidence_numbers) if stated and stated <= keys]
        if holding:
            scores[[i for i in range(len(evidence)) if i not in set(holding)]] = -1.0
        best = int(np.argmax(scores)) if scores.shape[0] else -1
        score = float(scores[best]) if best >= 0 else 0.0
        chunk, text = evidence[best] if best >= 0 else (None, "")
        if not unknown:
            unknown = _apart(sentence, chunk_vocabularies, asked, stems=stems)
        if unknown:
            verdict = "unsupported"
        elif not says_something(sentence):
            verdict = "neutral"
        elif score >= threshold or (stems and _all_words_known(sentence, vocabulary, stems=stems)):
            verdict = "supported"
        else:
            verdict = "unsupported"
        checks.append(SentenceCheck(sentence, verdict, max(score, 0.0), chunk, text, unknown))
    return Verification(tuple(checks), threshold)

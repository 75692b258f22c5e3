"""Answers made of what the sources say: the best source sentences, cited, or a plain "not sure".

Why this is the chat's default (CHAT_ANSWER_STYLE "quote"; benchmarks/RESULTS.md has the run):
on public SQuAD questions the default 135M model's own words held the right fact for 0.30 of the
answerable questions and named something found nowhere in the sources in half of all answers,
while the two best source sentences held it for 0.88, at a median of 46 words, and are on the
screen within a few hundred milliseconds instead of after the model's first sentence. A bigger
model is a setting away (CHAT_ANSWER_STYLE "model"): its sentences then go through the same
verifier and only supported ones reach the visitor.

`assess` picks the sentences (answers/support.quotes) and judges whether they answer the
question: the best sentence's embedding similarity to the question must reach
ANSWER_MIN_CONFIDENCE, and a question asking for a quantity or a date ("how many", "when", "what
year") must find a number in them. Below that the reply says it is not sure, shows the closest
passage and offers a person.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from answers.prompts import Source
from answers.support import Quote, check, quotes, records
from answers.verification import numbers
from retrieval.loaders.language import detect_language

# A question wanting a quantity, a date, a time or an amount: its answer states a number.
_WANTS_NUMBER = re.compile(
    r"^\W*(how (many|much|long|old|often|far|big|large|fast|soon)|when|what (year|date|time|percentage"
    r"|number|age)|in (what|which) year|wie (viele?|lange|alt|oft)|wann|combien|quand)\b"
    r"|^\W*(what|which)\b.*\b(fee|fees|price|prices|cost|costs|charge|charges|rate|rates)\b",
    re.I,
)
# Recorded as the answer's prompt_template: which rule wrote it (its finish_reason: "extractive").
EXTRACTIVE_TEMPLATE = "extractive:v1"
# A question about an amount of money wants one: a number with a currency.
_WANTS_MONEY = re.compile(
    r"\b(fees?|prices?|costs?|charges?|pay|paid|compensation|kosten|preis|prix|coût)\b", re.I
)
_MONEY = re.compile(
    r"[£$€¥₹]\s?\d|\d\s?(?:[£$€¥₹]|eur|usd|gbp|chf|kr|crowns?|euros?|dollars?|pounds?|francs?)\b", re.I
)
# Keep the second-best sentence when it scores at least this share of the best: it usually
# carries the rest of the answer; below, it is mostly words (measured: RESULTS.md, issue 16).
SECOND_SENTENCE_RATIO = 0.8

NOT_SURE = {
    "en": "I'm not sure our documents answer that.",
    "de": "Ich bin nicht sicher, ob unsere Unterlagen das beantworten.",
    "fr": "Je ne suis pas sûr que nos documents répondent à cette question.",
    "es": "No estoy seguro de que nuestros documentos respondan a eso.",
    "nl": "Ik weet niet zeker of onze documenten dat beantwoorden.",
}
CLOSEST = {
    "en": "The closest I found:",
    "de": "Am nächsten kommt:",
    "fr": "Le passage le plus proche :",
    "es": "Lo más parecido que encontré:",
    "nl": "Het dichtstbijzijnde dat ik vond:",
}
OFFER = {
    "en": "Would you like me to pass your question to a person?",
    "de": "Soll ich Ihre Frage an eine Person weitergeben?",
    "fr": "Voulez-vous que je transmette votre question à une personne ?",
    "es": "¿Quiere que pase su pregunta a una persona?",
    "nl": "Zal ik uw vraag doorgeven aan een medewerker?",
}
# When the sources are in another language than the question: said in the visitor's language.
OTHER_LANGUAGE = {
    "de": "Unsere Unterlagen dazu gibt es nur auf {language}:",
    "fr": "Nos documents à ce sujet n'existent qu'en {language} :",
    "es": "Nuestros documentos sobre esto solo están en {language}:",
    "nl": "Onze documenten hierover zijn alleen in het {language}:",
    "en": "Our documents on this are only in {language}:",
}
LANGUAGE_NAMES = {
    "en": {"de": "Englisch", "fr": "anglais", "es": "inglés", "nl": "Engels"},
    "de": {"en": "German", "fr": "allemand", "es": "alemán", "nl": "Duits"},
    "fr": {"en": "French", "de": "Französisch", "es": "francés", "nl": "Frans"},
}


@dataclass(frozen=True)
class Assessment:
    """The sentences to answer with and how far to trust them."""

    quotes: tuple[Quote, ...]
    confidence: float  # the best sentence's similarity to the question (0: no sentence)
    sure: bool
    language: str  # the question's language ("" when too short to tell)

    @property
    def shown(self) -> tuple[Quote, ...]:
        """The sentences the reader is shown: all when sure, else the closest one."""
        return self.quotes if self.sure else self.quotes[:1]


def assess(question: str, sources: Sequence[Source], *, language: str = "") -> Assessment:
    """The best one or two source sentences for `question` and whether they answer it."""
    ranked = quotes(question, sources, limit=8)
    found = ranked[:2]
    wants_number = bool(_WANTS_NUMBER.search(question))
    states = _states_money if wants_number and _WANTS_MONEY.search(question) else _states_number
    if wants_number and ranked and not states(ranked[0].text):
        found = _with_number(ranked, states)
    if len(found) == 2 and found[1].score < SECOND_SENTENCE_RATIO * found[0].score:
        found = found[:1]
    confidence = found[0].score - found[0].coverage if found else 0.0
    sure = bool(found) and confidence >= settings.ANSWER_MIN_CONFIDENCE
    if sure and wants_number:
        sure = any(states(q.text) for q in found)
    return Assessment(tuple(found), round(confidence, 4), sure, language or detect_language(question))


def _states_number(text: str) -> bool:
    return bool(numbers(text))


def _states_money(text: str) -> bool:
    return bool(_MONEY.search(text))


def _with_number(ranked: list[Quote], states: Callable[[str], bool]) -> list[Quote]:
    """For a question wanting a number (or an amount) whose best sentence states none: that
    sentence with the one after it when that one states it ("An early termination fee applies."
    "It is £10 for each full month remaining."), else the best sentence that states one."""
    best = ranked[0]
    if best.following and states(best.following):
        follow = replace(best, text=best.following, score=best.score, following="")
        return [best, follow]
    stating = [q for q in ranked if states(q.text)]
    return stating[:1] or ranked[:1]


def quoted(found: Sequence[Quote]) -> str:
    """The sentences in their sources' order, each source's citation mark after its last one."""
    ordered = sorted(found, key=lambda q: q.source)
    parts = []
    for i, quote in enumerate(ordered):
        last_of_source = i + 1 == len(ordered) or ordered[i + 1].source != quote.source
        parts.append(f"{quote.text} [{quote.source}]" if last_of_source else quote.text)
    return " ".join(parts)


def reply_text(assessment: Assessment, site_language: str | None = None) -> str:
    """What the visitor reads: the sentences (introduced in the visitor's language when the
    sources are in another), or "not sure", the closest passage and the offer of a person."""
    language = assessment.language or site_language or "en"
    if not assessment.quotes:
        return f"{_say(NOT_SURE, language)} {_say(OFFER, language)}"
    body = quoted(assessment.shown)
    source_language = detect_language(body) or language
    if source_language != language and language in OTHER_LANGUAGE:
        named = LANGUAGE_NAMES.get(source_language, {}).get(language)
        if named:
            body = f"{OTHER_LANGUAGE[language].format(language=named)} {body}"
    if assessment.sure:
        return body
    return f"{_say(NOT_SURE, language)} {_say(CLOSEST, language)} {body} {_say(OFFER, language)}"


@dataclass(frozen=True)
class Checked:
    """What a stored answer keeps of its verification (Message.support, confidence, verified)."""

    support: list[dict[str, Any]]  # answers/support.records, every sentence checked
    confidence: float
    verified: bool  # every sentence the reader was shown is supported
    sure: bool  # confident enough not to offer a person


@dataclass(frozen=True)
class QuotedReply:
    """A reply made of the sources: its text, the numbers of the sources it cites, and its check."""

    text: str
    cited: frozenset[int]
    checked: Checked


def quoted_reply(question: str, sources: Sequence[Source], site_language: str | None = None) -> QuotedReply:
    """The best source sentences for `question` (or "not sure" and the closest one), and the
    shown sentences checked like any other output: each is its own evidence, so this records
    which chunk it came from and confirms nothing was altered on the way. One embedder batch
    for the quotes and one for the check."""
    assessment = assess(question, sources)
    shown = assessment.shown
    support = records(check(quoted(shown), sources, question=question), sources) if shown else []
    return QuotedReply(
        reply_text(assessment, site_language),
        frozenset(q.source for q in shown),
        Checked(support, assessment.confidence, assessment.sure, assessment.sure),
    )


def _say(table: dict[str, str], language: str) -> str:
    return table.get(language, table["en"])
